"""OSTrack's training losses (its training actor): focal loss on a CenterNet Gaussian target,
GIoU and L1 on the box decoded at the predicted peak.

Conventions:

* ``search_anno``: ground truth box (B, 4) **xywh normalized** to the search crop (fractions of
  the crop side; may fall partly outside [0, 1]).
* ``pred_boxes``: (B, 4) **cxcywh normalized**, decoded at the argmax of the predicted score map
  (the model's ``pred_boxes``; the original never decodes at the GT centre during training).
* ``score_map`` / heatmaps: (B, F, F, 1) NHWC (F = search_size // patch_size).

The Gaussian target is built on the host in NumPy (:func:`gaussian_heatmap`), per batch, before
the batch is sent to the devices. That reproduces the original bit for bit: the radius in float32
with its int truncation, half-to-even rounding of the centre and the float64 kernel, where a jnp
version would need float64 (disabled by default in JAX) for the kernel and gains nothing: the map
is tiny (B x 16 x 16) and needs only the GT, which is on the host anyway.
"""

from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from ostrack_jax.geometry import boxes as box_lib

FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0
MIN_OVERLAP = 0.7


# ------------------------------------------------------------------ Gaussian target (host, numpy)


def gaussian_radius(width, height, min_overlap: float = MIN_OVERLAP) -> np.ndarray:
  """CornerNet's radius in its "bug version" (each root divided by 2, not 2a), as OSTrack uses.

  ``width``/``height`` are in feature cells (scalars or arrays). The original evaluates this on
  float32 torch tensors, with the Python-float constants rounded to float32; so does this
  function (the result decides an int truncation, so the dtype matters at the boundaries).
  Returns the float32 radius before clamping and truncation (see :func:`heatmap_radius`).
  """
  f32 = np.float32
  w = np.asarray(width, f32)
  h = np.asarray(height, f32)
  o = float(min_overlap)
  b1 = h + w
  c1 = w * h * f32(1 - o) / f32(1 + o)
  r1 = (b1 + np.sqrt(b1 * b1 - f32(4) * c1)) / f32(2)
  b2 = f32(2) * (h + w)
  c2 = f32(1 - o) * w * h
  r2 = (b2 + np.sqrt(b2 * b2 - f32(4 * 4) * c2)) / f32(2)
  a3 = 4 * o
  b3 = f32(-2 * o) * (h + w)
  c3 = f32(o - 1) * w * h
  r3 = (b3 + np.sqrt(b3 * b3 - f32(4 * a3) * c3)) / f32(2)
  return np.minimum(r1, np.minimum(r2, r3))


def heatmap_radius(width, height) -> np.ndarray:
  """The radius the original draws with: max(0, radius) truncated toward zero (int)."""
  return np.maximum(gaussian_radius(width, height), np.float32(0)).astype(np.int32)


def gaussian_kernel(radius: int) -> np.ndarray:
  """(2r+1, 2r+1) float64 Gaussian with sigma = (2r+1)/6 and peak exactly 1."""
  sigma = (2 * radius + 1) / 6.0
  d = np.arange(-radius, radius + 1, dtype=np.float64)
  kernel = np.exp(-(d[None, :] ** 2 + d[:, None] ** 2) / (2 * sigma * sigma))
  kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
  return kernel


def _draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
  """Elementwise max of ``heatmap`` (F, F) with the kernel centred at (cx, cy).

  The window is clipped to the map as the original clips it (left = min(cx, r), right =
  min(F - cx, r + 1), same vertically) and skipped when empty.
  """
  kernel = gaussian_kernel(radius).astype(np.float32)  # the original casts it to float32
  height, width = heatmap.shape
  left, right = min(cx, radius), min(width - cx, radius + 1)
  top, bottom = min(cy, radius), min(height - cy, radius + 1)
  # Same slicing semantics as the original (Python slices, negative starts included).
  region = heatmap[cy - top : cy + bottom, cx - left : cx + right]
  patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
  if min(patch.shape) > 0 and min(region.shape) > 0 and region.shape == patch.shape:
    np.maximum(region, patch, out=region)


