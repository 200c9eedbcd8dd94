"""The grain input pipeline: sample indices -> pairs (in worker processes) -> numpy batches.

No JAX import here: the trainer passes ``jax.process_index()`` / ``jax.process_count()`` in as
plain ints.

Data order contract. The stream is a sequence of *global* sample indices 0, 1, 2, ...
(``samples_per_epoch`` per epoch). Sample ``k`` is ``PairSampler(k)``, a pure function of
``(config.data.seed, k)``. Global batch ``b`` holds samples ``[b * G, (b + 1) * G)`` with
``G = batch_size * process_count``; process ``p`` gets samples ``p, p + P, p + 2P, ...`` of it, so
the union over processes of batch ``b`` is the same set on any number of hosts, and on one
process a batch is the same with 0, 1 or N workers. The sources are mixed by ratio *inside*
the sampler (one draw per attempt, from the per-sample RNG) rather than with
``MapDataset.mix``: the original re-draws the dataset too when a sample is invalid, which a
per-source mix cannot do.

Resuming: the iterator returned by :func:`make_train_iterator` is a ``grain.DatasetIterator``
whose state (saved with ``grain.checkpoint.CheckpointSave(iterator)`` inside an orbax
checkpoint, restored with ``grain.checkpoint.CheckpointRestore(new_iterator)``) gives the
identical next batches. The state records the *data contract* (worker count, batch size,
process layout, seed, datasets and their sizes); restoring into an iterator built with a
different contract raises :class:`ResumeMismatchError` naming the differing fields, since grain
cannot map the position of one worker layout onto another.

Usage from the trainer::

  it = pipeline.make_train_iterator(config, process_index=jax.process_index(),
                                    process_count=jax.process_count(),
                                    batch_size=per_process_batch)
  batch = next(it)  # dict of numpy arrays:
  # template (B, 128, 128, 3) float32, search (B, 256, 256, 3) float32 (normalized RGB, NHWC),
  # template_anno, search_anno (B, 4) float32 normalized xywh in the crops,
  # heatmap (B, 16, 16, 1) float32 (the label: transforms.gaussian_heatmap of search_anno),
  # dataset_index (B,) int32, attempts (B,) int32.
"""

import gc
import os
import signal
import threading
import time
from typing import Any, Dict, Optional, Sequence

import grain
import numpy as np

from ostrack_jax.data import sampler as sampler_lib


class ResumeMismatchError(ValueError):
  """A saved iterator state that does not belong to this pipeline configuration."""


