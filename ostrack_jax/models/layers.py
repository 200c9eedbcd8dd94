"""Dense and convolution layers that compute through :mod:`ostrack_jax.models.matmul`.

Both keep ``nn.Dense`` / ``nn.Conv``'s parameter names, shapes and layouts (``kernel`` (in, out)
or (kh, kw, in, out) HWIO, ``bias`` (out,)), so checkpoints and the weight converter do not see
the difference. Both take ``dtype`` matmul operands (float32, or bfloat16 with float32
accumulation) and return ``out_dtype`` (float32 unless the bfloat16-activation fast path asks
for bfloat16, bias added in that dtype); a kernel already cast to ``dtype`` for inference is used
as is. ``custom_backward`` picks the hand-written bfloat16 backward (see matmul.py).

The convolutions OSTrack has are all matrix products in disguise, and computed as such:

* 1x1 convolutions: a (pixels, in) x (in, out) product;
* the patch embedding (kernel = stride = 16, no padding): patchify, then one product;
* the head's 3x3 stride-1 'SAME' convolutions: the nine shifted copies of the zero-padded map
  side by side (im2col, 9 x in columns, (dy, dx, channel) order as the HWIO kernel), then one
  product. On a 2-core CPU this ran the head's 768 -> 256 convolution forward and backward in
  about half the time of XLA's convolution, and gives the bfloat16 path its fast backward.
"""

from typing import Callable, Tuple

import flax.linen as nn
import jax.numpy as jnp

from ostrack_jax.models import matmul

Initializer = Callable[..., jnp.ndarray]


class Dense(nn.Module):
  """``x @ kernel + bias``: x (..., in) -> (..., features) ``out_dtype``."""

  features: int
  dtype: jnp.dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros
  out_dtype: jnp.dtype = jnp.float32
  custom_backward: bool = True

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init, (self.features,))
    y = matmul.matmul(
      x.reshape(-1, x.shape[-1]), kernel, self.dtype, self.out_dtype, self.custom_backward
    )
    return y.reshape(x.shape[:-1] + (self.features,)) + bias.astype(y.dtype)


def patchify(x, size: int):
  """(B, H, W, C) -> (B, H/size, W/size, size * size * C), each patch in (dy, dx, c) order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // size, size, w // size, size, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // size, w // size, size * size * c)


def im2col_3x3(x):
  """(B, H, W, C) -> (B, H, W, 9 C): the 3x3 neighbourhood of every pixel (zero outside),
  concatenated in (dy, dx, c) order."""
  h, w = x.shape[1], x.shape[2]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate(
    [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1
  )


class Conv(nn.Module):
  """A 2-D convolution, NHWC in and out: 3x3 stride 1 padding 1, or kernel = stride, no padding
  (1x1 and the patch embedding). Output (B, H', W', features) in ``out_dtype``."""

  features: int
  kernel_size: Tuple[int, int]
  stride: int = 1
  dtype: jnp.dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros
  out_dtype: jnp.dtype = jnp.float32
  custom_backward: bool = True

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    cin = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (kh, kw, cin, self.features))
    bias = self.param('bias', self.bias_init, (self.features,))
    if kh != kw:
      raise ValueError(f'Conv: square kernels only, got {self.kernel_size}')
    if self.stride == kh:  # non-overlapping windows (1x1, patch embedding)
      if x.shape[1] % kh or x.shape[2] % kh:
        raise ValueError(
          f'Conv: input {x.shape[1]}x{x.shape[2]} is not a multiple of the {kh}x{kh} patch'
        )
      cols = patchify(x, kh) if kh > 1 else x
    elif (kh, self.stride) == (3, 1):
      cols = im2col_3x3(x)
    else:
      raise ValueError(f'Conv: unsupported kernel {self.kernel_size} with stride {self.stride}')
    lead = cols.shape[:-1]
    y = matmul.matmul(
      cols.reshape(-1, cols.shape[-1]),
      kernel.reshape(kh * kw * cin, self.features),
      self.dtype,
      self.out_dtype,
      self.custom_backward,
    )
    return y.reshape(lead + (self.features,)) + bias.astype(y.dtype)
