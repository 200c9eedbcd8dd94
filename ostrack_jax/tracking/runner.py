"""Running the tracker over benchmark sequences: one pipelined loop for B >= 1 slots.

:class:`Pipeline` never waits for a box before dispatching the next frame. Per step the host
takes the frames that a thread pool decoded ahead (and, for one slot, padded and uploaded),
copies them in parallel into a reused batch buffer of the step's bucket shape (B > 1), and
dispatches one jitted step of :class:`~ostrack_jax.tracking.tracking_core.TrackingCore` (one transfer per
step); the states stay on the device. The boxes of a step are copied back ``lag`` steps later,
in bulk, when the device is long done with them. Which sequence a slot tracks, and which of its
frames, is known on the host in advance (sequence lengths are known), so nothing in the
schedule depends on a box. With ``B = 1`` this is one sequence at a time; with ``B > 1`` it is
lockstep evaluation, a slot taking the next sequence as soon as its sequence ends.

Timing, per frame (seconds; what eval.py reports and writes to ``<seq>_time.txt``):

* ``times``: the tracker's share of the loop's wall time: each step's wall time (from the end
  of the previous dispatch to the end of this one, including the lagged copy of boxes) minus the
  time spent waiting for decoded frames, shared equally among the frames the step advanced.
  In the pipelined steady state this is the per-frame cost of the slowest stage.
* ``decode_times``: time the loop waited for frames the pool had not decoded yet.

The device time of one frame is not observable without waiting for it, so none is recorded;
``benchmarks/track_speed.py`` measures device-only throughput.

Failures (a missing or corrupt frame, a bad initial box, a non-finite box from the network)
are reported through ``on_failure`` with the sequence and frame named; the other sequences go
on. A frame whose size differs from the sequence's first frame is tracked in its own size,
with one warning per sequence through ``on_warning``.
"""

import collections
import concurrent.futures
import dataclasses
import sys
import time
from typing import Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ostrack_jax.common.errors import SequenceFailure
from ostrack_jax.datasets.core import DatasetError, Video
from ostrack_jax.datasets.frames import read_frame
from ostrack_jax.tracking import tracking_core
from ostrack_jax.tracking.host import check_frame, check_init_box


@dataclasses.dataclass
class SequenceRun:
  """Output of one tracked sequence. boxes: (N, 4) xywh image pixels (row 0 = init box);
  ``slot``: the core's slot that tracked it (all its frames; ``core.slot_device(slot)`` is its
  device)."""

  name: str
  boxes: np.ndarray
  times: np.ndarray
  decode_times: np.ndarray
  slot: int = 0


# ------------------------------------------------------------------------- reading frames ahead


def _read(seq: Video, index: int) -> np.ndarray:
  frame = read_frame(seq.frames[index], seq.name, index)
  return check_frame(frame, f'sequence {seq.name!r} frame {index}')


@dataclasses.dataclass
class DecodedFrame:
  """A decoded frame: ``image`` (H, W, 3) uint8 RGB on the host and, for a one-slot core,
  ``uploaded``: the frame padded to its bucket as a (1, Hb, Wb, 3) device array, uploaded by
  the thread that decoded it (the loop's thread neither copies nor transfers pixels)."""

  image: np.ndarray
  uploaded: object = None

  @property
  def hw(self) -> Tuple[int, int]:
    return self.image.shape[:2]


def _load(read, seq: Video, index: int, upload: Optional[Callable]) -> DecodedFrame:
  image = read(seq, index)
  if upload is None:
    return DecodedFrame(image)
  shape = tracking_core.bucket_shape(*image.shape[:2])
  padded = tracking_core.pad_to(image, shape, np.empty(shape + (3,), np.uint8))
  return DecodedFrame(image, upload(padded[None]))


