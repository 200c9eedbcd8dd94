"""The OSTrack inference tracker (as the original tracks at test time): one device-resident core
for B >= 1 slots.

Per frame, inside ONE jitted step (:func:`make_tracking_fns`), on the device: the search crop
around the previous state with the original's arithmetic (``device_crop``: crop side, rounding,
zero padding, the border off-by-one, OpenCV's INTER_LINEAR uint8 resize, pixel-exact), the
ImageNet normalisation (an exact lookup table), the network, the centered Hann window, the
decode at the windowed peak, the map back to the image and the clip. The host uploads the
frame (uint8, padded to a bucket shape so that a handful of programs covers every resolution;
the real size travels as data) and dispatches; the states stay on the device
(:class:`TrackState`). :class:`Tracker` is the B = 1 core, :class:`BatchTracker` the lockstep
one; ``ostrack_jax.tracking.runner`` pipelines either over benchmark sequences.

Coordinates: boxes in and out are ``xywh`` in image pixels (floats). The network's box is
``cxcywh`` normalized to the search crop. States are float32 on the device (the original
computes in float64; tests/test_device_crop.py bounds the difference).

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

:func:`map_box_back`, :func:`clip_box` and :func:`boxes_to_image` (in
:mod:`ostrack_jax.tracking.host`, re-exported here) are the float64 host reference of the
device arithmetic (:func:`boxes_to_image_device`), used by the ONNX tracker, tests and
baselines.
"""

import operator
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ostrack_jax.geometry.boxes import box_text
from ostrack_jax.tracking import host
from ostrack_jax.tracking.host import (  # noqa: F401  (re-exported: the tracker's API)
  CLIP_MARGIN,
  MIN_FRAME_SIDE,
  LastOutputs,
  boxes_to_image,
  check_frame,
  check_init_box,
  clip_box,
  hann_window,
  map_box_back,
  normalization_table,
)

# ------------------------------------------------------------------------- constants


def normalize_uint8(images, table):
  """uint8 (..., 3) images -> float32 ImageNet-normalized, via :func:`normalization_table`."""
  idx = images.astype(jnp.int32) * 3 + jnp.arange(3, dtype=jnp.int32)
  return table[idx]


# ------------------------------------------------------------------------- frame buckets


