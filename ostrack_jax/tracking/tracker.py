"""The OSTrack inference tracker for users (as the original tracks at test time): :class:`Tracker`
follows one target, :class:`BatchTracker` B sequences in lockstep.

Both are front ends of :class:`~ostrack_jax.tracking.tracking_core.TrackingCore` (B = 1 and B slots):
they check the user's frames and boxes (a ValueError naming the frame or slot), pad each frame
to its bucket and dispatch one jitted step (:mod:`ostrack_jax.tracking.device_step`: the search
crop, the network, the Hann window, the decode, the map back and the clip); the states stay on
the device. ``ostrack_jax.tracking.runner`` pipelines the core over benchmark sequences.
Trackers with the same config (and batching, devices) share their jitted programs
(:func:`~ostrack_jax.tracking.tracking_core.shared_programs`): a second tracker of a preset,
one per video say, or with other weights of the same shapes, compiles nothing again.

Coordinates: boxes in and out are ``xywh`` in image pixels (floats). Frames are RGB uint8.
Grayscale frames are replicated to three channels and RGBA frames lose their alpha channel
(what OpenCV's ``imread`` does to such files in the original's runner).
"""

import operator
import time
from typing import Any, Dict, Optional, Sequence

import jax
import ml_collections
import numpy as np

from ostrack_jax.geometry.boxes import box_text
from ostrack_jax.tracking import host
from ostrack_jax.tracking.device_step import BATCH_MODES, TrackingFns
from ostrack_jax.tracking.host import LastOutputs, check_frame, check_init_box
from ostrack_jax.tracking.tracking_core import TrackingCore, bucket_shape, pad_to

# ------------------------------------------------------------------------- the tracker


