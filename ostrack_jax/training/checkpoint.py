"""Orbax checkpoints of a training run: train state, data-iterator state and the run's config.

Layout: ``<workdir>/checkpoints/<step>/{state, data, meta}`` (orbax ``CheckpointManager``; a
step directory appears only once completely written, so a run killed mid-save leaves the
previous checkpoint intact). ``state`` is the :class:`~ostrack_jax.training.state.TrainState`
(model, optimiser, step, RNG, bad-step count); ``data`` is the grain iterator state (its
position and the data-order contract, see ``ostrack_jax.data.pipeline``); ``meta`` holds the
full config and the device/process layout as JSON.

Resume is explicit. :func:`check_resume_config` compares the saved config with the current one
and raises :class:`ResumeConfigError` naming every differing field, except the fields listed in
:data:`RESUME_MUTABLE_FIELDS` (logging, checkpoint cadence, dataset paths), which may change.
"""

import json
import os
import re
import shutil
import threading
from typing import Any, Dict, Iterable, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from ostrack_jax.common import logfilter
from ostrack_jax.common.errors import InputError

CHECKPOINT_DIR = 'checkpoints'

# Fields that do not affect the computation and may differ on resume.
RESUME_MUTABLE_FIELDS = (
  'train.log_every_steps',
  'train.checkpoint_every_steps',
  'train.keep_checkpoints',
  'train.val_every_epochs',
  'train.max_bad_steps',
  'train.pretrained',
  'train.max_steps',
  'data.roots.',
  'data.packed_dir',
  'data.split_files.',
)


class ResumeConfigError(InputError):
  """The checkpoint was written by a run with a different configuration."""


