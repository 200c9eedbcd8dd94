"""Running the tracker over benchmark sequences: one at a time or N in lockstep.

Timing, per frame (seconds):

* ``times``: the tracker's own time (``initialize`` for frame 0, ``track`` after), from after
  the image is decoded to the new box on the host: what the original writes to
  ``<seq>_time.txt`` and divides into its FPS.
* ``model_times``: the device step alone (host-to-device copy of the crop, the forward with
  window and decode, and the copy back), 0 for frame 0.
* ``decode_times``: time spent waiting for the image file to be read and decoded. Frames can be
  decoded ahead on a thread pool (``executor`` + ``ahead``; OpenCV releases the GIL), in which
  case only the wait that was not hidden behind tracking is counted.

Model-only FPS = frames / sum(model_times); end-to-end FPS = frames / sum(decode + times),
i.e. the wall time of the loop. In lockstep, one step's time is shared equally among the
sequences it advanced.

A sequence with a bad frame (missing, corrupt) or a bad initial box raises
:class:`SequenceFailure` (one-at-a-time) or is reported through ``on_failure`` (lockstep); the
other sequences go on.
"""

import concurrent.futures
import dataclasses
import time
from typing import Callable, Dict, List, Optional, Sequence as Seq

import numpy as np

from ostrack_jax.tracking import datasets
from ostrack_jax.tracking import tracker as tracker_lib


class SequenceFailure(RuntimeError):
  """A sequence that could not be tracked; the message names the sequence, frame and problem."""

  def __init__(self, name: str, message: str):
    super().__init__(message)
    self.name = name


@dataclasses.dataclass
class SequenceRun:
  """Output of one tracked sequence. boxes: (N, 4) xywh image pixels (row 0 = init box)."""
  name: str
  boxes: np.ndarray
  times: np.ndarray
  model_times: np.ndarray
  decode_times: np.ndarray


def _read(seq: datasets.Sequence, index: int) -> np.ndarray:
  return datasets.read_frame(seq.frames[index], seq.name, index)


class FrameReader:
  """The frames of one sequence, in order, optionally decoded ``ahead`` frames in advance."""

  def __init__(self, seq: datasets.Sequence,
               executor: Optional[concurrent.futures.Executor] = None, ahead: int = 0):
    self.seq = seq
    self.executor = executor if ahead > 0 else None
    self.ahead = ahead
    self._futures: Dict[int, concurrent.futures.Future] = {}

  def get(self, index: int):
    """(frame (H, W, 3) uint8 RGB, seconds waited). Raises datasets.FrameError."""
    t0 = time.perf_counter()
    if self.executor is None:
      frame = _read(self.seq, index)
      return frame, time.perf_counter() - t0
    for j in range(index, min(index + self.ahead + 1, len(self.seq))):
      if j not in self._futures:
        self._futures[j] = self.executor.submit(_read, self.seq, j)
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


def track_sequence(tracker: tracker_lib.Tracker, seq: datasets.Sequence,
                   on_frame: Optional[Callable[[], None]] = None,
                   executor: Optional[concurrent.futures.Executor] = None,
                   ahead: int = 0) -> SequenceRun:
  """Tracks one sequence from its first box. Raises SequenceFailure on bad input."""
  n = len(seq)
  boxes = np.zeros((n, 4))
  times, model_times, decode_times = np.zeros(n), np.zeros(n), np.zeros(n)
  reader = FrameReader(seq, executor, ahead)
  try:
    for i in range(n):
      try:
        frame, decode_times[i] = reader.get(i)
        t1 = time.perf_counter()
        if i == 0:
          tracker.initialize(frame, tracker_lib.check_init_box(
              seq.init_box, frame.shape[:2], f'sequence {seq.name!r} frame 0'))
          boxes[0] = seq.init_box
        else:
          boxes[i] = tracker.track(frame)
          model_times[i] = tracker.last_timing['model']
      except (datasets.DatasetError, ValueError, FloatingPointError) as e:
        raise _fail(seq, i, e) from e
      times[i] = time.perf_counter() - t1
      if on_frame is not None:
        on_frame()
  finally:
    reader.close()
  return SequenceRun(seq.name, boxes, times, model_times, decode_times)


