"""OSTrack's training losses (its training actor): focal loss on a CenterNet Gaussian target,
GIoU and L1 on the box decoded at the predicted peak.

Conventions:

* ``search_anno``: ground truth box (B, 4) **xywh normalized** to the search crop (fractions of
  the crop side; may fall partly outside [0, 1]).
* ``pred_boxes``: (B, 4) **cxcywh normalized**, decoded at the argmax of the predicted score map
  (the model's ``pred_boxes``; the original never decodes at the GT centre during training).
* ``score_map`` / heatmaps: (B, F, F, 1) NHWC (F = search_size // patch_size).

The Gaussian target (the focal loss's ``heatmap``) arrives with the batch: the data workers build
it with the rest of the sample (:func:`ostrack_jax.data.transforms.gaussian_heatmap`).
"""

from typing import Dict

import jax
import jax.numpy as jnp

from ostrack_jax.geometry import boxes as box_lib

FOCAL_ALPHA = 2.0
FOCAL_BETA = 4.0


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
    heatmap: (B, F, F, 1), :func:`ostrack_jax.data.transforms.gaussian_heatmap`.
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
