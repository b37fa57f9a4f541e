"""A dependency-free progress line with rate and ETA, for long work.

Writes to stderr; redraws in place on a terminal and prints at most every
``min_interval`` seconds (and at the end) otherwise, so logs stay readable.
"""

from __future__ import annotations

import sys
import time


def _fmt_time(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Progress:
    """Progress over ``total`` units: ``update(n, postfix=text)``, ``close()``.

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
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.n = int(initial)
        self._start_n = int(initial)
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = (
            min_interval if min_interval is not None else (0.1 if self.tty else 10.0)
        )
        self.enabled = enabled
        self.postfix = ""
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._closed = False

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self._t0
        return (self.n - self._start_n) / dt if dt > 0 else 0.0

    def line(self) -> str:
        rate = self.rate
        remaining = (self.total - self.n) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.n / self.total if self.total else 100.0
        elapsed = time.perf_counter() - self._t0
        rate_txt = (
            f"{rate:.2f} {self.unit}/s"
            if rate >= 1 or rate == 0
            else (f"{1 / rate:.2f} s/{self.unit}")
        )
        s = (
            f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total} ({pct:3.0f}%) "
            f"[{_fmt_time(elapsed)}<{_fmt_time(remaining)}, {rate_txt}]"
        )
        return s + (f" {self.postfix}" if self.postfix else "")

    def update(self, n: int = 1, *, postfix: str | None = None) -> None:
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.min_interval or self.n >= self.total):
            self._last = now
            self._draw()

    def _draw(self, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            if self.tty:
                self._draw(final=True)
            elif self._last == 0.0 or self.n < self.total:
                self._draw()
