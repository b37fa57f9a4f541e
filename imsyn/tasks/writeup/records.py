"""The write-up's records: an experiment (:class:`Exp`), what it leaves for the page
(:class:`Output`), and its state file ``state/<section>__<name>.json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


class Output(dict):
    """What an experiment leaves for the page: ``results`` (numbers), ``figures``
    (``[src, caption]`` with ``src`` relative to the write-up workdir), ``tables``
    (``{"caption", "header", "rows"}``), ``command`` and ``notes``."""

    def __init__(self, results=None, figures=(), tables=(), command="", notes=()):
        super().__init__(
            results=results or {},
            figures=[list(f) for f in figures],
            tables=list(tables),
            command=command,
            notes=list(notes),
        )


class Exp(NamedTuple):
    id: str  # "<section>/<name>": also the sub-workdir
    title: str
    kind: str  # a key of imsyn.tasks.writeup.plan.COST
    key: dict  # the settings it depends on
    run: Callable[[Any, Path], Output]
    needs: tuple[str, ...] = ()  # experiments whose outputs it reads

    @property
    def section(self) -> str:
        return self.id.split("/")[0]


class Ctx(NamedTuple):
    """What an experiment's ``run`` gets besides its sub-workdir."""

    config: Any
    workdir: Path
    data: Path


def split(text: str) -> list[str]:
    """The items of a comma list."""
    return [t.strip() for t in text.split(",") if t.strip()]


def by_id(exps: list[Exp], eid: str) -> Exp:
    return next(e for e in exps if e.id == eid)


def rel(ctx: Ctx, sub: Path) -> str:
    """``sub`` relative to the write-up workdir (how the page links it)."""
    return sub.relative_to(ctx.workdir).as_posix()


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def jsonable(x):
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def state_path(workdir: Path, exp: Exp) -> Path:
    return workdir / "state" / f"{exp.id.replace('/', '__')}.json"


def state(workdir: Path, exp: Exp) -> dict | None:
    return read_json(state_path(workdir, exp))


def finished(workdir: Path, exp: Exp, key: dict) -> bool:
    s = state(workdir, exp)
    return bool(s and s.get("done") and s.get("key") == key)
