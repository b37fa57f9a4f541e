import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def test_help_lists_tasks():
    p = _run("-m", "imsyn", "--help")
    assert p.returncode == 0
    assert "colorize" in p.stdout


def test_train_missing_config_is_one_line_exit_2():
    p = _run("train.py", "--config=configs/does_not_exist.py")
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert "does_not_exist" in p.stderr


def test_train_requires_config():
    p = _run("eval.py")
    assert p.returncode == 2
    assert "--config is required" in p.stderr


def test_unknown_override_field_is_one_line_exit_2(tmp_path):
    workdir = tmp_path / "run"
    p = _run(
        "train.py", "--config=configs/dcgan.py:quick", "--config.bogus=1", f"--workdir={workdir}"
    )
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "bogus" in p.stderr
    assert not workdir.exists()


def test_bad_numeric_option_is_one_line_exit_2_and_writes_nothing(tmp_path):
    """The real process (no traceback, no usage block): validate.arg at parse time."""
    out = tmp_path / "o.png"
    p = _run("-m", "imsyn", "toy", str(tmp_path / "x.png"), "--tol", "inf", "--out", str(out))
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "imsyn toy: error: argument --tol: must be a finite number in (0, 1), got 'inf'"
    ]
    assert not out.exists()
