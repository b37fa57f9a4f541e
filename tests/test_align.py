"""A1 alignment: synthetic plates from the astronaut photo with known shifts."""

import chex
import jax
import numpy as np
import pytest
from scipy import ndimage

from imsyn import align
from imsyn.errors import InputError


def make_plate(base, offsets, *, h, w, pad, gains=(1, 1, 1), biases=(0, 0, 0), noise=0.0, rng=None):
    """Stacks B/G/R thirds cut from ``base`` [H, W, 3] so that the true offsets are ``offsets``.

    With ``np.roll(third, (dy, dx))`` lying on B, the G third is the B window
    moved by ``(+dy, +dx)`` in ``base``: ``g[y] = base[y0 + y + dy]``.
    """
    thirds = []
    for c, (dy, dx), a, k in zip(
        (2, 1, 0), [(0, 0), offsets["g"], offsets["r"]], gains, biases, strict=True
    ):
        t = base[pad + dy : pad + dy + h, pad + dx : pad + dx + w, c] * a + k
        if noise:
            t = t + rng.normal(0, noise, t.shape)
        thirds.append(np.clip(t, 0, 1).astype(np.float32))
    return np.concatenate(thirds, axis=0)


@pytest.fixture
def small_base(photo):
    return ndimage.zoom(photo, (0.5, 0.5, 1), order=1)  # [256, 256, 3]


OFFS = {"g": (5, -3), "r": (-7, 4)}


def test_split_plate_thirds_and_too_small():
    plate = np.arange(152 * 60, dtype=np.float32).reshape(152, 60)
    b, g, r = align.split_plate(plate)
    assert b.shape == g.shape == r.shape == (50, 60)
    np.testing.assert_array_equal(g, plate[50:100])
    np.testing.assert_array_equal(r, plate[100:150])
    with pytest.raises(InputError, match="too small"):
        align.split_plate(np.zeros((90, 200), np.float32))


@pytest.mark.parametrize(
    "features,metric",
    [("gradient", "ncc"), ("gradient", "ssd"), ("intensity", "ncc"), ("usm", "ssd")],
)
def test_recovers_shifts_exactly_despite_gain_noise_and_borders(small_base, rng, features, metric):
    plate = make_plate(
        small_base, OFFS, h=128, w=128, pad=40, gains=(1.0, 0.6, 1.3), biases=(0.0, 0.2, -0.1),
        noise=0.01, rng=rng,
    )  # fmt: skip
    # Identical black/white frames on every third pull towards (0, 0) unless excluded.
    for t in range(3):
        plate[t * 128 : t * 128 + 6] = 0.0
        plate[t * 128 : (t + 1) * 128, -5:] = 1.0
    res = align.align_channels(*align.split_plate(plate), features=features, metric=metric)
    assert res.offsets == OFFS
    for name in ("g", "r"):
        peak = res.peaks[name]
        assert peak.converged
        assert peak.sharpness > 0
        better = peak.coarse_best > peak.coarse_second if metric == "ncc" else (
            peak.coarse_best < peak.coarse_second
        )  # fmt: skip
        assert better
        assert res.scores[name] == peak.score


def test_offsets_follow_the_roll_convention(small_base):
    plate = make_plate(small_base, OFFS, h=128, w=128, pad=40)
    b, g, r = align.split_plate(plate)
    res = align.align_channels(b, g, r)
    # Rolled by its offset, each third shows the scene exactly where B shows it.
    inner = np.s_[12:-12, 12:-12]
    for name, third, c in (("g", g, 1), ("r", r, 0)):
        rolled = np.roll(third, res.offsets[name], axis=(0, 1))
        np.testing.assert_allclose(rolled[inner], small_base[40:168, 40:168, c][inner], atol=1e-6)


def test_pyramid_recovers_large_shifts(photo):
    base = ndimage.zoom(photo, (2.5, 2.5, 1), order=1)  # [1280, 1280, 3]
    offs = {"g": (63, -21), "r": (151, 37)}
    plate = make_plate(base, offs, h=640, w=640, pad=200, gains=(1.0, 0.7, 1.2))
    b, g, r = align.split_plate(plate)
    # coarse_size=160 forces two halvings (640 -> 320 -> 160) before the exhaustive search.
    res = align.align_channels(b, g, r, radius=180, coarse_size=160, max_window=256)
    assert res.offsets == offs
    assert all(p.converged for p in res.peaks.values())


