"""Box formats and conversions: the one place for every coordinate convention.

Formats (the last axis holds the 4 numbers):

* ``xywh``: (x1, y1, w, h), top-left corner and size. Benchmarks and the tracker API use it in
  image pixels.
* ``xyxy``: (x1, y1, x2, y2), corners, continuous coordinates (x2 = x1 + w).
* ``cxcywh``: (cx, cy, w, h), centre and size. The model predicts it normalized to the search
  crop (fractions of the crop side).

"Normalized" means divided by the crop side in pixels. Functions accept NumPy or JAX arrays
and return the same kind; this module imports JAX only when given a JAX array, so data
workers can use it without touching an accelerator.
"""

import numpy as np


def _xp(x):
  """The array namespace of ``x`` (numpy or jax.numpy)."""
  if type(x).__module__.startswith(('jax', 'jaxlib')):
    import jax.numpy as jnp

    return jnp
  return np


def box_text(box) -> str:
  """A box (any numbers) for a message, as plain numbers: ``(80.0, 60.0, 40.0, 30.0)``.

  NumPy and JAX scalars and arrays print as Python floats (not ``np.float64(80.0)``); what is
  not numbers (None, a string) prints as its repr.
  """
  if box is None or isinstance(box, (str, bytes)):
    return repr(box)
  try:
    values = np.asarray(box, dtype=np.float64)
  except (TypeError, ValueError):
    return repr(box)
  if values.ndim == 0:
    return repr(float(values))
  return '(' + ', '.join(repr(v) for v in values.reshape(-1).tolist()) + ')'


def _split(box):
  return box[..., 0], box[..., 1], box[..., 2], box[..., 3]


def xywh_to_xyxy(box):
  x, y, w, h = _split(box)
  return _xp(box).stack([x, y, x + w, y + h], axis=-1)


def cxcywh_to_xyxy(box):
  cx, cy, w, h = _split(box)
  return _xp(box).stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def box_area_xyxy(box):
  x1, y1, x2, y2 = _split(box)
  return (x2 - x1) * (y2 - y1)


def iou_and_giou_xyxy(pred, target):
  """IoU and generalized IoU of corresponding xyxy boxes (continuous coordinates, no +1).

  Args:
    pred, target: (..., 4) xyxy boxes, same shape.
  Returns:
    (iou, giou), each of shape (...). GIoU = IoU - (enclosing - union) / enclosing.
  """
  xp = _xp(pred)
  area_p = box_area_xyxy(pred)
  area_t = box_area_xyxy(target)
  lt = xp.maximum(pred[..., :2], target[..., :2])
  rb = xp.minimum(pred[..., 2:], target[..., 2:])
  wh = xp.clip(rb - lt, 0, None)
  inter = wh[..., 0] * wh[..., 1]
  union = area_p + area_t - inter
  iou = inter / union
  lt_c = xp.minimum(pred[..., :2], target[..., :2])
  rb_c = xp.maximum(pred[..., 2:], target[..., 2:])
  wh_c = xp.clip(rb_c - lt_c, 0, None)
  enclosing = wh_c[..., 0] * wh_c[..., 1]
  giou = iou - (enclosing - union) / enclosing
  return iou, giou


def iou_xywh(pred, target):
  """IoU of corresponding xywh boxes in continuous coordinates (GOT-10k convention)."""
  iou, _ = iou_and_giou_xyxy(xywh_to_xyxy(pred), xywh_to_xyxy(target))
  return iou
