import json
import os

import numpy as np
import pytest

from imsyn import image
from imsyn.errors import InputError, OutputError


@pytest.mark.parametrize(
    "suffix,channels",
    [(s, c) for s in (".png", ".tif") for c in (None, 3, 4)] + [(".bmp", None), (".bmp", 3)],
)
def test_roundtrip_8bit_lossless(tmp_path, rng, suffix, channels):
    shape = (7, 9) if channels is None else (7, 9, channels)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    p = image.write_image(tmp_path / f"x{suffix}", a)
    b = image.read_image(p)
    assert b.dtype == np.uint8 and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "suffix,channels", [(".tif", None), (".tif", 3), (".tif", 4), (".png", None)]
)
def test_roundtrip_16bit_lossless(tmp_path, rng, suffix, channels):
    shape = (5, 6) if channels is None else (5, 6, channels)
    a = rng.integers(0, 65536, shape, dtype=np.uint16)
    p = image.write_image(tmp_path / f"x{suffix}", a)
    b = image.read_image(p)
    assert b.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    f = image.read_float(p)
    np.testing.assert_allclose(f, a / 65535.0, atol=1e-6)


def test_16bit_colour_png_refused_without_partial_output(tmp_path):
    with pytest.raises(OutputError, match="16-bit colour PNG"):
        image.write_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint16))
    assert os.listdir(tmp_path) == []


def test_jpeg_close(tmp_path, photo):
    p = image.write_image(tmp_path / "x.jpg", photo, quality=95)
    b = image.read_float(p, mode="rgb")
    assert b.shape == photo.shape
    assert np.abs(b - photo).mean() < 0.02


def test_float_rounding_is_correct():
    x = np.array([0.0, 0.49 / 255, 1.49 / 255, 1.51 / 255, 1.0, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(image.to_uint8(x), [0, 0, 1, 2, 255, 255, 0])


def test_read_float_modes(tmp_path):
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent red -> white on composite
    p = image.write_image(tmp_path / "a.png", rgba)
    np.testing.assert_allclose(image.read_float(p, mode="rgb"), 1.0)
    assert image.read_float(p, mode="gray").shape == (3, 3)
    assert image.read_float(p, mode="rgba").shape == (3, 3, 4)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        image.read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        image.read_image(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="not a readable image"):
        image.read_image(bad)
    good = image.write_image(tmp_path / "t.png", np.zeros((32, 32, 3), np.uint8))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:40])
    with pytest.raises(InputError, match="trunc.png"):
        image.read_image(trunc)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out.json"
    image.write_json(dest, {"a": 1})
    with pytest.raises(TypeError):
        image.write_json(dest, {"a": object()})
    assert json.loads(dest.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_unwritable_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        image.write_image(blocker / "sub" / "x.png", np.zeros((2, 2), np.uint8))


def test_network_range_and_grid():
    x = np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 2, 2, 3)
    np.testing.assert_allclose(image.from_network(image.to_network(x)), x, atol=1e-6)
    g = image.make_grid(x, ncol=2, pad=1)
    assert g.shape == (1 * (2 + 1) + 1, 2 * (2 + 1) + 1, 3)
    np.testing.assert_allclose(g[1:3, 1:3], x[0])