def test_scores_use_only_the_valid_overlap(rng):
    ref = rng.random((40, 50)).astype(np.float32)
    mov = rng.random((40, 50)).astype(np.float32)
    m, (dy, dx) = 6, (4, -5)
    win = ref[m:-m, m:-m]
    moved = np.roll(mov, (dy, dx), axis=(0, 1))[m:-m, m:-m]  # never wraps: |d| <= m
    ssd = np.mean((win - moved) ** 2)
    a, c = win - win.mean(), moved - moved.mean()
    ncc = np.sum(a * c) / np.sqrt(np.sum(a * a) * np.sum(c * c))
    got_ssd = align.shift_score(ref, mov, (dy, dx), metric="ssd", margin=m)
    got_ncc = align.shift_score(ref, mov, (dy, dx), metric="ncc", margin=m)
    np.testing.assert_allclose(got_ssd, ssd, rtol=1e-5)
    np.testing.assert_allclose(got_ncc, ncc, rtol=1e-4)
    # Changing pixels outside the overlap (what np.roll would wrap in) changes nothing.
    mov2 = mov.copy()
    mov2[-dy:, :] = 100.0
    mov2[:, :-dx] = -100.0
    assert float(align.shift_score(ref, mov2, (dy, dx), metric="ncc", margin=m)) == pytest.approx(
        float(got_ncc), rel=1e-6
    )
    with pytest.raises(ValueError, match="margin"):
        align.shift_score(ref, mov, (7, 0), margin=m)


def test_wide_constant_border_on_one_channel_does_not_bias(small_base):
    plate = make_plate(small_base, OFFS, h=128, w=128, pad=40)
    plate[128:150] = 0.0  # a 22-px black band on top of G only
    plate[256:384, :18] = 1.0  # an 18-px white band at the left of R only
    res = align.align_channels(*align.split_plate(plate), features="intensity", metric="ssd")
    assert res.offsets == OFFS


@pytest.mark.parametrize("impl", ["conv", "vmap", "map16"])
def test_search_formulations_agree_and_jit_matches_eager(small_base, impl):
    plate = make_plate(small_base, OFFS, h=64, w=64, pad=40)
    b, g, r = align.split_plate(plate)
    movs = np.stack([g, r])
    ref = align.align_offsets(b, movs)  # default "fft"
    out = align.align_offsets(b, movs, impl=impl)
    np.testing.assert_array_equal(out["offsets"], ref["offsets"])
    np.testing.assert_allclose(out["score"], ref["score"], atol=1e-4)
    if impl == "conv":
        with jax.disable_jit():
            eager = align.align_offsets(b, movs)
        np.testing.assert_array_equal(np.asarray(eager["offsets"]), np.asarray(ref["offsets"]))
        np.testing.assert_allclose(np.asarray(eager["score"]), ref["score"], atol=1e-5)


def test_compiles_once_per_shape(small_base, rng, monkeypatch):
    """New plates of the same shape reuse the compiled program: the jitted search is traced
    once (chex.assert_max_traces on the function the library jits)."""
    plate = make_plate(small_base, OFFS, h=64, w=64, pad=40)
    b, g, r = align.split_plate(plate)
    statics = ("features", "metric", "radius", "coarse_size", "margin", "max_window", "max_steps")
    statics += ("impl",)  # the library's static arguments
    counted = jax.jit(
        chex.assert_max_traces(align.align_offsets.__wrapped__, n=1), static_argnames=statics
    )
    for _ in range(3):
        noisy = [c + rng.normal(0, 0.01, c.shape).astype(np.float32) for c in (b, g, r)]
        counted(noisy[0], np.stack(noisy[1:]), max_steps=7)