def bucket_size(n: int) -> int:
  """Frame side rounded up to a bucket: 64, then 4 steps per octave (..., 384, 448, 512, 640,
  768, 896, 1024, 1280, ...). At most 25% padding per side; a handful of programs covers the
  common benchmark resolutions (854x480 -> 896x512, 1280x720 -> 1280x768, 1920x1080 ->
  2048x1280, 640x360 -> 640x384)."""
  n = int(n)
  if n <= 64:
    return 64
  step = 1 << max((n - 1).bit_length() - 3, 3)
  return -(-n // step) * step


def bucket_shape(height: int, width: int):
  """(Hb, Wb) bucket of an (height, width) frame."""
  return bucket_size(height), bucket_size(width)


def pad_to(frame: np.ndarray, shape, out: Optional[np.ndarray] = None) -> np.ndarray:
  """(H, W, 3) uint8 frame copied to the top left of an ``shape`` = (Hb, Wb) array.

  The rest is left as it is (uninitialised for a new array): the device crop never reads
  outside the frame's real height and width.
  """
  h, w = frame.shape[:2]
  if out is None:
    out = np.empty((shape[0], shape[1], 3), np.uint8)
  out[:h, :w] = frame
  return out


# ------------------------------------------------------------------------- device step


BATCH_MODES = ('vmap', 'map')


class TrackState(NamedTuple):
  """What the tracker carries between frames, on the device, for B slots.

  templates: (B, T, T, 3) float32 ImageNet-normalized template crops.
  boxes: (B, 4) float32 xywh image pixels (the state the next search crop is cut around).
  """

  templates: jax.Array
  boxes: jax.Array


def constants(config: ml_collections.ConfigDict) -> Dict[str, np.ndarray]:
  """The step's constant inputs: the normalization table and the (F, F) Hann window."""
  f = int(config.model.search_size) // int(config.model.patch_size)
  return {'table': normalization_table(), 'window': hann_window(f)}


def boxes_to_image_device(
  pred_cxcywh_norm, prev_xywh, side, resize_factor, image_hw, search_size: int
):
  """Device twin of :func:`boxes_to_image` in float32: scale, map back, clip.

  Args:
    pred_cxcywh_norm: (..., 4) float32 cxcywh normalized to the search crop.
    prev_xywh: (..., 4) float32 state the crop was cut around.
    side: (...,) int32 crop side in image pixels; resize_factor: (...,) ``S / side``.
    image_hw: (..., 2) int32 image height and width.
  Returns:
    (..., 4) float32 xywh image pixels. The original does the map-back in float64; float32
    moves boxes by at most a few 1e-5 px (tests/test_tracker.py measures it).
  """
  pred_px = (pred_cxcywh_norm * jnp.float32(search_size)) / resize_factor[..., None]
  half = jnp.float32(0.5) * side.astype(jnp.float32)
  cx_prev = prev_xywh[..., 0] + jnp.float32(0.5) * prev_xywh[..., 2]
  cy_prev = prev_xywh[..., 1] + jnp.float32(0.5) * prev_xywh[..., 3]
  cx = pred_px[..., 0] + (cx_prev - half)
  cy = pred_px[..., 1] + (cy_prev - half)
  w, h = pred_px[..., 2], pred_px[..., 3]
  x1, y1 = cx - jnp.float32(0.5) * w, cy - jnp.float32(0.5) * h
  height = image_hw[..., 0].astype(jnp.float32)
  width = image_hw[..., 1].astype(jnp.float32)
  m = jnp.float32(CLIP_MARGIN)
  x2, y2 = x1 + w, y1 + h  # corners of the UNCLAMPED box (the original's order)
  x1 = jnp.minimum(jnp.maximum(0.0, x1), width - m)
  x2 = jnp.minimum(jnp.maximum(m, x2), width)
  y1 = jnp.minimum(jnp.maximum(0.0, y1), height - m)
  y2 = jnp.minimum(jnp.maximum(m, y2), height)
  return jnp.stack([x1, y1, jnp.maximum(m, x2 - x1), jnp.maximum(m, y2 - y1)], axis=-1)


class TrackingFns(NamedTuple):
  """Pure functions of one preset (not jitted; :class:`TrackingCore` jits them).

  init(consts, state, frame (Hb, Wb, 3) uint8, hw (2,) int32, box (4,) float32, slot int32)
      -> (state with slot ``slot`` holding the template cut around ``box`` and the box,
      the (T, T, 3) uint8 template crop).
  track(variables, consts, state, frames (B, Hb, Wb, 3) uint8, hw (B, 2) int32, active (B,)
      bool) -> (state, outputs). ``outputs['boxes']`` (B, 4) float32 xywh are the new states
      (inactive slots keep theirs). With ``full_outputs``: also ``pred_boxes`` (B, 4) cxcywh
      normalized, ``score_map`` and ``response`` (B, F, F) (raw and Hann-windowed),
      ``removed_indexes`` (list of (B, n_i) int32 per CE layer), ``search_crop`` (B, S, S, 3)
      uint8, ``crop_box_xyxy`` (B, 4) int32 and ``resize_factor`` (B,) float32.
  """

  init: Callable
  track: Callable


def make_tracking_fns(
  config: ml_collections.ConfigDict, batch_mode: Optional[str] = None, full_outputs: bool = True
) -> TrackingFns:
  """The tracker's per-frame work as pure functions over explicit pytrees.

  Per slot and frame, on the device: the search crop around the state (the original's
  arithmetic, :mod:`ostrack_jax.geometry.device_crop`), ImageNet normalisation (exact lookup
  table), the network, the Hann window, the decode at the windowed peak, the map back to the
  image and the clip. ``batch_mode``: None runs the B = 1 network on slot 0 (B must be 1);
  'vmap' runs the slots as one batched forward (the throughput mode; equal to one at a time up
  to float rounding); 'map' runs them one by one with ``jax.lax.map`` (bit-identical to B = 1).
  """
  from ostrack_jax.geometry import device_crop
  from ostrack_jax.models.head import decode_box
  from ostrack_jax.models.ostrack import build_model

  if batch_mode is not None and batch_mode not in BATCH_MODES:
    raise ValueError(f'batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}')
  model = build_model(config)
  t_size = int(config.model.template_size)
  s_size = int(config.model.search_size)
  t_factor = float(config.tracker.template_factor)
  s_factor = float(config.tracker.search_factor)

  def init(consts, state, frame, hw, box, slot):
    # Trace-time checks (no cost per call): shapes and dtypes of the explicit pytrees.
    chex.assert_shape(frame, (None, None, 3))
    chex.assert_type(frame, jnp.uint8)
    chex.assert_shape([hw, box], [(2,), (4,)])
    chex.assert_shape(state.templates, (None, t_size, t_size, 3))
    crop, _ = device_crop.sample_target(frame, hw, box, t_factor, t_size)
    template = normalize_uint8(crop, consts['table'])
    return TrackState(
      jax.lax.dynamic_update_index_in_dim(state.templates, template, slot, axis=0),
      jax.lax.dynamic_update_index_in_dim(state.boxes, box.astype(jnp.float32), slot, axis=0),
    ), crop

  def one(variables, consts, template, box, frame, hw):
    """One slot: (T, T, 3), (4,), (Hb, Wb, 3), (2,) -> (new box (4,), extras)."""
    crop, g = device_crop.sample_target(frame, hw, box, s_factor, s_size)
    search = normalize_uint8(crop, consts['table'])
    out = model.apply(variables, template[None], search[None], keep_ratio=None, train=False)
    score = out['score_map'][..., 0]
    response = consts['window'][None] * score
    pred = decode_box(response[..., None], out['size_map'], out['offset_map'])[0]
    new_box = boxes_to_image_device(pred, box, g.side, g.resize_factor, hw, s_size)
    extras = {}
    if full_outputs:
      extras = {
        'pred_boxes': pred,
        'score_map': score[0],
        'response': response[0],
        'removed_indexes': [r[0] for r in out['removed_indexes']],
        'search_crop': crop,
        'resize_factor': g.resize_factor,
        'crop_box_xyxy': jnp.stack([g.x1, g.y1, g.x1 + g.side, g.y1 + g.side]),
      }
    return new_box, extras

  def track(variables, consts, state, frames, hw, active):
    b = state.boxes.shape[0]
    chex.assert_shape(frames, (b, None, None, 3))
    chex.assert_type(frames, jnp.uint8)
    chex.assert_shape(
      [state.templates, state.boxes, hw, active], [(b, t_size, t_size, 3), (b, 4), (b, 2), (b,)]
    )
    if batch_mode is None:
      if state.boxes.shape[0] != 1:
        raise ValueError('batch_mode=None tracks one slot; use vmap or map for more')
      new_box, extras = one(variables, consts, state.templates[0], state.boxes[0], frames[0], hw[0])
      new_boxes = new_box[None]
      extras = jax.tree_util.tree_map(lambda x: x[None], extras)
    elif batch_mode == 'vmap':
      new_boxes, extras = jax.vmap(one, in_axes=(None, None, 0, 0, 0, 0))(
        variables, consts, state.templates, state.boxes, frames, hw
      )
    else:
      new_boxes, extras = jax.lax.map(
        lambda a: one(variables, consts, *a), (state.templates, state.boxes, frames, hw)
      )
    boxes = jnp.where(active[:, None], new_boxes, state.boxes)
    return TrackState(state.templates, boxes), dict(extras, boxes=boxes)

  return TrackingFns(init, track)


class TrackingCore:
  """B tracker slots whose states live on the device; one jitted call per step.

  The host's part per step is to upload the frames (uint8, padded to a bucket shape, see
  :func:`bucket_shape`) and dispatch; nothing waits for the device unless the caller reads
  a result. The variables are flattened once: the compiled step is called with their leaves,
  not re-flattened from the nested dict on every frame.

  Several devices (``devices``, D > 1): the B slots are spread over a 1-D mesh ``('slots',)``,
  B / D consecutive slots per device (slot ``s`` on ``devices[s // (B / D)]``). The states,
  the frame batch, the heights and widths and the active mask are sharded on their slot axis
  (``NamedSharding(mesh, P('slots'))``), the weights and constants replicated, and the step is
  ONE program (``jax.shard_map``): every device runs the one-device step on its own slots, with
  no communication between devices; each frame is uploaded to the device of its slot only.
  A slot's template is cut on its own device. B must be a multiple of D (refused otherwise).
  A core with one slot per device runs the one-slot step on each (bit-identical to
  :class:`Tracker`); more slots per device run ``batch_mode`` over them ('map':
  bit-identical to one device; 'vmap': equal up to float rounding).

  Args:
    config: the preset.
    variables: Flax variables (float32; kernels are cast to the compute dtype once).
    batch_size: number of slots B (all devices together).
    batch_mode: None (B = 1), 'vmap' or 'map' (see :func:`make_tracking_fns`).
    full_outputs: also return score maps, crops and eliminated tokens (visualisation).
    fns: prebuilt :class:`TrackingFns` (e.g. an exported program); default: built from config.
    devices: the devices to track on (``jax.Device`` objects, each used once; all must belong
      to this process); None: JAX's default device, as a plain one-device core.
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    variables: Dict[str, Any],
    batch_size: int = 1,
    batch_mode: Optional[str] = None,
    full_outputs: bool = True,
    fns: Optional[TrackingFns] = None,
    cast: bool = True,
    devices: Optional[Sequence[Any]] = None,
  ):
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    if batch_mode is None and batch_size != 1:
      batch_mode = 'vmap'
    self.devices = check_devices(devices, batch_size)
    self.config = config
    self.batch_size = batch_size
    self.batch_mode = batch_mode
    self.slots_per_device = batch_size // (len(self.devices) if self.devices else 1)
    m = config.model
    self.template_size = int(m.template_size)
    self.search_size = int(m.search_size)
    self.feat_size = self.search_size // int(m.patch_size)
    if cast:  # bfloat16 kernels cast once, not on every frame
      from ostrack_jax.models.ostrack import cast_kernels, compute_dtype

      variables = cast_kernels(variables, compute_dtype(config))
    # Where things live: None = JAX's default device (uncommitted, as a plain one-device core),
    # a device, or the mesh's shardings (replicated weights, slot-sharded states and inputs).
    self.mesh = None
    replicated = slotted = None if self.devices is None else self.devices[0]
    if self.devices is not None and len(self.devices) > 1:
      from jax.sharding import NamedSharding, PartitionSpec

      self.mesh = jax.sharding.Mesh(np.array(self.devices), ('slots',))
      replicated = NamedSharding(self.mesh, PartitionSpec())
      slotted = NamedSharding(self.mesh, PartitionSpec('slots'))
    self._slotted, self._replicated = slotted, replicated
    self.variables = jax.device_put(variables, replicated)
    leaves, treedef = jax.tree_util.tree_flatten(self.variables)
    self._leaves = tuple(leaves)
    self.consts = jax.device_put(constants(config), replicated)
    # One slot per device: the one-slot step (no vmap / map over a single slot).
    fns = fns or make_tracking_fns(
      config, None if self.slots_per_device == 1 else batch_mode, full_outputs
    )
    self.fns = fns

    def track(leaves, consts, state, frames, hw, active):
      return fns.track(
        jax.tree_util.tree_unflatten(treedef, leaves), consts, state, frames, hw, active
      )

    if self.mesh is None:
      self._track = jax.jit(track, donate_argnums=(2,))
      self._init = jax.jit(fns.init, donate_argnums=(1,))
    else:
      from jax.sharding import PartitionSpec as P

      slots = P('slots')
      per_device = jax.shard_map(
        track, mesh=self.mesh, in_specs=(P(), P(), slots, slots, slots, slots), out_specs=slots
      )
      self._track = jax.jit(
        per_device,
        donate_argnums=(2,),
        in_shardings=(replicated, replicated, slotted, slotted, slotted, slotted),
        out_shardings=slotted,
      )
      self._init = jax.jit(
        jax.shard_map(
          _init_on_slot_device(fns.init, self.slots_per_device),
          mesh=self.mesh,
          in_specs=(P(), slots, slots, P(), P(), P()),
          out_specs=slots,
        ),
        donate_argnums=(1,),
        in_shardings=(replicated, slotted, slotted, replicated, replicated, replicated),
        out_shardings=slotted,
      )
      self._idle_frames: Dict[tuple, List[jax.Array]] = {}
    t = self.template_size
    self.state = TrackState(
      jax.device_put(np.zeros((batch_size, t, t, 3), np.float32), slotted),
      jax.device_put(np.zeros((batch_size, 4), np.float32), slotted),
    )
    self._template_crops = (None, None)  # the last init's crop(s), and the row to read

  @property
  def last_template_crop(self) -> Optional[jax.Array]:
    """(T, T, 3) uint8 template crop of the last :meth:`initialize_slot`, on its device."""
    crops, row = self._template_crops
    return crops if row is None else crops[row]

  def upload(self, frames_padded: np.ndarray) -> jax.Array:
    """A (B, Hb, Wb, 3) uint8 host batch on the core's device(s), each frame on its slot's."""
    return jax.device_put(frames_padded, self._slotted)

  def slot_device(self, slot: int) -> int:
    """Index in ``devices`` of the device that tracks ``slot`` (0 without ``devices``)."""
    return slot // self.slots_per_device

  # ---------------------------------------------------------------- steps

  def initialize_slot(
    self, slot: int, frame: np.ndarray, box_xywh: np.ndarray, padded=None
  ) -> None:
    """Cuts slot ``slot``'s template around ``box_xywh`` in the checked RGB ``frame`` (async).

    ``padded``: the frame already padded to its bucket (host or device), if at hand.
    """
    h, w = frame.shape[:2]
    if padded is None:
      padded = pad_to(frame, bucket_shape(h, w))
    hw = np.array([h, w], np.int32)
    box = np.asarray(box_xywh, np.float32)
    if self.mesh is None:
      self.state, crop = self._init(self.consts, self.state, padded, hw, box, np.int32(slot))
      self._template_crops = (crop, None)
      return
    # The frame goes to its slot's device only; the others get an idle frame of the bucket's
    # shape (made once, on the device), the one program's input on the devices not cutting.
    d = self.slot_device(slot)
    shape = tuple(padded.shape[:2])
    if shape not in self._idle_frames:
      idle = np.zeros((1, *shape, 3), np.uint8)
      self._idle_frames[shape] = [jax.device_put(idle, device) for device in self.devices]
    parts = list(self._idle_frames[shape])
    parts[d] = jax.device_put(padded[None], self.devices[d])
    frames = jax.make_array_from_single_device_arrays(
      (len(self.devices), *shape, 3), self._slotted, parts
    )
    where = jax.device_put((hw, box, np.int32(slot)), self._replicated)
    self.state, crops = self._init(self.consts, self.state, frames, *where)
    self._template_crops = (crops, d)  # (D, T, T, 3): row d is the crop (read when asked)

  def step(self, frames_padded, hw: np.ndarray, active: np.ndarray) -> Dict[str, Any]:
    """Dispatches one step; returns the outputs as device arrays (nothing waits).

    Args:
      frames_padded: (B, Hb, Wb, 3) uint8 (NumPy or device), each frame at the top left.
      hw: (B, 2) int32 real heights and widths; active: (B,) bool (others keep their state).
    """
    inputs = (frames_padded, np.asarray(hw, np.int32), np.asarray(active, bool))
    if self.mesh is not None:  # each slot's rows to its device (jit takes no sharded NumPy
      inputs = jax.device_put(inputs, self._slotted)  # input under jax.distributed)
    self.state, out = self._track(self._leaves, self.consts, self.state, *inputs)
    return out

  def boxes(self) -> np.ndarray:
    """(B, 4) float64 copy of the slots' states, xywh image pixels (waits for the device)."""
    return np.asarray(self.state.boxes, np.float64)

  def set_box(self, slot: int, box_xywh) -> None:
    """Overwrites one slot's state (the template is kept)."""
    boxes = np.asarray(self.state.boxes).copy()
    boxes[slot] = np.asarray(box_xywh, np.float32)
    self.state = TrackState(self.state.templates, jax.device_put(boxes, self._slotted))

  def compilations(self) -> int:
    """Programs compiled so far (per bucket shape, init and track)."""
    return self._track._cache_size() + self._init._cache_size()

  def warmup(self, frame_hw: Sequence[int] = (480, 854)) -> None:
    """Compiles the step and the initialisation for frames of ``frame_hw`` (height, width)."""
    h, w = frame_hw
    hb, wb = bucket_shape(h, w)
    b = self.batch_size
    frame = np.zeros((h, w, 3), np.uint8)
    saved = self.state
    self.state = TrackState(saved.templates.copy(), saved.boxes.copy())
    # The argument kinds of the pipelined runner (one slot: frames uploaded by the decode
    # threads; more: a host batch), so that its calls hit the same cache entries.
    batch = np.zeros((b, hb, wb, 3), np.uint8)
    padded = jax.device_put(batch[0], self._slotted) if b == 1 else None
    self.initialize_slot(0, frame, np.array([w / 4, h / 4, w / 4, h / 4]), padded)
    out = self.step(
      self.upload(batch) if b == 1 else batch, np.tile([h, w], (b, 1)), np.ones(b, bool)
    )
    jax.block_until_ready(out['boxes'])
    self.state = saved


def check_devices(devices: Optional[Sequence[Any]], batch_size: int) -> Optional[List[Any]]:
  """``devices`` as a list (None stays None); raises ValueError for an empty list, a device
  named twice, one of another process, or a ``batch_size`` that is not a multiple of their
  count."""
  if devices is None:
    return None
  devices = list(devices)
  if not devices:
    raise ValueError('devices is empty')
  if len(set(devices)) != len(devices):
    raise ValueError(f'devices names a device twice: {devices}')
  foreign = [d for d in devices if d.process_index != jax.process_index()]
  if foreign:
    raise ValueError(f'devices {foreign} belong to another process')
  if batch_size % len(devices):
    raise ValueError(
      f'batch_size {batch_size} does not divide over {len(devices)} devices '
      f'(give a multiple of {len(devices)}, or fewer devices)'
    )
  return devices


def _init_on_slot_device(init: Callable, slots_per_device: int) -> Callable:
  """``init`` as every device runs it under ``shard_map`` (one program over the mesh): the
  device holding the global ``slot`` cuts the template from its frame into its part of the
  state; the others run the same cut on their idle frame and keep their state.

  (consts, state (B / D slots), frames (1, Hb, Wb, 3), hw (2,), box (4,), slot) ->
  (state, crop (1, T, T, 3)).
  """

  def run(consts, state, frames, hw, box, slot):
    local = slot - jax.lax.axis_index('slots') * slots_per_device
    here = (local >= 0) & (local < slots_per_device)
    new, crop = init(consts, state, frames[0], hw, box, jnp.clip(local, 0, slots_per_device - 1))
    kept = jax.tree_util.tree_map(lambda n, o: jnp.where(here, n, o), new, state)
    return kept, crop[None]

  return run


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
  the returned device array later; this is what the evaluation pipeline does).

  ``tracker.state`` (xywh, image pixels) can be read and set between frames (e.g. a user
  correcting the box; a box outside the image is rejected). After each ``track`` the last
  frame's raw and windowed score maps (``last_score_map``, ``last_response``, (F, F)), the
  search tokens eliminated by candidate elimination (``last_removed_indexes``, one int array
  per CE layer), the search crop (``last_search_crop``), its placement
  (``last_crop_box_xyxy``) and ``last_resize_factor`` are available (fetched on reading).
  ``last_timing`` holds the seconds spent on the host before the dispatch ('preprocess'), in
  the device step including the wait for the box ('model'), and after ('postprocess').
  """

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
    self._image_hw = None
    self._size_warned = False
    self.frame_id = 0
    self._last = None
    self._template_crop = None
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
    h, w = self._image_hw
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
    self._image_hw = frame.shape[:2]
    self._size_warned = False
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
    frame = check_frame(frame, f'frame {self.frame_id + 1}')
    h, w = frame.shape[:2]
    self._size_warned = host.note_frame_size(
      self._image_hw, (h, w), self.frame_id + 1, self._size_warned
    )
    self._image_hw = (h, w)
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
