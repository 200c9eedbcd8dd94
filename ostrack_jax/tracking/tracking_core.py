"""The device-resident tracking core: B slots whose states live on the device, one jitted call
per step, and the frame buckets its programs are compiled for.

The host's part per step is to pad the frames to a bucket shape (:func:`bucket_shape`: a handful
of programs covers every resolution, the real size travels as data), upload them and dispatch
the step of :mod:`ostrack_jax.tracking.device_step`; nothing waits for the device unless the
caller reads a result. :class:`ostrack_jax.tracking.tracker.Tracker` (B = 1) and
:class:`~ostrack_jax.tracking.tracker.BatchTracker` (lockstep) are its front ends for users,
:class:`ostrack_jax.tracking.runner.Pipeline` pipelines it over benchmark sequences.
"""

import functools
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ostrack_jax.tracking.device_step import TrackingFns, TrackState, constants, make_tracking_fns

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


# ------------------------------------------------------------------------- the core


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
  :class:`~ostrack_jax.tracking.tracker.Tracker`); more slots per device run ``batch_mode``
  over them ('map': bit-identical to one device; 'vmap': equal up to float rounding).

  Cores with the same static setup (the config's model and tracker sections, batch mode,
  outputs, ``fns``, the weights' tree structure, the devices) share their jitted programs
  (:func:`shared_programs`): a second tracker of a preset, with the same or other weights of
  the same shapes, compiles nothing again.

  Args:
    config: the preset.
    variables: Flax variables (float32; kernels are cast to the compute dtype once).
    batch_size: number of slots B (all devices together).
    batch_mode: None (B = 1), 'vmap' or 'map' (see :func:`make_tracking_fns`).
    full_outputs: also return score maps, crops and eliminated tokens (visualisation).
    fns: prebuilt :class:`TrackingFns` (e.g. an exported program; cores share programs only
      with cores given the same functions); default: built from config.
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
    replicated: Union[None, jax.Device, jax.sharding.Sharding]
    slotted: Union[None, jax.Device, jax.sharding.Sharding]
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
    self.fns, self._track, self._init = shared_programs(
      ProgramSetup(
        ml_collections.FrozenConfigDict({'model': config.model, 'tracker': config.tracker}),
        # One slot per device: the one-slot step (no vmap / map over a single slot).
        None if self.slots_per_device == 1 else batch_mode,
        full_outputs,
        fns,
        treedef,
        self.mesh,
        None if self.mesh is None else self.slots_per_device,
      )
    )
    self._idle_frames: Dict[tuple, List[jax.Array]] = {}  # mesh: idle frames per bucket shape
    t = self.template_size
    self.state = TrackState(
      jax.device_put(np.zeros((batch_size, t, t, 3), np.float32), slotted),
      jax.device_put(np.zeros((batch_size, 4), np.float32), slotted),
    )
    # The last init's crop(s), and the row to read (None: the crop itself).
    self._template_crops: Tuple[Optional[jax.Array], Optional[int]] = (None, None)

  @property
  def last_template_crop(self) -> Optional[jax.Array]:
    """(T, T, 3) uint8 template crop of the last :meth:`initialize_slot`, on its device."""
    crops, row = self._template_crops
    return crops if crops is None or row is None else crops[row]

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
    assert self.devices is not None and isinstance(self._slotted, jax.sharding.Sharding), 'mesh'
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
    """Programs compiled so far for this core's setup (per bucket shape and batch size, init and
    track), by this core and by the cores that share its programs (:func:`shared_programs`)."""
    # ``_cache_size``: jaxlib's private count of a jitted function's programs (untyped in jax).
    return self._track._cache_size() + self._init._cache_size()  # type: ignore[attr-defined]

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


class ProgramSetup(NamedTuple):
  """Everything a core's jitted programs depend on besides their arguments (the weights, the
  constants, the states and the frames are arguments): the key of :func:`shared_programs`.

  sections: the config's ``model`` and ``tracker`` sections (what :func:`make_tracking_fns` reads;
    the dtype, the CE keep ratios, the sizes, the crop factors, the fast-path fields).
  batch_mode: None (one slot per device), 'vmap' or 'map'.
  full_outputs: the step also returns the visualisation outputs.
  fns: prebuilt :class:`TrackingFns` (compared by the identity of their functions), or None:
    built from ``sections``.
  treedef: the variables' tree structure (the step takes their leaves).
  mesh: the devices' mesh (one 'slots' axis; meshes of the same devices in the same order are
    equal), or None (one device, no mesh).
  slots_per_device: the mesh's slots per device (None without a mesh).
  """

  sections: ml_collections.FrozenConfigDict
  batch_mode: Optional[str]
  full_outputs: bool
  fns: Optional[TrackingFns]
  treedef: Any
  mesh: Optional[jax.sharding.Mesh]
  slots_per_device: Optional[int]


@functools.lru_cache(maxsize=16)
def shared_programs(key: ProgramSetup) -> Tuple[TrackingFns, Callable, Callable]:
  """(fns, track, init): the jitted programs of every core with the setup ``key``, the state
  donated; on one device plain ``jax.jit``, over a mesh ONE program each (``jax.shard_map``:
  weights and constants replicated, states and per-slot inputs sharded on the slot axis, no
  communication).

  Cores with the same setup share them (a module-level cache of the 16 most recent setups):
  a second tracker of a preset reuses the first one's traced and compiled programs instead of
  tracing, lowering and compiling (or loading) them again. Nothing of a core's weights is in
  the key: they are arguments, so trackers with other weights of the same shapes share the
  programs and each gets its own boxes.
  """
  fns = key.fns or make_tracking_fns(key.sections, key.batch_mode, key.full_outputs)
  treedef = key.treedef

  def track(leaves, consts, state, frames, hw, active):
    return fns.track(
      jax.tree_util.tree_unflatten(treedef, leaves), consts, state, frames, hw, active
    )

  mesh = key.mesh
  if mesh is None:
    return fns, jax.jit(track, donate_argnums=(2,)), jax.jit(fns.init, donate_argnums=(1,))
  from jax.sharding import NamedSharding, PartitionSpec as P

  assert key.slots_per_device is not None, 'a mesh has its slots per device'
  replicated, slotted = NamedSharding(mesh, P()), NamedSharding(mesh, P('slots'))
  slots = P('slots')
  per_device = jax.shard_map(
    track, mesh=mesh, in_specs=(P(), P(), slots, slots, slots, slots), out_specs=slots
  )
  track_program = jax.jit(
    per_device,
    donate_argnums=(2,),
    in_shardings=(replicated, replicated, slotted, slotted, slotted, slotted),
    out_shardings=slotted,
  )
  init_program = jax.jit(
    jax.shard_map(
      _init_on_slot_device(fns.init, key.slots_per_device),
      mesh=mesh,
      in_specs=(P(), slots, slots, P(), P(), P()),
      out_specs=slots,
    ),
    donate_argnums=(1,),
    in_shardings=(replicated, slotted, slotted, replicated, replicated, replicated),
    out_shardings=slotted,
  )
  return fns, track_program, init_program


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