def test_subpixel_recovers_a_fractional_shift(photo):
    base = ndimage.zoom(photo, (0.75, 0.75, 1), order=1)  # [384, 384, 3]
    true = {"g": (3.5, -2.25), "r": (-4.75, 1.5)}
    h = w = 160
    b = base[100 : 100 + h, 100 : 100 + w, 2]
    # g[y] = base[100 + y + dy]: a cubic-spline shift of the whole channel by -offset.
    g = ndimage.shift(base[..., 1], [-v for v in true["g"]], order=3)[100 : 100 + h, 100 : 100 + w]
    r = ndimage.shift(base[..., 0], [-v for v in true["r"]], order=3)[100 : 100 + h, 100 : 100 + w]
    coarse = align.align_channels(b, g, r)
    fine = align.align_channels(b, g, r, subpixel=True)
    for name in ("g", "r"):
        np.testing.assert_allclose(fine.offsets[name], true[name], atol=0.3)
        err_fine = np.abs(np.subtract(fine.offsets[name], true[name])).max()
        err_int = np.abs(np.subtract(coarse.offsets[name], true[name])).max()
        assert err_fine < err_int
        assert all(isinstance(v, int) for v in coarse.offsets[name])


def test_shift_channel_matches_roll_and_interpolates():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(align.shift_channel(x, (1, -2)), np.roll(x, (1, -2), (0, 1)))
    half = align.shift_channel(x, (0.5, 0))
    np.testing.assert_allclose(half[1:], 0.5 * (x[1:] + x[:-1]))


def test_auto_crop_removes_frames_fringes_and_wrapped_edges(rng):
    img = (0.3 + 0.4 * rng.random((100, 120, 3))).astype(np.float32)
    img[:7] = 0.02  # black frame at the top
    img[:, :5] = 0.97  # white frame on the left
    img[-4:, :, 0] = 0.9  # red fringe at the bottom
    img[-4:, :, 1:] = 0.1
    assert align.auto_crop(img) == (7, 96, 5, 120)
    # Wrapped rows/columns from the shifts come off first: G down 3, R left 9.
    box = align.auto_crop(img, offsets={"g": (3, 0), "r": (0, -9)})
    assert box == (7, 96, 5, 111)
    # Frames are searched only within max_frac of each side.
    img[:, 60] = 0.0
    assert align.auto_crop(img, max_frac=0.1) == (7, 96, 5, 120)


def test_auto_contrast_stretches_percentiles(rng):
    img = (0.2 + 0.4 * rng.random((64, 64, 3))).astype(np.float32)
    out = align.auto_contrast(img, low=0.0, high=100.0)
    assert out.dtype == np.float32
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(1.0, abs=1e-6)
    # Monotone, same for all channels (no colour change), flat input unchanged.
    flat = np.full((8, 8, 3), 0.4, np.float32)
    np.testing.assert_array_equal(align.auto_contrast(flat), flat)
    i, j = np.unravel_index(np.argsort(img[..., 0], axis=None)[:2], img.shape[:2])
    assert out[i[0], j[0], 0] <= out[i[1], j[1], 0]


def test_white_balance_equalises_channel_means(rng):
    img = rng.random((64, 64, 3)).astype(np.float32) * np.array([0.5, 0.8, 0.6], np.float32)
    out = align.white_balance(img)
    means = out.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(means, means.mean(), rtol=0.02)
    assert out.min() >= 0 and out.max() <= 1


def test_colorize_end_to_end_and_switches(small_base):
    plate = make_plate(small_base, OFFS, h=128, w=128, pad=40, gains=(1.0, 0.8, 0.9))
    plate[:4] = 0.0  # a black frame on top of the plate
    res = align.colorize(plate)
    assert res.offsets == OFFS
    top, bottom, left, right = res.crop
    assert top >= 5 and bottom <= 128 - 7 and left >= 4 and right <= 128 - 3
    assert res.image.shape == (bottom - top, right - left, 3)
    assert res.image.dtype == np.float32 and res.image.min() >= 0 and res.image.max() <= 1
    raw = align.colorize(plate, crop=False, contrast=False, balance=False)
    assert raw.crop == (0, 128, 0, 128)
    b, g, r = align.split_plate(plate)
    np.testing.assert_allclose(raw.image[..., 2], b)
    np.testing.assert_allclose(raw.image[..., 1], np.roll(g, OFFS["g"], (0, 1)))
    # 8- and 16-bit integer plates give the same answer as float ones.
    as16 = align.colorize((plate * 65535).round().astype(np.uint16))
    assert as16.offsets == OFFS and as16.crop == res.crop


