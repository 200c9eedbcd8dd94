"""Pieces of the training loop that are not the step: metric logging, non-finite monitoring,
command-line parsing of config overrides. ``train.py`` strings them together."""

import argparse
import json
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

LOSS_KEYS = ('Loss/total', 'Loss/giou', 'Loss/l1', 'Loss/location', 'IoU')


# ------------------------------------------------------------------------ command line


def parse_args(
  argv: Sequence[str], defaults: Dict[str, Any]
) -> Tuple[argparse.Namespace, List[str]]:
  """Parses train.py's flags; returns (args, overrides as 'a.b=v' strings).

  Overrides are given as ``--config.a.b=v`` or ``--config.a.b v``. Anything else unknown stops
  with a message naming it.
  """
  p = argparse.ArgumentParser(
    prog='train.py',
    description='Train OSTrack (JAX). With no arguments: train the tiny preset on '
    'the synthetic dataset on this machine.',
    epilog='Config overrides: --config.<section>.<field>=<value>, e.g. --config.train.lr=1e-4',
  )
  p.add_argument(
    '--config',
    default=defaults['config'],
    help='preset file (configs/<name>.py) or preset name (default: %(default)s)',
  )
  p.add_argument(
    '--workdir',
    default=None,
    help='run directory: checkpoints, metrics, TensorBoard, model.msgpack '
    '(default: workdirs/<config name>)',
  )
  p.add_argument(
    '--resume',
    action='store_true',
    help='continue from the latest checkpoint in --workdir (required when it has one)',
  )
  p.add_argument(
    '--multihost',
    action='store_true',
    help='call jax.distributed.initialize() first (one process per host). On SLURM, '
    'Open MPI, Kubernetes or Cloud TPU the coordinator and process ids are detected; '
    'elsewhere give --coordinator, --num-processes and --process-id (or set '
    'JAX_COORDINATOR_ADDRESS)',
  )
  p.add_argument(
    '--coordinator',
    default=None,
    metavar='HOST:PORT',
    help='with --multihost: address of process 0 (the same on every process)',
  )
  p.add_argument('--num-processes', type=int, default=None, help='with --multihost')
  p.add_argument('--process-id', type=int, default=None, help='with --multihost: 0 .. N-1')
  p.add_argument('--no-progress', action='store_true', help='no progress bar (log lines instead)')
  args, rest = p.parse_known_args(argv)
  manual = {
    '--coordinator': args.coordinator,
    '--num-processes': args.num_processes,
    '--process-id': args.process_id,
  }
  if not args.multihost and any(v is not None for v in manual.values()):
    p.error(f'{", ".join(k for k, v in manual.items() if v is not None)} only go with --multihost')
  if args.num_processes is not None and args.num_processes < 1:
    p.error(f'--num-processes must be >= 1, got {args.num_processes}')
  if (
    args.process_id is not None
    and args.num_processes is not None
    and not (0 <= args.process_id < args.num_processes)
  ):
    p.error(f'--process-id {args.process_id} not in [0, --num-processes {args.num_processes})')
  overrides, i = [], 0
  while i < len(rest):
    item = rest[i]
    if item.startswith('--config.'):
      if '=' in item:
        overrides.append(item[2 + len('config.') :])
      elif i + 1 < len(rest) and not rest[i + 1].startswith('--'):
        overrides.append(item[2 + len('config.') :] + '=' + rest[i + 1])
        i += 1
      else:
        p.error(f'config override {item} has no value (use {item}=VALUE)')
    else:
      p.error(f'unrecognized argument: {item}')
    i += 1
  return args, overrides


# ------------------------------------------------------------------------ metrics


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
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
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
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
      f.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k != 'step' and isinstance(v, float) and math.isfinite(v):
          self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def mean_metrics(
  per_step: Iterable[Dict[str, Any]], keys: Sequence[str] = LOSS_KEYS
) -> Dict[str, float]:
  """Means over the steps whose loss was finite (the skipped ones are counted separately)."""
  per_step = [m for m in per_step if bool(m['finite'])]
  if not per_step:
    return {k: float('nan') for k in keys}
  return {k: float(np.mean([float(m[k]) for m in per_step])) for k in keys}


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
