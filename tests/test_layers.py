"""Shared NNX layers (imsyn.models.layers): PyTorch parity of values and autograd gradients
for every conv path, Winograd, up-convs, transposed convs, instance and spectral norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imsyn.models import conv_cpu, layers


def _torch_nchw(x):
    import torch

    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("kernel,stride,pad", [(3, 1, 1), (4, 2, 1), (3, 1, 2), (3, 3, 1)])
def test_conv2d_matches_pytorch(mode, kernel, stride, pad, rng):
    import torch

    x = rng.standard_normal((2, 11, 10, 3)).astype(np.float32)
    conv = layers.Conv2d(
        3, 5, kernel, stride=stride, padding=pad, padding_mode=mode, rngs=nnx.Rngs(0)
    )
    ref = torch.nn.Conv2d(3, 5, kernel, stride=stride, padding=pad, padding_mode=mode)
    ref.weight.data = torch.tensor(np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1))
    ref.bias.data = torch.tensor(np.asarray(conv.bias[...]))
    want = ref(_torch_nchw(x)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(np.asarray(conv(jnp.asarray(x))), want, atol=1e-5)
    # PyTorch's default init: every weight within 1/sqrt(fan_in).
    assert np.abs(np.asarray(conv.kernel[...])).max() <= 1 / np.sqrt(3 * kernel * kernel)


def _torch_grads(fn, x, w, cot):
    """PyTorch autograd of ``sum(fn(x, w) * cot)`` w.r.t. x (NHWC) and w (HWIO)."""
    import torch

    tx = _torch_nchw(x).clone().requires_grad_()
    tw = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1)).requires_grad_()
    (fn(tx, tw) * _torch_nchw(cot)).sum().backward()
    return tx.grad.permute(0, 2, 3, 1).numpy(), tw.grad.permute(2, 3, 1, 0).numpy()


# (cin, cout, kernel, stride, pad, size): every path of layers.conv2d (stride 1 with
# cout >= cin and cout < cin, 2x2, 3x3 with >= 64 channels by row GEMMs, >= 128 by
# Winograd, stride 2 space-to-depth, odd padded size and stride 3 falling back to XLA's).
@pytest.mark.parametrize(
    "cin,cout,kernel,stride,pad,size",
    [(3, 6, 3, 1, 1, 9), (6, 3, 3, 1, 1, 9), (64, 72, 3, 1, 1, 5), (128, 128, 3, 1, 1, 6),
     (72, 64, 2, 1, 0, 7),
     (3, 5, 4, 2, 1, 10),
     (3, 5, 4, 2, 1, 11), (4, 2, 3, 3, 1, 10), (5, 4, 3, 1, 0, 8)],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_conv2d_gradients_match_pytorch(cin, cout, kernel, stride, pad, size, mode, rng):
    import torch

    x = rng.standard_normal((2, size, size + 2, cin)).astype(np.float32)
    conv = layers.Conv2d(
        cin, cout, kernel, stride=stride, padding=pad, padding_mode=mode, use_bias=False,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    w = np.asarray(conv.kernel[...])
    y = conv(jnp.asarray(x))
    cot = rng.standard_normal(y.shape).astype(np.float32)

    graph, state = nnx.split(conv)

    def loss(x, state):
        return jnp.sum(nnx.merge(graph, state)(x) * cot)

    gx, gs = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(x), state)
    gw = gs["kernel"][...]
    ref = torch.nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, padding_mode=mode)

    def tconv(tx, tw):
        return ref._conv_forward(tx, tw, None)

    want_x, want_w = _torch_grads(tconv, x, w, cot)
    # Winograd (>= 128 channels) rounds to ~1e-5 of the largest entry
    for got, want in ((gx, want_x), (gw, want_w)):
        np.testing.assert_allclose(np.asarray(got), want, atol=max(1e-4, 1e-5 * abs(want).max()))


@pytest.mark.parametrize("size", [(5, 7), (8, 8), (9, 13)])  # partial, exact, mixed tiles
def test_winograd_forward_matches_direct_convolution(size, rng):
    # >= 128 channels: the 3x3 stride-1 forward is Winograd F(4x4, 3x3), in batch chunks
    cin, cout = 128, 136
    assert conv_cpu._winograd_ok((3, 3, cin, cout))
    n = 1 + conv_cpu._WINO_CHUNK // (16 * ((size[0] + 3) // 4) * ((size[1] + 3) // 4))
    x = jnp.asarray(rng.standard_normal((n, *size, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
    pad = ((1, 1), (1, 1))
    y = conv_cpu.conv2d(x, w, (1, 1), pad)
    want = jax.lax.conv_general_dilated(
        x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip
    assert y.shape == want.shape
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(want), atol=2e-5 * float(jnp.abs(want).max())
    )


@pytest.mark.parametrize("cout", [3, 16])  # one 3x3 conv with 4x outputs / four 2x2 convs
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_upconv_matches_pytorch_upsample_then_conv(cout, mode, rng):
    import torch

    x = rng.standard_normal((2, 5, 6, 8)).astype(np.float32)
    up = layers.UpConv(8, cout, norm="none", padding_mode=mode, rngs=nnx.Rngs(0))
    w, b = np.asarray(up.conv.kernel[...]), np.asarray(up.conv.bias[...])
    y = up(jnp.asarray(x))
    ref = torch.nn.Conv2d(8, cout, 3, padding=1, padding_mode=mode)
    ref.bias.data = torch.tensor(b)

    def tup(tx, tw):
        return ref._conv_forward(
            torch.nn.functional.interpolate(tx, scale_factor=2.0), tw, ref.bias
        )

    with torch.no_grad():
        want = tup(_torch_nchw(x), torch.tensor(w.transpose(3, 2, 0, 1)))
    np.testing.assert_allclose(np.asarray(y), want.permute(0, 2, 3, 1).numpy(), atol=1e-5)
    cot = rng.standard_normal(y.shape).astype(np.float32)

    graph, state = nnx.split(up)

    def loss(x, state):
        return jnp.sum(nnx.merge(graph, state)(x) * cot)

    gx, gs = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), state)
    gw = gs["conv"]["kernel"][...]
    want_x, want_w = _torch_grads(tup, x, w, cot)
    np.testing.assert_allclose(np.asarray(gx), want_x, atol=1e-4)
    np.testing.assert_allclose(np.asarray(gw), want_w, atol=1e-4)


def test_conv_transpose_and_instance_norm_match_pytorch(rng):
    import torch

    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    up = layers.ConvTranspose2d(3, 4, 4, stride=2, padding=1, rngs=nnx.Rngs(0))
    ref = torch.nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)
    ref.weight.data = torch.tensor(np.asarray(up.kernel[...]).transpose(2, 3, 0, 1))
    ref.bias.data = torch.tensor(np.asarray(up.bias[...]))
    want = ref(_torch_nchw(x)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(np.asarray(up(jnp.asarray(x))), want, atol=1e-5)

    norm = layers.InstanceNorm(3, rngs=nnx.Rngs(0))
    want = torch.nn.InstanceNorm2d(3)(_torch_nchw(x * 3 + 1)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x * 3 + 1))), want, atol=1e-5)


def test_spectral_norm_converges_to_unit_norm(rng):
    conv = layers.Conv2d(3, 6, 3, spectral_norm=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((1, 8, 8, 3)), jnp.float32)
    for _ in range(30):
        conv(x)  # power iteration advances in training mode
    w = np.asarray(conv._kernel()).reshape(-1, 6)
    assert np.linalg.svd(w, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-3)
    conv.eval()
    u = np.asarray(conv.sn_u[...])
    conv(x)
    np.testing.assert_array_equal(np.asarray(conv.sn_u[...]), u)  # frozen in eval mode


def test_upconv_and_make_norm():
    up = layers.UpConv(3, 4, rngs=nnx.Rngs(0))
    assert up(jnp.zeros((1, 5, 7, 3))).shape == (1, 10, 14, 4)
    x = jnp.arange(4.0).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(
        np.asarray(layers.upsample_nearest(x, 2))[0, :, :, 0],
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]],
    )
    assert isinstance(layers.make_norm("none", 3, rngs=nnx.Rngs(0)), layers.Identity)
    with pytest.raises(ValueError, match="norm"):
        layers.make_norm("group", 3, rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- accelerator path


@pytest.fixture
def plain_path(monkeypatch):
    """Runs the accelerator (``default``) branch of every platform switch on this CPU."""
    calls = []

    def default_only(*args, cpu, default):
        calls.append(default)
        return default(*args)

    monkeypatch.setattr(conv_cpu, "cpu_or_default", default_only)
    return calls


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize(
    "cin,cout,kernel,stride,pad,size",
    [(3, 6, 3, 1, 1, 9), (64, 72, 3, 1, 1, 5), (128, 128, 3, 1, 1, 6), (3, 5, 4, 2, 1, 10),
     (3, 5, 4, 2, 1, 11), (4, 2, 3, 3, 1, 10), (5, 4, 3, 1, 0, 8), (3, 5, 3, 1, 2, 7)],
)  # fmt: skip
def test_accelerator_path_matches_pytorch(
    cin, cout, kernel, stride, pad, size, mode, rng, plain_path
):
    # What a GPU/TPU runs (one lax.conv_general_dilated per conv and gradient), on this CPU.
    test_conv2d_gradients_match_pytorch(cin, cout, kernel, stride, pad, size, mode, rng)
    test_conv2d_matches_pytorch(mode, kernel, stride, pad, rng)
    assert plain_path


@pytest.mark.parametrize("cout", [3, 16])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_accelerator_upconv_matches_pytorch(cout, mode, rng, plain_path):
    test_upconv_matches_pytorch_upsample_then_conv(cout, mode, rng)
    assert any(getattr(f, "func", None) is layers.upconv3x3_x2_plain for f in plain_path)
