"""The training loop's helpers (flags: tests/test_cli.py): the JSONL writer's resume truncation, the
non-finite monitor (isolated bad steps skipped and counted; a run of them stops training with the
step and the culprit), and the resume config check."""

import json
import pathlib
import subprocess
import sys

import pytest

from ostrack_jax.configs import get_config
from ostrack_jax.training import checkpoint, loop

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def test_metric_writer_truncates_to_the_resumed_step(tmp_path):
  w = loop.MetricWriter(str(tmp_path))
  for s in (1, 2, 3, 4):
    w.write(s, {'Loss/total': float(s)})
  w.close()
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 5, "Loss/tot')  # a line cut by SIGKILL
  w = loop.MetricWriter(str(tmp_path), resume_step=2)
  w.write(3, {'Loss/total': 30.0})
  w.close()
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [(r['step'], r['Loss/total']) for r in rows] == [(1, 1.0), (2, 2.0), (3, 30.0)]


_TENSORBOARD_CHECK = """
import struct, sys
from ostrack_jax.training import loop, trainer
w = loop.MetricWriter(sys.argv[1])
w.write(7, {'Loss/total': 1.5})
w.close()
assert 'torch' not in sys.modules, 'training imported torch'
from tensorboardX.proto import event_pb2
import pathlib
(path,) = pathlib.Path(sys.argv[1], 'tensorboard').glob('events.out.tfevents.*')
data, scalars = path.read_bytes(), []
while data:  # TFRecord: length (8 bytes), its CRC (4), the Event, its CRC (4)
  (n,) = struct.unpack('<Q', data[:8])
  event = event_pb2.Event.FromString(data[12 : 12 + n])
  scalars += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
  data = data[16 + n :]
print(scalars)
"""


@pytest.mark.slow  # a fresh interpreter importing the trainer (JAX, orbax, grain): ~2.5 s
def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
  # tensorboardX imports torch when it is installed (1.4-2.4 s and ~180 MB per training process);
  # loop.MetricWriter imports it without. A fresh interpreter: this one may hold torch already.
  repo = pathlib.Path(__file__).resolve().parents[2]
  out = subprocess.run(
    [sys.executable, '-c', _TENSORBOARD_CHECK, str(tmp_path)],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[(7, 'Loss/total', 1.5)]", out.stdout


def _m(finite, **kw):
  base = {
    'finite': finite,
    'boxes_finite': True,
    'grad_norm': 1.0,
    'Loss/giou': 0.5,
    'Loss/l1': 0.1,
    'Loss/location': 3.0,
  }
  base.update(kw)
  return base


def test_non_finite_monitor_skips_isolated_and_stops_on_a_run():
  mon = loop.NonFiniteMonitor(max_total=10, max_consecutive=3)
  assert mon.update(1, 1, _m(False, **{'Loss/location': float('nan')}))
  assert not mon.update(2, 1, _m(True))
  assert mon.total == 1 and mon.consecutive == 0
  mon.update(3, 1, _m(False, grad_norm=float('inf')))
  mon.update(4, 1, _m(False, grad_norm=float('inf')))
  with pytest.raises(
    loop.NonFiniteError, match=r'step 5 \(epoch 2\).*Loss/giou=nan.*predicted boxes'
  ):
    mon.update(5, 2, _m(False, boxes_finite=False, **{'Loss/giou': float('nan')}))
  mon = loop.NonFiniteMonitor(max_total=2, max_consecutive=3)
  mon.update(1, 1, _m(False))
  mon.update(3, 1, _m(False))
  with pytest.raises(loop.NonFiniteError, match='max_bad_steps=2'):
    mon.update(5, 1, _m(False))


def test_non_finite_advice_depends_on_a_checkpoint_existing():
  """With no checkpoint written yet, never advise --resume (there is nothing to resume)."""
  mon = loop.NonFiniteMonitor(max_total=10, max_consecutive=2)
  mon.update(1, 1, _m(False))
  with pytest.raises(loop.NonFiniteError) as e:
    mon.update(2, 1, _m(False))
  assert '--resume' not in str(e.value)
  assert 'No checkpoint was written yet' in str(e.value) and 'lower config.train.lr' in str(e.value)
  mon = loop.NonFiniteMonitor(max_total=10, max_consecutive=2, last_checkpoint=4)
  mon.update(5, 2, _m(False))
  mon.last_checkpoint = 6  # the loop records each checkpoint it writes
  with pytest.raises(loop.NonFiniteError, match=r'--resume from the last checkpoint \(step 6\)'):
    mon.update(7, 2, _m(False))


def test_resume_config_check_names_the_fields():
  saved = checkpoint.make_meta(get_config('tiny_256_ce'), num_devices=2, num_processes=1)
  config = get_config('tiny_256_ce')
  checkpoint.check_resume_config(saved, config, 2, 1, 'ckpt')  # identical: fine
  config.train.log_every_steps = 7  # logging may change
  config.data.roots.synthetic = '/elsewhere'  # dataset paths may move
  checkpoint.check_resume_config(saved, config, 2, 1, 'ckpt')
  config.data.num_workers = 4
  config.model.embed_dim = 128
  with pytest.raises(checkpoint.ResumeConfigError) as e:
    checkpoint.check_resume_config(saved, config, 4, 1, 'ckpt')
  msg = str(e.value)
  assert 'data.num_workers: checkpoint 2, now 4' in msg
  assert 'model.embed_dim: checkpoint 64, now 128' in msg
  assert 'device count: checkpoint 2, now 4' in msg


def test_checkpoint_writes_orbax_array_metadata_and_restores(tmp_path, caplog):
  """The train state's jax.Array handler (replica-parallel writing only across processes) keeps
  orbax's default array-metadata store: a save writes state/array_metadatas, and restores.
  Registering it logs nothing (orbax warns on every handler override; train.py showed
  'WARNING:absl:Type handler registry type ... overriding jax.Array' at every start)."""
  import logging

  import jax
  import numpy as np

  with caplog.at_level(logging.WARNING):
    manager = checkpoint.CheckpointManager(str(tmp_path), keep=1)
  assert not [r.getMessage() for r in caplog.records if 'overriding' in r.getMessage()]
  state = {'w': jax.numpy.arange(12.0).reshape(3, 4)}
  manager.save(1, state, None, {'note': 'test'})
  assert (tmp_path / 'checkpoints' / '1' / 'state' / 'array_metadatas').is_dir()
  abstract = jax.tree_util.tree_map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
  )
  restored = manager.restore(abstract, None)
  np.testing.assert_array_equal(restored['w'], state['w'])
  manager.close()


