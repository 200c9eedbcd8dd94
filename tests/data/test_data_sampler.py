"""The causal pair sampler (the original's TrackingSampler): frame constraints, ratios, COCO,
determinism."""

import numpy as np
import pytest
from test_data_sources import make_coco, make_got10k

from ostrack_jax.data import sampler as sampler_lib, sources, transforms as T

TP = T.AugmentParams(32, 2.0, 0.0, 0.0)
SP = T.AugmentParams(64, 4.0, 3.0, 0.25)


def test_causal_frames_constraints():
  rng = np.random.default_rng(0)
  for trial in range(300):
    n = int(rng.integers(20, 600))
    visible = rng.random(n) < rng.uniform(0.05, 1.0)
    visible[int(rng.integers(0, n - 1))] = True
    visible[n - 1] = True  # at least one visible frame after some template candidate
    t, s = sampler_lib.sample_causal_frames(visible, 200, np.random.default_rng(trial))
    assert visible[t] and visible[s]
    assert 0 <= t < n - 1 and t < s < n
    # Within the max interval whenever a visible frame exists there (gap grows only if not).
    if visible[t + 1 : t + 200].any():
      assert s - t < 200


def test_causal_frames_gap_grows_across_long_invisible_stretch():
  visible = np.zeros(1000, bool)
  visible[10] = True
  visible[700] = True  # 690 frames after the only template candidate
  t, s = sampler_lib.sample_causal_frames(visible, 200, np.random.default_rng(0))
  assert (t, s) == (10, 700)


def test_causal_frames_cover_the_interval():
  visible = np.ones(300, bool)
  gaps = [
    np.subtract(*sampler_lib.sample_causal_frames(visible, 200, np.random.default_rng(k))[::-1])
    for k in range(2000)
  ]
  assert min(gaps) == 1 and max(gaps) == 199


def test_causal_frames_rejects_unusable_sequence():
  with pytest.raises(ValueError):
    sampler_lib.sample_causal_frames(np.array([False] * 19 + [True]), 200, np.random.default_rng(0))


def test_sampler_determinism_and_ratios(tmp_path):
  got = sources.open_source(
    'got10k_train_full', make_got10k(tmp_path / 'g', n_seqs=2, n_frames=24), cache_dir=None
  )
  coco = sources.open_source('coco', make_coco(tmp_path / 'c'), cache_dir=None)
  smp = sampler_lib.PairSampler([got, coco], [3.0, 1.0], TP, SP, seed=7)
  a = [smp(k) for k in range(80)]
  b = sampler_lib.PairSampler([got, coco], [3.0, 1.0], TP, SP, seed=7)
  for k in (0, 13, 79):  # any order, any instance: same sample
    out = b(k)
    for key in out:
      np.testing.assert_array_equal(out[key], a[k][key])
  other = sampler_lib.PairSampler([got, coco], [3.0, 1.0], TP, SP, seed=8)(0)
  assert not np.array_equal(other['search'], a[0]['search'])
  share_coco = np.mean([x['dataset_index'] == 1 for x in a])
  assert 0.1 < share_coco < 0.45  # expected 0.25
  for x in a:
    assert x['template'].shape == (32, 32, 3) and x['search'].shape == (64, 64, 3)
    assert x['template'].dtype == np.float32 and x['search_anno'].dtype == np.float32


def test_coco_template_equals_search_frame(tmp_path):
  coco = sources.open_source('coco', make_coco(tmp_path), cache_dir=None)
  smp = sampler_lib.PairSampler([coco], [1.0], TP, SP, seed=0)
  for k in range(20):
    pair = smp.draw_frames(np.random.default_rng(k))
    assert pair.template_frame == pair.search_frame == 0


def test_video_pairs_respect_constraints(tmp_path):
  got = sources.open_source(
    'got10k_train_full', make_got10k(tmp_path, n_seqs=2, n_frames=30), cache_dir=None
  )
  got.sequences[0].visible[5:9] = False
  smp = sampler_lib.PairSampler([got], [1.0], TP, SP, seed=0, max_interval=10)
  for k in range(300):
    pair = smp.draw_frames(np.random.default_rng(k))
    vis = got.sequences[pair.seq_index].visible
    assert vis[pair.template_frame] and vis[pair.search_frame]
    assert pair.template_frame < pair.search_frame
    assert pair.search_frame - pair.template_frame < 10 + 5 * 4  # 10, growing only if needed


def test_validation_processing_has_no_brightness_or_crop_flip(tmp_path):
  got = sources.open_source(
    'got10k_train_full', make_got10k(tmp_path, n_seqs=1, n_frames=24), cache_dir=None
  )
  smp = sampler_lib.PairSampler(
    [got],
    [1.0],
    T.AugmentParams(32, 2.0, 0.0, 0.0),
    T.AugmentParams(64, 4.0, 0.0, 0.0),
    seed=0,
    train=False,
    grayscale_probability=0.0,
  )
  for k in range(20):
    out = smp(k)
    # No jitter and no per-crop flip: the target sits at the crop centre, (S - 1) / (2 S).
    cx = out['search_anno'][0] + out['search_anno'][2] / 2
    assert cx == pytest.approx(63 / 128, abs=1e-5)
