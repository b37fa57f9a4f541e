"""The progress line (imsyn.progress, drawn by rich): rate and ETA, quiet off a terminal."""

import io
import os

from imsyn.progress import Progress


def test_off_a_terminal_thousands_of_updates_print_a_few_lines():
    out = io.StringIO()
    bar = Progress(10_000, desc="train run", unit="step", initial=100, stream=out)
    for i in range(9_900):
        bar.update(1, postfix=f"d_loss={i / 9_900:.3f} [x]")
    bar.close()
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) <= 3, lines  # the first update, the end: no redraws in a log
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[-1].startswith("train run: 10000/10000 (100%) [")
    assert "step/s]" in lines[-1] and lines[-1].endswith("d_loss=1.000 [x]")
    assert bar.n == 10_000


def test_close_prints_an_unfinished_line_and_disabled_prints_nothing():
    out = io.StringIO()
    bar = Progress(8, desc="fetch", unit="file", stream=out, min_interval=3600)
    bar.update(3)
    bar.update(2)
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == ["fetch: 3/8 ( 38%)", "fetch: 5/8 ( 62%)"]
    quiet = io.StringIO()
    bar = Progress(8, stream=quiet, enabled=False)
    bar.update(8)
    bar.close()
    assert quiet.getvalue() == ""


def test_rate_and_eta_count_only_the_units_done_since_the_start():
    bar = Progress(100, unit="img", initial=90, stream=io.StringIO(), enabled=False)
    assert bar.rate == 0.0 and "<?, 0.00 img/s]" in bar.line()  # nothing done yet: no ETA
    bar.update(5)
    assert 0 < bar.rate < 1e7  # 5 units, not 95, over the time since the start
    assert "img/s]" in bar.line() and "<?" not in bar.line()


def test_on_a_terminal_the_line_is_redrawn_in_place():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        bar = Progress(20, desc="stylize", unit="step", stream=tty, min_interval=0.01)
        for _ in range(20):
            bar.update(1)
        bar.close()
    out = b""
    while not out.endswith(b"\x1b[?25h"):  # rich shows the cursor again when it stops
        out += os.read(master, 65536)
    os.close(master)
    text = out.decode()
    assert "stylize: 20/20 (100%)" in text and "step/s]" in text
    assert text.count("\n") == 1  # one line, redrawn; a newline when it ends
