"""train.py end to end on CPU: a run killed with SIGKILL and resumed continues exactly (same
per-step losses, bit-identical final parameters) as an uninterrupted run; bad input stops at once
with a message naming it. The same run in-process (training.trainer.train_and_evaluate, what
train.py and the notebook call): stopped at train.max_steps it leaves a checkpoint and no model,
a workdir with checkpoints is only continued with resume=True, and the resumed run ends with a
model.msgpack that loads. (Multi-process: test_train_multihost.py.)

The train.py runs see the same 8 CPU devices as the pytest process (tests/conftest.py) and share
their config with the in-process runs: the uninterrupted reference, run in this process first,
compiles the two train steps (keep 1.0, then 0.7) into the test run's compilation cache, and the
killed and resumed train.py runs and the in-process test (one epoch: keep 1.0 only) load them.
The in-process test comes right after the train.py tests, which xdist's 'load' scheduling
usually sends to the same worker; it does not depend on their order (elsewhere, or alone, it
compiles its one step itself).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

import train_util
from command_util import run_command

REPO = pathlib.Path(__file__).resolve().parents[2]

# A small OSTrack (64/128 crops, 3 blocks, CE at block 1 from epoch 2 on) on a tiny synthetic
# set: 3 epochs of 2 steps at a global batch of 8 (1 per device, 8 simulated devices), a
# checkpoint every 2 steps of which the last 2 are kept, and a grain worker process so that the
# iterator state goes through orbax. Drop path is on, so that the resumed run must also restore
# the RNG, and the step runs in the default run's bfloat16 mixed precision.
TRAIN_FLAGS = train_util.TRAIN_FLAGS
SMALL = (
  train_util.SMALL_MODEL
  + [f'--config.{f}' for f in TRAIN_FLAGS]
  + ['--config.data.num_workers=1', '--no-progress']
)
TOTAL_STEPS = 6
DEVICES = train_util.TRAIN_DEVICES  # as the pytest process: the in-process run shares the programs

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py),
# with the default emitters of the train.py subprocesses, whose programs the in-process runs
# share through the compilation cache.
pytestmark = pytest.mark.fast_compile(older_emitters=False)


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
  return train_util.make_synthetic_root(tmp_path_factory.mktemp('synthetic'))


def _env():
  return train_util.command_env(DEVICES)


def _cmd(workdir, root, *extra):
  return train_util.train_command(workdir, root, SMALL, *extra)


def _params(workdir):
  import jax

  from ostrack_jax.weights.model_file import read_variables_file

  payload = read_variables_file(str(pathlib.Path(workdir) / 'model.msgpack'))
  return {
    jax.tree_util.keystr(p): np.asarray(x)
    for p, x in jax.tree_util.tree_leaves_with_path(payload['variables'])
  }


@pytest.fixture(scope='module')
def runs(tmp_path_factory, synthetic_root):
  from ostrack_jax.training import trainer

  base = tmp_path_factory.mktemp('runs')
  straight, killed = base / 'straight', base / 'killed'
  # The uninterrupted reference first, in this process: the train.py runs' config on the same 8
  # devices, with the data read in this process (the batches are the same with 0 or 1 workers:
  # tests/data/test_data_pipeline.py). It compiles the train steps into the test run's
  # compilation cache (tests/conftest.py), which the killed and the resumed run then load
  # instead of compiling them again (on 2 cores, running both at once saved nothing).
  trainer.train_and_evaluate(
    train_util.small_config(
      *TRAIN_FLAGS, 'data.num_workers=0', f'data.roots.synthetic={synthetic_root}'
    ),
    str(straight),
    progress=False,
  )
  victim = subprocess.Popen(
    _cmd(killed, synthetic_root),
    cwd=REPO,
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  seen = []
  for line in victim.stdout:
    seen.append(line)
    if line.startswith('step 5/'):  # checkpoints at 2 and 4; killed one step after
      os.kill(victim.pid, signal.SIGKILL)
      break
  victim.wait()
  assert victim.returncode == -signal.SIGKILL, ''.join(seen)
  assert not (killed / 'model.msgpack').exists()
  resumed = subprocess.run(
    _cmd(killed, synthetic_root, '--resume'),
    cwd=REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert 'resource_tracker' not in resumed.stderr, resumed.stderr[-2000:]
  return straight, killed, resumed.stdout


@pytest.mark.slow
def test_kill_and_resume_is_exact(runs):
  straight, killed, resumed_out = runs
  assert 'resumed from' in resumed_out
  ref_losses, got_losses = train_util.logged_losses(straight), train_util.logged_losses(killed)
  assert [r[0] for r in ref_losses] == list(range(1, TOTAL_STEPS + 1))
  assert got_losses == ref_losses  # bit for bit, incl. the keep rate (CE from epoch 2)
  assert {r[4] for r in ref_losses} == {1.0, 0.7}
  ref, got = _params(straight), _params(killed)
  assert ref.keys() == got.keys()
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
  steps = sorted(int(p.name) for p in (killed / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [4, 6]  # keep_checkpoints = 2


@pytest.mark.slow
def test_mismatched_resume_is_refused(runs, synthetic_root):
  """In-process (the refusal is the trainer's, before any work; train.py's answer to an
  InputError, one line and exit status 2, is test_bad_input_stops_with_a_message's): the
  killed run's config with one field changed."""
  from ostrack_jax.common.errors import InputError
  from ostrack_jax.training import trainer

  _, killed, _ = runs

  def run(*overrides, resume=True):
    config = train_util.small_config(
      *TRAIN_FLAGS, 'data.num_workers=1', f'data.roots.synthetic={synthetic_root}', *overrides
    )
    trainer.train_and_evaluate(config, str(killed), resume=resume, progress=False)

  before = sorted(str(p.relative_to(killed)) for p in killed.rglob('*'))
  with pytest.raises(InputError, match='data.num_workers: checkpoint 1, now 2'):
    run('data.num_workers=2')
  with pytest.raises(InputError, match='model.embed_dim: checkpoint 32, now 64'):
    run('model.embed_dim=64')
  # Without --resume an existing run is never continued or overwritten silently.
  with pytest.raises(InputError, match='--resume'):
    run(resume=False)
  assert sorted(str(p.relative_to(killed)) for p in killed.rglob('*')) == before


def _config(root, *extra):
  """The train.py runs' config as a config object, in-process (data in the main process) and one
  epoch (2 steps; the train step does not depend on the epoch count, so it is the runs' keep-1.0
  program: the one compiled step of this test, loaded from the cache after the runs)."""
  return train_util.small_config(
    *TRAIN_FLAGS, 'train.epochs=1', 'data.num_workers=0', f'data.roots.synthetic={root}', *extra
  )


@pytest.mark.slow
def test_in_process_stop_resume_and_model(synthetic_root, tmp_path):
  from ostrack_jax.common.errors import InputError
  from ostrack_jax.training import trainer
  from ostrack_jax.weights import model_file

  workdir = str(tmp_path / 'run')
  first = trainer.train_and_evaluate(
    _config(synthetic_root, 'train.max_steps=1'), workdir, progress=False
  )
  assert (first.step, first.total_steps, first.model_path) == (1, 2, None)
  with pytest.raises(InputError, match='already holds checkpoints.*--resume'):
    trainer.train_and_evaluate(_config(synthetic_root), workdir, progress=False)
  done = trainer.train_and_evaluate(_config(synthetic_root), workdir, resume=True, progress=False)
  assert (done.step, done.model_path) == (2, f'{workdir}/model.msgpack')
  records = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').open()]
  assert [r['step'] for r in records if 'Loss/total' in r] == [1, 2]
  assert {r['keep_rate'] for r in records if 'Loss/total' in r} == {1.0}
  variables = model_file.load_checkpoint(done.model_path, _config(synthetic_root))
  assert 'params' in variables


def test_in_process_bad_input_before_any_work(synthetic_root, tmp_path):
  from ostrack_jax.common.errors import InputError
  from ostrack_jax.training import trainer

  with pytest.raises(InputError, match='config.train.lr=0.0'):
    trainer.train_and_evaluate(_config(synthetic_root, 'train.lr=0'), str(tmp_path / 'run'))
  (tmp_path / 'file').write_text('')
  with pytest.raises(InputError, match='is a file, not a folder'):
    trainer.train_and_evaluate(_config(synthetic_root), str(tmp_path / 'file'))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['file']


def _train_py(*argv):
  """train.py run for real on bad input (it stops before JAX is imported: ~0.2 s)."""
  return subprocess.run(
    [sys.executable, str(REPO / 'train.py'), *argv],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
  )


def test_bad_input_stops_with_a_message(tmp_path):
  r = _train_py('--workdir', str(tmp_path), '--config.train.lrr=1e-3')
  assert r.returncode == 2
  assert "unknown config key 'train.lrr'" in r.stderr and 'train.lr' in r.stderr
  r = _train_py('--workdir', str(tmp_path), '--config', 'configs/nope.py')
  assert r.returncode == 2 and 'configs/nope.py' in r.stderr
  missing = tmp_path / 'mae_pretrain_vit_base.pth'
  r = _train_py('--workdir', str(tmp_path), f'--config.train.pretrained={missing}')
  assert r.returncode == 2
  assert f'config.train.pretrained={str(missing)!r}: no such file' in r.stderr
  r = _train_py('--workdir', str(tmp_path), '--config.train.score_prior=1.5')
  assert r.returncode == 2 and 'config.train.score_prior=1.5: must lie in (0, 1)' in r.stderr
  r = _train_py('--workdir', str(tmp_path), '--bogus')
  assert r.returncode == 2 and 'unrecognized argument --bogus' in r.stderr


BAD_CONFIG_VALUES = [
  ('train.batch_size=0', 'config.train.batch_size=0: must be >= 1'),
  ('train.batch_size=-3', 'config.train.batch_size=-3: must be >= 1'),
  ('train.lr=0', 'config.train.lr=0.0: must be a finite number > 0'),
  ('train.lr=-1e-4', 'config.train.lr=-0.0001: must be a finite number > 0'),
  ('train.lr=1e999', 'config.train.lr=inf: must be a finite number > 0'),
  (
    'model.ce_keep_ratio=(0.7,1.5,0.7)',
    'config.model.ce_keep_ratio=(0.7, 1.5, 0.7): every keep ratio must lie in (0, 1], got 1.5',
  ),
  ('model.ce_keep_ratio=(0.7,0,0.7)', 'must lie in (0, 1], got 0'),
  ('model.ce_keep_ratio=(0.7,)', 'config.model.ce_keep_ratio=(0.7,): 1 ratio(s) for the 3'),
  (
    'data.roots.synthetic={tmp}/nonexistent/root',
    "config.data.roots.synthetic='{tmp}/nonexistent/root': no such folder",
  ),
  (
    'data.roots.synthetic={tmp}',
    "config.data.roots.synthetic='{tmp}': holds no synthetic dataset (no synthetic.json)",
  ),
  ('train.pretrained={tmp}', "config.train.pretrained='{tmp}': is a directory"),
]


@pytest.mark.parametrize(
  'override, message',
  BAD_CONFIG_VALUES,
  ids=[o.replace('{tmp}', 'TMP') for o, _ in BAD_CONFIG_VALUES],
)
def test_bad_config_values_stop_before_any_work(tmp_path, override, message, monkeypatch, capsys):
  """One line naming the field, exit code 2, no traceback, nothing written (no workdir, no
  synthetic data generated in a named root). train.py runs in this process, as its interpreter
  runs it (tests/command_util.py); test_bad_input_stops_with_a_message starts it for real."""
  workdir = tmp_path / 'run'
  override = override.replace('{tmp}', str(tmp_path))
  status, err = run_command(
    ['train.py', '--workdir', str(workdir), f'--config.{override}'], monkeypatch, capsys
  )
  assert status == 2
  assert message.replace('{tmp}', str(tmp_path)) in err
  assert err.count('\n') == 1 and 'Traceback' not in err
  assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_in_process_user_errors_leave_the_workdir_as_it_was(synthetic_root, tmp_path):
  """A run refused for bad input found after the workdir was made (a pretrained file that is
  not a checkpoint) removes what it created: before, config.json and an empty checkpoints/
  stayed. --resume of a workdir that holds no run is refused (before: a new run at step 1)."""
  from ostrack_jax.common.errors import InputError
  from ostrack_jax.training import trainer

  with pytest.raises(InputError, match=r'--resume: .*/typo holds no run to continue'):
    trainer.train_and_evaluate(_config(synthetic_root), str(tmp_path / 'typo'), resume=True)
  (tmp_path / 'bad.msgpack').write_text('not a model')
  bad = _config(synthetic_root, f'train.pretrained={tmp_path}/bad.msgpack')
  with pytest.raises(InputError, match='config.train.pretrained: .*not an ostrack_jax model'):
    trainer.train_and_evaluate(bad, str(tmp_path / 'new'), progress=False)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.msgpack']
  mine = tmp_path / 'mine'
  mine.mkdir()
  (mine / 'notes.txt').write_text('the user\'s')
  with pytest.raises(InputError, match='config.train.pretrained'):
    trainer.train_and_evaluate(bad, str(mine), progress=False)
  assert sorted(p.name for p in mine.iterdir()) == ['notes.txt']


def test_a_failed_checkpoint_write_is_named_by_its_os_error():
  """orbax reports a checkpoint write that fails (a full disk) as TensorStore's ValueError,
  possibly wrapped; the trainer's one line needs the OS error and the file inside it."""
  from ostrack_jax.training import checkpoint as ckpt_lib

  path = '/w/checkpoints/4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/_sharding'
  store = ValueError(
    f'OUT_OF_RANGE: Error writing local file "{path}": Failed writing: "{path}.__lock": '
    "Failed to write 62183 bytes to file 20: No space left on device [os_error_code='28']"
  )
  try:
    try:
      raise store
    except ValueError:
      raise RuntimeError('a writer thread failed')  # noqa: B904  (chained implicitly)
  except RuntimeError as e:
    found = ckpt_lib._os_error_in(e, '/w/checkpoints')
  assert (found.errno, found.filename) == (28, path)
  assert ckpt_lib._os_error_in(ValueError('a bug'), '/w/checkpoints') is None
