"""The matmul-based layers (ostrack_jax/models/{matmul,layers}.py) against XLA's own dot and
convolution: values and gradients in float32, and the bfloat16 mixed-precision products against
float64 products of the bfloat16-rounded operands (forward and the hand-written backward)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ostrack_jax.models import layers, matmul

HIGHEST = jax.lax.Precision.HIGHEST


def _rand(rng, *shape):
  return jnp.asarray(rng.standard_normal(shape).astype(np.float32))


def _bf16_as_f64(x):
  return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.mark.parametrize('batch', [(), (2, 3)])
@pytest.mark.parametrize('nt', [False, True])
def test_float32_products_and_gradients_match_jnp(batch, nt):
  rng = np.random.default_rng(0)
  a = _rand(rng, *batch, 5, 7)
  b = _rand(rng, *batch, *((6, 7) if nt else (7, 6)))
  weights = _rand(rng, *batch, 5, 6)
  ours = matmul.matmul_nt if nt else matmul.matmul
  ref = (
    (lambda a, b: jnp.matmul(a, jnp.swapaxes(b, -1, -2), precision=HIGHEST))
    if nt
    else (lambda a, b: jnp.matmul(a, b, precision=HIGHEST))
  )

  @jax.jit  # one program for the test (op by op, each operation was one)
  def both(a, b, weights):
    g_ours = jax.grad(lambda a, b: jnp.sum(ours(a, b) * weights), argnums=(0, 1))(a, b)
    g_ref = jax.grad(lambda a, b: jnp.sum(ref(a, b) * weights), argnums=(0, 1))(a, b)
    return ours(a, b), ref(a, b), g_ours, g_ref

  with jax.default_matmul_precision('highest'):
    out_ours, out_ref, g_ours, g_ref = both(a, b, weights)
  np.testing.assert_allclose(out_ours, out_ref, rtol=1e-5, atol=1e-5)
  for x, y in zip(g_ours, g_ref, strict=True):
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('batch', [(), (2, 3)])
@pytest.mark.parametrize('nt', [False, True])
def test_bfloat16_products_round_operands_and_cotangent_and_accumulate_in_float32(batch, nt):
  rng = np.random.default_rng(1)
  # 64-long contractions: float32 accumulation of bfloat16 products is exact to ~1e-6 relative,
  # bfloat16 accumulation would be off by ~1e-2.
  a = _rand(rng, *batch, 9, 64)
  b = _rand(rng, *batch, *((8, 64) if nt else (64, 8)))
  weights = _rand(rng, *batch, 9, 8)
  fn = matmul.matmul_nt if nt else matmul.matmul

  @jax.jit  # one program for the test (op by op, each operation was one)
  def products(a, b, weights):
    out, vjp = jax.vjp(lambda a, b: fn(a, b, jnp.bfloat16), a, b)
    with jax.default_matmul_precision('highest'):
      _, vjp32 = jax.vjp(fn, a, b)
      grads32 = vjp32(weights)
    return (out, *vjp(weights)), grads32

  (out, da, db), grads32 = products(a, b, weights)
  assert out.dtype == da.dtype == db.dtype == jnp.float32

  a64, b64, g64 = _bf16_as_f64(a), _bf16_as_f64(b), _bf16_as_f64(weights)
  bt64 = np.swapaxes(b64, -1, -2) if nt else b64  # (..., K, N)
  np.testing.assert_allclose(out, a64 @ bt64, rtol=2e-6, atol=2e-5)
  np.testing.assert_allclose(da, g64 @ np.swapaxes(bt64, -1, -2), rtol=2e-6, atol=2e-5)
  db_kn = np.swapaxes(a64, -1, -2) @ g64
  np.testing.assert_allclose(db, np.swapaxes(db_kn, -1, -2) if nt else db_kn, rtol=2e-6, atol=2e-5)

  # And close to the float32 gradients (bfloat16 has an 8-bit mantissa).
  for x, y in zip((da, db), grads32, strict=True):
    np.testing.assert_allclose(x, y, rtol=0, atol=0.05 * float(np.abs(y).max()))


def test_bfloat16_kernel_cast_for_inference_is_used_as_is():
  rng = np.random.default_rng(2)
  x, w = _rand(rng, 4, 16), _rand(rng, 16, 3)
  np.testing.assert_array_equal(
    matmul.matmul(x, w.astype(jnp.bfloat16), jnp.bfloat16), matmul.matmul(x, w, jnp.bfloat16)
  )


def _xla_conv(x, kernel, bias, stride, padding):
  y = jax.lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    padding,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    precision=HIGHEST,
  )
  return y + bias


@pytest.mark.parametrize(
  'kernel_size,stride,padding,size',
  [
    (3, 1, ((1, 1), (1, 1)), 8),  # the head's 3x3 convolutions
    (1, 1, 'VALID', 8),  # the head's output convolutions
    (4, 4, 'VALID', 16),  # the patch embedding (16 in the model)
  ],
)
@pytest.mark.slow
def test_conv_matches_xla_convolution_and_its_gradients(kernel_size, stride, padding, size):
  rng = np.random.default_rng(3)
  x = _rand(rng, 2, size, size, 5)
  conv = layers.Conv(6, (kernel_size, kernel_size), stride=stride)
  variables = jax.jit(conv.init)(jax.random.PRNGKey(0), x)
  kernel, bias = variables['params']['kernel'], variables['params']['bias']
  assert kernel.shape == (kernel_size, kernel_size, 5, 6) and bias.shape == (6,)
  bias = _rand(rng, 6)
  params = {'kernel': kernel, 'bias': bias}
  weights = _rand(rng, *_xla_conv(x, kernel, bias, stride, padding).shape)

  @jax.jit  # one program for the test (op by op, each operation was one)
  def both(params, x, weights):
    ours = lambda p, x: conv.apply({'params': p}, x)
    ref = lambda p, x: _xla_conv(x, p['kernel'], p['bias'], stride, padding)
    g_ours = jax.grad(lambda p, x: jnp.sum(ours(p, x) * weights), argnums=(0, 1))(params, x)
    g_ref = jax.grad(lambda p, x: jnp.sum(ref(p, x) * weights), argnums=(0, 1))(params, x)
    return ours(params, x), ref(params, x), g_ours, g_ref

  with jax.default_matmul_precision('highest'):
    ours, ref, g_ours, g_ref = both(params, x, weights)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  for x_ours, x_ref in zip(
    jax.tree_util.tree_leaves(g_ours), jax.tree_util.tree_leaves(g_ref), strict=True
  ):
    np.testing.assert_allclose(x_ours, x_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_conv_refuses_what_it_does_not_implement():
  x = jax.ShapeDtypeStruct((1, 8, 8, 2), jnp.float32)  # traced only: the refusal needs no program
  with pytest.raises(ValueError, match='unsupported kernel'):
    jax.eval_shape(layers.Conv(3, (5, 5)).init, jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='not a multiple'):
    jax.eval_shape(layers.Conv(3, (3, 3), stride=3).init, jax.random.PRNGKey(0), x)


def test_dense_matches_flax_dense():
  import flax.linen as nn

  rng = np.random.default_rng(4)
  x = _rand(rng, 2, 3, 5)
  variables = jax.jit(nn.Dense(4).init)(jax.random.PRNGKey(0), x)
  with jax.default_matmul_precision('highest'):
    ours, ref = jax.jit(lambda v, x: (layers.Dense(4).apply(v, x), nn.Dense(4).apply(v, x)))(
      variables, x
    )
  np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