def _allow_multiprocess_flags() -> None:
  """grain 0.2.18 reads absl flags in mp_prefetch; mark them parsed when no app did."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class _ExitWithParent:
  """grain ``worker_init_fn``: a worker process ends as soon as the process that started it is gone.

  grain starts its workers with 'spawn' as daemonic processes, which only a parent that exits
  normally terminates; after a SIGKILL (an OOM kill, a pre-empted cluster job) they were
  reparented to init and lived on with their memory. Each worker therefore exits when its parent
  pid changes: checked once at start (the parent may already be dead) and then by a thread every
  ``POLL_S``. Not ``prctl(PR_SET_PDEATHSIG)``: that fires when the *thread* that started the
  worker ends, and grain starts workers from its prefetch threads, which it stops and restarts
  (``set_state``) while the worker is to live on. multiprocessing's resource tracker exits, and
  unlinks the shared memory left behind, once the workers are gone.

  Workers also ignore SIGINT, from birth: Ctrl-C in a terminal reaches the whole process group,
  and each worker printed a KeyboardInterrupt traceback while the main process was stopping
  them anyway (it handles the interrupt and closes the iterator). A worker is a new
  interpreter (spawn) that imports for seconds before ``worker_init_fn`` runs, so ignoring
  SIGINT there left that window open; but a process inherits its signal mask through fork and
  exec. grain pickles this object in the thread that starts the worker, just before starting
  it, so pickling blocks SIGINT in that thread (a grain thread, which has no use for SIGINT:
  Python runs signal handlers in the main thread only); the worker starts with SIGINT blocked,
  and ``__call__`` turns that into ignored (which drops one that arrived meanwhile).
  """

  POLL_S = 0.25

  def __init__(self):
    self.parent_pid = os.getpid()

  def __getstate__(self):
    # grain pickles this in the thread that spawns the worker, just before spawning it.
    if threading.current_thread() is not threading.main_thread():
      signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return {'parent_pid': os.getpid()}

  def __call__(self, worker_index: int, worker_count: int) -> None:
    del worker_index, worker_count
    if os.getppid() != self.parent_pid:
      os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards a pending one
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=self._watch, name='exit-with-parent', daemon=True).start()

  def _watch(self) -> None:
    while os.getppid() == self.parent_pid:
      time.sleep(self.POLL_S)
    os._exit(1)


def _wait_for_shared_memory_unlinks() -> None:
  """Waits until grain's deletion thread has unlinked the shared memory of the batch arrays
  deleted so far (grain 0.2.18 keeps the thread pool in a class attribute)."""
  from grain._src.python.ipc import shared_memory_array

  pool = getattr(shared_memory_array.SharedMemoryArray, '_del_thread_pool', None)
  if pool is not None:
    pool.apply(int)  # one thread, first in first out: runs after the queued unlinks


class DataIterator(grain.DatasetIterator):
  """A grain iterator whose checkpointable state carries the data-order contract."""

  def __init__(self, inner: grain.DatasetIterator, contract: Dict[str, Any]):
    super().__init__(inner)
    self._inner = inner
    self.contract = contract

  def __next__(self) -> Dict[str, np.ndarray]:
    return next(self._inner)

  def close(self) -> None:
    """Stops the worker processes and frees the shared memory of the batches they buffered.

    A batch from a worker lives in shared memory that the main process unlinks when the last
    array of it is deleted, on a grain thread. After grain's close, the batch its stopped
    prefetch thread was holding is only reachable from a reference cycle, and the unlinks
    still queued on that thread are dropped at interpreter exit: multiprocessing's resource
    tracker then unlinked them itself, warning 'There appear to be 7 leaked shared_memory
    objects' (one per array of a batch) at the end of every train.py run with workers. So
    the cycle is collected and the queued unlinks waited for here.
    """
    self._inner.close()
    if self.contract['num_workers']:
      gc.collect()
      _wait_for_shared_memory_unlinks()

  def get_state(self) -> Dict[str, Any]:
    return {'contract': self.contract, 'grain': self._inner.get_state()}

  def set_state(self, state: Dict[str, Any]) -> None:
    saved = state.get('contract')
    if saved is None or 'grain' not in state:
      raise ResumeMismatchError(
        'the saved data-iterator state was not written by '
        'ostrack_jax.data.pipeline (no data contract in it)'
      )
    if saved != self.contract:
      diffs = [
        f'{k}: saved {saved.get(k)!r}, now {self.contract.get(k)!r}'
        for k in sorted(set(saved) | set(self.contract))
        if saved.get(k) != self.contract.get(k)
      ]
      raise ResumeMismatchError(
        'cannot resume the data iterator: the data pipeline differs from the checkpoint\'s ('
        + '; '.join(diffs)
        + '). Resume with the saved values (e.g. '
        '--config.data.num_workers=%s) so that the batches continue exactly.'
        % saved.get('num_workers')
      )
    self._inner.set_state(state['grain'])


def build_dataset(
  sampler: sampler_lib.PairSampler,
  *,
  num_samples: int,
  batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.MapDataset:
  """MapDataset of this process's batches: range -> shard -> sample -> batch."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, {process_count})')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  ds = grain.MapDataset.range(num_samples)
  ds = ds[process_index::process_count]
  ds = ds.map(sampler)
  return ds.batch(batch_size, drop_remainder=True)