class Tracker(LastOutputs):
  """Single-target tracker with OSTrack's inference procedure: the B = 1 :class:`TrackingCore`.

  Usage::

    tracker = Tracker.from_checkpoint('model.msgpack', get_config('ostrack_256_ce'))
    tracker.initialize(first_frame_rgb, (x, y, w, h))
    for frame in frames:
      x, y, w, h = tracker.track(frame)

  Per frame the host pads the frame to its bucket, uploads it and calls one jitted step that
  cuts the search crop, runs the network and returns the new state; the state stays on the
  device. ``track`` returns the box (so it waits for it); :meth:`track_async` does not (read
  the returned device array later; the video demo does).

  ``tracker.state`` (xywh, image pixels) can be read and set between frames (e.g. a user
  correcting the box; a box outside the image is rejected). After each ``track`` the last
  frame's raw and windowed score maps (``last_score_map``, ``last_response``, (F, F)), the
  search tokens eliminated by candidate elimination (``last_removed_indexes``, one int array
  per CE layer), the search crop (``last_search_crop``), its placement
  (``last_crop_box_xyxy``) and ``last_resize_factor`` are available (fetched on reading).
  ``last_timing`` holds the seconds spent on the host before the dispatch ('preprocess'), in
  the device step including the wait for the box ('model'), and after ('postprocess').
  """

  # Declared for the type checker only: set on the trackers that
  # :func:`ostrack_jax.deploy.stablehlo.load_exported` returns (the deserialised
  # ``jax.export.Exported`` of track and init, the folder's manifest), absent on the others.
  exported: 'jax.export.Exported'
  exported_init: 'jax.export.Exported'
  manifest: Dict[str, Any]

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    variables: Dict[str, Any],
    fns: Optional[TrackingFns] = None,
    cast: Optional[bool] = None,
  ):
    self.config = config
    self.core = TrackingCore(
      config, variables, 1, None, True, fns, cast=fns is None if cast is None else cast
    )
    self.variables = self.core.variables
    self.template_size = self.core.template_size
    self.search_size = self.core.search_size
    self.feat_size = self.core.feat_size
    self.template_factor = float(config.tracker.template_factor)
    self.search_factor = float(config.tracker.search_factor)
    self._initialized = False
    self._frames: Optional[host.FrameSizeWatch] = None  # set by initialize
    self.frame_id = 0
    self._last = None
    self._template_crop: Optional[jax.Array] = None
    self.last_timing: Dict[str, float] = {}

  @classmethod
  def from_checkpoint(cls, path: str, config: ml_collections.ConfigDict) -> 'Tracker':
    """A tracker from our checkpoint (.msgpack) or a PyTorch one (converted on the fly)."""
    from ostrack_jax.weights.model_file import load_checkpoint

    return cls(config, load_checkpoint(str(path), config))

  def warmup(self, frame_hw: Sequence[int] = (480, 854)) -> None:
    """Compiles the step for frames of ``frame_hw`` so that timings exclude compilation."""
    self.core.warmup(frame_hw)

  # ---------------------------------------------------------------- state

  @property
  def state(self) -> np.ndarray:
    """Current box, xywh image pixels (float64 copy; waits for the device)."""
    self._check_initialized()
    return self.core.boxes()[0]

  @state.setter
  def state(self, box_xywh):
    self._check_initialized()
    b = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= 0 or b[3] <= 0:
      raise ValueError(
        f'state must be 4 finite numbers x,y,w,h with w, h > 0; got {box_text(box_xywh)}'
      )
    assert self._frames is not None, 'initialize sets it'
    h, w = self._frames.image_hw
    if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
      raise ValueError(f'state {box_text(b)} lies outside the {w}x{h} image')
    self.core.set_box(0, b)

  def _check_initialized(self):
    if not self._initialized:
      raise RuntimeError('the tracker is not initialized: call initialize(frame, box) first')

  # ---------------------------------------------------------------- API

  def initialize(self, frame: np.ndarray, box_xywh: Sequence[float]) -> None:
    """Cuts the template around ``box_xywh`` (xywh image pixels) in the RGB ``frame``."""
    frame = check_frame(frame, 'initialize')
    box = check_init_box(box_xywh, frame.shape[:2])
    self.core.initialize_slot(0, frame, box)
    self._initialized = True
    self._frames = host.FrameSizeWatch(frame.shape[:2])
    self.frame_id = 0
    self._last = None
    self._template_crop = self.core.last_template_crop

  @property
  def last_template_crop(self) -> Optional[np.ndarray]:
    """(T, T, 3) uint8 template crop cut by the last ``initialize`` (on the device)."""
    return None if self._template_crop is None else np.asarray(self._template_crop)

  def track_async(self, frame: np.ndarray) -> jax.Array:
    """Dispatches one RGB frame; returns the new box as a (4,) float32 device array."""
    self._check_initialized()
    assert self._frames is not None, 'initialize sets it'
    frame = self._frames.check(frame, self.frame_id + 1)
    h, w = frame.shape[:2]
    padded = pad_to(frame, bucket_shape(h, w))[None]
    self._last = self.core.step(padded, np.array([[h, w]], np.int32), np.ones(1, bool))
    self.frame_id += 1
    return self._last['boxes'][0]

  def track(self, frame: np.ndarray) -> np.ndarray:
    """Tracks one RGB frame; returns the new box (xywh image pixels, float64 (4,))."""
    t0 = time.perf_counter()
    box_dev = self.track_async(frame)
    t1 = time.perf_counter()
    box = np.asarray(box_dev, np.float64)  # waits for the device
    t2 = time.perf_counter()
    if not np.isfinite(box).all():
      raise FloatingPointError(
        f'frame {self.frame_id}: the network returned a non-finite box (bad checkpoint?)'
      )
    self.last_timing = {
      'preprocess': t1 - t0,
      'model': t2 - t1,
      'postprocess': time.perf_counter() - t2,
    }
    return box

  # ---------------------------------------------------------------- visualisation

  def _removed(self):
    return self._last['removed_indexes']

  @property
  def last_outputs(self) -> Optional[Dict[str, Any]]:
    """The last step's outputs as device arrays, each with a leading slot axis of 1 (see
    :class:`TrackingFns`); nothing is copied until read. Keep a reference to pair a frame with
    its outputs while later frames are dispatched (the pipelined demo does)."""
    return self._last


# ------------------------------------------------------------------------- batched


