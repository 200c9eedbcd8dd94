"""Pieces of the training loop that are not the step: the metric writer (JSONL and
TensorBoard), the per-window step logger, the non-finite monitor and the Ctrl-C watch.
``ostrack_jax.training.trainer`` strings them together."""

import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

LOSS_KEYS = ('Loss/total', 'Loss/giou', 'Loss/l1', 'Loss/location', 'IoU')


# ------------------------------------------------------------------------ metrics


def _summary_writer_class():
  """tensorboardX's ``SummaryWriter``, imported without importing torch.

  tensorboardX imports torch whenever it is installed (to accept torch tensors, which we never
  pass): 1.4-2.4 s and ~180 MB of every training process, torch being installed beside us for the
  weight converter. ``sys.modules['torch'] = None`` makes that import fail for the moment of
  tensorboardX's own import, as if torch were absent; a process that already imported torch
  (or tensorboardX) is left as it is.
  """
  if 'torch' in sys.modules or 'tensorboardX' in sys.modules:
    from tensorboardX import SummaryWriter

    return SummaryWriter
  sys.modules['torch'] = None  # type: ignore[assignment]
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules['torch']
  return SummaryWriter


class MetricWriter:
  """JSONL (``<workdir>/metrics.jsonl``, one object per logged step) and TensorBoard.

  On resume the JSONL is truncated to the restored step, so a killed-and-resumed run's file
  reads like an uninterrupted run's.
  """

  def __init__(self, workdir: str, enabled: bool = True, resume_step: Optional[int] = None):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not enabled:
      return
    if resume_step is not None:
      self._truncate(resume_step)
    elif os.path.exists(self.path):
      os.replace(self.path, self.path + '.old')
    try:
      self._tb = _summary_writer_class()(os.path.join(workdir, 'tensorboard'))
    except ImportError:  # pragma: no cover - tensorboardX is a dependency
      self._tb = None

  def _truncate(self, step: int) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = [line for line in f if line.strip()]
    kept = []
    for line in lines:
      try:
        if json.loads(line).get('step', 0) <= step:
          kept.append(line)
      except json.JSONDecodeError:
        break  # a line cut by the kill
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(kept)
    os.replace(tmp, self.path)

  def write(self, step: int, values: Dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {'step': int(step)}
    record.update(
      {
        k: (float(v) if isinstance(v, (float, np.floating, np.integer, int)) else v)
        for k, v in values.items()
      }
    )
    try:
      with open(self.path, 'a') as f:
        f.write(json.dumps(record) + '\n')
        f.flush()
    except OSError as e:  # a full disk: name the file (a cut line is dropped on --resume)
      if e.filename is not None or e.errno is None:
        raise
      raise OSError(e.errno, e.strerror, self.path) from e
    if self._tb is not None:
      for k, v in record.items():
        if k != 'step' and isinstance(v, float) and math.isfinite(v):
          self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class InterruptWatch:
  """Ctrl-C during training that is never lost.

  Python turns SIGINT into a ``KeyboardInterrupt`` at whatever line the main thread runs. When
  that line is in a finaliser (grain frees each batch's shared memory in
  ``SharedMemoryArray.__del__``, on the main thread), Python prints 'Exception ignored in ...'
  with a traceback and goes on: the run trained on as if Ctrl-C had not been pressed. Within
  ``with InterruptWatch() as watch:`` SIGINT still raises at once, as before, and is also
  remembered; one that a finaliser swallowed prints nothing and is raised by ``watch.check()``
  (the training loop calls it after every step). The handler is installed only from the main
  thread and over Python's default one (a program's own SIGINT handler is left alone).
  """

  def __init__(self):
    self.interrupted = False
    self._previous_handler = None
    self._previous_hook = None

  def __enter__(self) -> 'InterruptWatch':
    if (
      threading.current_thread() is threading.main_thread()
      and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
      self._previous_handler = signal.signal(signal.SIGINT, self._handle)
      self._previous_hook = sys.unraisablehook
      sys.unraisablehook = self._unraisable
    return self

  def _handle(self, signum, frame) -> None:
    self.interrupted = True
    signal.default_int_handler(signum, frame)

  def _unraisable(self, unraisable) -> None:
    if unraisable.exc_type is KeyboardInterrupt:
      self.interrupted = True  # raised by check(): no 'Exception ignored' traceback
    else:
      self._previous_hook(unraisable)

  def check(self) -> None:
    """Raises ``KeyboardInterrupt`` if SIGINT arrived since the watch began."""
    if self.interrupted:
      raise KeyboardInterrupt

  def __exit__(self, *exc_info) -> None:
    if self._previous_handler is not None:
      signal.signal(signal.SIGINT, self._previous_handler)
      sys.unraisablehook = self._previous_hook
      self._previous_handler = None


def mean_metrics(
  per_step: Iterable[Dict[str, Any]], keys: Sequence[str] = LOSS_KEYS
) -> Dict[str, float]:
  """Means over the steps whose loss was finite (the skipped ones are counted separately)."""
  per_step = [m for m in per_step if bool(m['finite'])]
  if not per_step:
    return {k: float('nan') for k in keys}
  return {k: float(np.mean([float(m[k]) for m in per_step])) for k in keys}


class StepLogger:
  """Collects the steps' metrics on the device and fetches them once per logging window (no
  host round-trip per step): means over the window's finite steps, speed, learning rates; to
  the writer, the progress bar and (without a bar) one log line."""

  def __init__(
    self,
    config,
    global_batch: int,
    writer: MetricWriter,
    monitor,
    bar,
    progress: bool,
    log: Callable[[str], None],
  ):
    self.config = config
    self.global_batch = global_batch
    self.writer, self.monitor, self.bar = writer, monitor, bar
    self.progress, self.log = progress, log
    self.pending: List[Tuple[int, int, float, Any]] = []
    self.window_start = time.perf_counter()

  def add(self, step: int, epoch: int, keep: float, metrics: Any) -> None:
    """Records one step's (device) metrics; ``step`` is the count after it."""
    self.pending.append((step, epoch, keep, metrics))

  def flush(self) -> None:
    """Fetches and logs the window's steps (the monitor raises on a run of non-finite steps)."""
    import jax

    from ostrack_jax.training import optim

    if not self.pending:
      return
    fetched = [(s, e, jax.device_get(m)) for s, e, _, m in self.pending]
    step, epoch, keep, _ = self.pending[-1]
    steps = len(self.pending)
    self.pending = []
    for s, e, m in fetched:
      self.monitor.update(s, e, m)
    elapsed = time.perf_counter() - self.window_start
    values = mean_metrics([m for _, _, m in fetched])
    values.update(
      epoch=epoch,
      keep_rate=keep,
      samples_per_s=steps * self.global_batch / elapsed,
      step_time_s=elapsed / steps,
      bad_steps=self.monitor.total,
      grad_norm=float(np.mean([float(m['grad_norm']) for _, _, m in fetched])),
      lr_head=optim.learning_rate_for_epoch(self.config, epoch, optim.HEAD),
      lr_backbone=optim.learning_rate_for_epoch(self.config, epoch, optim.BACKBONE),
    )
    self.writer.write(step, values)
    summary = (
      f"loss {values['Loss/total']:.3f} (giou {values['Loss/giou']:.3f} l1 "
      f"{values['Loss/l1']:.3f} loc {values['Loss/location']:.3f}) IoU {values['IoU']:.3f} "
      f"lr {values['lr_head']:.1e} keep {keep:.3f} {values['samples_per_s']:.1f} samples/s"
    )
    self.bar.set_postfix_str(summary, refresh=False)
    self.bar.update(steps)
    if not self.progress:
      self.log(f'step {step}/{self.bar.total} epoch {epoch} {summary}')
    self.window_start = time.perf_counter()


# ------------------------------------------------------------------------ non-finite steps


class NonFiniteError(RuntimeError):
  """Training stopped because the loss kept being NaN/Inf."""


def culprit(metrics: Dict[str, Any]) -> str:
  """Which part of a step was not finite, in words."""
  parts = [
    f'{k}={float(metrics[k])}'
    for k in ('Loss/giou', 'Loss/l1', 'Loss/location')
    if not math.isfinite(float(metrics[k]))
  ]
  if not bool(metrics.get('boxes_finite', True)):
    parts.append('predicted boxes contain NaN/Inf')
  if not math.isfinite(float(metrics['grad_norm'])):
    parts.append(f'gradient norm={float(metrics["grad_norm"])}')
  return ', '.join(parts) or 'unknown'


class NonFiniteMonitor:
  """Counts skipped (non-finite) steps; raises after ``max_consecutive`` in a row or more than
  ``max_total`` in the run.

  ``last_checkpoint`` (the step of the newest checkpoint written, None before the first; the
  training loop keeps it current) decides the advice: resume from it, or, with none, start
  again with a lower learning rate.
  """

  def __init__(
    self,
    max_total: int,
    max_consecutive: int = 3,
    initial_total: int = 0,
    last_checkpoint: Optional[int] = None,
  ):
    self.max_total = max_total
    self.max_consecutive = max_consecutive
    self.total = initial_total
    self.consecutive = 0
    self.last_checkpoint = last_checkpoint

  def update(self, step: int, epoch: int, metrics: Dict[str, Any]) -> bool:
    """Records the outcome of ``step`` (1-based count after it); returns True if skipped."""
    if bool(metrics['finite']):
      self.consecutive = 0
      return False
    self.total += 1
    self.consecutive += 1
    if self.consecutive >= self.max_consecutive or self.total > self.max_total:
      if self.last_checkpoint is None:
        advice = (
          'No checkpoint was written yet, so there is nothing to resume: start again '
          'with a lower config.train.lr (or check the data).'
        )
      else:
        advice = (
          'Lower config.train.lr or check the data, then --resume from the last '
          f'checkpoint (step {self.last_checkpoint}).'
        )
      raise NonFiniteError(
        f'training stopped at step {step} (epoch {epoch}): the loss is not finite ('
        f'{culprit(metrics)}); {self.consecutive} bad step(s) in a row, {self.total} skipped in '
        f'this run (limit config.train.max_bad_steps={self.max_total}). {advice}'
      )
    return True
