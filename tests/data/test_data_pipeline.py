"""The grain pipeline: batches, determinism across worker counts, sharding, save/restore."""

import os

import numpy as np
import pytest

from ostrack_jax.configs import get_config
from ostrack_jax.data import pipeline, transforms
from ostrack_jax.datasets import synthetic


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  # The index cache goes to a temporary folder (and is exercised: workers memory-map it).
  old_cache = os.environ.get('OSTRACK_JAX_INDEX_CACHE')
  os.environ['OSTRACK_JAX_INDEX_CACHE'] = str(tmp_path_factory.mktemp('index'))
  root = tmp_path_factory.mktemp('syn')
  synthetic.make_synthetic_dataset(
    root, num_train=3, num_val=1, num_frames=24, frame_size=(96, 72), seed=0
  )
  cfg = get_config('tiny_256_ce')
  cfg.data.roots.synthetic = str(root)
  cfg.data.samples_per_epoch = 40
  cfg.data.val_samples_per_epoch = 8
  yield cfg
  if old_cache is None:
    del os.environ['OSTRACK_JAX_INDEX_CACHE']
  else:
    os.environ['OSTRACK_JAX_INDEX_CACHE'] = old_cache


def _take(it, n):
  out = [next(it) for _ in range(n)]
  return out


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_layout(config):
  it = pipeline.make_train_iterator(config, batch_size=3, num_workers=0, num_epochs=1)
  b = next(it)
  assert b['template'].shape == (3, 128, 128, 3) and b['template'].dtype == np.float32
  assert b['search'].shape == (3, 256, 256, 3) and b['search'].dtype == np.float32
  assert b['template_anno'].shape == (3, 4) and b['search_anno'].shape == (3, 4)
  # The label comes with the batch, built by the data workers (16 x 16 score-map cells).
  assert b['heatmap'].shape == (3, 16, 16, 1) and b['heatmap'].dtype == np.float32
  np.testing.assert_array_equal(b['heatmap'], transforms.gaussian_heatmap(b['search_anno'], 16))
  # 40 samples per epoch, batch 3: 13 full batches, then the iterator ends.
  assert len(list(it)) == 12


@pytest.mark.slow
def test_same_batches_with_0_1_2_workers_and_sharding(config):
  ref = _take(pipeline.make_train_iterator(config, batch_size=4, num_workers=0, num_epochs=1), 3)
  for workers in (1, 2):
    it = pipeline.make_train_iterator(config, batch_size=4, num_workers=workers, num_epochs=1)
    _assert_same(_take(it, 3), ref)
    it.close()
  # Two processes with batch 2 each: process p holds samples p, p + 2 of each global batch.
  shards = [
    _take(
      pipeline.make_train_iterator(
        config, batch_size=2, num_workers=0, num_epochs=1, process_index=p, process_count=2
      ),
      3,
    )
    for p in (0, 1)
  ]
  for b in range(3):
    for k in ref[b]:
      merged = np.empty_like(ref[b][k])
      merged[0::2], merged[1::2] = shards[0][b][k], shards[1][b][k]
      np.testing.assert_array_equal(merged, ref[b][k], err_msg=k)


def test_val_iterator_differs_and_is_deterministic(config):
  a = _take(
    pipeline.make_train_iterator(config, batch_size=2, num_workers=0, num_epochs=1, train=False), 2
  )
  b = _take(
    pipeline.make_train_iterator(config, batch_size=2, num_workers=0, num_epochs=1, train=False), 2
  )
  _assert_same(a, b)
  train = _take(pipeline.make_train_iterator(config, batch_size=2, num_workers=0, num_epochs=1), 1)
  assert not np.array_equal(train[0]['search'], a[0]['search'])  # own seed, own datasets


@pytest.mark.slow
@pytest.mark.parametrize('workers', [0, 2])
def test_orbax_save_restore_mid_epoch(config, tmp_path, workers):
  import grain
  import orbax.checkpoint as ocp

  it = pipeline.make_train_iterator(config, batch_size=2, num_workers=workers, num_epochs=1)
  _take(it, 3)
  mngr = ocp.CheckpointManager(tmp_path / 'ckpt')
  mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  expected = _take(it, 3)
  it.close()
  fresh = pipeline.make_train_iterator(config, batch_size=2, num_workers=workers, num_epochs=1)
  mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  _assert_same(_take(fresh, 3), expected)
  fresh.close()
  # A different worker count cannot continue the same order: refused with a clear message.
  other = pipeline.make_train_iterator(
    config, batch_size=2, num_workers=1 - min(workers, 1), num_epochs=1
  )
  with pytest.raises(pipeline.ResumeMismatchError, match='num_workers: saved'):
    mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(other)))
  other.close()
  mngr.close()


def test_restore_rejects_foreign_state(config):
  it = pipeline.make_train_iterator(config, batch_size=2, num_workers=0, num_epochs=1)
  with pytest.raises(pipeline.ResumeMismatchError, match='no data contract'):
    it.set_state({'next_index': 3})
  state = it.get_state()
  state['contract'] = dict(state['contract'], batch_size=4)
  with pytest.raises(pipeline.ResumeMismatchError, match='batch_size: saved 4, now 2'):
    it.set_state(state)
