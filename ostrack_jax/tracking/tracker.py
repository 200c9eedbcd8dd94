"""The OSTrack inference tracker (spec section 8), one jitted device step per frame.

Per frame: the search crop is cut on the host around the previous state with the original's
arithmetic (``ostrack_jax.crop.sample_target``, OpenCV INTER_LINEAR, zero padding) and sent
to the device as uint8; one jitted function normalizes it (ImageNet mean/std, via an exact
lookup table), runs the network, multiplies the centered Hann window into the score map and
decodes the box at its peak. The host then scales the box to pixels, maps it back to the image
and clips it with a 10 px margin, in float64 with the original's order of operations.

Coordinates: boxes in and out are ``xywh`` in image pixels (floats). The network's box is
``cxcywh`` normalized to the search crop.

Conventions reproduced from the original (documented quirks):

* The template is cut once at initialisation (factor ``config.tracker.template_factor``) and
  never updated.
* ``map_box_back`` uses ``crop_sz / 2`` as the crop centre and ignores the rounding of the crop
  origin (a systematic shift of about ``-0.5 / resize_factor`` px, as the published numbers).
* ``clip_box`` computes the right/bottom corners from the *unclamped* box, then clamps:
  ``x1`` to ``[0, W - 10]``, ``x2`` to ``[10, W]``, and keeps ``w, h >= 10``. A target leaving
  the frame therefore leaves a box of at least 10 px at the border.
* Frames are RGB. Grayscale frames are replicated to three channels and RGBA frames lose their
  alpha channel (what OpenCV's ``imread`` does to such files in the original's runner).
"""

import functools
import math
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ostrack_jax import crop as crop_lib
from ostrack_jax.tracking.datasets import to_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MARGIN = 10


# ------------------------------------------------------------------------- constants


def normalization_table() -> np.ndarray:
  """(256 * 3,) float32 lookup table: entry ``3 * v + c`` is ``(v / 255 - mean_c) / std_c``.

  Computed in float32 on the host exactly as the original's preprocessing (torch, float32), so
  the gather in the jitted step reproduces it bit for bit (an XLA division does not).
  """
  v = np.arange(256, dtype=np.float32)[:, None]
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  std = np.asarray(IMAGENET_STD, np.float32)
  return (((v / np.float32(255.0)) - mean) / std).astype(np.float32).reshape(-1)


def hann_window(n: int) -> np.ndarray:
  """(n, n) float32 centered Hann window, bit-exact with ``torch.hann_window(n + 2,
  periodic=False)[1:-1]`` outer product: ``0.5 - 0.5 cos(2 pi k / (n + 1))``, k = 1..n."""
  step = np.float32(2.0 * math.pi / (n + 1))
  k = np.arange(1, n + 1, dtype=np.float32)
  h = (np.float32(0.5) - np.float32(0.5) * np.cos(step * k)).astype(np.float32)
  return np.outer(h, h).astype(np.float32)


def normalize_uint8(images, table):
  """uint8 (..., 3) images -> float32 ImageNet-normalized, via :func:`normalization_table`."""
  idx = images.astype(jnp.int32) * 3 + jnp.arange(3, dtype=jnp.int32)
  return table[idx]


# ------------------------------------------------------------------------- host geometry


def map_box_back(pred_cxcywh_px: np.ndarray, prev_xywh: np.ndarray,
                 crop_side: np.ndarray) -> np.ndarray:
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


def boxes_to_image(pred_cxcywh_norm: np.ndarray, prev_xywh: np.ndarray,
                   resize_factor: np.ndarray, image_hw: np.ndarray,
                   search_size: int) -> np.ndarray:
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


def check_init_box(box_xywh: Sequence[float], image_hw, where: str = '') -> np.ndarray:
  """Validates an initial box; returns it as float64 (4,). Raises ValueError naming the problem.

  Rejected: not 4 finite numbers, zero or negative width/height, a box entirely outside the
  image. A box partly outside the image is accepted (the crop pads with zeros, as the original).
  """
  prefix = f'{where}: ' if where else ''
  b = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
  if b.shape != (4,) or not np.isfinite(b).all():
    raise ValueError(f'{prefix}initial box must be 4 finite numbers x,y,w,h; got {box_xywh}')
  if b[2] <= 0 or b[3] <= 0:
    raise ValueError(f'{prefix}initial box {tuple(b)} has zero or negative width/height')
  h, w = image_hw
  if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
    raise ValueError(f'{prefix}initial box {tuple(b)} lies outside the {w}x{h} image')
  return b