def _flatten(d: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = list(v) if isinstance(v, (tuple, list)) else v
  return out


def config_differences(
  saved: Dict[str, Any], current: Dict[str, Any], mutable: Iterable[str] = RESUME_MUTABLE_FIELDS
):
  """['key: saved X, now Y', ...] over the flattened configs, ignoring ``mutable`` prefixes."""
  a, b = _flatten(saved), _flatten(current)
  diffs = []
  for key in sorted(set(a) | set(b)):
    if any(key == m or (m.endswith('.') and key.startswith(m)) for m in mutable):
      continue
    if a.get(key, '<absent>') != b.get(key, '<absent>'):
      diffs.append(f'{key}: checkpoint {a.get(key, "<absent>")!r}, now {b.get(key, "<absent>")!r}')
  return diffs


def _write_arrays_from_one_replica_per_process() -> None:
  """Registers orbax's jax.Array handler with replica-parallel writing only across processes.

  Replica-parallel writing (orbax's default) splits each replicated array into slices that
  different replicas write. Within one process one writer writes them all anyway, and the slicing
  costs one small compiled program per array, shape and replica count: ~120 programs at the
  first save of the small test model (2.6 s of its 2.8 s on a 2-core CPU with 2 devices; later
  saves 0.76 -> 0.58 s). Across processes (jax.distributed) it shares the writing between hosts,
  so it stays on there. The registration is orbax's global jax.Array handler (its public
  ``register_type_handler``), so it also applies to other orbax saves in this process.

  The handler keeps the array-metadata store of the one orbax registers by default (the
  ``array_metadatas/`` a checkpoint holds); orbax exports no public name for it, so it is taken
  from the registered handler (None if a future orbax moves it: no metadata files, the arrays
  are saved and restored as before).
  """
  registered = ocp.type_handlers.get_type_handler(jax.Array)
  # orbax logs a warning (through absl) on every override; this one is deliberate, so that
  # record is dropped rather than shown at the start of every training run.
  with logfilter.dropping(
    ['absl'], lambda record: record.getMessage().startswith('Type handler registry type ')
  ):
    ocp.type_handlers.register_type_handler(
      jax.Array,
      ocp.type_handlers.ArrayHandler(
        use_replica_parallel=jax.process_count() > 1,
        array_metadata_store=getattr(registered, '_array_metadata_store', None),
      ),
      override=True,
    )


# TensorStore (orbax's array writer) reports a failed write as a ValueError whose text holds
# the file and the OS error code: 'Error writing local file "<path>": ... [os_error_code='28']'.
_TENSORSTORE_FILE = re.compile(r'local file "([^"]+)"')
_TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='(\d+)'")


def _is_writer_thread_failure(record) -> bool:
  return '_SignalingThread.run() raised an exception' in record.getMessage()


def _os_error_in(error: BaseException, directory: str) -> Optional[OSError]:
  """The OS error behind a failed orbax save (an ``OSError`` in the exception's chain, or the
  one TensorStore's message names), or None when it was something else."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError):
      return error
    code = _TENSORSTORE_OS_ERROR.search(str(error))
    if code:
      path = _TENSORSTORE_FILE.search(str(error))
      code = int(code.group(1))
      return OSError(code, os.strerror(code), path.group(1) if path else directory)
    error = error.__cause__ or error.__context__
  return None


def _join_writer_threads(timeout_s: float = 60.0) -> None:
  """Waits for orbax's writer threads (``_SignalingThread``) still running.

  A save raises with the first writer that failed, while the others may still run: under load
  they failed after the save had returned, printing their tracebacks past the log filter, and
  could write into the unfinished step folder after it was removed. orbax exports no handle on
  them, so they are found by their private class (nothing is waited for if it moves).
  """
  try:
    from orbax.checkpoint._src.futures import future
  except ImportError:  # pragma: no cover - a future orbax
    return
  writer_class = getattr(future, '_SignalingThread', None)
  if writer_class is None:  # pragma: no cover - a future orbax
    return
  for thread in threading.enumerate():
    if isinstance(thread, writer_class) and thread is not threading.current_thread():
      try:
        thread.join(timeout_s)  # orbax's join raises the thread's own error
      except Exception:  # the save's error, already being raised, is the one reported
        pass


class CheckpointManager:
  """Saves and restores (train state, data iterator, meta) under ``<workdir>/checkpoints``."""

  def __init__(self, workdir: str, keep: int = 3):
    _write_arrays_from_one_replica_per_process()
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False
      ),
      item_names=('state', 'data', 'meta'),
    )

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any, meta: Dict[str, Any]) -> None:
    """Writes checkpoint ``step`` (synchronously, atomically) and prunes to the last K.

    A write that fails (a full disk, a lost permission) raises the ``OSError`` behind it
    (naming the file where known) and leaves no partial step folder.
    """
    import grain

    args = {'state': ocp.args.StandardSave(state), 'meta': ocp.args.JsonSave(meta)}
    if data_iterator is not None:
      args['data'] = grain.checkpoint.CheckpointSave(data_iterator)
    try:
      # orbax also logs each failing writer thread's exception with its traceback; the
      # error is raised here (and named in one line by the commands), so those records go.
      with logfilter.dropping(['absl'], _is_writer_thread_failure):
        try:
          self._manager.save(int(step), args=ocp.args.Composite(**args), force=True)
          self._manager.wait_until_finished()
        except Exception:
          _join_writer_threads()
          raise
    except Exception as e:
      # The unfinished step folder is never a checkpoint (orbax renames it when complete);
      # it is removed so that nothing half-written stays behind.
      for name in os.listdir(self.directory):
        if name.startswith(f'{int(step)}.orbax-checkpoint-tmp'):
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
      os_error = _os_error_in(e, self.directory)
      if os_error is None:
        raise
      raise os_error from e

  def read_meta(self, step: Optional[int] = None) -> Dict[str, Any]:
    step = self.latest_step() if step is None else step
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def restore(self, abstract_state: Any, data_iterator: Any, step: Optional[int] = None):
    """Restores the state (onto the shardings of ``abstract_state``) and the iterator in place."""
    import grain

    step = self.latest_step() if step is None else step
    args = {'state': ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    return restored['state']

  def close(self) -> None:
    self._manager.close()


def make_meta(
  config: ml_collections.ConfigDict, num_devices: int, num_processes: int
) -> Dict[str, Any]:
  return {
    'config': json.loads(config.to_json()),
    'num_devices': int(num_devices),
    'num_processes': int(num_processes),
    'jax_version': jax.__version__,
  }


def check_resume_config(
  meta: Dict[str, Any],
  config: ml_collections.ConfigDict,
  num_devices: int,
  num_processes: int,
  checkpoint_dir: str,
) -> None:
  """Raises ResumeConfigError when the run cannot continue the checkpoint exactly."""
  diffs = config_differences(meta['config'], json.loads(config.to_json()))
  if meta.get('num_devices') != num_devices:
    diffs.append(
      f'device count: checkpoint {meta.get("num_devices")}, now {num_devices} '
      '(the global batch and the data order depend on it)'
    )
  if meta.get('num_processes') != num_processes:
    diffs.append(f'process count: checkpoint {meta.get("num_processes")}, now {num_processes}')
  if diffs:
    raise ResumeConfigError(
      f'cannot resume from {checkpoint_dir}: this run differs from the checkpoint\'s run in\n  '
      + '\n  '.join(diffs)
      + '\nRun with the checkpoint\'s settings, or start a fresh run in another --workdir.'
    )
