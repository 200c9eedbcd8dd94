"""No process outlives train.py or eval.py, even when it is killed with SIGKILL (an OOM kill, a
pre-empted cluster job): the grain worker processes, and multiprocessing's resource tracker with
them, are gone a few seconds after their parent. Before this, every kill of a training run left
its workers behind (reparented to init, hundreds of MB each).

Each test starts the script, waits until it is in the middle of its work, collects every process
below it, kills it with SIGKILL and checks that none of those processes is left (a zombie counts
as gone). Anything left is killed by the test itself, so that a failure leaks nothing.

Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops train.py with one
message naming the checkpoint to resume from, no worker traceback, and no worker left."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import psutil
import pytest

import train_util

REPO = pathlib.Path(__file__).resolve().parents[1]

# The small model the training tests share; train.py runs it with two grain worker processes.
MODEL = train_util.SMALL_MODEL
TRAIN = MODEL + [
  '--config.train.batch_size=1',
  '--config.train.epochs=3',
  '--config.data.samples_per_epoch=8',
  '--config.train.val_every_epochs=0',
  '--config.data.num_workers=2',
  '--no-progress',
]
GONE_WITHIN_S = 5.0

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def _env():
  return train_util.command_env(2)


def _start(args):
  return subprocess.Popen(
    [sys.executable, *args],
    cwd=REPO,
    env=_env(),
    stdin=subprocess.DEVNULL,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _wait_for_line(proc, prefix, seen):
  for line in proc.stdout:
    seen.append(line)
    if line.startswith(prefix):
      return
  raise AssertionError(f'{prefix!r} never printed:\n' + ''.join(seen))


def _is_worker(p):
  try:
    return 'spawn_main' in ' '.join(p.cmdline())
  except psutil.Error:
    return False


def _maps_batch(pid):
  """True once the process maps a multiprocessing shared-memory block (a batch from a worker)."""
  try:
    with open(f'/proc/{pid}/maps') as f:
      return any('/dev/shm/psm_' in line for line in f)
  except OSError:
    return False


def _alive(procs):
  left = []
  for p in procs:
    try:
      if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:  # is_running checks pid reuse
        left.append(p)
    except psutil.NoSuchProcess:
      pass
  return left


def _kill_and_check(proc, descendants, seen):
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait(timeout=30)
  assert proc.returncode == -signal.SIGKILL, ''.join(seen)  # killed mid-run, not finished
  proc.stdout.close()
  _check_none_left(descendants, 'the SIGKILLed parent')


def _check_none_left(descendants, parent):
  """Waits up to GONE_WITHIN_S for ``descendants`` to be gone; kills and names any left."""
  deadline = time.monotonic() + GONE_WITHIN_S
  left = _alive(descendants)
  while left and time.monotonic() < deadline:
    time.sleep(0.1)
    left = _alive(descendants)
  described = []
  for p in left:
    try:
      described.append(f'pid {p.pid} (parent {p.ppid()}): {" ".join(p.cmdline())[:120]}')
      p.kill()
    except psutil.Error:
      pass
  assert not left, f'{len(left)} process(es) outlived {parent} by {GONE_WITHIN_S} s:\n' + '\n'.join(
    described
  )


@pytest.mark.slow
def test_sigkill_of_train_leaves_no_worker(tmp_path):
  from ostrack_jax.datasets import synthetic

  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=3, num_val=1, num_frames=20, frame_size=(160, 120), seed=0
  )
  proc = _start(
    [
      'train.py',
      '--workdir',
      str(tmp_path / 'run'),
      *TRAIN,
      f'--config.data.roots.synthetic={root}',
    ]
  )
  seen = []
  try:
    _wait_for_line(proc, 'tiny_256_ce: ', seen)  # the banner: next() on the iterator follows
    me = psutil.Process(proc.pid)
    # Mid-run: the workers have started, built their pipeline and handed over a batch (the main
    # process maps it from shared memory while it compiles the train step).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
      workers = [p for p in me.children(recursive=True) if _is_worker(p)]
      if len(workers) >= 2 and _maps_batch(proc.pid):
        break
      assert proc.poll() is None, ''.join(seen) + proc.stdout.read()
      time.sleep(0.1)
    else:
      raise AssertionError('no batch from 2 grain workers within 60 s:\n' + ''.join(seen))
    descendants = me.children(recursive=True)
  except BaseException:
    proc.kill()
    raise
  _kill_and_check(proc, descendants, seen)


@pytest.mark.slow
def test_sigkill_of_eval_leaves_no_process(tmp_path):
  from ostrack_jax import configs
  from ostrack_jax.datasets import synthetic
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  # Long sequences, so that eval.py is still tracking when it is killed.
  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=0, num_val=2, num_frames=400, frame_size=(96, 72), seed=0
  )
  config = configs.load_config(str(REPO / MODEL[1]))
  configs.apply_overrides(config, [a[2:] for a in MODEL[2:]])
  ckpt = tmp_path / 'model.msgpack'
  save_variables(str(ckpt), init_variables(config, seed=0), config)
  # Two sequences in lockstep with decoding threads: eval.py's pools are threads, which die with
  # the process; this checks that nothing else (a process pool, a helper) is started. One of
  # the test process's 8 host devices, as before eval.py spread its slots over all of them.
  proc = _start(
    [
      'eval.py',
      *MODEL,
      '--checkpoint',
      str(ckpt),
      '--dataset',
      'got10k_val',
      '--data-dir',
      str(root),
      '--output',
      str(tmp_path / 'out'),
      '--batch-size',
      '2',
      '--devices',
      '1',
      '--decode-threads',
      '2',
      '--no-progress',
      '--no-plots',
    ]
  )
  seen = []
  try:
    _wait_for_line(proc, 'loaded ', seen)  # compiled; tracking starts
    time.sleep(0.5)
    descendants = psutil.Process(proc.pid).children(recursive=True)
  except BaseException:
    proc.kill()
    raise
  _kill_and_check(proc, descendants, seen)


def _start_foreground_train(args, env):
  """``train.py args`` as a terminal's foreground job: in its own process group (which Ctrl-C
  signals as a whole), with SIGINT handled. A job started in the background of a
  non-interactive shell (`cmd &`, as CI may run) inherits SIGINT ignored, and Python keeps an
  inherited SIG_IGN; exec keeps SIG_DFL, which Python turns into KeyboardInterrupt. Output:
  stdout and stderr together, as text."""
  return subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
      'os.execv(sys.executable, [sys.executable] + sys.argv[1:])',
      'train.py',
      *args,
    ],
    cwd=REPO,
    env=env,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    start_new_session=True,
  )


@pytest.mark.slow
def test_ctrl_c_of_train_says_where_to_resume_and_leaves_no_worker(tmp_path):
  """Ctrl-C in a terminal sends SIGINT to the whole process group, grain's worker included:
  train.py exits with status 130 and one message saying the step it reached and the checkpoint
  to resume from, with no traceback (each worker printed a KeyboardInterrupt traceback before),
  and its worker is gone. test_train_resume's run (train_util.TRAIN_FLAGS, 2 steps per epoch, a
  checkpoint every 2 steps), made long, so that its compiled steps come from the cache."""
  from ostrack_jax.datasets import synthetic

  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=3, num_val=1, num_frames=20, frame_size=(160, 120), seed=0
  )
  env = train_util.command_env(train_util.TRAIN_DEVICES)
  proc = _start_foreground_train(
    [
      '--workdir',
      str(tmp_path / 'run'),
      *MODEL,
      *[f'--config.{f}' for f in train_util.TRAIN_FLAGS],
      '--config.train.epochs=50',
      '--config.data.num_workers=1',
      '--no-progress',
      f'--config.data.roots.synthetic={root}',
    ],
    env,
  )
  seen = []
  try:
    _wait_for_line(proc, 'step 3/', seen)  # past the checkpoint at step 2
    descendants = psutil.Process(proc.pid).children(recursive=True)
    assert [p for p in descendants if _is_worker(p)], 'no grain worker to interrupt'
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
  except BaseException:
    os.killpg(proc.pid, signal.SIGKILL)
    raise
  out = ''.join(seen) + rest
  assert proc.returncode == 130, out
  assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out
  lines = [line for line in out.splitlines() if line.startswith('interrupted at step ')]
  assert len(lines) == 1 and 'continue with --resume' in lines[0], out
  last = int(lines[0].split('the last checkpoint is step ')[1].split(':')[0])
  assert last >= 2 and last % 2 == 0, lines[0]
  _check_none_left(descendants, 'the interrupted parent')


def _maps(pid, name):
  """True once the process maps a file whose path contains ``name`` (a loaded library)."""
  try:
    with open(f'/proc/{pid}/maps') as f:
      return name in f.read()
  except OSError:
    return False


@pytest.mark.slow
def test_ctrl_c_while_workers_start_is_one_message(tmp_path):
  """Ctrl-C while grain's workers are still starting (spawned interpreters importing their
  modules for a second or more): train.py stops with its one message and no worker prints a
  traceback. The workers ignore SIGINT from birth; before, only once their start-up imports
  were done, and each printed a KeyboardInterrupt traceback when interrupted before that.
  Stopped before the first step: nothing is compiled."""
  from ostrack_jax.datasets import synthetic

  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=3, num_val=1, num_frames=20, frame_size=(64, 48), seed=0
  )
  proc = _start_foreground_train(
    ['--workdir', str(tmp_path / 'run'), *TRAIN, f'--config.data.roots.synthetic={root}'],
    dict(_env(), OSTRACK_JAX_INDEX_CACHE=str(tmp_path / 'index')),
  )
  try:
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while True:  # both workers past the interpreter's start, importing (NumPy loaded)
      workers = [p for p in me.children(recursive=True) if _is_worker(p)]
      if len(workers) >= 2 and all(_maps(p.pid, 'numpy') for p in workers):
        break
      assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
      time.sleep(0.01)
    descendants = me.children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
  except BaseException:
    os.killpg(proc.pid, signal.SIGKILL)
    raise
  assert proc.returncode == 130, out
  assert 'Traceback' not in out and 'KeyboardInterrupt' not in out, out
  assert out.count('train.py: interrupted') == 1, out
  _check_none_left(descendants, 'the interrupted parent')
