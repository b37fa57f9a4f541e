"""Accelerator programs contain no CPU-only code: ``jax.export`` for ``cuda`` and ``tpu`` on this
CPU-only machine (lowering only, nothing runs), and the StableHLO is checked op by op.

On a CPU the convolutions run the XLA:CPU kernels of ``imsyn.models.conv_cpu`` (Winograd and
GEMM gradients: ``dot_general``s; fusion barriers: conditionals); the choice is
``jax.lax.platform_dependent``. Lowered for one platform, ``platform_dependent`` leaves a
one-branch ``stablehlo.case`` on a constant index (XLA inlines it before optimising); those are
told apart from real conditionals (a runtime predicate) by where their index comes from.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax._src.interpreters import mlir as jax_mlir
from jax._src.lib.mlir import ir

from imsyn import losses, models, nst, poisson
from imsyn.models import inception, vgg

PLATFORMS = ("cuda", "tpu")


def _walk(op, out: list) -> list:
    for region in op.regions:
        for block in region.blocks:
            for o in block.operations:
                out.append(o)
                _walk(o, out)
    return out


def _is_constant_index(op) -> bool:
    """A ``stablehlo.case`` whose index is a constant or a platform_dependent index remap."""
    src = op.operands[0].owner
    if getattr(src, "name", None) == "stablehlo.constant":
        return True
    if getattr(src, "name", None) == "stablehlo.case":
        return getattr(src.operands[0].owner, "name", None) == "stablehlo.constant"
    return False


def stats(text: str) -> dict:
    """Op counts of a StableHLO module; ``conditionals`` counts only runtime conditionals
    (``stablehlo.if`` and cases on a computed index), not platform_dependent's constant ones."""
    module = ir.Module.parse(text, context=jax_mlir.make_ir_context())  # alive while ops are
    ops = _walk(module.operation, [])
    names = collections.Counter(o.name for o in ops)
    real = sum(
        1
        for o in ops
        if o.name == "stablehlo.if" or (o.name == "stablehlo.case" and not _is_constant_index(o))
    )
    return {
        "convolutions": names["stablehlo.convolution"],
        "dot_generals": names["stablehlo.dot_general"],
        "conditionals": real,
        "while": names["stablehlo.while"],
    }


def export_stats(fn, *args, platform: str) -> dict:
    exp = jax.export.export(jax.jit(fn), platforms=(platform,))(*args)
    return stats(exp.mlir_module())


def cpu_stats(fn, *args) -> dict:
    return stats(jax.jit(fn).lower(*args).as_text())


# --------------------------------------------------------------------------- the nets


def _cyclegan_loss():
    """A CycleGAN-step-like loss of both generators and both discriminators (LSGAN + cycle)."""
    r = nnx.Rngs(0)
    # conv_dim 64: the residual blocks have 128 channels, Winograd on the CPU
    nets = {
        "g_xy": models.get("cycle_resnet")(conv_dim=64, n_blocks=1, rngs=r),
        "g_yx": models.get("cycle_resnet")(conv_dim=64, n_blocks=1, rngs=r),
        "d_x": models.get("patch_discriminator")(conv_dim=16, rngs=r),
        "d_y": models.get("patch_discriminator")(conv_dim=16, rngs=r),
    }
    graphs, params = {}, {}
    for k, net in nets.items():
        graphs[k], params[k] = nnx.split(net)

    def loss(params, x, y):
        g_xy, g_yx, d_x, d_y = (nnx.merge(graphs[k], params[k]) for k in graphs)
        fake_y, fake_x = g_xy(x), g_yx(y)
        adv = jnp.mean(losses.gan_g_loss(d_y(fake_y), kind="lsgan"))
        adv += jnp.mean(losses.gan_g_loss(d_x(fake_x), kind="lsgan"))
        d = jnp.mean(losses.gan_d_loss(d_y(y), d_y(fake_y), kind="lsgan"))
        cyc = jnp.mean(jnp.abs(g_yx(fake_y) - x)) + jnp.mean(jnp.abs(g_xy(fake_x) - y))
        return adv + d + 10.0 * cyc

    x = jnp.zeros((1, 16, 16, 3), jnp.float32)
    return jax.grad(loss), (params, x, x)


def _dcgan_loss():
    r = nnx.Rngs(0)
    gd, gs = nnx.split(models.get("dcgan_generator")(image_size=32, conv_dim=8, rngs=r))
    dd, ds = nnx.split(models.get("dc_discriminator")(image_size=32, conv_dim=8, rngs=r))

    def loss(params, z, real):
        g, d = nnx.merge(gd, params[0]), nnx.merge(dd, params[1])
        fake = g(z)
        return jnp.mean(losses.gan_d_loss(d(real), d(fake), kind="lsgan")) + jnp.mean(
            losses.gan_g_loss(d(fake), kind="lsgan")
        )

    return jax.grad(loss), ((gs, ds), jnp.zeros((2, 100)), jnp.zeros((2, 32, 32, 3)))


