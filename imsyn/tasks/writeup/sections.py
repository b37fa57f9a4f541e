"""The write-up's sections, one module each (:mod:`~imsyn.tasks.writeup.a1` ...
:mod:`~imsyn.tasks.writeup.a5`), and the config table they make up.

A section module has ``TITLE``; ``FIELDS``, its table under ``config.<section>``;
``experiments(config, root, earlier)``, its experiments in page order (``earlier``: those
of the sections before it, for an experiment that reads their outputs), or, for a section
that calls a library (A1, A2), ``EXPERIMENTS``: the name of each (its sub-workdir and its
function in the module) -> its title; and where it has them, ``DATA``, what it reads under
``config.data_root`` (checked before any compute), ``NETWORKS``, the pretrained networks it
needs, ``GROUPS``, the page's heading of each group of its experiments, and
``QUICK_NOTES``, what the page of the ``quick`` preset says under a group's heading (what
its short runs cannot show, with the measured numbers of the full-length ones).
"""

from __future__ import annotations

from imsyn import validate
from imsyn.tasks.writeup import a1, a2, a3, a4, a5
from imsyn.tasks.writeup.records import split
from imsyn.validate import Decl

MODULES = {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "a5": a5}
SECTIONS = {section: m.TITLE for section, m in MODULES.items()}
#: the pretrained networks each section needs (the page says when one is missing)
NETWORKS = {section: m.NETWORKS for section, m in MODULES.items() if hasattr(m, "NETWORKS")}
#: data each section reads, relative to ``config.data_root``
DATA = {section: m.DATA for section, m in MODULES.items() if hasattr(m, "DATA")}
#: the page's heading of each group of experiments
GROUPS = {group: head for m in MODULES.values() for group, head in getattr(m, "GROUPS", {}).items()}
#: the ``quick`` page's note under a group's heading
QUICK_NOTES = {g: n for m in MODULES.values() for g, n in getattr(m, "QUICK_NOTES", {}).items()}


def _sections_field(v):
    if not isinstance(v, str):
        raise ValueError
    if any(p not in SECTIONS for p in split(v)):
        raise ValueError
    return v


#: every field of the write-up config, declared once: default, rule, meaning, one nested
#: table per section (``configs/writeup.py`` builds on these defaults; ``quick`` changes some)
FIELDS = {
    "task": Decl("writeup", validate.one_of("writeup"), "the experiment"),
    "name": Decl("writeup", validate.string(nonempty=True), "the write-up's name"),
    "preset": Decl("default", validate.string(nonempty=True), "the preset: default or quick"),
    "only": Decl(
        "",
        validate.custom(_sections_field, f"'' or a comma list of {', '.join(SECTIONS)}"),
        "'' = every section; or a comma list of a1..a5: redo those",
    ),
    "data_root": Decl(
        "@data",
        validate.string(
            nonempty=True,
            expect="the course data folder (@data: python -m imsyn data fetch course)",
        ),
        "prokudin/, poisson/, nst/, gan/: @data = the fetched course data, or a folder like it",
    ),
    **{section: m.FIELDS for section, m in MODULES.items()},
}
