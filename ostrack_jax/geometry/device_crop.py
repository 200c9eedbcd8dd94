"""The original's template/search crop, on the device, pixel-exact with OpenCV.

:func:`ostrack_jax.geometry.crop.sample_target` (NumPy + ``cv2.resize``) cuts a square of side
``crop_sz = ceil(sqrt(w * h) * factor)`` around the box centre, pads it with zeros (the last
image row and column count as padding once the crop reaches the border: the original's
off-by-one), and resizes it to ``S x S`` with OpenCV's INTER_LINEAR on uint8. This module does
the same inside a jitted function, for a frame already on the device:

* The frame is padded to a *bucket* shape ``(Hb, Wb, 3)`` (few shapes -> few compilations);
  its real height and width travel as data (``hw``), so padding never enters a crop.
* Only the ``2S x 2S`` source pixels the bilinear kernel reads are gathered from the frame
  (no ``crop_sz x crop_sz`` canvas is built): canvas pixel ``(r, c)`` is image pixel
  ``(y1 + r, x1 + c)`` when ``0 <= y1 + r < H - 1`` and ``0 <= x1 + c < W - 1``, else 0.
* The resize reproduces OpenCV's fixed-point INTER_LINEAR for uint8 (``cv2.resize``, opencv
  4.8-5.0, SIMD path): per output column ``fx = float32((dx + 0.5) * src / S - 0.5)``,
  ``sx = floor(fx)``, weights ``round((1 - frac) * 2048)`` and ``round(frac * 2048)``
  (half to even, float32); horizontally ``sx < 0`` and ``sx >= src - 1`` take weight
  (2048, 0) at the clamped column; vertically the weights are *not* reset, only the row
  indices are clamped (this is what cv2 does: rows -1 and src share row 0 / src - 1 with the
  fractional weights). Horizontal pass in int32 (``p0 * a0 + p1 * a1``); vertical pass as
  OpenCV's vector kernel: ``(((r0 >> 4) * b0) >> 16) + (((r1 >> 4) * b1) >> 16)``, then
  ``(v + 2) >> 2`` saturated to uint8. The exact 2x downscale that ``cv2.resize`` routes to
  INTER_AREA gives the same numbers through this formula (weights 1024/1024).

Exactness limits (tested in tests/geometry/test_device_crop.py against ``cv2.resize`` on random and real
frames): ``fx`` is the correctly rounded float32 of ``((2 dx + 1) src - S) / 2S``, which is
what the double-precision expression cast to float gives as long as ``(2 S - 1) * src < 2^24``
(for ``S = 384``: ``crop_sz < 21,800`` px; for power-of-two ``S`` there is no limit).

Geometry (``crop_sz``, the rounded origin, ``resize_factor = S / crop_sz``) is computed in
float32 from float32 boxes, where the original uses float64 Python floats: ``crop_sz`` can
differ by one pixel when ``sqrt(w h) * factor`` lies within ~1e-7 relative of an integer (see
the test's measured rate), which moves that frame's box by a fraction of a pixel.

Coordinates: boxes are ``xywh`` in image pixels; ``hw`` is ``(height, width)``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS  # OpenCV's INTER_RESIZE_COEF_SCALE


class CropGeometry(NamedTuple):
  """Placement of a crop: ``side`` (crop_sz) and top-left corner, int32 image pixels, and
  ``resize_factor = S / side`` (float32). Leading batch dimensions as the box."""

  side: jax.Array
  x1: jax.Array
  y1: jax.Array
  resize_factor: jax.Array


def crop_geometry(box_xywh: jax.Array, factor: float, output_size: int) -> CropGeometry:
  """The original's crop placement for ``box_xywh`` (..., 4) float32: side
  ``ceil(sqrt(w h) * factor)`` (at least 1), origin ``round(c - side / 2)`` (half to even)."""
  box = jnp.asarray(box_xywh, jnp.float32)
  x, y, w, h = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
  side = jnp.maximum(jnp.ceil(jnp.sqrt(w * h) * jnp.float32(factor)), 1.0)
  x1 = jnp.round(x + jnp.float32(0.5) * w - side * jnp.float32(0.5))
  y1 = jnp.round(y + jnp.float32(0.5) * h - side * jnp.float32(0.5))
  rf = jnp.float32(output_size) / side
  return CropGeometry(side.astype(jnp.int32), x1.astype(jnp.int32), y1.astype(jnp.int32), rf)


def _rounded_quotient(num: jax.Array, denom: int) -> jax.Array:
  """float32 nearest to ``num / denom`` (int32 ``num``, static ``denom``), in integers.

  A float32 division by a constant is compiled as a multiplication by its (rounded)
  reciprocal, which is not the correctly rounded quotient OpenCV gets from double precision.
  With ``denom = odd * 2^p``: the 24-bit mantissa of ``|num| / odd`` is rounded in int32 (no
  ties: ``odd`` is odd), then scaled by powers of two (exact). Valid for
  ``|num| < 2^24 * odd`` and ``odd < 128``.
  """
  p = (denom & -denom).bit_length() - 1
  odd = denom >> p
  if odd == 1:
    return num.astype(jnp.float32) * jnp.float32(2.0**-p)
  a = jnp.abs(num)
  # m such that 2^23 <= a * 2^m / odd < 2^24 (estimated in float, then corrected).
  est = jnp.floor(jnp.log2(jnp.maximum(a, 1).astype(jnp.float32) / odd)).astype(jnp.int32)
  m = jnp.maximum(23 - est, 0)

  def mantissa(m):
    t = jnp.left_shift(a, jnp.minimum(m, 30))
    q, r = t // odd, t % odd
    return q + (2 * r > odd).astype(jnp.int32)

  big = mantissa(m) >= (1 << 24)
  m = jnp.where(big, m - 1, m)
  small = (mantissa(m) < (1 << 23)) & (a > 0)
  m = jnp.where(small, m + 1, m)
  value = mantissa(m).astype(jnp.float32) * _exp2(-m - p)
  return jnp.where(num < 0, -value, value)


_POW2 = np.ldexp(np.float32(1), np.arange(-126, 128)).astype(np.float32)  # 2^-126 .. 2^127


def _exp2(e: jax.Array) -> jax.Array:
  """float32 ``2 ** e`` for int32 ``e`` in [-126, 127], exactly, from a table of the 254 powers
  (``jnp.ldexp`` lowers to ``pow``, slow on a CPU; a bitcast of exponent bits has no
  onnxruntime kernel in the ONNX export)."""
  return jnp.asarray(_POW2)[jnp.clip(e, -126, 127) + 126]


def linear_coefficients(src: jax.Array, dst: int, reset_border_weights: bool):
  """OpenCV INTER_LINEAR source indices and 11-bit weights for ``src -> dst`` (src traced).

  Returns ``(i0, i1, w0, w1)``, each (dst,) int32: output ``d`` reads source ``i0[d]`` with
  weight ``w0[d]`` and ``i1[d]`` with ``w1[d]`` (indices clamped to ``[0, src - 1]``).
  ``reset_border_weights``: the horizontal convention (weights (2048, 0) outside), else the
  vertical one (fractional weights kept, indices clamped).
  """
  src = jnp.asarray(src, jnp.int32)
  d = jnp.arange(dst, dtype=jnp.int32)
  num = (2 * d + 1) * src - dst  # fx = num / (2 dst), exactly
  fx = _rounded_quotient(num, 2 * dst)
  sx = jnp.floor(fx)
  frac = fx - sx
  sx = sx.astype(jnp.int32)
  if reset_border_weights:
    outside = (sx < 0) | (sx >= src - 1)
    frac = jnp.where(outside, jnp.float32(0), frac)
    sx = jnp.where(sx < 0, 0, jnp.where(sx >= src - 1, src - 1, sx))
  w0 = jnp.round((jnp.float32(1) - frac) * jnp.float32(COEF_SCALE)).astype(jnp.int32)
  w1 = jnp.round(frac * jnp.float32(COEF_SCALE)).astype(jnp.int32)
  i0 = jnp.clip(sx, 0, src - 1)
  i1 = jnp.clip(sx + 1, 0, src - 1)
  return i0, i1, w0, w1


def crop_and_resize(
  frame_u8: jax.Array,
  hw: jax.Array,
  side: jax.Array,
  x1: jax.Array,
  y1: jax.Array,
  output_size: int,
) -> jax.Array:
  """(S, S, 3) uint8 crop of one padded frame, equal to ``sample_target(...).image``.

  Args:
    frame_u8: (Hb, Wb, C) uint8 frame padded to its bucket (content at the top left).
    hw: (2,) int32 real height and width of the frame.
    side, x1, y1: int32 scalars, the crop placement (:func:`crop_geometry`).
    output_size: S (static).
  """
  s = output_size
  ri0, ri1, b0, b1 = linear_coefficients(side, s, reset_border_weights=False)
  ci0, ci1, a0, a1 = linear_coefficients(side, s, reset_border_weights=True)
  rows = y1 + jnp.concatenate([ri0, ri1])  # (2S,) image rows
  cols = x1 + jnp.concatenate([ci0, ci1])  # (2S,) image columns
  hb, wb = frame_u8.shape[0], frame_u8.shape[1]
  # The original's padding: the last real row/column is padding once the crop reaches it.
  row_ok = (rows >= 0) & (rows < hw[0] - 1)
  col_ok = (cols >= 0) & (cols < hw[1] - 1)
  rows, cols = jnp.clip(rows, 0, hb - 1), jnp.clip(cols, 0, wb - 1)
  rows, cols, row_ok, col_ok = _materialize(
    jnp.stack([rows, cols, row_ok.astype(jnp.int32), col_ok.astype(jnp.int32)])
  )
  a0, a1, b0, b1 = _materialize(jnp.stack([a0, a1, b0, b1]))
  picked = frame_u8[rows][:, cols]  # (2S, 2S, C)
  picked = jnp.where((row_ok[:, None, None] > 0) & (col_ok[None, :, None] > 0), picked, 0)
  p = picked.astype(jnp.int32).reshape(2, s, 2, s, -1)
  horiz = p[:, :, 0] * a0[None, None, :, None] + p[:, :, 1] * a1[None, None, :, None]
  top = ((horiz[0] >> 4) * b0[:, None, None]) >> 16
  bottom = ((horiz[1] >> 4) * b1[:, None, None]) >> 16
  return jnp.clip((top + bottom + 2) >> 2, 0, 255).astype(jnp.uint8)


def _materialize(x: jax.Array) -> jax.Array:
  """``x``, computed once: left to fusion, XLA inlines the small index and weight vectors into
  the per-pixel loop and recomputes them for every output pixel (5x slower on a CPU). An
  optimization barrier on the stacked vectors keeps them one materialised result."""
  return jax.lax.optimization_barrier(x)


def sample_target(
  frame_u8: jax.Array, hw: jax.Array, box_xywh: jax.Array, factor: float, output_size: int
):
  """Device twin of :func:`ostrack_jax.geometry.crop.sample_target` for one frame.

  Returns ``(crop (S, S, C) uint8, geometry)``; ``vmap`` it for a batch.
  """
  g = crop_geometry(box_xywh, factor, output_size)
  return crop_and_resize(frame_u8, hw, g.side, g.x1, g.y1, output_size), g
