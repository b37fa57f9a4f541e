"""The README and docs are written for users: no workspace wording, no path that exists only
beside this checkout, links that resolve, and the Quickstart that CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
#: text users read or run: docs, configs (docstrings, defaults), benchmarks, the package
SOURCES = [
    *DOCS,
    *sorted((ROOT / "configs").glob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
    *sorted((ROOT / "imsyn").rglob("*.py")),
    ROOT / "train.py",
    ROOT / "eval.py",
    ROOT / "sweep.py",
]


def test_no_session_wording():
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in DOCS
        for i, line in enumerate(p.read_text("utf-8").splitlines(), 1)
        if re.search(r"\bsessions?\b", line, re.IGNORECASE)
    ]
    assert not hits, "\n".join(hits)


def test_shared_data_only_as_the_from_example():
    """The course data come from ``python -m imsyn data fetch``; a local copy beside a checkout
    appears only as the ``--from`` example."""
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in SOURCES
        for i, line in enumerate(p.read_text("utf-8").splitlines(), 1)
        if "shared/data" in line and "--from" not in line
    ]
    assert not hits, "\n".join(hits)


def test_readme_is_short_and_keeps_its_sections():
    text = (ROOT / "README.md").read_text("utf-8")
    assert len(text.splitlines()) <= 250
    for heading in (
        "## Install",
        "## Quickstart",
        "## One command per system",
        "## Data and weights",
        "## Use a trained model",
        "## Scaling out",
        "## Credits",
    ):
        assert f"\n{heading}\n" in text, heading
    assert "<!-- cyclegan-results -->" in text
    for credit in ("16-726", "Pérez", "Gooch", "Radford", "Zhao", "Gatys", "Karras", "Twemoji"):
        assert credit in text, credit
    assert "OpenMoji" in text and "CC BY-SA 4.0" in text and "CC-BY 4.0" in text


def test_quickstart_commands_match_ci():
    """The test command of the README is the one .ci/run runs (with the same constraints)."""
    text = (ROOT / "README.md").read_text("utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [
        c.strip() for b in blocks for c in b.splitlines() if c.startswith("python3 -m venv")
    ]
    main_job, tests = commands[:2]
    assert main_job.endswith("python train.py --config=configs/cyclegan.py --workdir=runs/cyclegan")
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r"^(pip install .*)$", ci, re.M).group(1)
    assert install in tests and tests.endswith(install.split(" && ", 1)[1])
    assert "-c requirements.txt" in main_job and "-c requirements.txt" in install


def test_relative_links_resolve():
    missing = []
    for p in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", p.read_text("utf-8")):
            if "://" in target:
                continue
            if not (p.parent / target).exists():
                missing.append(f"{p.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_measurements_are_dated():
    """Every table section of docs/benchmarks.md names its date (or is the history)."""
    text = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    sections = re.split(r"\n## ", text)[1:]
    assert sections
    for section in sections:
        title, _, body = section.partition("\n")
        if "|---" in body and title != "History":
            assert re.search(r"20\d\d-\d\d-\d\d", section), title


def test_licence_is_the_full_apache_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 150