class BatchTracker:
  """B independent sequences advanced in lockstep: the B-slot :class:`TrackingCore`.

  Each slot holds one sequence; the device step always runs on all B slots (static shapes),
  with inactive slots keeping their state. Slots are (re)initialized independently, so
  sequences of unequal length are handled by starting the next sequence in a slot as soon as
  the previous one ends. ``batch_mode``: 'vmap' (one batched forward; equal to one-at-a-time
  up to float rounding) or 'map' (bit-identical to one-at-a-time).

  Slots are numbered 0 to B - 1. A slot is active from ``initialize(slot, ...)`` until
  ``release(slot)``; ``track`` takes one frame per active slot, or None (the slot skips this
  step and keeps its state), and None for every inactive slot: a frame for a slot that holds
  no sequence (never initialized, or released) is refused. Every refused call (a ValueError
  naming the slot: a slot out of range, a bad frame or box) changes nothing.

  ``devices``: spread the slots over these devices (e.g. ``jax.local_devices()``), B / D
  consecutive slots per device, one program over a mesh (see :class:`TrackingCore`); B must
  be a multiple of their count (a ValueError says so). Default: the tracker's one device.
  """

  def __init__(
    self,
    tracker: Tracker,
    batch_size: int,
    batch_mode: str = 'vmap',
    devices: Optional[Sequence[Any]] = None,
  ):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if batch_mode not in BATCH_MODES:
      raise ValueError(f'batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}')
    self.tracker = tracker
    self.config = tracker.config
    self.batch_mode = batch_mode
    self.batch_size = batch_size
    self.core = TrackingCore(
      tracker.config,
      tracker.variables,
      batch_size,
      batch_mode,
      full_outputs=False,
      cast=False,
      devices=devices,
    )
    self.active = np.zeros(batch_size, bool)
    self.image_hw = np.ones((batch_size, 2), np.int64)
    self.last_timing: Dict[str, float] = {}

  def warmup(self, frame_hw: Sequence[int] = (480, 854)) -> None:
    """Compiles the batched step so that timings exclude compilation."""
    self.core.warmup(frame_hw)

  @property
  def states(self) -> np.ndarray:
    """(B, 4) float64 states, xywh image pixels (waits for the device)."""
    return self.core.boxes()

  def _check_slot(self, slot) -> int:
    """``slot`` as an int in [0, B), or a ValueError naming it and the valid slots."""
    try:
      index = None if isinstance(slot, bool) else operator.index(slot)
    except TypeError:
      index = None
    if index is None or not 0 <= index < self.batch_size:
      shown = index if index is not None else repr(slot)
      raise ValueError(
        f'slot {shown} does not exist: the slots are 0 to {self.batch_size - 1} '
        f'(batch_size {self.batch_size})'
      )
    return index

  def initialize(self, slot: int, frame: np.ndarray, box_xywh: Sequence[float]) -> None:
    """Starts the sequence of ``slot`` from ``box_xywh`` (xywh image pixels) in ``frame``.

    The slot, frame and box are checked before anything changes (ValueError naming them).
    """
    slot = self._check_slot(slot)
    frame = check_frame(frame, f'slot {slot}')
    box = check_init_box(box_xywh, frame.shape[:2], f'slot {slot}')
    self.core.initialize_slot(slot, frame, box)
    self.active[slot] = True
    self.image_hw[slot] = frame.shape[:2]

  def release(self, slot: int) -> None:
    """Marks ``slot`` idle (its sequence ended): it takes None until initialized again."""
    self.active[self._check_slot(slot)] = False

  def track_async(self, frames: Sequence[Optional[np.ndarray]]) -> jax.Array:
    """Dispatches one frame per active slot (None for idle ones); returns (B, 4) device boxes.

    A frame for a slot that holds no sequence raises a ValueError naming the slot, before
    anything is dispatched.
    """
    if len(frames) != self.batch_size:
      raise ValueError(
        f'expected {self.batch_size} frames (None for idle slots), got {len(frames)}'
      )
    for i, f in enumerate(frames):
      if f is not None and not self.active[i]:
        raise ValueError(
          f'slot {i} holds no sequence (never initialized, or released): give None for it, '
          f'or start one with initialize({i}, frame, box)'
        )
    live = np.array([f is not None for f in frames])
    checked = [check_frame(f, f'slot {i}') if live[i] else None for i, f in enumerate(frames)]
    for i, f in enumerate(checked):
      if f is not None:
        self.image_hw[i] = f.shape[:2]
    hb, wb = 64, 64
    for f in checked:
      if f is not None:
        b = bucket_shape(*f.shape[:2])
        hb, wb = max(hb, b[0]), max(wb, b[1])
    batch = np.zeros((self.batch_size, hb, wb, 3), np.uint8)
    for i, f in enumerate(checked):
      if f is not None:
        pad_to(f, (hb, wb), batch[i])
    return self.core.step(batch, self.image_hw.astype(np.int32), live)['boxes']

  def track(self, frames: Sequence[Optional[np.ndarray]]) -> np.ndarray:
    """One frame for every active slot (None for inactive ones); returns (B, 4) states."""
    t0 = time.perf_counter()
    boxes = self.track_async(frames)
    t1 = time.perf_counter()
    out = np.asarray(boxes, np.float64)
    self.last_timing = {
      'preprocess': t1 - t0,
      'model': time.perf_counter() - t1,
      'postprocess': 0.0,
    }
    return out
