"""The course write-up (``config.task == "writeup"``): every experiment on one page.

``python eval.py --config=configs/writeup.py[:quick] --workdir=runs/writeup`` runs
:func:`evaluate`: it validates the whole config (every nested task config through its
task's own ``validate``, the data folders, ``only``) before any compute, then runs the
experiments in order, each in its own sub-workdir, and writes ``index.html`` and
``results.json``. A rerun skips what finished with the same settings, redoes what changed
and what reads it, and resumes what was interrupted (:mod:`~imsyn.tasks.writeup.plan`).

The rooms:

* :mod:`~imsyn.tasks.writeup.a1` ... :mod:`~imsyn.tasks.writeup.a5`: one module per section,
  its config fields, data and experiments. The A1/A2 experiments call the libraries
  (:mod:`imsyn.align`, :mod:`imsyn.poisson`); the A3/A4/A5 ones run the tasks
  (:mod:`imsyn.tasks.dcgan`, ...) on the nested configs
  (:mod:`~imsyn.tasks.writeup.runs`), so their sub-workdirs are ordinary run directories
  (``report.html``, checkpoints, ``metrics.jsonl``).
* :mod:`~imsyn.tasks.writeup.sections`: the sections and the config table (``FIELDS``).
* :mod:`~imsyn.tasks.writeup.records`: an experiment, its output and its state file.
* :mod:`~imsyn.tasks.writeup.plan`: the check before compute, the plan and the run.
* :mod:`~imsyn.tasks.writeup.page`: the page and ``results.json``, from the state files alone.
"""

from __future__ import annotations

from pathlib import Path

from imsyn.outputs import claim_workdir
from imsyn.tasks.writeup.page import write_page
from imsyn.tasks.writeup.plan import GPU_ESTIMATE, run, validate
from imsyn.tasks.writeup.sections import DATA, FIELDS, SECTIONS

__all__ = ["BUILDS_WORKDIR", "DATA", "FIELDS", "GPU_ESTIMATE", "SECTIONS", "evaluate", "train",
           "validate"]  # fmt: skip

#: ``eval.py`` holds the write-up's workdir as ``train.py`` holds a run's (imsyn.experiments):
#: an empty folder or an earlier write-up (imsyn.outputs' ownership marker), nothing else
BUILDS_WORKDIR = True


def evaluate(config, workdir) -> dict:
    """``eval.py`` entry: runs what :func:`~imsyn.tasks.writeup.plan.plan` says, then writes
    the page; returns the content of ``results.json``."""
    validate(config)
    workdir = Path(workdir)
    # held as train.py holds a run (re-entrant under eval.py): an empty folder or its own
    # earlier write-up (imsyn.outputs' marker), never a folder of the user's files
    with claim_workdir(workdir, mode="train", task="writeup"):
        run(config, workdir)
        return write_page(config, workdir)


train = evaluate  # ``train.py --config=configs/writeup.py`` does the same