def test_a_failed_save_waits_for_its_other_writers_and_leaves_nothing(
  tmp_path, caplog, monkeypatch
):
  """orbax raises a save's error with the first writer thread that failed while others may
  still run (seen under load: they failed after train.py's one-line message and printed their
  tracebacks). The save waits for them inside its log filter, then removes the unfinished step
  folder: no record of theirs is shown and nothing they wrote stays."""
  import errno
  import logging
  import threading
  import time

  from orbax.checkpoint._src.futures import future

  manager = checkpoint.CheckpointManager(str(tmp_path), keep=1)
  unfinished = tmp_path / 'checkpoints' / '2.orbax-checkpoint-tmp'

  def late_writer():
    time.sleep(0.3)
    (unfinished / 'late').write_bytes(b'x')
    raise ValueError(f'Error writing local file "{unfinished}/late": [os_error_code=\'28\']')

  def failing_save(*args, **kwargs):
    del args, kwargs
    unfinished.mkdir()
    future._SignalingThread(
      target=late_writer, send_signals=[], receive_signals=[], timeout_secs=60
    ).start()
    raise ValueError(f'Error writing local file "{unfinished}/first": [os_error_code=\'28\']')

  monkeypatch.setattr(manager._manager, 'save', failing_save)
  with caplog.at_level(logging.ERROR), pytest.raises(OSError) as e:
    manager.save(2, {'w': [0.0]}, None, {})
  for thread in threading.enumerate():  # the late writer has ended (already, with the fix)
    if isinstance(thread, future._SignalingThread):
      threading.Thread.join(thread)  # (orbax's join would raise its error)
  assert (e.value.errno, e.value.filename) == (errno.ENOSPC, f'{unfinished}/first')
  assert [r.getMessage() for r in caplog.records] == []
  assert list((tmp_path / 'checkpoints').iterdir()) == []
  manager.close()


def _ctrl_c_inside_a_finaliser():
  """Sends this process SIGINT from inside ``__del__`` (as grain's SharedMemoryArray.__del__
  runs on the main thread while batches are freed): Python raises the KeyboardInterrupt there
  and, as it cannot propagate from a finaliser, reports it to sys.unraisablehook and goes on."""
  import os
  import signal
  import time

  class Finalised:
    def __del__(self):
      os.kill(os.getpid(), signal.SIGINT)
      # The handler runs at one of these bytecodes, inside __del__ (and ends the wait).
      end = time.monotonic() + 10.0
      while time.monotonic() < end:
        pass

  Finalised()


@pytest.fixture
def default_sigint():
  """Python's own SIGINT handler for the test. A test run started in the background of a
  non-interactive shell (`pytest ... &`) inherits SIGINT ignored, and Python keeps that: Ctrl-C
  then reaches nothing, in a test or in train.py (whose watch leaves a handler it did not
  expect alone)."""
  import signal

  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


def test_ctrl_c_swallowed_by_a_finaliser_is_raised_by_the_watch(default_sigint):
  import signal

  swallowed = []
  previous_hook = sys.unraisablehook
  sys.unraisablehook = swallowed.append
  try:
    _ctrl_c_inside_a_finaliser()  # without the watch: lost, training would go on
  finally:
    sys.unraisablehook = previous_hook
  assert [u.exc_type for u in swallowed] == [KeyboardInterrupt]

  with loop.InterruptWatch() as watch:
    watch.check()  # nothing yet
    _ctrl_c_inside_a_finaliser()  # no 'Exception ignored' report: the watch keeps it
    with pytest.raises(KeyboardInterrupt):
      watch.check()
    with pytest.raises(KeyboardInterrupt):  # a SIGINT outside a finaliser still raises at once
      signal.raise_signal(signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  assert sys.unraisablehook is previous_hook
