"""A progress line with rate and ETA for long work, drawn by ``rich``.

Writes to stderr. On a terminal, rich redraws the line in place (a live display; what is
printed meanwhile goes above it); otherwise the same line is printed at most every
``min_interval`` seconds and at the end, so that logs stay readable.
"""

from __future__ import annotations

import atexit
import sys

from rich.console import Console
from rich.progress import Progress as _RichProgress
from rich.progress import ProgressColumn, TextColumn
from rich.text import Text


def _fmt_time(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def _rate(task) -> float:
    """Units per second since the start (the units done before it, ``initial``, not counted)."""
    elapsed = task.elapsed or 0.0
    return (task.completed - task.fields["initial"]) / elapsed if elapsed > 0 else 0.0


class _TimeRateColumn(ProgressColumn):
    """``[elapsed<remaining, rate]``: ``[00:12<01:40, 8.31 step/s]`` (``s/step`` below 1/s)."""

    def render(self, task) -> Text:
        rate, unit = _rate(task), task.fields["unit"]
        remaining = (task.total - task.completed) / rate if rate > 0 else float("inf")
        rate_txt = f"{rate:.2f} {unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.2f} s/{unit}"
        return Text(f"[{_fmt_time(task.elapsed or 0.0)}<{_fmt_time(remaining)}, {rate_txt}]")


_COLUMNS = (
    TextColumn(
        "{task.description}{task.completed:.0f}/{task.total:.0f} ({task.percentage:3.0f}%)",
        markup=False,
    ),
    _TimeRateColumn(),
    TextColumn("{task.fields[postfix]}", markup=False),
)


class Progress:
    """Progress over ``total`` units: ``update(n, postfix=text)``, ``close()``; ``n`` is done.

    Example::

        bar = Progress(total=1000, desc="train", unit="step")
        for step in range(1000):
            ...
            bar.update(1, postfix=f"d={d:.3f}")
        bar.close()
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        stream=None,
        min_interval: float | None = None,
        enabled: bool = True,
    ):
        stream = stream or sys.stderr
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.min_interval = (
            min_interval if min_interval is not None else (0.1 if self.tty else 10.0)
        )
        self.enabled = enabled
        # off a terminal: no colour, no wrapping of the printed lines
        console = Console(file=stream, width=None if self.tty else 1000, no_color=not self.tty)
        self._rich = _RichProgress(
            *_COLUMNS,
            console=console,
            auto_refresh=self.tty,
            refresh_per_second=1 / self.min_interval if self.tty else 1,
        )
        self._task = self._rich.add_task(
            f"{desc}: " if desc else "",
            total=max(int(total), 0),
            completed=int(initial),
            initial=int(initial),
            unit=unit,
            postfix="",
        )
        self._printed_at: float | None = None  # off a terminal: when the line was last printed
        self._closed = False
        if self.enabled and self.tty:
            self._rich.start()
            atexit.register(self.close)  # an exception that skips close() leaves no hidden cursor

    @property
    def n(self) -> int:
        return int(self._rich.tasks[0].completed)

    @property
    def rate(self) -> float:
        return _rate(self._rich.tasks[0])

    def line(self) -> str:
        """The progress line as plain text."""
        console = Console(width=1000, no_color=True, file=None)
        with console.capture() as cap:
            console.print(self._rich.make_tasks_table(self._rich.tasks), end="")
        return cap.get().rstrip()

    def update(self, n: int = 1, *, postfix: str | None = None) -> None:
        fields = {} if postfix is None else {"postfix": postfix}
        self._rich.update(self._task, advance=n, **fields)
        if self.enabled and not self.tty:
            task = self._rich.tasks[0]
            now = self._rich.get_time()
            due = self._printed_at is None or now - self._printed_at >= self.min_interval
            if due or task.completed >= task.total:
                self._print(now)

    def _print(self, now: float) -> None:
        self._printed_at = now
        self._rich.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self.tty:
            self._rich.stop()
            atexit.unregister(self.close)
        else:
            task = self._rich.tasks[0]
            if self._printed_at is None or task.completed < task.total:
                self._print(self._rich.get_time())