# ------------------------------------------------------------------------- device step


BATCH_MODES = ('vmap', 'map')


def make_track_step(config: ml_collections.ConfigDict, batch_mode: Optional[str] = None):
  """The jitted per-frame step ``step(variables, template, search_u8, window, table)``.

  Args:
    config: the preset.
    batch_mode: None for the plain step (used with B = 1). For lockstep evaluation of B
      sequences: 'vmap' runs the single-sequence step ``jax.vmap``-ed over B (one batched
      forward: the throughput mode); 'map' runs it with ``jax.lax.map`` (B forwards in one
      call: bit-identical to tracking each sequence alone). XLA picks its matmul blocking by
      shape, so a batched forward can differ from a B = 1 forward in the last float bits
      (measured <= 1e-4 px in boxes on the fixtures), which a CE tie or an argmax tie could
      amplify on long sequences; 'map' rules that out at the cost of parallelism.
  Args (to the returned function):
    template: (B, T, T, 3) float32 normalized templates.
    search_u8: (B, S, S, 3) uint8 search crops.
    window: (F, F) float32 Hann window.
    table: normalization table.
  Returns a dict: ``pred_boxes`` (B, 4) cxcywh normalized (decoded on the windowed map),
  ``score_map`` (B, F, F) raw, ``response`` (B, F, F) windowed, ``removed_indexes`` list of
  (B, n_i) int32 search-token indices eliminated at each CE layer.
  """
  from ostrack_jax.models.head import decode_box  # pylint: disable=g-import-not-at-top
  from ostrack_jax.models.ostrack import build_model  # pylint: disable=g-import-not-at-top
  model = build_model(config)

  def step(variables, template, search_u8, window, table):
    search = normalize_uint8(search_u8, table)
    out = model.apply(variables, template, search, keep_ratio=None, train=False)
    score = out['score_map'][..., 0]
    response = window[None] * score
    pred = decode_box(response[..., None], out['size_map'], out['offset_map'])
    return {'pred_boxes': pred, 'score_map': score, 'response': response,
            'removed_indexes': list(out['removed_indexes'])}

  if batch_mode is None:
    return jax.jit(step)
  if batch_mode not in BATCH_MODES:
    raise ValueError(f'batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}')

  def one(variables, template, search_u8, window, table):
    out = step(variables, template[None], search_u8[None], window, table)
    return jax.tree_util.tree_map(lambda x: x[0], out)

  if batch_mode == 'vmap':
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None, None)))

  def mapped(variables, templates, search_u8, window, table):
    return jax.lax.map(lambda ts: one(variables, ts[0], ts[1], window, table),
                       (templates, search_u8))
  return jax.jit(mapped)


@functools.partial(jax.jit, static_argnames=())
def _normalize_template(template_u8, table):
  return normalize_uint8(template_u8, table)


@functools.partial(jax.jit, donate_argnums=(0,))
def _set_slot(templates, index, template):
  return jax.lax.dynamic_update_index_in_dim(templates, template, index, axis=0)


# ------------------------------------------------------------------------- the tracker