def gaussian_heatmap(search_anno_xywh: np.ndarray, feat_size: int) -> np.ndarray:
  """The CenterNet target of a batch, as the original builds it.

  Args:
    search_anno_xywh: (B, 4) GT boxes, xywh normalized to the search crop.
    feat_size: F, the side of the score map (search_size // 16).
  Returns:
    (B, F, F, 1) float32 heatmap; 1.0 exactly at each box's centre cell.
  """
  boxes = np.asarray(search_anno_xywh, np.float32).reshape(-1, 4)
  box_f = boxes * np.float32(feat_size)
  wh = box_f[:, 2:]
  # torch.round and np.round both round half to even.
  centres = np.round(box_f[:, :2] + wh / np.float32(2)).astype(np.int64)
  radii = heatmap_radius(wh[:, 0], wh[:, 1])
  out = np.zeros((boxes.shape[0], feat_size, feat_size), np.float32)
  for b in range(boxes.shape[0]):
    _draw_gaussian(out[b], int(centres[b, 0]), int(centres[b, 1]), int(radii[b]))
  return out[..., None]


# ------------------------------------------------------------------ losses (jnp, inside jit)


def focal_loss(score_map: jax.Array, heatmap: jax.Array) -> jax.Array:
  """CenterNet's weighted focal loss (alpha 2, beta 4), normalised by the batch's positives.

  Args:
    score_map: (B, F, F, 1) probabilities, already clamped to [1e-4, 1 - 1e-4].
    heatmap: (B, F, F, 1) Gaussian target; positives are exactly 1.
  Returns:
    scalar float32.
  """
  pred = jnp.maximum(score_map.astype(jnp.float32), 1e-12)
  gt = heatmap.astype(jnp.float32)
  pos = (gt == 1.0).astype(jnp.float32)
  neg = (gt < 1.0).astype(jnp.float32)
  neg_weights = jnp.power(1.0 - gt, FOCAL_BETA)
  pos_loss = jnp.sum(jnp.log(pred) * jnp.power(1.0 - pred, FOCAL_ALPHA) * pos)
  neg_loss = jnp.sum(jnp.log(1.0 - pred) * jnp.power(pred, FOCAL_ALPHA) * neg_weights * neg)
  num_pos = jnp.sum(pos)
  return jnp.where(num_pos == 0, -neg_loss, -(pos_loss + neg_loss) / jnp.maximum(num_pos, 1.0))


def box_losses(pred_boxes_cxcywh: jax.Array, search_anno_xywh: jax.Array):
  """GIoU loss, L1 loss and mean IoU, on xyxy boxes with the GT clamped to [0, 1].

  Args:
    pred_boxes_cxcywh: (B, 4) predicted boxes, cxcywh normalized (not clamped).
    search_anno_xywh: (B, 4) GT boxes, xywh normalized.
  Returns:
    (giou_loss, l1_loss, mean_iou), scalars. As in the original, when a box is degenerate
    (x2 < x1 or y2 < y1, which includes NaN) the GIoU loss and IoU of the batch are 0.
  """
  pred = box_lib.cxcywh_to_xyxy(pred_boxes_cxcywh.astype(jnp.float32))
  gt = jnp.clip(box_lib.xywh_to_xyxy(search_anno_xywh.astype(jnp.float32)), 0.0, 1.0)
  valid = jnp.all(pred[:, 2:] >= pred[:, :2]) & jnp.all(gt[:, 2:] >= gt[:, :2])
  iou, giou = box_lib.iou_and_giou_xyxy(pred, gt)
  giou_loss = jnp.where(valid, jnp.mean(1.0 - giou), 0.0)
  mean_iou = jnp.where(valid, jnp.mean(iou), 0.0)
  l1_loss = jnp.mean(jnp.abs(pred - gt))
  return giou_loss, l1_loss, mean_iou


def ostrack_loss(
  outputs: Dict[str, jax.Array],
  search_anno_xywh: jax.Array,
  heatmap: jax.Array,
  giou_weight: float = 2.0,
  l1_weight: float = 5.0,
  focal_weight: float = 1.0,
):
  """Total loss = giou_weight * GIoU + l1_weight * L1 + focal_weight * focal.

  Args:
    outputs: the model's output dict (uses ``pred_boxes`` and ``score_map``).
    search_anno_xywh: (B, 4) GT, xywh normalized to the search crop.
    heatmap: (B, F, F, 1) from :func:`gaussian_heatmap`.
  Returns:
    (total, metrics) with metrics named as the original logs them: 'Loss/total', 'Loss/giou',
    'Loss/l1', 'Loss/location' (the focal loss) and 'IoU'.
  """
  giou, l1, iou = box_losses(outputs['pred_boxes'], search_anno_xywh)
  location = focal_loss(outputs['score_map'], heatmap)
  total = giou_weight * giou + l1_weight * l1 + focal_weight * location
  metrics = {
    'Loss/total': total,
    'Loss/giou': giou,
    'Loss/l1': l1,
    'Loss/location': location,
    'IoU': iou,
  }
  return total, metrics
