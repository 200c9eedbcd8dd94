"""The center head (OSTrack's CenterPredictor) and its box decode.

Initialisation follows the original: Xavier-uniform conv kernels, PyTorch-default conv biases,
BatchNorm scale 1 and shift 0.

Three independent branches (ctr, offset, size), each conv3x3-BN-ReLU x4 then a 1x1 conv, on the
search tokens laid out as an F x F map (NHWC). Channel widths are C, C/2, C/4, C/8 for
``channels`` = C.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ostrack_jax.models import layers

SCORE_CLAMP = 1e-4
# Convolutions (ostrack_jax/models/layers.py) take ``dtype`` operands (bfloat16 in the fast path)
# and accumulate in float32; activations stay float32, or bfloat16 with ``act_dtype`` bfloat16
# between BatchNorm + ReLU and the next convolution (the convolutions' results, BatchNorm and the
# output sigmoids in float32 either way).


class BatchNorm(nn.Module):
  """BatchNorm2d with PyTorch semantics (eps 1e-5, momentum 0.1).

  Normalises with the biased batch variance but updates the running variance with the unbiased
  one, as torch does (Flax's BatchNorm uses the biased variance for both). Under ``jax.jit`` with
  a batch sharded over devices, the batch statistics are global (SyncBN semantics).
  """

  epsilon: float = 1e-5
  momentum: float = 0.1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    if train:
      xf = x.astype(jnp.float32)
      axes = tuple(range(x.ndim - 1))
      mean = xf.mean(axis=axes)
      var = jnp.mean(jnp.square(xf - mean), axis=axes)
      n = xf.size // c
      if not self.is_initializing():
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * var * (
          n / max(n - 1, 1)
        )
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return (x * mul.astype(x.dtype) + (bias - mean * mul).astype(x.dtype)).astype(x.dtype)


def torch_conv_bias_init(key, shape, dtype=jnp.float32, *, fan_in: int):
  """PyTorch's default conv bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / fan_in**0.5
  return jax.random.uniform(key, shape, dtype, -bound, bound)


class ConvBNReLU(nn.Module):
  features: int
  dtype: jnp.dtype = jnp.float32
  act_dtype: jnp.dtype = jnp.float32
  custom_backward: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    """x (B, H, W, C_in) -> (B, H, W, features) in ``act_dtype``. The convolution's result
    stays float32 into BatchNorm (rounding it to bfloat16 first would lose the deviations from
    a large common offset that BatchNorm then subtracts); the normalised, rectified map is
    ``act_dtype``."""
    x = layers.Conv(
      self.features,
      (3, 3),
      dtype=self.dtype,
      custom_backward=self.custom_backward,
      name='conv',
      kernel_init=nn.initializers.xavier_uniform(),
      bias_init=functools.partial(torch_conv_bias_init, fan_in=9 * x.shape[-1]),
    )(x)
    x = BatchNorm(dtype=self.dtype, name='bn')(x, train)
    return nn.relu(x).astype(self.act_dtype)


class CenterHead(nn.Module):
  """Score, size and offset maps from the search feature map.

  Input (B, F, F, C_in). Output dict: ``score_map`` (B, F, F, 1) and ``size_map`` (B, F, F, 2)
  sigmoid-clamped to [1e-4, 1 - 1e-4] (size channels: w, h normalized to the crop);
  ``offset_map`` (B, F, F, 2), raw (x, y) offsets in cell units.
  """

  channels: int = 256
  dtype: jnp.dtype = jnp.float32
  act_dtype: jnp.dtype = jnp.float32
  custom_backward: bool = True

  @nn.compact
  def __call__(self, feat, train: bool = False):
    outputs = {}
    widths = (self.channels, self.channels // 2, self.channels // 4, self.channels // 8)
    for branch, out_ch in (('ctr', 1), ('offset', 2), ('size', 2)):
      x = feat
      for j, width in enumerate(widths, start=1):
        x = ConvBNReLU(
          width,
          dtype=self.dtype,
          act_dtype=self.act_dtype,
          custom_backward=self.custom_backward,
          name=f'conv{j}_{branch}',
        )(x, train)
      x = layers.Conv(
        out_ch,
        (1, 1),
        dtype=self.dtype,
        custom_backward=self.custom_backward,
        name=f'conv5_{branch}',
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=functools.partial(torch_conv_bias_init, fan_in=x.shape[-1]),
      )(x)
      outputs[branch] = x.astype(jnp.float32)
    clamp = lambda v: jnp.clip(jax.nn.sigmoid(v), SCORE_CLAMP, 1 - SCORE_CLAMP)
    return {
      'score_map': clamp(outputs['ctr']),
      'size_map': clamp(outputs['size']),
      'offset_map': outputs['offset'],
    }


def decode_box(score_map, size_map, offset_map):
  """Box at the peak of ``score_map``; cxcywh normalized to the search crop.

  Args:
    score_map: (B, F, F, 1) (possibly Hann-windowed).
    size_map: (B, F, F, 2) (w, h) normalized.
    offset_map: (B, F, F, 2) (x, y) in cell units.
  Returns:
    (B, 4) cxcywh. The first maximum wins on ties (row-major), and cell k maps to k / F (the
    cell's top-left corner; the offset learns the rest), as the original.
  """
  b, f = score_map.shape[0], score_map.shape[1]
  idx = jnp.argmax(score_map.reshape(b, f * f), axis=1)
  # Truncating division (idx >= 0): Python's floor semantics add sign corrections that export
  # to ONNX as an Equal on booleans, which TensorRT's parser does not take.
  iy = jax.lax.div(idx, jnp.asarray(f, idx.dtype))
  ix = idx - iy * f
  rows = jnp.arange(b)
  size = size_map.reshape(b, f * f, 2)[rows, idx]
  offset = offset_map.reshape(b, f * f, 2)[rows, idx]
  cx = (ix.astype(jnp.float32) + offset[:, 0]) / f
  cy = (iy.astype(jnp.float32) + offset[:, 1]) / f
  return jnp.stack([cx, cy, size[:, 0], size[:, 1]], axis=-1)
