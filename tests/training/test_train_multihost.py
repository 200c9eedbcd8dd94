"""train.py across processes through JAX's multi-process runtime (jax.distributed, gloo
collectives on CPU): two processes with two CPU devices each, stopped half-way and resumed from
the checkpoint they wrote together, train the same steps as one process with all its devices
(this test's, 8 devices with one sample each) on the same global batches, and end with the same
model."""

import pathlib
import socket
import subprocess

import jax
import numpy as np
import pytest

import train_util

REPO = pathlib.Path(__file__).resolve().parents[2]

# A small OSTrack on a tiny synthetic set: global batch 8, 2 steps per epoch, 2 epochs, CE at
# keep 0.7 from the first step (one program per process; the keep rate's change across a resume
# is test_train_resume.py's), a checkpoint every 2 steps.
FLAGS = [
  'model.ce_template_range=ALL',
  # Each process holds its own slice of the global batch, so its rows are the single-process
  # batch permuted; stochastic depth draws its masks per row, hence off for the comparison.
  'model.drop_path_rate=0.0',
  'train.mixed_precision=False',
  'train.epochs=2',
  'data.samples_per_epoch=16',
  'train.ce_start_epoch=1',
  'train.ce_warm_epoch=0',
  'train.log_every_steps=1',
  'train.checkpoint_every_steps=2',
  'train.val_every_epochs=0',
  'data.num_workers=0',
]
# Each of the two processes: 2 devices with 2 samples each.
SMALL = [
  *train_util.SMALL_MODEL,
  *[f'--config.{f}' for f in FLAGS],
  '--config.train.batch_size=2',
  '--no-progress',
]
TOTAL_STEPS = 4
TIMEOUT_S = 600

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
  return train_util.make_synthetic_root(tmp_path_factory.mktemp('synthetic'))


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _train(workdir, root, *extra):
  return train_util.train_command(workdir, root, SMALL, *extra)


def _run_two_processes(workdir, root, label, *extra):
  """The two processes' outputs (stdout and stderr), through files beside ``workdir`` named by
  ``label``: a pipe read one process at a time could fill and stall the other, and with it the
  first (they wait for each other)."""
  port = _free_port()
  logs = [workdir.with_name(f'{workdir.name}_{label}_process{i}.log') for i in range(2)]
  procs = []
  try:
    for i, log in enumerate(logs):
      with log.open('w') as out:
        procs.append(
          subprocess.Popen(
            _train(
              workdir,
              root,
              '--multihost',
              '--coordinator',
              f'localhost:{port}',
              '--num-processes',
              '2',
              '--process-id',
              str(i),
              *extra,
            ),
            cwd=REPO,
            env=train_util.command_env(2, older_emitters=True),
            stdout=out,
            stderr=subprocess.STDOUT,
          )
        )
    for p in procs:
      p.wait(timeout=TIMEOUT_S)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  outputs = [log.read_text() for log in logs]
  for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
    assert p.returncode == 0, f'process {i} failed:\n{out[-4000:]}'
  return outputs


def _params(workdir):
  from ostrack_jax.weights import model_file

  payload = model_file.read_variables_file(str(pathlib.Path(workdir) / 'model.msgpack'))
  return jax.tree_util.tree_leaves_with_path(payload['variables']['params'])


@pytest.mark.slow
def test_two_processes_train_and_resume_like_one_process_with_all_devices(tmp_path, synthetic_root):
  from ostrack_jax.training import trainer

  # One process (this one) with 8 devices and one sample each: the same global batch of 8.
  single = tmp_path / 'single'
  config = train_util.small_config(
    *FLAGS, 'train.batch_size=1', f'data.roots.synthetic={synthetic_root}'
  )
  assert jax.device_count() == 8
  trainer.train_and_evaluate(config, str(single), progress=False)

  # Two processes: stop after 2 of the 4 steps (checkpointed), then resume to the end.
  multi = tmp_path / 'multi'
  outputs = _run_two_processes(multi, synthetic_root, 'stop', '--config.train.max_steps=2')
  assert '4 device(s), global batch 8' in outputs[0], outputs[0][-2000:]
  assert 'stopped at step 2 of 4' in outputs[0], outputs[0][-2000:]
  assert not (multi / 'model.msgpack').exists()
  outputs = _run_two_processes(multi, synthetic_root, 'resume', '--resume')
  assert 'resumed from' in outputs[0] and '(step 2)' in outputs[0], outputs[0][-2000:]

  # The same batches (each process feeds its own slice of every global batch), hence the same
  # losses up to the order of the cross-process sums.
  ref, got = train_util.logged_losses(single), train_util.logged_losses(multi)
  assert [r[0] for r in got] == list(range(1, TOTAL_STEPS + 1)) == [r[0] for r in ref]
  assert [r[4] for r in got] == [r[4] for r in ref] == [0.7] * TOTAL_STEPS  # CE in every step
  np.testing.assert_allclose([r[1:4] for r in got], [r[1:4] for r in ref], rtol=1e-4, atol=1e-6)

  # The same final model. As in tests/training/test_train_step.py: Adam turns summation-order noise in
  # near-zero gradients into steps of up to lr, so every entry within a few lr and all but a few
  # per mille within 1e-5.
  lr = 4e-4
  total = loose = 0
  for (path, a), (_, b) in zip(_params(single), _params(multi), strict=True):
    diff = np.abs(np.asarray(a) - np.asarray(b))
    assert diff.max() <= TOTAL_STEPS * lr + 1e-6, path
    total += diff.size
    loose += int((diff > 1e-5).sum())
  assert loose / total < 5e-3, (loose, total)
  steps = sorted(int(p.name) for p in (multi / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [2, 4]