def make_iterator(
  sampler: sampler_lib.PairSampler,
  *,
  num_samples: int,
  batch_size: int,
  num_workers: int = 0,
  process_index: int = 0,
  process_count: int = 1,
  num_threads: Optional[int] = None,
  prefetch_batches: int = 2,
  contract: Optional[Dict[str, Any]] = None,
) -> DataIterator:
  """A checkpointable iterator of numpy batch dicts over ``num_samples`` global samples.

  Args:
    sampler: the pair sampler (pickled into each worker process).
    num_samples: global samples in the stream (all epochs); the iterator stops after the last
      full batch of this process.
    batch_size: per-process batch size (the global batch is batch_size * process_count).
    num_workers: grain worker processes (0 = decode in this process, with threads).
    process_index, process_count: this host's slice (``jax.process_index()`` / ``count()``).
    num_threads: reader threads per worker (default 1 with workers, 4 without).
    prefetch_batches: batches buffered per worker.
    contract: extra fields for the resume contract.
  """
  ds = build_dataset(
    sampler,
    num_samples=num_samples,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )
  threads = num_threads if num_threads is not None else (1 if num_workers else 4)
  it_ds = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2, threads * 2))
  )
  if num_workers > 0:
    _allow_multiprocess_flags()
    it_ds = it_ds.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=num_workers, per_worker_buffer_size=prefetch_batches
      ),
      worker_init_fn=_ExitWithParent(),
    )
  full_contract = dict(
    num_workers=int(num_workers),
    batch_size=int(batch_size),
    process_index=int(process_index),
    process_count=int(process_count),
    num_samples=int(num_samples),
    seed=sampler.seed,
    train=sampler.train,
    datasets=[s.name for s in sampler.sources],
    sequences=[len(s.sequences) for s in sampler.sources],
    ratios=[float(p) for p in sampler.probabilities],
  )
  full_contract.update(contract or {})
  return DataIterator(iter(it_ds), full_contract)


def make_train_iterator(
  config,
  *,
  process_index: int = 0,
  process_count: int = 1,
  batch_size: Optional[int] = None,
  num_workers: Optional[int] = None,
  num_epochs: Optional[int] = None,
  train: bool = True,
  sources: Optional[Sequence] = None,
) -> DataIterator:
  """The trainer's entry point: an iterator of this process's batches for ``config``.

  Args:
    config: a full config (``config.data``, ``config.model``, ``config.train``).
    process_index, process_count: plain ints (``jax.process_index()``, ``jax.process_count()``).
    batch_size: per-process batch; default ``config.train.batch_size`` (per device) is *not*
      multiplied by the local device count here, so pass the per-process batch explicitly
      for multi-device hosts.
    num_workers: default ``config.data.num_workers``.
    num_epochs: epochs of ``samples_per_epoch`` samples in the stream (default
      ``config.train.epochs``); batches cross epoch boundaries when the epoch size is not a
      multiple of the global batch.
    train: the training datasets and augmentation, or the validation ones
      (``val_datasets``, ``val_samples_per_epoch``, no brightness / per-crop flip).
    sources: prebuilt sources (tests); default from the config.

  Returns:
    A :class:`DataIterator` (see the module docstring for the batch layout and resume rules).
  """
  sampler = sampler_lib.make_sampler(config, train=train, sources=sources)
  per_epoch = int(config.data.samples_per_epoch if train else config.data.val_samples_per_epoch)
  epochs = int(config.train.epochs if num_epochs is None else num_epochs)
  return make_iterator(
    sampler,
    num_samples=per_epoch * epochs,
    batch_size=int(config.train.batch_size if batch_size is None else batch_size),
    num_workers=int(config.data.num_workers if num_workers is None else num_workers),
    process_index=process_index,
    process_count=process_count,
    contract=dict(samples_per_epoch=per_epoch),
  )
