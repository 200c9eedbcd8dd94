"""Template and search crops with the original's arithmetic (shared by tracker and data).

NumPy and OpenCV only: grain workers import this without JAX.

The crop of a box (x, y, w, h) in image pixels with context factor ``f`` is a square of side
``crop_sz = ceil(sqrt(w * h) * f)`` centred on the box centre, its origin rounded with Python's
``round`` (half to even). Parts outside the image are zero (black). As in the original, the
right and bottom padding is computed as ``x2 - W + 1``, so whenever a crop reaches the right
(bottom) image border the last real image column (row) is replaced by zeros. The square is then
resized to ``output_size`` with OpenCV's INTER_LINEAR (uint8 fixed point), bit-exact with the
original.

The network takes a crop's pixels as ``(v / 255 - IMAGENET_MEAN) / IMAGENET_STD`` per RGB
channel, in float32, as the original; the two constants are defined here, once, for the
training data, the tracker and the training step.
"""

import math
from typing import NamedTuple, Optional, Sequence, Union

import cv2
import numpy as np

from ostrack_jax.geometry.boxes import box_text

# ImageNet statistics, RGB, float32 (the original's normalization of every crop).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class Crop(NamedTuple):
  """A resized crop.

  image: (S, S, C) uint8 (same channels as the input image).
  resize_factor: S / crop_sz (output pixels per image pixel).
  pad_mask: (S, S) bool, True where the crop lies outside the image (padding).
  crop_box_xyxy: (x1, y1, x2, y2) integer corners of the square in image pixels, before
    clipping to the image.
  """

  image: np.ndarray
  resize_factor: float
  pad_mask: np.ndarray
  crop_box_xyxy: tuple


def crop_size(box_xywh: Sequence[float], factor: float) -> int:
  """Side in image pixels of the square crop around ``box_xywh`` for context ``factor``."""
  w, h = float(box_xywh[2]), float(box_xywh[3])
  if not (w > 0 and h > 0):
    raise ValueError(f'box {box_text(box_xywh)} has zero or negative size')
  side = math.ceil(math.sqrt(w * h) * factor)
  if side < 1:
    raise ValueError(f'box {box_text(box_xywh)} gives an empty crop (factor {float(factor)})')
  return side


def sample_target(
  image: np.ndarray,
  box_xywh: Union[Sequence[float], np.ndarray],
  factor: float,
  output_size: Optional[int],
  *,
  with_mask: bool = True,
) -> Crop:
  """Crops a square of side ceil(sqrt(w*h)*factor) around the box centre and resizes it.

  Args:
    image: (H, W, C) uint8 image (RGB for the tracker).
    box_xywh: (x1, y1, w, h) in image pixels, floats allowed.
    factor: context factor (2.0 for templates, 4.0 / 5.0 for search regions).
    output_size: side S of the output; None keeps the crop at its native size.
    with_mask: also compute the padding mask (skipped by the tracker's hot path).

  Returns:
    A :class:`Crop`. Raises ValueError for a box with zero or negative size.
  """
  if image.ndim != 3:
    raise ValueError(f'expected an (H, W, C) image, got shape {image.shape}')
  x, y, w, h = (float(v) for v in box_xywh)
  side = crop_size((x, y, w, h), factor)
  img_h, img_w = image.shape[:2]
  x1 = round(x + 0.5 * w - side * 0.5)  # Python round: half to even, as the original
  y1 = round(y + 0.5 * h - side * 0.5)
  x2, y2 = x1 + side, y1 + side
  # The original slices [max(x1, 0), x2 - max(x2 - W + 1, 0)) = [max(x1, 0), min(x2, W - 1)).
  sx1, sy1 = max(x1, 0), max(y1, 0)
  sx2, sy2 = min(x2, img_w - 1), min(y2, img_h - 1)
  sx2, sy2 = max(sx2, sx1), max(sy2, sy1)  # empty when the crop misses the image
  canvas = np.zeros((side, side, image.shape[2]), dtype=image.dtype)
  canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
  if output_size is None:
    resized = canvas
    resize_factor = 1.0
  else:
    resized = cv2.resize(canvas, (output_size, output_size), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
      resized = resized[:, :, None]
    resize_factor = output_size / side
  pad_mask = None
  if with_mask:
    mask = np.ones((side, side), dtype=np.float64)
    mask[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = 0.0
    if output_size is not None:
      mask = cv2.resize(mask, (output_size, output_size), interpolation=cv2.INTER_LINEAR)
    pad_mask = mask.astype(bool)
  return Crop(resized, resize_factor, pad_mask, (x1, y1, x2, y2))


def box_to_crop_normalized(
  box_gt_xywh: Sequence[float],
  box_crop_xywh: Sequence[float],
  resize_factor: float,
  output_size: int,
) -> np.ndarray:
  """Maps an image-pixel box into a crop taken around ``box_crop_xywh``; normalized xywh.

  Uses the original's (S - 1) / 2 crop-centre convention: a box centred on the crop centre
  gets a normalized centre of (S - 1) / (2 S). The result is not clamped to [0, 1].
  """
  gt = np.asarray(box_gt_xywh, dtype=np.float64)
  ref = np.asarray(box_crop_xywh, dtype=np.float64)
  c_gt = gt[:2] + 0.5 * gt[2:]
  c_ref = ref[:2] + 0.5 * ref[2:]
  c_out = (output_size - 1) / 2 + (c_gt - c_ref) * resize_factor
  wh_out = gt[2:] * resize_factor
  return np.concatenate([c_out - 0.5 * wh_out, wh_out]) / output_size