class Tracker:
  """Single-target tracker with OSTrack's inference procedure.

  Usage::

    tracker = Tracker.from_checkpoint('model.msgpack', get_config('ostrack_256_ce'))
    tracker.initialize(first_frame_rgb, (x, y, w, h))
    for frame in frames:
      x, y, w, h = tracker.track(frame)

  ``tracker.state`` (xywh, image pixels) can be read and set between frames (e.g. a user
  correcting the box). After each ``track`` the last frame's raw and windowed score maps
  (``last_score_map``, ``last_response``, (F, F)), the search tokens eliminated by candidate
  elimination (``last_removed_indexes``, one int array per CE layer), the search crop
  (``last_search_crop``) and its placement (``last_crop_box_xyxy``) are available.
  ``last_timing`` holds the seconds spent in host preprocessing, the device step (model) and
  host postprocessing.
  """

  def __init__(self, config: ml_collections.ConfigDict, variables: Dict[str, Any],
               step=None):
    self.config = config
    m = config.model
    self.template_size = int(m.template_size)
    self.search_size = int(m.search_size)
    self.feat_size = self.search_size // int(m.patch_size)
    self.template_factor = float(config.tracker.template_factor)
    self.search_factor = float(config.tracker.search_factor)
    if step is None:  # the live step: bfloat16 kernels cast once, not on every frame
      from ostrack_jax.models.ostrack import cast_kernels, compute_dtype  # pylint: disable=g-import-not-at-top
      variables = cast_kernels(variables, compute_dtype(config))
    self.variables = jax.device_put(variables)
    self._table = jax.device_put(normalization_table())
    self._window = jax.device_put(hann_window(self.feat_size))
    self._step = step if step is not None else make_track_step(config)
    self._template = None
    self._state = None
    self.frame_id = 0
    self._last = None
    self.last_search_crop = None
    self.last_crop_box_xyxy = None
    self.last_resize_factor = None
    self.last_template_crop = None
    self.last_timing: Dict[str, float] = {}

  @classmethod
  def from_checkpoint(cls, path: str, config: ml_collections.ConfigDict) -> 'Tracker':
    """A tracker from our checkpoint (.msgpack) or a PyTorch one (converted on the fly)."""
    from ostrack_jax.checkpoint_io import load_checkpoint  # pylint: disable=g-import-not-at-top
    return cls(config, load_checkpoint(str(path), config))

  def warmup(self, step: bool = True) -> None:
    """Compiles the per-frame step (on blank inputs) so that timings exclude compilation."""
    if step:
      t = jnp.zeros((1, self.template_size, self.template_size, 3), jnp.float32)
      s = np.zeros((1, self.search_size, self.search_size, 3), np.uint8)
      jax.block_until_ready(self._step(self.variables, t, s, self._window, self._table))
    jax.block_until_ready(_normalize_template(
        jnp.zeros((1, self.template_size, self.template_size, 3), jnp.uint8), self._table))

  # ---------------------------------------------------------------- state

  @property
  def state(self) -> np.ndarray:
    """Current box, xywh image pixels (float64 copy)."""
    if self._state is None:
      raise RuntimeError('the tracker is not initialized: call initialize(frame, box) first')
    return self._state.copy()

  @state.setter
  def state(self, box_xywh):
    b = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= 0 or b[3] <= 0:
      raise ValueError(f'state must be 4 finite numbers x,y,w,h with w, h > 0; got {box_xywh}')
    self._state = b

  # ---------------------------------------------------------------- API

  def prepare_template(self, frame: np.ndarray, box_xywh) -> np.ndarray:
    """(T, T, 3) uint8 template crop of ``frame`` around ``box_xywh``."""
    c = crop_lib.sample_target(frame, box_xywh, self.template_factor, self.template_size,
                               with_mask=False)
    return c.image

  def initialize(self, frame: np.ndarray, box_xywh: Sequence[float]) -> None:
    """Cuts the template around ``box_xywh`` (xywh image pixels) in the RGB ``frame``."""
    frame = to_rgb(frame)
    box = check_init_box(box_xywh, frame.shape[:2])
    crop = self.prepare_template(frame, box)
    self.last_template_crop = crop
    self._template = _normalize_template(jnp.asarray(crop[None]), self._table)
    self._state = box
    self.frame_id = 0
    self._last = None

  def track(self, frame: np.ndarray) -> np.ndarray:
    """Tracks one RGB frame; returns the new box (xywh image pixels, float64 (4,))."""
    if self._template is None:
      raise RuntimeError('the tracker is not initialized: call initialize(frame, box) first')
    t0 = time.perf_counter()
    frame = to_rgb(frame)
    crop = crop_lib.sample_target(frame, self._state, self.search_factor, self.search_size,
                                  with_mask=False)
    t1 = time.perf_counter()
    out = self._step(self.variables, self._template, crop.image[None], self._window,
                     self._table)
    pred = np.asarray(out['pred_boxes'])  # waits for the device
    t2 = time.perf_counter()
    new_state = boxes_to_image(pred, self._state[None], np.array([crop.resize_factor]),
                               np.array([frame.shape[:2]]), self.search_size)[0]
    if not np.isfinite(new_state).all():
      raise FloatingPointError(f'frame {self.frame_id + 1}: the network returned a non-finite '
                               f'box {pred[0].tolist()} (bad checkpoint?)')
    self._state = new_state
    self.frame_id += 1
    self._last = out
    self.last_search_crop = crop.image
    self.last_crop_box_xyxy = crop.crop_box_xyxy
    self.last_resize_factor = crop.resize_factor
    t3 = time.perf_counter()
    self.last_timing = {'preprocess': t1 - t0, 'model': t2 - t1, 'postprocess': t3 - t2}
    return new_state.copy()

  # ---------------------------------------------------------------- visualisation

  @property
  def last_score_map(self) -> Optional[np.ndarray]:
    """(F, F) raw score map of the last frame (before the Hann window)."""
    return None if self._last is None else np.asarray(self._last['score_map'][0])

  @property
  def last_response(self) -> Optional[np.ndarray]:
    """(F, F) windowed score map of the last frame (the one the box is decoded from)."""
    return None if self._last is None else np.asarray(self._last['response'][0])

  @property
  def last_removed_indexes(self) -> List[np.ndarray]:
    """Search-token indices (row-major on the F x F grid) eliminated at each CE layer."""
    if self._last is None:
      return []
    return [np.asarray(r[0]) for r in self._last['removed_indexes']]


