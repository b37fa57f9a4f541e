"""Installs on a stranger's machine: the wheel carries the configs and the data registry,
``--config`` finds a shipped config by name from any folder, ``imsyn info`` and ``--version``
run, and the constraints file pins every dependency pyproject.toml names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import imsyn
from imsyn.experiments import configs_dir, resolve_config_arg, resolve_config_argv

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _run(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imsyn", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_every_package_and_data_file_is_in_the_wheel():
    tool = PYPROJECT["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "imsyn").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk | {"imsyn.configs"} == set(tool["packages"])
    assert tool["package-dir"] == {"imsyn.configs": "configs"}
    assert (ROOT / "configs" / "__init__.py").is_file()
    for package, patterns in tool["package-data"].items():
        folder = configs_dir() if package == "imsyn.configs" else ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            assert list(folder.glob(pattern)), (package, pattern)
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert tool["dynamic"]["version"] == {"attr": "imsyn.__version__"}


def test_constraints_pin_every_dependency_in_its_range():
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    project = PYPROJECT["project"]
    reqs = [*project["dependencies"]]
    for extra in ("test", "tfds"):
        reqs += project["optional-dependencies"][extra]
    for text in reqs:
        req = Requirement(text)
        assert req.name.lower() in pins, f"{req.name} is not pinned in requirements.txt"
        assert req.specifier.contains(pins[req.name.lower()]), (text, pins[req.name.lower()])
        assert "==" not in text, f"{text}: pyproject.toml states a range, requirements.txt the pin"
    for extra in ("cuda12", "cuda13", "tpu"):
        (req,) = map(Requirement, project["optional-dependencies"][extra])
        assert req.name == "jax" and extra in req.extras
        assert req.specifier.contains(pins["jax"])


def test_config_names_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = configs_dir() / "cyclegan.py"
    assert shipped.is_file()
    assert resolve_config_arg("cyclegan") == str(shipped)
    assert resolve_config_arg("cyclegan:cats") == f"{shipped}:cats"
    assert resolve_config_arg("configs/cyclegan.py:full") == f"{shipped}:full"
    assert resolve_config_arg("nosuch:x") == "nosuch:x"
    assert resolve_config_arg("/abs/cyclegan.py") == "/abs/cyclegan.py"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cyclegan.py").write_text("# a user's own config wins\n")
    assert resolve_config_arg("configs/cyclegan.py") == "configs/cyclegan.py"
    argv = resolve_config_argv(["x", "--config", "dcgan:quick", "--workdir=w", "--", "--config=a"])
    assert argv == ["x", "--config", f"{configs_dir() / 'dcgan.py'}:quick", "--workdir=w", "--",
                    "--config=a"]  # fmt: skip


def test_imsyn_train_runs_a_shipped_config_from_another_folder(tmp_path):
    r = _run("train", "--config=dcgan:quick", "--show_config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "dcgan.py:quick" in r.stdout and "image_size = 32" in r.stdout
    r = _run("train", "--config=nosuch", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "shipped configs: cyclegan, dcgan" in r.stderr


def test_version_and_info(tmp_path):
    r = _run("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"imsyn {imsyn.__version__}"
    data = tmp_path / "data"
    r = _run("info", "--json", cwd=tmp_path, env={"IMSYN_DATA_DIR": str(data)})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["imsyn"] == imsyn.__version__
    assert {"jax", "jaxlib", "flax", "numpy"} <= set(info["packages"])
    assert info["jax"]["backend"] == "cpu" and info["jax"]["process_count"] == 1
    assert info["jax"]["devices"] and info["caches"]["data"] == str(data)
    assert set(info["weights"]) == {"vgg19", "inception_fid", "lpips_vgg16"}
    assert info["data"]["cats"] == "missing"
    r = _run("info", cwd=tmp_path, env={"IMSYN_DATA_DIR": str(data)})
    assert r.returncode == 0
    assert re.search(r"^backend: cpu", r.stdout, re.M) and "processes: 1" in r.stdout


@pytest.mark.parametrize("task", ["data", "info"])
def test_new_tasks_have_help(task, tmp_path):
    r = _run(task, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "example:" in r.stdout