def test_fused_finishing_and_boxed_compose_match_the_separate_steps(small_base, rng):
    img = (rng.random((40, 50, 3)) * np.array([0.5, 0.9, 0.7])).astype(np.float32)
    separate = align.auto_contrast(align.white_balance(img))
    np.testing.assert_allclose(align._finish(img, balance=True, contrast=True), separate, atol=1e-5)
    plate = make_plate(small_base, OFFS, h=128, w=128, pad=40)
    b, g, r = align.split_plate(plate)
    box = align.overlap_box(b.shape, OFFS)
    assert box == (5, 121, 4, 125)
    full = align.compose(b, g, r, OFFS)
    np.testing.assert_array_equal(align.compose(b, g, r, OFFS, box=box), full[5:121, 4:125])


def test_shift_beyond_the_radius_is_flagged_not_converged(photo):
    base = ndimage.zoom(photo, (0.75, 0.75, 1), order=1)  # [384, 384, 3]
    plate = make_plate(base, {"g": (30, 0), "r": (2, 1)}, h=192, w=192, pad=60)
    res = align.align_channels(*align.split_plate(plate), radius=12)
    assert res.offsets["r"] == (2, 1) and res.peaks["r"].converged
    assert not res.peaks["g"].converged  # the true 30 px lies outside ±12


@pytest.mark.parametrize(
    "balance,contrast", [(True, True), (False, True), (True, False), (False, False)]
)
def test_blockwise_colorize_equals_compose_crop_finish(small_base, monkeypatch, balance, contrast):
    """The fast path (frame test on samples, finishing and quantizing in row blocks, integer
    plates converted into aligned buffers) gives exactly the pixels of the separate steps."""
    from imsyn.image import to_uint8, to_uint16

    monkeypatch.setattr(align, "_ROWS", 1000)  # many blocks, a short last one
    plate = make_plate(small_base, OFFS, h=128, w=128, pad=40, gains=(1.0, 0.8, 0.9))
    plate[:6] = 0.0  # frames: a crop at the top and on the left
    plate[256:, -7:] = 1.0
    b, g, r = align.split_plate(plate)
    box = align.overlap_box(b.shape, OFFS)
    img = align.compose(b, g, r, OFFS, box=box)
    y0, y1, x0, x1 = align.auto_crop(img)
    want = align._finish(img[y0:y1, x0:x1], balance=balance, contrast=contrast)
    want_box = (box[0] + y0, box[0] + y1, box[2] + x0, box[2] + x1)
    kw = dict(balance=balance, contrast=contrast)
    res = align.colorize(plate, **kw)
    assert res.crop == want_box and res.crop[0] > box[0] and res.crop[2] > box[2]
    np.testing.assert_array_equal(res.image, want)
    u8 = align.colorize(plate, dtype=np.uint8, **kw)
    np.testing.assert_array_equal(u8.image, to_uint8(want))
    u16 = align.colorize(plate, dtype=np.uint16, **kw)
    np.testing.assert_array_equal(u16.image, to_uint16(want))
    as16 = (plate * 65535).round().astype(np.uint16)  # converted third by third, aligned
    np.testing.assert_array_equal(
        align.colorize(as16, **kw).image,
        align.colorize(as16.astype(np.float32) / 65535, **kw).image,
    )
    timings = {}
    align.colorize(plate, timings=timings)
    assert set(timings) == {"align", "finish"} and min(timings.values()) > 0
    with pytest.raises(ValueError, match="dtype"):
        align.colorize(plate, dtype=np.float64)


def test_aligned_buffers_are_read_in_place_by_jax():
    x = align._aligned_empty((3, 100, 37))
    assert x.flags.c_contiguous and x.dtype == np.float32 and x.ctypes.data % 64 == 0
