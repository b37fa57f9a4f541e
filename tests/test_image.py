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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blockwise_quantize_equals_the_whole_array_formula(rng, dtype):
    """to_uint8/to_uint16 work in cache-sized blocks; the result is the float64 formula's."""
    x = (rng.random((301, 257, 3)) * 1.4 - 0.2).astype(dtype)  # > one block, out of range too
    x[0, :4, 0] = [0.5, 127.5 / 255, np.nextafter(np.float32(0.5), 1), 1.5 / 255]
    want8 = np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    want16 = np.clip(np.rint(x.astype(np.float64) * 65535.0), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(image.to_uint8(x), want8)
    np.testing.assert_array_equal(image.to_uint16(x), want16)
    np.testing.assert_array_equal(image.to_uint8(x[:, ::2]), want8[:, ::2])  # a strided view


def test_float_write_gives_the_pixels_of_to_uint8(tmp_path, rng):
    """A float32 image goes to the quantizer without a clipped copy: same pixels."""
    x = (rng.random((200, 330, 3)) * 1.2 - 0.1).astype(np.float32)
    for depth, suffix, conv in ((8, ".png", image.to_uint8), (16, ".tif", image.to_uint16)):
        p = image.write_image(tmp_path / f"x{suffix}", x, bit_depth=depth)
        np.testing.assert_array_equal(image.read_image(p), conv(image.to_float(x)))


def test_to_float_into_a_given_array(rng):
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        a = rng.integers(0, top + 1, (6, 7), dtype=dtype)
        want = a.astype(np.float32) / np.float32(top)
        np.testing.assert_array_equal(image.to_float(a), want)
        out = np.empty((6, 7), np.float32)
        assert image.to_float(a, out=out) is out
        np.testing.assert_array_equal(out, want)
    f = np.array([[-0.5, 0.25, 2.0]])
    np.testing.assert_array_equal(
        image.to_float(f, out=np.empty((1, 3), np.float32)), [[0, 0.25, 1]]
    )