# ------------------------------------------------------------------------- batched


class BatchTracker:
  """N independent trackers advanced in lockstep by one jitted call per step.

  Each of the ``batch_size`` slots holds one sequence; the device step always runs on the full
  batch (static shapes: compiled once), with inactive slots fed a blank crop whose output is
  ignored. Slots are (re)initialized independently, so sequences of unequal length are handled
  by starting the next sequence in a slot as soon as the previous one ends. ``batch_mode``:
  'vmap' (one batched forward; equal to one-at-a-time up to float rounding) or 'map'
  (bit-identical to one-at-a-time); see :func:`make_track_step`.
  """

  def __init__(self, tracker: Tracker, batch_size: int, batch_mode: str = 'vmap', step=None):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    self.tracker = tracker
    self.batch_mode = batch_mode
    self._step = step if step is not None else make_track_step(tracker.config, batch_mode)
    self.batch_size = batch_size
    t, s = tracker.template_size, tracker.search_size
    self._templates = jnp.zeros((batch_size, t, t, 3), jnp.float32)
    self._search = np.zeros((batch_size, s, s, 3), np.uint8)
    self.states = np.zeros((batch_size, 4), np.float64)
    self.active = np.zeros(batch_size, bool)
    self._last = None

  def warmup(self) -> None:
    """Compiles the batched step so that timings exclude compilation."""
    tr = self.tracker
    tr.warmup(step=False)
    jax.block_until_ready(self._step(tr.variables, self._templates, self._search, tr._window,  # pylint: disable=protected-access
                                     tr._table))  # pylint: disable=protected-access

  def initialize(self, slot: int, frame: np.ndarray, box_xywh) -> None:
    """Starts the sequence of ``slot`` from ``box_xywh`` (xywh image pixels) in ``frame``."""
    tr = self.tracker
    frame = to_rgb(frame)
    box = check_init_box(box_xywh, frame.shape[:2])
    crop = tr.prepare_template(frame, box)
    template = _normalize_template(jnp.asarray(crop[None]), tr._table)[0]  # pylint: disable=protected-access
    self._templates = _set_slot(self._templates, slot, template)
    self.states[slot] = box
    self.active[slot] = True

  def release(self, slot: int) -> None:
    """Marks ``slot`` idle (its sequence ended)."""
    self.active[slot] = False

  def track(self, frames: Sequence[Optional[np.ndarray]]) -> np.ndarray:
    """One frame for every active slot (None for inactive ones); returns (B, 4) states."""
    tr = self.tracker
    if len(frames) != self.batch_size:
      raise ValueError(f'expected {self.batch_size} frames (None for idle slots), got '
                       f'{len(frames)}')
    rf = np.ones(self.batch_size)
    hw = np.ones((self.batch_size, 2))
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
      if not self.active[i] or frame is None:
        self._search[i] = 0
        continue
      frame = to_rgb(frame)
      c = crop_lib.sample_target(frame, self.states[i], tr.search_factor, tr.search_size,
                                 with_mask=False)
      self._search[i] = c.image
      rf[i] = c.resize_factor
      hw[i] = frame.shape[:2]
    t1 = time.perf_counter()
    out = self._step(tr.variables, self._templates, self._search, tr._window, tr._table)  # pylint: disable=protected-access
    pred = np.asarray(out['pred_boxes'])
    t2 = time.perf_counter()
    new = boxes_to_image(pred, self.states, rf, hw, tr.search_size)
    live = self.active & np.array([f is not None for f in frames])
    self.states[live] = new[live]
    self._last = out
    t3 = time.perf_counter()
    self.last_timing = {'preprocess': t1 - t0, 'model': t2 - t1, 'postprocess': t3 - t2}
    return self.states.copy()
