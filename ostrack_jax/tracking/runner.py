"""Running the tracker over benchmark sequences: one pipelined loop for B >= 1 slots.

The loop never waits for a box before dispatching the next frame. Per step the host takes the
frames that a thread pool decoded ahead (and, for one slot, padded and uploaded), copies them
in parallel into a reused batch buffer of the step's bucket shape (B > 1), and dispatches one
jitted step of :class:`~ostrack_jax.tracking.core.TrackingCore` (one transfer per step);
the states stay on the device. The boxes of a step are copied back ``lag`` steps
later, in bulk, when the device is long done with them. Which sequence a slot tracks, and which
of its frames, is known on the host in advance (sequence lengths are known), so nothing in the
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
from typing import Callable, Deque, Dict, List, Optional, Sequence as Seq, Tuple

import numpy as np

from ostrack_jax.common.errors import SequenceFailure
from ostrack_jax.tracking import core as core_lib, datasets, host, tracker as tracker_lib


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


def _read(seq: datasets.Sequence, index: int) -> np.ndarray:
  frame = datasets.read_frame(seq.frames[index], seq.name, index)
  return host.check_frame(frame, f'sequence {seq.name!r} frame {index}')


@dataclasses.dataclass
class Frame:
  """A decoded frame: ``image`` (H, W, 3) uint8 RGB on the host and, for a one-slot core,
  ``uploaded``: the frame padded to its bucket as a (1, Hb, Wb, 3) device array, uploaded by
  the thread that decoded it (the loop's thread neither copies nor transfers pixels)."""

  image: np.ndarray
  uploaded: object = None

  @property
  def hw(self) -> Tuple[int, int]:
    return self.image.shape[:2]


def _load(read, seq: datasets.Sequence, index: int, upload: Optional[Callable]) -> Frame:
  image = read(seq, index)
  if upload is None:
    return Frame(image)
  shape = core_lib.bucket_shape(*image.shape[:2])
  padded = core_lib.pad_to(image, shape, np.empty(shape + (3,), np.uint8))
  return Frame(image, upload(padded[None]))


class FrameReader:
  """The frames of one sequence, in order, optionally decoded ``ahead`` frames in advance."""

  def __init__(
    self,
    seq: datasets.Sequence,
    executor: Optional[concurrent.futures.Executor] = None,
    ahead: int = 0,
    read: Optional[Callable[[datasets.Sequence, int], np.ndarray]] = None,
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

  def get(self, index: int) -> Tuple[Frame, float]:
    """(:class:`Frame`, seconds waited). Raises datasets.FrameError/ValueError."""
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


def _fail(seq: datasets.Sequence, index: int, err: Exception) -> SequenceFailure:
  msg = str(err)
  if seq.name not in msg:
    msg = f'sequence {seq.name!r} frame {index}: {msg}'
  return SequenceFailure(seq.name, msg)


@dataclasses.dataclass
class _Run:
  """A sequence in a slot: its reader, the next frame to dispatch, and what came back."""

  seq: datasets.Sequence
  reader: FrameReader
  slot: int
  hw0: Tuple[int, int]
  next_index: int
  boxes: np.ndarray
  times: np.ndarray
  decode_times: np.ndarray
  fetched: int = 1  # rows of ``boxes`` filled (row 0 = the initial box)
  failed: bool = False
  warned: bool = False


def track_pipelined(
  core: 'core_lib.TrackingCore',
  sequences: Seq[datasets.Sequence],
  on_done: Callable[[SequenceRun], None],
  on_failure: Callable[[SequenceFailure], None],
  on_frames: Optional[Callable[[int], None]] = None,
  executor: Optional[concurrent.futures.Executor] = None,
  ahead: int = 0,
  lag: int = 4,
  on_warning: Optional[Callable[[str], None]] = None,
  read: Optional[Callable[[datasets.Sequence, int], np.ndarray]] = None,
) -> None:
  """Tracks ``sequences`` through ``core``'s B slots without waiting for boxes.

  Args:
    core: the tracking core (B = ``core.batch_size`` slots).
    sequences: the sequences, tracked in this order (B at a time).
    on_done: called with each finished :class:`SequenceRun`, in the order they finish.
    on_failure: called with a :class:`SequenceFailure` for each sequence that fails.
    on_frames: called with the number of frames whose boxes came back.
    executor, ahead: a thread pool decoding frames ``ahead`` frames in advance per slot.
    lag: steps in flight before the oldest step's boxes are copied back (>= 1).
    on_warning: called with one-line warnings (default: printed to stderr).
    read: ``read(seq, index) -> (H, W, 3) uint8 RGB`` frame source (default: decode the file,
      :func:`ostrack_jax.tracking.datasets.read_frame`); e.g. frames held in memory.
  """
  b = core.batch_size
  lag = max(1, int(lag))
  warn = on_warning or (lambda m: print(f'warning: {m}', file=sys.stderr))
  queue = collections.deque(sequences)
  slots: List[Optional[_Run]] = [None] * b
  pending: Deque[Tuple[object, List[Tuple[int, _Run, int]], float, float]] = collections.deque()
  image_hw = np.ones((b, 2), np.int32)
  buffers = _Buffers(lag + 2)
  copier = concurrent.futures.ThreadPoolExecutor(min(8, b)) if b > 1 else None

  def fail(run: _Run, index: int, err: Exception) -> None:
    if run.failed:
      return
    run.failed = True
    run.reader.close()
    on_failure(_fail(run.seq, index, err))

  def maybe_finish(run: _Run) -> None:
    if not run.failed and run.fetched == len(run.seq):
      on_done(SequenceRun(run.seq.name, run.boxes, run.times, run.decode_times, run.slot))

  def fetch_oldest() -> None:
    boxes_dev, assigned, step_time, _ = pending.popleft()
    boxes = np.asarray(boxes_dev, np.float64)
    for slot, run, index in assigned:
      if run.failed:
        continue
      box = boxes[slot]
      if not np.isfinite(box).all():
        fail(
          run, index, FloatingPointError('the network returned a non-finite box (bad checkpoint?)')
        )
        for i, r in enumerate(slots):
          if r is run:
            slots[i] = None
        continue
      run.boxes[index] = box
      run.times[index] = step_time
      run.fetched += 1
      maybe_finish(run)
    if on_frames is not None:
      on_frames(len(assigned))

  def start(slot: int) -> None:
    """Fills ``slot`` with the next sequence that initializes (frame 0 + box) without error."""
    while queue:
      seq = queue.popleft()
      reader = FrameReader(seq, executor, ahead, read, upload=core.upload if b == 1 else None)
      n = len(seq)
      run = _Run(seq, reader, slot, (0, 0), 1, np.zeros((n, 4)), np.zeros(n), np.zeros(n))
      try:
        frame, wait = reader.get(0)
        t0 = time.perf_counter()
        box = host.check_init_box(seq.init_box, frame.hw, f'sequence {seq.name!r} frame 0')
        core.initialize_slot(
          slot, frame.image, box, None if frame.uploaded is None else frame.uploaded[0]
        )
      except (datasets.DatasetError, ValueError) as e:
        fail(run, 0, e)
        continue
      run.hw0 = frame.hw
      run.boxes[0] = seq.init_box
      run.decode_times[0] = wait
      run.times[0] = time.perf_counter() - t0
      if on_frames is not None:
        on_frames(1)
      if n == 1:
        maybe_finish(run)
        continue
      reader.prefetch(1)
      slots[slot] = run
      return

  t_prev = time.perf_counter()
  try:
    while True:
      for i in range(b):
        if slots[i] is None or slots[i].failed or slots[i].next_index >= len(slots[i].seq):
          slots[i] = None
          start(i)
      live = [i for i in range(b) if slots[i] is not None]
      if not live:
        break
      frames: Dict[int, Frame] = {}
      decode_wait = 0.0
      for i in live:
        run = slots[i]
        index = run.next_index
        try:
          frame, wait = run.reader.get(index)
        except (datasets.DatasetError, ValueError) as e:
          fail(run, index, e)
          slots[i] = None
          continue
        decode_wait += wait
        if frame.hw != run.hw0 and not run.warned:
          run.warned = True
          warn(
            f'sequence {run.seq.name!r} frame {index} is {frame.hw[1]}x{frame.hw[0]}, '
            f'its first frame {run.hw0[1]}x{run.hw0[0]}; tracked in its own size'
          )
        frames[i] = frame
        run.reader.prefetch(index + 1)
      if not frames:
        continue
      while len(pending) > lag:
        fetch_oldest()
      active = np.zeros(b, bool)
      for i, f in frames.items():
        image_hw[i] = f.hw
        active[i] = True
      batch = _assemble(b, frames, buffers, copier)
      out = core.step(batch, image_hw, active)
      assigned = []
      for i in frames:
        run = slots[i]
        assigned.append((i, run, run.next_index))
        run.decode_times[run.next_index] = decode_wait / len(frames)
        run.next_index += 1
      now = time.perf_counter()
      step_time = max(0.0, (now - t_prev) - decode_wait) / len(frames)
      t_prev = now
      pending.append((out['boxes'], assigned, step_time, now))
    while pending:
      fetch_oldest()
  finally:
    for run in slots:
      if run is not None:
        run.reader.close()
    if copier is not None:
      copier.shutdown(wait=True, cancel_futures=True)


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


def _assemble(
  b: int, frames: Dict[int, Frame], buffers: _Buffers, copier: Optional[concurrent.futures.Executor]
):
  """The step's (B, Hb, Wb, 3) batch: the uploaded frame for one slot; otherwise a reused host
  buffer the frames are copied into in parallel (one transfer per step; idle slots keep stale
  pixels, which their inactive state ignores)."""
  if b == 1:
    (f,) = frames.values()
    return f.uploaded
  hb = max(core_lib.bucket_size(f.hw[0]) for f in frames.values())
  wb = max(core_lib.bucket_size(f.hw[1]) for f in frames.values())
  batch = buffers.get((b, hb, wb, 3))
  copies = [(f.image, batch[i]) for i, f in frames.items()]
  if copier is None:
    for image, out in copies:
      core_lib.pad_to(image, (hb, wb), out)
  else:
    list(copier.map(lambda c: core_lib.pad_to(c[0], (hb, wb), c[1]), copies))
  return batch


def track_sequence(
  tracker: 'tracker_lib.Tracker',
  seq: datasets.Sequence,
  on_frame: Optional[Callable[[], None]] = None,
  executor: Optional[concurrent.futures.Executor] = None,
  ahead: int = 0,
  lag: int = 4,
) -> SequenceRun:
  """Tracks one sequence from its first box (pipelined). Raises SequenceFailure on bad input."""
  done: List[SequenceRun] = []
  failed: List[SequenceFailure] = []
  track_pipelined(
    tracker.core,
    [seq],
    done.append,
    failed.append,
    on_frames=(lambda k: [on_frame() for _ in range(k)]) if on_frame else None,
    executor=executor,
    ahead=ahead,
    lag=lag,
  )
  if failed:
    raise failed[0]
  return done[0]


def track_lockstep(
  batch: 'tracker_lib.BatchTracker',
  sequences: Seq[datasets.Sequence],
  on_done: Callable[[SequenceRun], None],
  on_failure: Callable[[SequenceFailure], None],
  on_frame: Optional[Callable[[int], None]] = None,
  executor: Optional[concurrent.futures.Executor] = None,
  ahead: int = 0,
  lag: int = 4,
) -> None:
  """Tracks ``sequences`` ``batch.batch_size`` at a time in lockstep (see track_pipelined)."""
  track_pipelined(
    batch.core,
    sequences,
    on_done,
    on_failure,
    on_frames=on_frame,
    executor=executor,
    ahead=ahead,
    lag=lag,
  )
