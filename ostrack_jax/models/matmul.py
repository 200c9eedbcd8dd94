"""Matrix products with a chosen operand dtype, float32 accumulation, and a fast backward pass.

Every product here takes operands rounded to ``dtype`` (float32 or bfloat16) and accumulates and
returns float32 (``preferred_element_type``). In float32 they are plain ``lax.dot_general`` calls
and JAX differentiates them as usual.

In bfloat16 (mixed precision), JAX's own transpose rules would run the backward products on a
float32 cotangent against a bfloat16 operand: XLA then computes them in float32 and rounds their
results to bfloat16, the slowest and least accurate of the choices. Here the backward pass is
written out instead (``jax.custom_vjp``), as mixed-precision training does on GPUs: the cotangent
is rounded to bfloat16 once, both gradient products take bfloat16 operands and accumulate in
float32, and the gradients are float32.

On XLA:CPU a bfloat16 product only runs on the fast bfloat16 kernels when its left operand is
contracted along its last axis *and* is laid out row-major; a transposed view (``x.T``) is
silently upcast to float32. The weight gradient ``x^T g`` therefore contracts a physically
transposed copy of ``x`` (:func:`_row_major_transpose`, a few hundred KB per product): measured on
a 2-core AVX512-BF16 CPU, 9.6 ms instead of 17 ms for a (768 x 640) x (640 x 3072) product.

Two options for the GPU fast path (``model.bf16_activations``, ``model.matmul_backward``):

* ``out_dtype=bfloat16``: the product is returned in bfloat16 (still accumulated in float32 by
  the GPU's tensor cores), so the activations between products move half the bytes; in the
  hand-written backward the input gradient is then returned in the input's dtype directly.
* ``custom_backward=False``: no ``custom_vjp``; JAX differentiates the bfloat16 product itself
  (with bfloat16 outputs its transpose rules give bfloat16 x bfloat16 products too). The custom
  rule exists for XLA:CPU; on a GPU either may be faster, which the device benchmark measures.
"""

import functools

import jax
import jax.numpy as jnp

_F32 = jnp.float32


def _dot(a, b, contract, batch_ndim: int, out=_F32):
  """``dot_general`` over the leading ``batch_ndim`` axes, float32 accumulation, ``out`` result
  (float32, or bfloat16 rounded from the float32 accumulator)."""
  batch = tuple(range(batch_ndim))
  return jax.lax.dot_general(
    a, b, ((contract[0], contract[1]), (batch, batch)), preferred_element_type=out
  )


def _row_major_transpose(a):
  """``swapaxes(a, -1, -2)`` materialised row-major.

  On XLA:CPU the transpose is otherwise kept as a transposed *layout* of ``a`` (a view), which
  makes a bfloat16 product that reads it fall back to float32. Flattening behind an
  optimization barrier forces the copy. Other backends take the view (their matmuls read
  transposed operands at full speed).
  """
  t = jnp.swapaxes(a, -1, -2)
  if jax.default_backend() != 'cpu':
    return t
  return jax.lax.optimization_barrier(t.reshape(-1)).reshape(t.shape)


# ------------------------------------------------------------------------ a @ b, b (..., K, N)


def _nn(a, b, batch_ndim, out=_F32):
  return _dot(a, b, ((a.ndim - 1,), (b.ndim - 2,)), batch_ndim, out)


def _grad_out(dtype_name: str):
  """Result dtype of a backward product whose gradient is wanted in ``dtype_name``: bfloat16
  directly for bfloat16 inputs, else float32 (then cast)."""
  return jnp.bfloat16 if dtype_name == 'bfloat16' else _F32


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _matmul_bf16(a, b, batch_ndim, dtypes, out):
  return _nn(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), batch_ndim, out)


def _matmul_bf16_fwd(a, b, batch_ndim, dtypes, out):
  a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  return _nn(a16, b16, batch_ndim, out), (a16, b16)


def _matmul_bf16_bwd(batch_ndim, dtypes, out, res, g):
  a16, b16 = res
  g16 = g.astype(jnp.bfloat16)
  da = _dot(g16, b16, ((g.ndim - 1,), (b16.ndim - 1,)), batch_ndim, _grad_out(dtypes[0]))  # g b^T
  db = _nn(_row_major_transpose(a16), g16, batch_ndim, _grad_out(dtypes[1]))  # a^T g
  return da.astype(dtypes[0]), db.astype(dtypes[1])


_matmul_bf16.defvjp(_matmul_bf16_fwd, _matmul_bf16_bwd)


def matmul(a, b, dtype=_F32, out_dtype=_F32, custom_backward: bool = True):
  """``a @ b`` for a (..., M, K), b (..., K, N) with equal leading axes -> (..., M, N).

  ``dtype``: operand dtype; ``out_dtype``: result dtype (float32, or bfloat16 with bfloat16
  operands); ``custom_backward``: the hand-written bfloat16 backward (else JAX's).
  """
  batch_ndim = a.ndim - 2
  if jnp.dtype(dtype) == jnp.bfloat16:
    out = jnp.dtype(out_dtype)
    if not custom_backward:
      return _nn(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), batch_ndim, out)
    return _matmul_bf16(a, b, batch_ndim, (a.dtype.name, b.dtype.name), out)
  return _nn(a.astype(dtype), b.astype(dtype), batch_ndim)


# ---------------------------------------------------------------------- a @ b^T, b (..., N, K)


def _nt(a, b, batch_ndim, out=_F32):
  return _dot(a, b, ((a.ndim - 1,), (b.ndim - 1,)), batch_ndim, out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _matmul_nt_bf16(a, b, batch_ndim, dtypes, out):
  return _nt(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), batch_ndim, out)


def _matmul_nt_bf16_fwd(a, b, batch_ndim, dtypes, out):
  a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  return _nt(a16, b16, batch_ndim, out), (a16, b16)


def _matmul_nt_bf16_bwd(batch_ndim, dtypes, out, res, g):
  a16, b16 = res
  g16 = g.astype(jnp.bfloat16)
  da = _nn(g16, b16, batch_ndim, _grad_out(dtypes[0]))  # g b
  db = _nn(_row_major_transpose(g16), a16, batch_ndim, _grad_out(dtypes[1]))  # g^T a
  return da.astype(dtypes[0]), db.astype(dtypes[1])


_matmul_nt_bf16.defvjp(_matmul_nt_bf16_fwd, _matmul_nt_bf16_bwd)


def matmul_nt(a, b, dtype=_F32, out_dtype=_F32, custom_backward: bool = True):
  """``a @ swapaxes(b, -1, -2)`` for a (..., M, K), b (..., N, K) -> (..., M, N).

  ``dtype``, ``out_dtype``, ``custom_backward``: as :func:`matmul`.
  """
  batch_ndim = a.ndim - 2
  if jnp.dtype(dtype) == jnp.bfloat16:
    out = jnp.dtype(out_dtype)
    if not custom_backward:
      return _nt(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), batch_ndim, out)
    return _matmul_nt_bf16(a, b, batch_ndim, (a.dtype.name, b.dtype.name), out)
  return _nt(a.astype(dtype), b.astype(dtype), batch_ndim)
