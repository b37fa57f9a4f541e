"""``python -m imsyn colorize`` end to end: outputs, JSON, 16-bit TIFF, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
OFFS = {"g": [5, -3], "r": [-7, 4]}


def _plate(photo) -> np.ndarray:
    base = ndimage.zoom(photo, (0.5, 0.5, 1), order=1)
    thirds = [
        base[40 + dy : 168 + dy, 40 + dx : 168 + dx, c]
        for c, (dy, dx) in zip((2, 1, 0), [(0, 0), OFFS["g"], OFFS["r"]], strict=True)
    ]
    return np.concatenate(thirds, axis=0)  # float [384, 128]


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "imsyn", "colorize", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_batch_writes_good_plates_and_reports_each_bad_one(photo, tmp_path):
    plate = _plate(photo)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.rint(plate * 255).astype(np.uint8)).save(src / "good8.png")
    tifffile.imwrite(src / "good16.tif", np.rint(plate * 65535).astype(np.uint16))
    (src / "notimage.jpg").write_text("hello")
    full = src / "full.jpg"
    Image.fromarray(np.rint(plate * 255).astype(np.uint8)).save(full, quality=90)
    (src / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    Image.fromarray(np.zeros((90, 200), np.uint8)).save(src / "tiny.png")
    (src / "folder.png").mkdir()
    bad = ["notimage.jpg", "truncated.jpg", "tiny.png", "folder.png"]
    out = tmp_path / "out"

    p = _run(src / "good8.png", *(src / b for b in bad), src / "good16.tif", "--out-dir", out)

    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == len(bad)
    for name, line in zip(bad, errors, strict=True):
        assert name in line
    summary = p.stderr.strip().splitlines()[-1]
    assert "4 of 6 plates failed" in summary and all(b in summary for b in bad)
    assert sorted(f.name for f in out.iterdir()) == [
        "good16.jpg",
        "good16.json",
        "good8.jpg",
        "good8.json",
    ]
    for stem in ("good8", "good16"):
        rec = json.loads((out / f"{stem}.json").read_text())
        assert rec["offsets"] == OFFS
        assert len(rec["crop"]) == 4 and rec["seconds"] > 0
        top, bottom, left, right = rec["crop"]
        with Image.open(out / f"{stem}.jpg") as im:
            assert im.size == (right - left, bottom - top) and im.mode == "RGB"
        assert set(rec["peak"]["g"]) >= {"score", "sharpness", "coarse_best", "coarse_second"}
        assert rec["settings"]["features"] == "gradient"


def test_16bit_tif_output_and_switches(photo, tmp_path):
    plate = _plate(photo)
    tifffile.imwrite(tmp_path / "p.tif", np.rint(plate * 65535).astype(np.uint16))
    out = tmp_path / "out"
    p = _run(
        tmp_path / "p.tif", "--out-dir", out, "--format", "tif", "--no-crop", "--no-contrast",
        "--no-white-balance", "--metric", "ssd", "--subpixel",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    img = tifffile.imread(out / "p.tif")
    assert img.dtype == np.uint16 and img.shape == (128, 128, 3)
    rec = json.loads((out / "p.json").read_text())
    assert rec["crop"] == [0, 128, 0, 128]
    assert np.allclose(rec["offsets"]["g"], OFFS["g"], atol=0.5)
    assert rec["settings"]["subpixel"] and rec["settings"]["metric"] == "ssd"


def test_unwritable_out_dir_is_one_line_exit_2(photo, tmp_path):
    Image.fromarray(np.rint(_plate(photo) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = _run(tmp_path / "p.png", "--out-dir", blocker / "sub")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1
    assert "cannot create output directory" in p.stderr
    p = _run(tmp_path / "p.png", "--out-dir", blocker)
    assert p.returncode == 2 and "not a directory" in p.stderr


def test_outputs_have_the_pixels_of_the_library_float_result(photo, tmp_path):
    """The CLI quantizes while finishing (colorize(dtype=uint8/uint16)) instead of writing
    the float image: PNG/TIFF pixels equal to_uint8/to_uint16 of the library's float result,
    and the JPEG equals Pillow's encoding of those pixels at the same quality."""
    from imsyn import align
    from imsyn.image import read_image, to_float, to_uint8, to_uint16, write_image

    plate = _plate(photo)
    src = tmp_path / "p.tif"
    tifffile.imwrite(src, np.rint(plate * 65535).astype(np.uint16))
    want = align.colorize(to_float(tifffile.imread(src))).image
    for fmt in ("png", "jpg", "tif"):
        p = _run(src, "--out-dir", tmp_path / fmt, "--format", fmt, "--quality", "90")
        assert p.returncode == 0, p.stderr
        got = read_image(tmp_path / fmt / f"p.{fmt}")
        if fmt == "png":
            np.testing.assert_array_equal(got, to_uint8(want))
        elif fmt == "tif":
            np.testing.assert_array_equal(got, to_uint16(want))
        else:
            ref = read_image(write_image(tmp_path / "ref.jpg", want, quality=90))
            np.testing.assert_array_equal(got, ref)
        rec = json.loads((tmp_path / fmt / "p.json").read_text())
        assert set(rec["timings"]) >= {"read", "align", "finish", "write"}