@dataclasses.dataclass
class _Slot:
  seq: datasets.Sequence
  reader: FrameReader
  index: int
  boxes: np.ndarray
  times: np.ndarray
  model_times: np.ndarray
  decode_times: np.ndarray


def track_lockstep(batch: tracker_lib.BatchTracker, sequences: Seq[datasets.Sequence],
                   on_done: Callable[[SequenceRun], None],
                   on_failure: Callable[[SequenceFailure], None],
                   on_frame: Optional[Callable[[int], None]] = None,
                   executor: Optional[concurrent.futures.Executor] = None,
                   ahead: int = 0) -> None:
  """Tracks ``sequences`` ``batch.batch_size`` at a time, in lockstep, one jitted call per step.

  A slot whose sequence ends (or fails) takes the next sequence at once, so unequal lengths
  keep the batch full until the queue runs dry. Finished sequences go to ``on_done`` as soon as
  they end; failures to ``on_failure``. ``on_frame(k)`` is called with the number of frames
  processed in each step.
  """
  queue = list(sequences)
  slots: List[Optional[_Slot]] = [None] * batch.batch_size

  def finish(i):
    s = slots[i]
    slots[i] = None
    s.reader.close()
    batch.release(i)
    on_done(SequenceRun(s.seq.name, s.boxes, s.times, s.model_times, s.decode_times))

  def fill(i):
    while queue:
      seq = queue.pop(0)
      n = len(seq)
      reader = FrameReader(seq, executor, ahead)
      try:
        frame, wait = reader.get(0)
        t1 = time.perf_counter()
        batch.initialize(i, frame, tracker_lib.check_init_box(
            seq.init_box, frame.shape[:2], f'sequence {seq.name!r} frame 0'))
      except (datasets.DatasetError, ValueError) as e:
        reader.close()
        on_failure(_fail(seq, 0, e))
        continue
      t2 = time.perf_counter()
      slot = _Slot(seq, reader, 1, np.zeros((n, 4)), np.zeros(n), np.zeros(n), np.zeros(n))
      slot.boxes[0] = seq.init_box
      slot.decode_times[0], slot.times[0] = wait, t2 - t1
      slots[i] = slot
      if on_frame is not None:
        on_frame(1)
      if n == 1:
        finish(i)
        continue
      return

  while True:
    for i in range(batch.batch_size):
      if slots[i] is None:
        fill(i)
    if all(s is None for s in slots):
      return
    frames = [None] * batch.batch_size
    decode = np.zeros(batch.batch_size)
    for i, s in enumerate(slots):
      if s is None:
        continue
      try:
        frames[i], decode[i] = s.reader.get(s.index)
      except datasets.DatasetError as e:
        slots[i] = None
        s.reader.close()
        batch.release(i)
        on_failure(_fail(s.seq, s.index, e))
        continue
    live = [i for i, f in enumerate(frames) if f is not None]
    if not live:
      continue
    t0 = time.perf_counter()
    states = batch.track(frames)
    step_time = (time.perf_counter() - t0) / len(live)
    model_time = batch.last_timing['model'] / len(live)
    for i in live:
      s = slots[i]
      if not np.isfinite(states[i]).all():
        slots[i] = None
        s.reader.close()
        batch.release(i)
        on_failure(SequenceFailure(s.seq.name, f'sequence {s.seq.name!r} frame {s.index}: the '
                                   'network returned a non-finite box (bad checkpoint?)'))
        continue
      s.boxes[s.index] = states[i]
      s.times[s.index] = step_time
      s.model_times[s.index] = model_time
      s.decode_times[s.index] = decode[i]
      s.index += 1
      if s.index == len(s.seq):
        finish(i)
    if on_frame is not None:
      on_frame(len(live))
