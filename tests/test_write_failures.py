"""A disk that fills up mid-run: train.py and eval.py stop with one line naming the file and the
OS error, what was kept and the command that continues (exit status 74), with no traceback and
nothing half-written. Before, training printed hundreds of lines of orbax tracebacks (one per
writer thread, then the chained ValueError) and eval.py a chained traceback without a path.

A full disk is simulated without mounting anything: the command runs under a file-size limit
(RLIMIT_FSIZE, with SIGXFSZ ignored, as Python does), so that writing past it fails with EFBIG
as a full disk fails with ENOSPC. The commands reuse the compiled programs of the test run's
cache (test_train_resume's training steps, test_process_hygiene's tracking step) and write none
to it under the limit (a write there would leave a truncated entry).
"""

import pathlib
import subprocess
import sys

import pytest

import train_util

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL = train_util.SMALL_MODEL

# Runs the command after it under a file-size limit of argv[1] bytes.
_LIMITED = (
  'import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); '
  'resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); '
  'os.execv(sys.executable, [sys.executable] + sys.argv[2:])'
)

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def _run(args, devices, limit=None):
  env = train_util.command_env(devices)
  prefix = []
  if limit is not None:
    prefix = ['-c', _LIMITED, str(limit)]
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = str(1 << 50)  # read the cache only
  return subprocess.run(
    [sys.executable, *prefix, *args],
    cwd=REPO,
    env=env,
    stdin=subprocess.DEVNULL,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


@pytest.mark.slow
def test_full_disk_while_training_is_one_line(tmp_path):
  from ostrack_jax.datasets import synthetic

  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=3, num_val=1, num_frames=20, frame_size=(64, 48), seed=0
  )
  run = tmp_path / 'run'
  # 30 kB: config.json and the metrics fit, the first checkpoint (step 2) does not.
  r = _run(
    [
      'train.py',
      '--workdir',
      str(run),
      *MODEL,
      *[f'--config.{f}' for f in train_util.TRAIN_FLAGS],
      '--config.data.num_workers=0',
      '--no-progress',
      f'--config.data.roots.synthetic={root}',
    ],
    train_util.TRAIN_DEVICES,
    limit=30_000,
  )
  assert r.returncode == 74, r.stdout[-2000:] + r.stderr[-3000:]
  assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr[-3000:]
  line = r.stderr.strip()
  assert line.startswith(f'train.py: {run}/checkpoints/'), line
  assert (
    'File too large (EFBIG); training stopped; no checkpoint was written: run the same ' in line
  )
  assert 'step 2/' in r.stdout  # it failed mid-run, at the first checkpoint
  assert [p.name for p in (run / 'checkpoints').iterdir()] == []  # no partial step folder


@pytest.mark.slow
def test_full_disk_while_evaluating_is_one_line_and_the_same_command_continues(tmp_path):
  from ostrack_jax import configs
  from ostrack_jax.datasets import synthetic
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=0, num_val=2, num_frames=5, frame_size=(96, 72), seed=0
  )
  config = train_util.small_config()
  ckpt = tmp_path / 'model.msgpack'
  save_variables(str(ckpt), init_variables(config, seed=0), config)
  assert configs.load_config(str(REPO / MODEL[1])).name == config.name
  out = tmp_path / 'out'
  command = [
    'eval.py',
    *MODEL,
    '--checkpoint',
    str(ckpt),
    '--dataset',
    'got10k_val',
    '--data-dir',
    str(root),
    '--output',
    str(out),
    '--batch-size',
    '2',
    '--no-progress',
    '--no-plots',
  ]
  # The first sequence written whole (and the folder's provenance record, longer than the
  # limit below); then the disk fills while the second is written: a box file of 5 frames is
  # longer than 100 bytes.
  assert _run([*command, '--sequences', 'SYN_Val_000001'], 2).returncode == 0
  r = _run(command, 2, limit=100)
  assert r.returncode == 74, r.stdout[-2000:] + r.stderr[-3000:]
  assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr[-3000:]
  line = r.stderr.strip()
  assert line.startswith(f'eval.py: {out}/SYN_Val_000002/'), line
  assert '_001.txt: File too large (EFBIG); the results of the sequences finished ' in line
  assert line.endswith('run the same command to continue'), line
  assert not [p for p in out.rglob('*') if p.name.startswith('.')]  # no temporary file left
  r = _run(command, 2)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert '2 sequences in' in r.stdout and 'AO' in r.stdout, r.stdout
