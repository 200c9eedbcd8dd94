"""Host-side pieces shared by every tracker front end (NumPy and OpenCV: no JAX, no onnxruntime).

The JAX tracker (:mod:`ostrack_jax.tracking.tracker`) and the ONNX tracker
(:mod:`ostrack_jax.deploy.onnx_tracker`, which must run without JAX) check their inputs and present
their last step's outputs the same way; this module is that one copy. It also holds the Hann
window and the float64 map back and clip of the original (:func:`boxes_to_image`), which the
ONNX tracker runs and the device step reproduces in float32.

Coordinates: boxes are ``xywh`` in image pixels; ``image_hw`` is ``(height, width)``.
"""

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from ostrack_jax.geometry.boxes import box_text
from ostrack_jax.geometry.crop import IMAGENET_MEAN, IMAGENET_STD

CLIP_MARGIN = 10  # the original's clip_box keeps boxes this many pixels inside the frame
MIN_FRAME_SIDE = CLIP_MARGIN + 1


def normalization_table() -> np.ndarray:
  """(256 * 3,) float32 lookup table: entry ``3 * v + c`` is ``(v / 255 - mean_c) / std_c``.

  Computed in float32 on the host exactly as the original's preprocessing (torch, float32), so
  a gather reproduces it bit for bit (an XLA division does not).
  """
  v = np.arange(256, dtype=np.float32)[:, None]
  return (((v / np.float32(255.0)) - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32).reshape(-1)


def hann_window(n: int) -> np.ndarray:
  """(n, n) float32 centered Hann window, bit-exact with ``torch.hann_window(n + 2,
  periodic=False)[1:-1]`` outer product: ``0.5 - 0.5 cos(2 pi k / (n + 1))``, k = 1..n."""
  step = np.float32(2.0 * math.pi / (n + 1))
  k = np.arange(1, n + 1, dtype=np.float32)
  h = (np.float32(0.5) - np.float32(0.5) * np.cos(step * k)).astype(np.float32)
  return np.outer(h, h).astype(np.float32)


def map_box_back(
  pred_cxcywh_px: np.ndarray, prev_xywh: np.ndarray, crop_side: np.ndarray
) -> np.ndarray:
  """Crop-relative predictions -> image xywh (the original's ``map_box_back``), float64.

  Args:
    pred_cxcywh_px: (..., 4) box in crop pixels of the *original crop* (normalized box times
      crop side), cxcywh.
    prev_xywh: (..., 4) state the crop was cut around.
    crop_side: (...,) ``search_size / resize_factor``.
  """
  pred = np.asarray(pred_cxcywh_px, np.float64)
  prev = np.asarray(prev_xywh, np.float64)
  cx_prev = prev[..., 0] + 0.5 * prev[..., 2]
  cy_prev = prev[..., 1] + 0.5 * prev[..., 3]
  half = 0.5 * np.asarray(crop_side, np.float64)
  cx = pred[..., 0] + (cx_prev - half)
  cy = pred[..., 1] + (cy_prev - half)
  w, h = pred[..., 2], pred[..., 3]
  return np.stack([cx - 0.5 * w, cy - 0.5 * h, w, h], axis=-1)


def clip_box(box_xywh: np.ndarray, height, width, margin: float = CLIP_MARGIN) -> np.ndarray:
  """The original's ``clip_box``: corners of the UNCLAMPED box, then clamp; float64.

  ``x2 = x1 + w`` is computed before ``x1`` is clamped to ``[0, W - margin]``; ``x2`` goes to
  ``[margin, W]``; ``w = max(margin, x2 - x1)``; likewise for y with H.
  """
  b = np.asarray(box_xywh, np.float64)
  height = np.asarray(height, np.float64)
  width = np.asarray(width, np.float64)
  x1, y1 = b[..., 0], b[..., 1]
  x2, y2 = x1 + b[..., 2], y1 + b[..., 3]
  x1 = np.minimum(np.maximum(0.0, x1), width - margin)
  x2 = np.minimum(np.maximum(margin, x2), width)
  y1 = np.minimum(np.maximum(0.0, y1), height - margin)
  y2 = np.minimum(np.maximum(margin, y2), height)
  return np.stack([x1, y1, np.maximum(margin, x2 - x1), np.maximum(margin, y2 - y1)], axis=-1)


def boxes_to_image(
  pred_cxcywh_norm: np.ndarray,
  prev_xywh: np.ndarray,
  resize_factor: npt.ArrayLike,
  image_hw: npt.ArrayLike,
  search_size: int,
) -> np.ndarray:
  """Network output -> new states, for a batch: scale (float32, as the original's tensor
  arithmetic), map back and clip (float64, as its Python floats).

  Args:
    pred_cxcywh_norm: (B, 4) float32 cxcywh normalized to the search crop.
    prev_xywh: (B, 4) states the crops were cut around.
    resize_factor: (B,) ``search_size / crop_sz``.
    image_hw: (B, 2) image height and width.
  Returns:
    (B, 4) float64 xywh image pixels.
  """
  rf = np.asarray(resize_factor, np.float64).reshape(-1)
  pred = np.asarray(pred_cxcywh_norm, np.float32).reshape(-1, 4)
  # torch: (box * search_size) / resize_factor, float32 tensor with Python-scalar operands.
  pred_px = (pred * np.float32(search_size)) / rf.astype(np.float32)[:, None]
  crop_side = search_size / rf
  box = map_box_back(pred_px.astype(np.float64), prev_xywh, crop_side)
  hw = np.asarray(image_hw, np.float64).reshape(-1, 2)
  return clip_box(box, hw[:, 0], hw[:, 1])


def check_frame(frame, where: str = '') -> np.ndarray:
  """RGB (H, W, 3) uint8 view of a user frame; a ValueError naming ``where`` and the problem.

  Grayscale frames are replicated to three channels and RGBA frames lose their alpha (what
  OpenCV's ``imread`` does to such files in the original's runner). Frames smaller than
  ``MIN_FRAME_SIDE`` on a side are refused (the box keeps ``CLIP_MARGIN`` px inside the frame).
  """
  prefix = f'{where}: ' if where else ''
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(
      f'{prefix}frames must be uint8 RGB images (H, W, 3), got dtype {frame.dtype}'
      '; convert float images in [0, 1] with (x * 255).round().astype(np.uint8)'
    )
  if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
    frame = np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
  elif frame.ndim == 3 and frame.shape[2] == 4:
    frame = np.ascontiguousarray(frame[:, :, :3])
  elif not (frame.ndim == 3 and frame.shape[2] == 3):
    raise ValueError(
      f'{prefix}expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) frame, '
      f'got shape {frame.shape}'
    )
  h, w = frame.shape[:2]
  if h < MIN_FRAME_SIDE or w < MIN_FRAME_SIDE:
    raise ValueError(
      f'{prefix}the frame is {w}x{h} pixels; the tracker needs at least '
      f'{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} (boxes keep {CLIP_MARGIN} px inside the frame)'
    )
  return frame


def check_box(
  box_xywh: Sequence[float], image_hw, what: str = 'initial box', where: str = ''
) -> np.ndarray:
  """Validates a box given by the user; returns it as float64 (4,). ValueError naming it.

  Rejected: not 4 finite numbers, zero or negative width/height, a box entirely outside the
  image. A box partly outside the image is accepted (the crop pads with zeros, as the original).
  """
  prefix = f'{where}: ' if where else ''
  try:
    b = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
  except (TypeError, ValueError):
    b = np.full(0, np.nan)
  if b.shape != (4,) or not np.isfinite(b).all():
    raise ValueError(f'{prefix}{what} must be 4 finite numbers x,y,w,h; got {box_text(box_xywh)}')
  if b[2] <= 0 or b[3] <= 0:
    raise ValueError(f'{prefix}{what} {box_text(b)} has zero or negative width/height')
  h, w = image_hw
  if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
    raise ValueError(f'{prefix}{what} {box_text(b)} lies outside the {w}x{h} image')
  return b


def check_init_box(box_xywh: Sequence[float], image_hw, where: str = '') -> np.ndarray:
  """:func:`check_box` for an initial box."""
  return check_box(box_xywh, image_hw, 'initial box', where)


class FrameSizeWatch:
  """The frames of one sequence after the first: each is checked (:func:`check_frame`), and a
  frame whose size differs from the previous one's is warned about once per sequence (it is
  tracked in its own size, the box clipped to it). ``image_hw``: the last frame's (H, W)."""

  def __init__(self, first_hw: Tuple[int, int]):
    self.image_hw: Tuple[int, int] = (int(first_hw[0]), int(first_hw[1]))
    self._warned = False

  def check(self, frame, index: int) -> np.ndarray:
    """``frame`` (frame ``index`` of the sequence) checked; the warning points at the caller's
    caller (the user's ``track``)."""
    frame = check_frame(frame, f'frame {index}')
    hw = (frame.shape[0], frame.shape[1])
    if hw != self.image_hw and not self._warned:
      warnings.warn(
        f'frame {index} is {hw[1]}x{hw[0]}, the previous frames were '
        f'{self.image_hw[1]}x{self.image_hw[0]}; tracking goes on in the new size (the box is '
        'clipped to it)',
        stacklevel=3,
      )
      self._warned = True
    self.image_hw = hw
    return frame


class LastOutputs:
  """The last step's outputs, read on demand (mixin). Subclasses set ``self._last`` (a dict of
  arrays with a leading slot axis of 1, or None) and give ``_removed()``: the eliminated-token
  arrays of that step, one (1, n_i) array per CE layer."""

  _last: Optional[Dict[str, Any]] = None

  def _removed(self) -> List:
    raise NotImplementedError

  def _get(self, key):
    return None if self._last is None else np.asarray(self._last[key][0])

  @property
  def last_score_map(self) -> Optional[np.ndarray]:
    """(F, F) raw score map of the last frame (before the Hann window)."""
    return self._get('score_map')

  @property
  def last_response(self) -> Optional[np.ndarray]:
    """(F, F) windowed score map of the last frame (the one the box is decoded from)."""
    return self._get('response')

  @property
  def last_search_crop(self) -> Optional[np.ndarray]:
    """(S, S, 3) uint8 search crop of the last frame."""
    return self._get('search_crop')

  @property
  def last_crop_box_xyxy(self) -> Optional[tuple]:
    """Integer corners (x1, y1, x2, y2) of the last search crop in image pixels (unclipped)."""
    v = self._get('crop_box_xyxy')
    return None if v is None else tuple(int(a) for a in v)

  @property
  def last_resize_factor(self) -> Optional[float]:
    """``S / crop side`` of the last search crop."""
    v = self._get('resize_factor')
    return None if v is None else float(v)

  @property
  def last_removed_indexes(self) -> List[np.ndarray]:
    """Search-token indices (row-major on the F x F grid) eliminated at each CE layer."""
    if self._last is None:
      return []
    return [np.asarray(r[0]) for r in self._removed()]