class SequenceFrames:
  """The frames of one sequence, in order, optionally decoded ``ahead`` frames in advance."""

  def __init__(
    self,
    seq: Video,
    executor: Optional[concurrent.futures.Executor] = None,
    ahead: int = 0,
    read: Optional[Callable[[Video, int], np.ndarray]] = None,
    upload: Optional[Callable[[np.ndarray], object]] = None,
  ):
    self.seq = seq
    self.upload = upload
    self.read = read or _read
    self.executor = executor if ahead > 0 else None
    self.ahead = ahead
    self._futures: Dict[int, concurrent.futures.Future] = {}

  def prefetch(self, index: int) -> None:
    """Starts decoding frames ``index .. index + ahead`` (no-op without an executor)."""
    if self.executor is None:
      return
    for j in range(index, min(index + self.ahead + 1, len(self.seq))):
      if j not in self._futures:
        self._futures[j] = self.executor.submit(_load, self.read, self.seq, j, self.upload)

  def get(self, index: int) -> Tuple[DecodedFrame, float]:
    """(:class:`DecodedFrame`, seconds waited). Raises DatasetError/ValueError."""
    t0 = time.perf_counter()
    if self.executor is None:
      frame = _load(self.read, self.seq, index, self.upload)
    else:
      self.prefetch(index)
      frame = self._futures.pop(index).result()
    return frame, time.perf_counter() - t0

  def close(self) -> None:
    for f in self._futures.values():
      f.cancel()
    self._futures.clear()


# ------------------------------------------------------------------------- the pipeline


@dataclasses.dataclass
class _Run:
  """A sequence in a slot: its frames, the next frame to dispatch, and what came back."""

  seq: Video
  frames: SequenceFrames
  slot: int
  hw0: Tuple[int, int]
  next_index: int
  boxes: np.ndarray
  times: np.ndarray
  decode_times: np.ndarray
  fetched: int = 1  # rows of ``boxes`` filled (row 0 = the initial box)
  failed: bool = False
  warned: bool = False


class _Step(NamedTuple):
  """A dispatched step whose boxes have not been copied back yet."""

  boxes: object  # (B, 4) float32 device array
  assigned: List[Tuple[int, _Run, int]]  # (slot, run, frame index) of each frame it advanced
  time: float  # each of those frames' share of the step's wall time (seconds)


