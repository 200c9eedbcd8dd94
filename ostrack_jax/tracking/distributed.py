"""Evaluation on every device and every process: which devices a process tracks on, which
sequences each process tracks, and the points where the processes meet.

One process per machine (``eval.py --multihost``: ``jax.distributed``; one process and no
``jax.distributed`` is the ordinary case, where everything here is trivial). Each process
tracks its own share of the sequences on its own devices (a :class:`TrackingCore` over its
local devices: no cross-process work in the tracking itself, so a process never waits for
another between frames) and writes its sequences' result files into the one results folder,
which must be on a file system every process sees. The processes meet three times:

1. :meth:`Processes.agree`: process 0's list of sequences still to track (it alone reads the
   results folder) becomes everyone's; every process must see the same dataset (names and
   frame counts), or all stop with the same message.
2. :meth:`Processes.barrier` after process 0 has written what must exist before any result
   file (a run-level record): no process writes results before that.
3. :meth:`Processes.share` after tracking: everyone's failures, frames per device and speed
   go to process 0, which alone writes the report (and any other shared file).

The waits are barriers of the jax.distributed coordination service (through orbax's
``multihost.get_barrier_sync_fn``, with a timeout); the data are exchanged with
``jax.experimental.multihost_utils.process_allgather`` right after a barrier, so that no
collective waits for a slow process. If a process dies, the others stop within
jax.distributed's heartbeat timeout (100 s); the same command then resumes (a rerun tracks
only the sequences without complete result files, whichever process had them).

The split (:func:`split_by_frames`) is deterministic and balanced by frame count: longest
sequence first onto the least loaded process.
"""

import dataclasses
import hashlib
import heapq
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ostrack_jax.common.errors import InputError

# How long a process waits for the others at a barrier: tracking shares are balanced, but a
# share of long sequences on a slower machine may take hours. A dead process is noticed by
# jax.distributed's heartbeat long before.
BARRIER_TIMEOUT_S = 48 * 3600


def split_by_frames(sequences: Sequence[Any], count: int) -> List[List[Any]]:
  """``sequences`` (each with ``len()`` = its frame count) split into ``count`` shares.

  Greedy, longest first (ties: the earlier sequence) onto the process with the fewest frames
  so far (ties: the lower index); each share keeps the input order. Deterministic: every
  process computes the same split from the same list.
  """
  order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]), i))
  loads = [(0, p) for p in range(count)]
  owner = [0] * len(sequences)
  for i in order:
    load, p = heapq.heappop(loads)
    owner[i] = p
    heapq.heappush(loads, (load + len(sequences[i]), p))
  return [[s for s, o in zip(sequences, owner, strict=True) if o == p] for p in range(count)]


def local_devices(count: Optional[int]) -> List[Any]:
  """The first ``count`` of this process's devices (None: all of them); InputError when it has
  fewer."""
  import jax

  devices = jax.local_devices()
  if count is None:
    return devices
  if count < 1:
    raise InputError(f'--devices must be >= 1, got {count}')
  if count > len(devices):
    raise InputError(
      f'--devices {count}: this process has {len(devices)} device(s) '
      f'({devices[0].platform}); give at most {len(devices)}'
    )
  return devices[:count]