def _nst_objective():
    weights = vgg.random_weights(0)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    problem = nst.build_problem(weights, img, [img], None, None, nst.Options())

    def loss(x, params, targets):
        return nst.objective(x, params, targets, static=problem.static)[0]

    return jax.grad(loss), (jnp.asarray(img)[None], problem.params, problem.targets)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(
    "build", [_cyclegan_loss, _dcgan_loss, _nst_objective], ids=["cyclegan", "dcgan", "nst"]
)
def test_accelerator_gradients_are_plain_convolutions(build, platform):
    fn, args = build()
    got = export_stats(fn, *args, platform=platform)
    assert got["convolutions"] > 0, got
    assert got["conditionals"] == 0, got  # no fusion barriers
    if build is _nst_objective:  # Gram matrices: one product forward, two backward per layer
        assert got["dot_generals"] == 3 * len(nst.COURSE_STYLE_LAYERS), got
    else:
        assert got["dot_generals"] == 0, got  # no Winograd / GEMM gradients


def test_cpu_lowering_keeps_the_cpu_kernels():
    # The same traced program lowered for the CPU (the default here) takes the CPU branch:
    # Winograd / row-GEMM gradients and fusion barriers.
    fn, args = _cyclegan_loss()
    cpu = cpu_stats(fn, *args)
    acc = export_stats(fn, *args, platform="cuda")
    assert cpu["dot_generals"] > 50 and cpu["conditionals"] > 10, cpu
    assert cpu["convolutions"] < acc["convolutions"], (cpu, acc)


def _lpips_args():
    from imsyn.models import lpips

    rng = np.random.default_rng(0)
    shapes = lpips.CONV_SHAPES
    w = lpips.LPIPSWeights(
        tuple(rng.normal(0, 0.1, (3, 3, i, o)).astype(np.float32) for i, o in shapes),
        tuple(np.zeros(o, np.float32) for _, o in shapes),
        tuple(rng.uniform(0, 0.1, c).astype(np.float32) for c in lpips.TAP_CHANNELS),
        "random",
    )
    x = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32))
    return lpips._lpips, (w.params, x, x * 0.5)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_accelerator_lpips_is_plain_full_precision_convolutions(platform):
    fn, args = _lpips_args()
    exp = jax.export.export(fn, platforms=(platform,))(*args)
    text = exp.mlir_module()
    got = stats(text)
    assert got["convolutions"] == 2 * 13 and got["conditionals"] == 0, got  # two VGG-16 trunks
    assert got["dot_generals"] == 5, got  # the linear layers only: no Winograd
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert all("precision HIGHEST>, #stablehlo<precision HIGHEST" in c for c in convs), convs[0]


def test_cpu_lpips_takes_the_cpu_convolutions():
    fn, args = _lpips_args()
    cpu = cpu_stats(fn, *args)
    assert cpu["dot_generals"] > 5 and cpu["convolutions"] < 2 * 13, cpu


def _inception_args():
    params = inception.random_weights(0)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32))
    return (lambda p, x: inception.features(p, x, size=75)), (params, x)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_accelerator_inception_is_plain_full_precision_convolutions(platform):
    fn, args = _inception_args()
    text = jax.export.export(jax.jit(fn), platforms=(platform,))(*args).mlir_module()
    got = stats(text)
    assert got["convolutions"] == len(inception.SPECS) and got["conditionals"] == 0, got
    x = args[1]
    resize = export_stats(lambda x: inception.resize(x, 75), x, platform=platform)
    assert got["dot_generals"] == resize["dot_generals"], got  # no GEMMs but the resize's
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert all("precision HIGHEST>, #stablehlo<precision HIGHEST" in c for c in convs), convs[0]


def test_cpu_inception_takes_the_cpu_convolutions():
    fn, args = _inception_args()
    cpu = cpu_stats(fn, *args)
    n_1x1 = sum(1 for _, _, k, s, p in inception.SPECS.values() if (k, s, p) == ((1, 1), 1, (0, 0)))
    assert cpu["dot_generals"] > n_1x1 and cpu["convolutions"] <= len(inception.SPECS) - n_1x1, cpu