class Pipeline:
  """Tracks ``sequences`` through ``core``'s B slots without waiting for boxes; :meth:`run`
  does it (once).

  Args:
    core: the tracking core (B = ``core.batch_size`` slots).
    sequences: the sequences, tracked in this order (B at a time).
    on_done: called with each finished :class:`SequenceRun`, in the order they finish.
    on_failure: called with a :class:`SequenceFailure` for each sequence that fails (an
      exception it raises stops the run).
    on_frames: called with the number of frames whose boxes came back.
    executor, ahead: a thread pool decoding frames ``ahead`` frames in advance per slot.
    lag: steps in flight before the oldest step's boxes are copied back (>= 1).
    on_warning: called with one-line warnings (default: printed to stderr).
    read: ``read(seq, index) -> (H, W, 3) uint8 RGB`` frame source (default: decode the file,
      :func:`ostrack_jax.datasets.frames.read_frame`); e.g. frames held in memory.
  """

  def __init__(
    self,
    core: tracking_core.TrackingCore,
    sequences: Sequence[Video],
    on_done: Callable[[SequenceRun], None],
    on_failure: Callable[[SequenceFailure], None],
    on_frames: Optional[Callable[[int], None]] = None,
    executor: Optional[concurrent.futures.Executor] = None,
    ahead: int = 0,
    lag: int = 4,
    on_warning: Optional[Callable[[str], None]] = None,
    read: Optional[Callable[[Video, int], np.ndarray]] = None,
  ):
    self.core = core
    self.on_done = on_done
    self.on_failure = on_failure
    self.on_frames = on_frames
    self.warn = on_warning or (lambda m: print(f'warning: {m}', file=sys.stderr))
    self.executor = executor
    self.ahead = ahead
    self.read = read
    b = core.batch_size
    self.lag = max(1, int(lag))
    self._queue: Deque[Video] = collections.deque(sequences)
    self._slots: List[Optional[_Run]] = [None] * b  # the sequence each slot tracks
    self._pending: Deque[_Step] = collections.deque()  # dispatched, boxes not copied back
    self._image_hw = np.ones((b, 2), np.int32)  # each slot's last frame size (idle: kept)
    self._buffers = _Buffers(self.lag + 2)
    self._copier = concurrent.futures.ThreadPoolExecutor(min(8, b)) if b > 1 else None
    self._dispatched_at = 0.0  # when the previous step was dispatched (perf_counter)

  def run(self) -> None:
    """Tracks every sequence; returns when each one is done (``on_done``) or failed."""
    self._dispatched_at = time.perf_counter()
    try:
      while live := self._fill_slots():
        frames, decode_wait = self._next_frames(live)
        if frames:
          self._dispatch(frames, decode_wait)
      while self._pending:
        self._collect_oldest()
    finally:
      for run in self._slots:
        if run is not None:
          run.frames.close()
      if self._copier is not None:
        self._copier.shutdown(wait=True, cancel_futures=True)

  def _fill_slots(self) -> List[int]:
    """Starts the next sequences in the slots whose sequence ended, failed or never began;
    returns the slots that hold a sequence (none: every frame has been dispatched)."""
    for i, run in enumerate(self._slots):
      if run is None or run.failed or run.next_index >= len(run.seq):
        self._slots[i] = None
        self._start(i)
    return [i for i, run in enumerate(self._slots) if run is not None]

  def _start(self, slot: int) -> None:
    """Fills ``slot`` with the next sequence that initializes (frame 0 + box) without error."""
    while self._queue:
      seq = self._queue.popleft()
      upload = self.core.upload if self.core.batch_size == 1 else None
      frames = SequenceFrames(seq, self.executor, self.ahead, self.read, upload)
      n = len(seq)
      run = _Run(seq, frames, slot, (0, 0), 1, np.zeros((n, 4)), np.zeros(n), np.zeros(n))
      try:
        frame, wait = frames.get(0)
        t0 = time.perf_counter()
        box = check_init_box(seq.init_box, frame.hw, f'sequence {seq.name!r} frame 0')
        uploaded = None if frame.uploaded is None else frame.uploaded[0]
        self.core.initialize_slot(slot, frame.image, box, uploaded)
      except (DatasetError, ValueError) as e:
        self._fail(run, 0, e)
        continue
      run.hw0 = frame.hw
      run.boxes[0] = seq.init_box
      run.decode_times[0] = wait
      run.times[0] = time.perf_counter() - t0
      if self.on_frames is not None:
        self.on_frames(1)
      if n == 1:
        self._finish_if_complete(run)
        continue
      frames.prefetch(1)
      self._slots[slot] = run
      return

  def _next_frames(self, live: List[int]) -> Tuple[Dict[int, DecodedFrame], float]:
    """The next frame of each slot in ``live`` (a slot whose frame cannot be read fails and is
    emptied), and the seconds waited for them to be decoded."""
    frames: Dict[int, DecodedFrame] = {}
    decode_wait = 0.0
    for i in live:
      run = self._slots[i]
      index = run.next_index
      try:
        frame, wait = run.frames.get(index)
      except (DatasetError, ValueError) as e:
        self._fail(run, index, e)
        self._slots[i] = None
        continue
      decode_wait += wait
      if frame.hw != run.hw0 and not run.warned:
        run.warned = True
        self.warn(
          f'sequence {run.seq.name!r} frame {index} is {frame.hw[1]}x{frame.hw[0]}, '
          f'its first frame {run.hw0[1]}x{run.hw0[0]}; tracked in its own size'
        )
      frames[i] = frame
      run.frames.prefetch(index + 1)
    return frames, decode_wait

  def _dispatch(self, frames: Dict[int, DecodedFrame], decode_wait: float) -> None:
    """Dispatches one step on ``frames`` (slot -> frame), once at most ``lag`` steps are in
    flight, and queues its boxes to be copied back later."""
    while len(self._pending) > self.lag:
      self._collect_oldest()
    # A sequence whose earlier box came back non-finite just now has failed: its frame is dropped.
    frames = {i: f for i, f in frames.items() if self._slots[i] is not None}
    if not frames:
      return
    active = np.zeros(self.core.batch_size, bool)
    for i, f in frames.items():
      self._image_hw[i] = f.hw
      active[i] = True
    out = self.core.step(self._batch(frames), self._image_hw, active)
    assigned = []
    for i in frames:
      run = self._slots[i]
      assigned.append((i, run, run.next_index))
      run.decode_times[run.next_index] = decode_wait / len(frames)
      run.next_index += 1
    now = time.perf_counter()
    step_time = max(0.0, (now - self._dispatched_at) - decode_wait) / len(frames)
    self._dispatched_at = now
    self._pending.append(_Step(out['boxes'], assigned, step_time))

  def _batch(self, frames: Dict[int, DecodedFrame]):
    """The step's (B, Hb, Wb, 3) batch: the uploaded frame for one slot; otherwise a reused
    host buffer the frames are copied into in parallel (one transfer per step; idle slots keep
    stale pixels, which their inactive state ignores)."""
    if self.core.batch_size == 1:
      (f,) = frames.values()
      return f.uploaded
    hb = max(tracking_core.bucket_size(f.hw[0]) for f in frames.values())
    wb = max(tracking_core.bucket_size(f.hw[1]) for f in frames.values())
    batch = self._buffers.get((self.core.batch_size, hb, wb, 3))
    copies = [(f.image, batch[i]) for i, f in frames.items()]
    if self._copier is None:
      for image, out in copies:
        tracking_core.pad_to(image, (hb, wb), out)
    else:
      list(self._copier.map(lambda c: tracking_core.pad_to(c[0], (hb, wb), c[1]), copies))
    return batch

  def _collect_oldest(self) -> None:
    """Copies the oldest step's boxes back (waiting for the device if it is not done) into
    their sequences; a non-finite box fails its sequence and empties its slot."""
    step = self._pending.popleft()
    boxes = np.asarray(step.boxes, np.float64)
    for slot, run, index in step.assigned:
      if run.failed:
        continue
      box = boxes[slot]
      if not np.isfinite(box).all():
        error = FloatingPointError('the network returned a non-finite box (bad checkpoint?)')
        self._fail(run, index, error)
        for i, r in enumerate(self._slots):
          if r is run:
            self._slots[i] = None
        continue
      run.boxes[index] = box
      run.times[index] = step.time
      run.fetched += 1
      self._finish_if_complete(run)
    if self.on_frames is not None:
      self.on_frames(len(step.assigned))

  def _fail(self, run: _Run, index: int, err: Exception) -> None:
    """Reports ``run``'s sequence as failed at frame ``index`` (once) and stops its reading."""
    if run.failed:
      return
    run.failed = True
    run.frames.close()
    msg = str(err)
    if f'sequence {run.seq.name!r}' not in msg:  # (read_frame and check_frame name it so)
      msg = f'sequence {run.seq.name!r} frame {index}: {msg}'
    self.on_failure(SequenceFailure(run.seq.name, msg))

  def _finish_if_complete(self, run: _Run) -> None:
    if not run.failed and run.fetched == len(run.seq):
      self.on_done(SequenceRun(run.seq.name, run.boxes, run.times, run.decode_times, run.slot))


class _Buffers:
  """Reused host batch buffers per bucket shape, ``count`` deep. A buffer is reused only after
  the step that read it has been fetched (the loop keeps at most ``count - 2`` steps in
  flight), so no transfer, and no zero-copy alias on a CPU backend, can see it change."""

  def __init__(self, count: int):
    self.count = count
    self._rings: Dict[tuple, Deque[np.ndarray]] = {}

  def get(self, shape) -> np.ndarray:
    ring = self._rings.setdefault(shape, collections.deque())
    buf = np.zeros(shape, np.uint8) if len(ring) < self.count else ring.popleft()
    ring.append(buf)
    return buf