def slots_for(batch_size: Optional[int], num_devices: int) -> int:
  """The lockstep slots of an evaluation: ``batch_size`` rounded up to a multiple of the device
  count (None: one per device). Rounding up never puts more slots on a device than
  ``batch_size`` would put on one device, and the extra slots track sequences like the others."""
  if batch_size is None:
    return num_devices
  return -(-batch_size // num_devices) * num_devices


def fingerprint(sequences: Sequence[Any]) -> str:
  """A short hash of the dataset as a process sees it: names and frame counts, in order."""
  text = '\n'.join(f'{s.name}\t{len(s)}' for s in sequences)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Processes:
  """This process's place among the evaluation's processes (``index`` of ``count``)."""

  index: int = 0
  count: int = 1
  _barriers: int = 0

  @classmethod
  def current(cls) -> 'Processes':
    """From jax.distributed when it is initialized (``eval.py --multihost``), else one process.
    JAX is not imported here when nothing imported it yet."""
    if 'jax' not in sys.modules:
      return cls()
    import jax

    if not jax.distributed.is_initialized():
      return cls()
    return cls(jax.process_index(), jax.process_count())

  @property
  def is_main(self) -> bool:
    """Process 0: the one that reads the results folder's state and writes shared files."""
    return self.index == 0

  def barrier(self, name: str) -> None:
    """Waits until every process has reached the barrier ``name`` (no-op for one process)."""
    if self.count == 1:
      return
    from orbax.checkpoint import multihost

    self._barriers += 1
    sync = multihost.get_barrier_sync_fn()
    sync(key=f'ostrack_jax_eval_{self._barriers}_{name}', timeout_ms=BARRIER_TIMEOUT_S * 1000)

  def share(self, name: str, value: Any) -> List[Any]:
    """Every process's ``value`` (JSON-serialisable), in process order, on every process."""
    if self.count == 1:
      return [value]
    from jax.experimental import multihost_utils

    self.barrier(name)
    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([data.size], np.int64))
    width = 1 << max(10, int(sizes.max() - 1).bit_length())  # few distinct shapes to compile
    padded = np.zeros(width, np.uint8)
    padded[: data.size] = data
    rows = multihost_utils.process_allgather(padded)
    return [
      json.loads(bytes(row[: int(n)])) for row, n in zip(rows, sizes.reshape(-1), strict=True)
    ]

  def agree(
    self, sequences: Sequence[Any], todo: Sequence[Any], refusal: Optional[str] = None
  ) -> List[Any]:
    """Process 0's ``todo`` (the sequences to track; the others pass anything) as everyone's
    list, after checking that every process sees the same ``sequences``. ``refusal``: process
    0's reason not to track (its results folder belongs to another producer), raised as an
    ``InputError`` on every process, so that none waits for the others."""
    if self.count == 1:
      if refusal:
        raise InputError(refusal)
      return list(todo)
    mine = {'dataset': fingerprint(sequences), 'sequences': len(sequences)}
    if self.is_main:
      mine['todo'] = [s.name for s in todo]
      mine['refusal'] = refusal
    views = self.share('agree', mine)
    if views[0]['refusal']:
      raise InputError(views[0]['refusal'])
    differ = [p for p, v in enumerate(views) if v['dataset'] != views[0]['dataset']]
    if differ:
      raise InputError(
        f'process(es) {", ".join(map(str, differ))} see a different dataset than process 0 '
        f'({", ".join(str(v["sequences"]) for v in views)} sequences per process): every '
        'process must read the same --data-dir contents'
      )
    by_name = {s.name: s for s in sequences}
    return [by_name[n] for n in views[0]['todo']]

  def mine(self, todo: Sequence[Any]) -> List[Any]:
    """This process's share of ``todo`` (:func:`split_by_frames`)."""
    return split_by_frames(todo, self.count)[self.index]


def combine(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """The run-level record from every process's part: ``failures`` (sequence -> message),
  ``frames_per_device`` (frames this process tracked per device, in ``jax.local_devices()``
  order) and ``speed`` (``report.speed_summary`` of its runs, None when it tracked nothing).

  Returns ``placement`` (``devices`` that tracked, all processes together, ``processes``,
  ``frames_per_device`` in process order), the merged ``failures`` and ``speed``: None for
  one process (the report computes it from the runs), else the frames of all processes and
  the frames/s summed over the processes that tracked (they track at the same time)."""
  placement = {
    'devices': sum(len(p['frames_per_device']) for p in parts),
    'processes': len(parts),
    'frames_per_device': [n for p in parts for n in p['frames_per_device']],
  }
  failures: Dict[str, str] = {}
  for p in parts:
    failures.update(p['failures'])
  speeds = [p['speed'] for p in parts if p['speed']]
  speed = None
  if len(parts) > 1 and speeds:

    def total(key):
      rates = [s[key] for s in speeds if s[key]]
      return sum(rates) if rates else None

    speed = {
      'source': f'this run, {len(parts)} processes',
      'frames': sum(s['frames'] for s in speeds),
      'tracker_fps': total('tracker_fps'),
      'end_to_end_fps': total('end_to_end_fps'),
    }
  return {'placement': placement, 'failures': failures, 'speed': speed}
