"""training.trainer.train_and_evaluate, in-process (what train.py and the notebook call): a run
stopped at train.max_steps leaves a checkpoint and no model; a workdir with checkpoints is only
continued with resume=True; the resumed run ends with model.msgpack, which loads; bad input is an
InputError before any work. (Exact resume and multi-process: test_train_resume.py,
test_train_multihost.py.)"""

import json

import pytest
import train_util

from ostrack_jax import checkpoint_io
from ostrack_jax.errors import InputError


def _config(root, **extra):
  overrides = [
    'train.batch_size=1',  # x 8 test devices
    'train.epochs=1',
    'data.samples_per_epoch=16',  # 2 steps
    'train.val_every_epochs=0',  # validation: test_train_resume.py
    'train.log_every_steps=1',
    'data.num_workers=0',
    f'data.roots.synthetic={root}',
  ]
  overrides += [f'{k.replace("__", ".")}={v}' for k, v in extra.items()]
  return train_util.small_config(*overrides)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  from ostrack_jax.data import synthetic

  return synthetic.make_synthetic_dataset(
    tmp_path_factory.mktemp('syn'), num_train=3, num_val=1, num_frames=20, frame_size=(96, 72)
  )


@pytest.mark.slow
def test_stop_resume_and_model(root, tmp_path):
  from ostrack_jax.training import trainer

  workdir = str(tmp_path / 'run')
  first = trainer.train_and_evaluate(_config(root, train__max_steps=1), workdir, progress=False)
  assert (first.step, first.total_steps, first.model_path) == (1, 2, None)
  with pytest.raises(InputError, match='already holds checkpoints.*--resume'):
    trainer.train_and_evaluate(_config(root), workdir, progress=False)
  done = trainer.train_and_evaluate(_config(root), workdir, resume=True, progress=False)
  assert (done.step, done.model_path) == (2, f'{workdir}/model.msgpack')
  records = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').open()]
  assert [r['step'] for r in records if 'Loss/total' in r] == [1, 2]
  variables = checkpoint_io.load_checkpoint(done.model_path, _config(root))
  assert 'params' in variables


def test_bad_input_before_any_work(root, tmp_path):
  from ostrack_jax.training import trainer

  with pytest.raises(InputError, match='config.train.lr=0.0'):
    trainer.train_and_evaluate(_config(root, train__lr=0), str(tmp_path / 'run'))
  (tmp_path / 'file').write_text('')
  with pytest.raises(InputError, match='is a file, not a folder'):
    trainer.train_and_evaluate(_config(root), str(tmp_path / 'file'))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['file']