def _poisson_args():
    """The arguments ``poisson.blend`` passes to its jitted solve, for a small masked box."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    s = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    mask = np.zeros((40, 40), bool)
    mask[8:32, 6:30] = True
    seen = {}
    solve = poisson._solve_box

    def spy(*a, **k):
        seen["args"], seen["kwargs"] = a, k
        return solve(*a, **k)

    try:
        poisson._solve_box = spy
        poisson.blend(s, t, mask)
    finally:
        poisson._solve_box = solve
    return solve, seen["args"], seen["kwargs"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_accelerator_poisson_solve_has_no_fusion_barriers(platform):
    solve, args, kwargs = _poisson_args()
    exp = jax.export.export(solve, platforms=(platform,))(*args, **kwargs)
    got = stats(exp.mlir_module())
    assert got["while"] == 1, got  # the CG loop
    assert got["conditionals"] == 0, got
    cpu = stats(solve.lower(*args, **kwargs).as_text())
    assert cpu["conditionals"] >= 6, cpu  # the multigrid stages keep their CPU boundaries


# --------------------------------------------------------------------------- mixed precision


def _conv_dtypes(text: str) -> collections.Counter:
    """Element types of the convolutions' operands (lhs, rhs) in a StableHLO module."""
    module = ir.Module.parse(text, context=jax_mlir.make_ir_context())
    out = collections.Counter()
    for o in _walk(module.operation, []):
        if o.name == "stablehlo.convolution":
            lhs, rhs = (str(ir.RankedTensorType(v.type).element_type) for v in o.operands[:2])
            out[lhs, rhs] += 1
    return out


def _bf16_dcgan_step():
    import optax

    from imsyn import gan

    g, d = gan.make_dcgan(image_size=32, conv_dim=8, key=jax.random.key(0))
    opt = optax.adam(2e-4, b1=0.5)
    step = gan.make_dcgan_step(nnx.graphdef(g), nnx.graphdef(d), opt, opt, dtype="bfloat16")
    batch = {"image": jnp.zeros((2, 32, 32, 3), jnp.float32)}
    return step, (gan.init_dcgan_state(g, d, opt, opt), batch, jax.random.key(1))


def _bf16_cyclegan_step():
    import optax

    from imsyn import gan

    # g_conv_dim 64: 128-channel residual blocks, which take Winograd on the CPU
    nets = gan.make_cyclegan(
        image_size=16, g_conv_dim=64, d_conv_dim=16, n_blocks=1, key=jax.random.key(0)
    )
    opt = optax.adam(2e-4, b1=0.5)
    defs = gan.CycleGAN(*(nnx.graphdef(m) for m in nets))
    step = gan.make_cyclegan_step(defs, opt, opt, lambda_identity=0.5, dtype="bfloat16")
    x = jnp.zeros((2, 16, 16, 3), jnp.float32)
    return step, (gan.init_cyclegan_state(nets, opt, opt), {"x": x, "y": x}, jax.random.key(1))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(
    "build", [_bf16_cyclegan_step, _bf16_dcgan_step], ids=["cyclegan", "dcgan"]
)
def test_accelerator_bf16_step_has_only_bf16_plain_convolutions(build, platform):
    # The whole mixed-precision training step (forward, backward, Adam), lowered for an
    # accelerator: every convolution (forward and gradients) takes bf16 operands, and none of
    # the CPU kernels (GEMM/Winograd gradients, fusion barriers) is left.
    step, args = build()
    exp = jax.export.export(jax.jit(step), platforms=(platform,))(*args)
    text = exp.mlir_module()
    got = stats(text)
    assert got["conditionals"] == 0 and got["while"] == 0, got
    assert got["dot_generals"] == 0, got
    dtypes = _conv_dtypes(text)
    assert set(dtypes) == {("bf16", "bf16")}, dtypes
    assert sum(dtypes.values()) == got["convolutions"] > 0
    # parameters and optimizer state stay float32 in the step's output
    out = jax.eval_shape(step, *args)[0]
    assert {str(a.dtype) for a in jax.tree.leaves(out)} <= {"float32", "int32"}


def test_accelerator_bf16_nst_objective_has_bf16_convolutions():
    weights = vgg.random_weights(0)
    img = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    problem = nst.build_problem(weights, img, [img], None, None, nst.Options(dtype="bfloat16"))

    def loss(x, params, targets):
        return nst.objective(x, params, targets, static=problem.static)[0]

    args = (jnp.asarray(img)[None], problem.params, problem.targets)
    exp = jax.export.export(jax.jit(jax.value_and_grad(loss)), platforms=("cuda",))(*args)
    dtypes = _conv_dtypes(exp.mlir_module())
    assert set(dtypes) == {("bf16", "bf16")}, dtypes
    got = stats(exp.mlir_module())
    # Gram matrices stay float32 (one product forward, two backward per style layer)
    assert got["dot_generals"] == 3 * len(nst.COURSE_STYLE_LAYERS), got
    assert exp.out_avals[1].dtype == jnp.float32  # the image's gradient
