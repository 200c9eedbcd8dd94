"""ArrayRecord packs: written by the pack command, read through the same sampler."""

import json

import numpy as np
import pytest
from test_data_sources import make_coco, make_got10k

from ostrack_jax.common.errors import InputError
from ostrack_jax.configs import get_config
from ostrack_jax.data import pack, pipeline, sampler as sampler_lib, sources, transforms as T
from ostrack_jax.data.packed import PackedSource
from ostrack_jax.datasets import core


def test_pack_cli_and_identical_samples(tmp_path, monkeypatch):
  monkeypatch.setenv('OSTRACK_JAX_INDEX_CACHE', str(tmp_path / 'index'))
  root = make_got10k(tmp_path / 'got', n_seqs=3, n_frames=24)
  (root / 'train' / 'GOT-10k_Train_000002' / '00000003.jpg').unlink()  # a missing frame
  pack.main(
    [
      'got10k_train_full',
      '--root',
      str(root),
      '--output',
      str(tmp_path / 'packs'),
      '--shard-mb',
      '0',
    ]
  )  # tiny shards: one record each, exercises shard lookup
  meta = json.loads((tmp_path / 'packs' / 'got10k_train_full' / 'pack.json').read_text())
  assert meta['frames'] == 72 and meta['missing_frames'] == 1 and len(meta['shards']) == 72
  folder_src = sources.open_source('got10k_train_full', root, cache_dir=None)
  packed = PackedSource(tmp_path / 'packs' / 'got10k_train_full')
  assert packed.report.summary() == folder_src.report.summary()
  for si in range(3):
    for fi in (0, 5, 23):
      if (si, fi) != (1, 2):
        assert packed.frame(si, fi).data == folder_src.frame(si, fi).data
  with pytest.raises(T.BadSample, match='missing when the pack was written'):
    packed.frame(1, 2)
  tp, sp = T.AugmentParams(32, 2.0, 0.0, 0.0), T.AugmentParams(64, 4.0, 3.0, 0.25)
  a = sampler_lib.PairSampler([folder_src], [1.0], tp, sp, seed=1)
  b = sampler_lib.PairSampler([packed], [1.0], tp, sp, seed=1)
  for k in range(10):
    x, y = a(k), b(k)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  # The command's answer is one line (InputError, exit status 2), checked before indexing.
  with pytest.raises(InputError, match='already holds a pack; pass --overwrite'):
    pack.main(['got10k_train_full', '--root', str(root), '--output', str(tmp_path / 'packs')])


@pytest.mark.slow  # a grain worker process: ~2.8 s
def test_packed_config_through_pipeline_with_workers(tmp_path):
  root = make_got10k(tmp_path / 'got', n_seqs=2, n_frames=24)
  coco_root = make_coco(tmp_path / 'coco')
  pack.pack_source(
    sources.open_source('got10k_train_full', root, cache_dir=None),
    tmp_path / 'packs' / 'got10k_train_full',
    progress=False,
  )
  pack.pack_source(
    sources.open_source('coco', coco_root, cache_dir=None),
    tmp_path / 'packs' / 'coco',
    progress=False,
  )
  cfg = get_config('tiny_256_ce')
  cfg.data.train_datasets = ('got10k_train_full', 'coco')
  cfg.data.train_ratios = (1.0, 1.0)
  cfg.data.packed = True
  cfg.data.packed_dir = str(tmp_path / 'packs')
  cfg.data.samples_per_epoch = 8
  ref = list(pipeline.make_train_iterator(cfg, batch_size=4, num_workers=0, num_epochs=1))
  it = pipeline.make_train_iterator(cfg, batch_size=4, num_workers=1, num_epochs=1)
  got = list(it)
  it.close()
  assert len(ref) == len(got) == 2
  for x, y in zip(ref, got, strict=True):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert set(np.concatenate([b['dataset_index'] for b in ref]).tolist()) <= {0, 1}


def test_frame_cut_after_indexing_is_never_sampled_from_the_pack(tmp_path):
  root = make_got10k(tmp_path / 'got', n_seqs=2, n_frames=24)
  src = sources.open_source('got10k_train_full', root, cache_dir=None, verify_frames=False)
  frame = root / 'train' / 'GOT-10k_Train_000002' / '00000010.jpg'
  frame.write_bytes(frame.read_bytes()[:200])  # cut after the index was built
  out = pack.pack_source(src, tmp_path / 'packs' / 'g', progress=False)
  meta = json.loads((out / 'pack.json').read_text())
  assert meta['unusable_frames'] == {'image file truncated or corrupt': 1}
  packed = PackedSource(out)
  assert not packed.sequences[1].visible[9] and packed.sequences[1].visible.sum() == 23
  assert packed.report.invisible_frames['image file truncated or corrupt'] == 1
  assert src.sequences[1].visible[9]  # the source's own table is left as it was


def test_missing_pack_is_a_clear_error(tmp_path):
  cfg = get_config('tiny_256_ce')
  cfg.data.packed = True
  cfg.data.packed_dir = str(tmp_path)
  with pytest.raises(core.DatasetError, match='python -m ostrack_jax.data.pack'):
    sources.make_source('synthetic', cfg.data)
