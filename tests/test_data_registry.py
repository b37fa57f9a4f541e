"""The course-data registry (:mod:`imsyn.course_data`, ``python -m imsyn data``).

Nothing here touches the internet: downloads go to a server on 127.0.0.1 serving a generated
mini copy, listed in a test registry (``$IMSYN_DATA_REGISTRY``); ``--from`` imports the same
copy. A wrong or missing file must be one line naming it, exit status 2, and leave the data
folder exactly as it was.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from imsyn import course_data
from imsyn.__main__ import main
from imsyn.errors import InputError

#: the mini copy: path -> bytes (two sets, nested folders, a file name with a space)
FILES = {
    "plates/a.jpg": b"\xff\xd8 plate a " * 50,
    "plates/b.jpg": b"\xff\xd8 plate b " * 70,
    "cats/x/0.png": b"\x89PNG cat 0" * 20,
    "cats/x/1 copy.png": b"\x89PNG cat 1" * 30,
    "cats/y/0.png": b"\x89PNG cat 2" * 40,
}
SETS = {"plates": "plates/", "cats": "cats/", "all": ""}


def _write_registry(path: Path, sources) -> Path:
    """A registry of :data:`FILES`; ``sources(rel) -> [source, ...]``."""
    reg = {
        "format": 1,
        "sets": {
            name: {"prefix": prefix, "description": name, "licence": "test", "used_by": "tests"}
            for name, prefix in SETS.items()
        },
        "files": {
            rel: {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "sources": sources(rel),
            }
            for rel, data in FILES.items()
        },
    }
    path.write_text(json.dumps(reg))
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines on stderr
        pass


@pytest.fixture
def copy(tmp_path) -> Path:
    """The mini copy on disk, laid out like the data folder."""
    root = tmp_path / "copy"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def server(copy):
    """``http://127.0.0.1:PORT`` serving the mini copy (stopped after the test)."""
    handler = functools.partial(_Quiet, directory=str(copy))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty data folder of its own; downloads time out after 5 s."""
    data = tmp_path / "cache" / "data"
    monkeypatch.setenv("IMSYN_DATA_DIR", str(data))
    monkeypatch.delenv(course_data.MIRROR_ENV, raising=False)
    monkeypatch.setattr(course_data, "URL_TIMEOUT_S", 5.0)
    return data


def _use(monkeypatch, registry: Path) -> None:
    monkeypatch.setenv(course_data.REGISTRY_ENV, str(registry))


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (staging folders included) and its bytes."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _err_line(capfd) -> str:
    err = [ln for ln in capfd.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------- download


def test_fetch_downloads_from_the_first_working_source(tmp_path, env, server, monkeypatch):
    # every file's first source is a 404 on the same server, the second the file itself
    reg = _write_registry(
        tmp_path / "reg.json",
        lambda rel: [f"{server}/missing/{quote(rel)}", f"{server}/{quote(rel)}"],
    )
    _use(monkeypatch, reg)
    assert main(["data", "fetch", "all"]) == 0
    assert _tree(env) == FILES
    assert course_data.status("all")["status"] == "fetched"
    # a second fetch finds everything in place and downloads nothing
    assert main(["data", "fetch", "cats", "plates"]) == 0


def test_a_damaged_file_is_fetched_again(tmp_path, env, server, monkeypatch, capfd):
    _use(
        monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: [f"{server}/{quote(rel)}"])
    )
    assert main(["data", "fetch", "plates"]) == 0
    (env / "plates/a.jpg").write_bytes(b"edited")
    assert course_data.status("plates")["status"].startswith("damaged")
    capfd.readouterr()
    assert main(["data", "fetch", "plates"]) == 0
    assert "1 file(s) fetched and verified, 1 already present" in capfd.readouterr().out
    assert _tree(env) == {k: v for k, v in FILES.items() if k.startswith("plates/")}


def test_mirror_replaces_the_sources(tmp_path, env, server, monkeypatch):
    # the registry's sources are unreachable (nothing listens on port 1 of 127.0.0.1)
    _use(monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: ["http://127.0.0.1:1/x"]))
    assert main(["data", "fetch", "cats", "--mirror", server]) == 0
    assert set(_tree(env)) == {k for k in FILES if k.startswith("cats/")}
    monkeypatch.setenv(course_data.MIRROR_ENV, server)  # the same through the environment
    assert main(["data", "fetch", "plates"]) == 0
    assert _tree(env) == FILES


def test_a_wrong_download_writes_nothing(tmp_path, env, copy, server, monkeypatch, capfd):
    _use(
        monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: [f"{server}/{quote(rel)}"])
    )
    assert main(["data", "fetch", "plates"]) == 0
    before = _tree(env)
    (copy / "cats/x/1 copy.png").write_bytes(b"not the cat")  # the server now serves a wrong file
    capfd.readouterr()
    assert main(["data", "fetch", "all"]) == 2
    line = _err_line(capfd)
    assert "cats/x/1 copy.png" in line and "no source worked" in line and "sha256" in line
    assert _tree(env) == before  # the plates stay, no cat landed, no staging folder is left


def test_no_working_source_names_the_file_and_every_source(
    tmp_path, env, server, monkeypatch, capfd
):
    _use(
        monkeypatch,
        _write_registry(
            tmp_path / "reg.json", lambda rel: [f"{server}/gone/{rel}", "http://127.0.0.1:1/x"]
        ),
    )
    assert main(["data", "fetch", "plates"]) == 2
    line = _err_line(capfd)
    assert "plates/a.jpg: no source worked" in line and "404" in line and "127.0.0.1:1" in line
    assert "and 1 more file" in line
    assert not env.exists()  # a failed first fetch leaves no folder behind


# --------------------------------------------------------------------------- --from


def test_from_imports_a_local_copy(tmp_path, env, copy, monkeypatch, capfd):
    _use(monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: ["http://127.0.0.1:1/x"]))
    assert main(["data", "fetch", "cats", "--from", str(copy)]) == 0
    assert "3 file(s) fetched and verified" in capfd.readouterr().out
    assert _tree(env) == {k: v for k, v in FILES.items() if k.startswith("cats/")}


@pytest.mark.parametrize("damage", ["wrong", "missing"])
def test_from_refuses_a_wrong_or_missing_file(tmp_path, env, copy, monkeypatch, capfd, damage):
    _use(monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: ["http://127.0.0.1:1/x"]))
    assert main(["data", "fetch", "plates", "--from", str(copy)]) == 0
    before = _tree(env)
    bad = copy / "cats/y/0.png"
    if damage == "wrong":
        bad.write_bytes(FILES["cats/y/0.png"][:-1] + b"!")
    else:
        bad.unlink()
    capfd.readouterr()
    assert main(["data", "fetch", "all", "--from", str(copy)]) == 2
    line = _err_line(capfd)
    assert str(bad) in line
    assert ("does not match" in line) if damage == "wrong" else ("missing" in line)
    assert _tree(env) == before


def test_bad_names_and_folders_are_one_line(tmp_path, env, monkeypatch, capfd):
    _use(monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: ["http://127.0.0.1:1/x"]))
    assert main(["data", "fetch", "dogs"]) == 2
    assert "unknown data set 'dogs'" in _err_line(capfd)
    assert main(["data", "fetch", "cats", "--from", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in _err_line(capfd)
    (tmp_path / "bad.json").write_text("{not json")
    _use(monkeypatch, tmp_path / "bad.json")
    assert main(["data", "list"]) == 2
    assert "not a course-data registry" in _err_line(capfd)
    assert not env.exists()


def test_list_and_path(tmp_path, env, copy, monkeypatch, capfd):
    _use(monkeypatch, _write_registry(tmp_path / "reg.json", lambda rel: [f"a/b@{'0' * 40}:{rel}"]))
    assert main(["data", "fetch", "plates", "--from", str(copy)]) == 0
    capfd.readouterr()
    assert main(["data", "list", "--json", "--files"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capfd.readouterr().out.splitlines())}
    assert rows["plates"]["status"] == "fetched" and rows["cats"]["status"] == "missing"
    assert rows["all"]["status"] == "partial (2 of 5 files)"
    urls = rows["cats"]["file_list"][1]["sources"]
    assert urls == [f"https://raw.githubusercontent.com/a/b/{'0' * 40}/cats/x/1%20copy.png"]
    assert main(["data", "path", "cats"]) == 0
    assert capfd.readouterr().out.strip() == str(env / "cats")
    assert main(["data", "list"]) == 0
    assert "plates" in capfd.readouterr().out


# --------------------------------------------------------------------------- the registry


def test_packaged_registry_lists_every_course_file_with_pinned_sources(monkeypatch):
    monkeypatch.delenv(course_data.REGISTRY_ENV, raising=False)
    sets = course_data.registry()
    assert set(sets) == {"course", "prokudin", "poisson", "nst", "cats"}
    every = {f.path: f for f in sets["course"].files}
    assert len(every) == 301
    assert sum(len(s.files) for n, s in sets.items() if n != "course") == 301  # disjoint cover
    assert len(sets["cats"].files) == 279 and len(sets["nst"].files) == 11
    assert {f.path.split("/")[1] for f in sets["cats"].files} == {
        "grumpifyAprocessed",
        "grumpifyBprocessed",
    }
    pinned = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S")
    for f in every.values():
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0
        assert f.sources or f.path == "prokudin/reported_offsets.md"  # compiled, no origin
        for s in f.sources:
            assert pinned.match(s), s
            assert course_data.source_url(s).startswith("https://raw.githubusercontent.com/")


def test_a_file_without_public_source_comes_only_from_a_local_copy(env, monkeypatch):
    monkeypatch.delenv(course_data.REGISTRY_ENV, raising=False)
    offsets = next(f for f in course_data.get("prokudin").files if f.path.endswith(".md"))
    assert offsets.sources == ()
    said, asked = [], []

    def unreachable(f, dest, **kw):  # no server is reached from a test
        asked.append(f.path)
        return f"{f.path}: unreachable"

    monkeypatch.setattr(course_data, "_obtain", unreachable)
    with pytest.raises(InputError, match="unreachable"):
        course_data.fetch("prokudin", log=said.append)
    assert any("reported_offsets.md: no public source" in str(m) for m in said)
    assert asked and offsets.path not in asked  # never requested from a server


# --------------------------------------------------------------------------- @data


def test_at_data_resolves_and_a_missing_set_names_its_fetch(env, monkeypatch):
    monkeypatch.delenv(course_data.REGISTRY_ENV, raising=False)
    from imsyn.data import get_source

    assert course_data.resolve("@data") == env
    assert course_data.resolve("@data/gan/x") == env / "gan" / "x"
    assert course_data.resolve("other/@data") == Path("other/@data")
    with pytest.raises(InputError, match=r"not fetched: run `python -m imsyn data fetch cats`"):
        get_source("folder:@data/gan/grumpifyBprocessed", image_size=16)
    with pytest.raises(InputError, match=r"data fetch poisson"):
        course_data.require("@data/poisson/toy_problem.png")


def test_write_up_reads_the_fetched_copy_by_default(tmp_path, env, copy, monkeypatch):
    """The write-up's default data_root is @data: missing data fails before any compute with
    the fetch to run; after ``data fetch --from`` the same config validates."""
    import ml_collections

    from imsyn.errors import ConfigError
    from imsyn.tasks import writeup
    from imsyn.training.sweep import config_module

    root = Path(__file__).resolve().parents[1]
    config = config_module(root / "configs" / "writeup.py").get_config("quick")
    assert config.data_root == "@data"
    config = ml_collections.ConfigDict(config.to_dict())
    config.only = "a2"
    with pytest.raises(ConfigError, match=r"data fetch poisson"):
        writeup.validate(config)
    # a copy of the course's layout for section a2 and the cats every A3 config reads (their
    # validation loads the images), with a registry of its own
    import io

    import numpy as np
    from PIL import Image

    files = {rel: rel.encode() for rel in writeup.DATA["a2"]}
    files.update({"nst/content/c.png": b"c", "nst/style/s.png": b"s"})  # the A4 runs' inputs
    config.a4.contents, config.a4.styles = "c.png", "s.png"
    rng = np.random.default_rng(0)
    for folder in writeup.DATA["a3"]:
        for i in range(16):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
            files[f"{folder}/{i}.png"] = buf.getvalue()
    for rel, data in files.items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    reg = {
        "format": 1,
        "sets": {"course": {"prefix": ""}},
        "files": {
            rel: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "sources": ["x/y@z:w"]}
            for rel, d in files.items()
        },
    }
    (tmp_path / "reg.json").write_text(json.dumps(reg))
    _use(monkeypatch, tmp_path / "reg.json")
    assert main(["data", "fetch", "course", "--from", str(copy)]) == 0
    writeup.validate(config)
