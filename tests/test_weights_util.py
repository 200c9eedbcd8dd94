"""tests/weights_util.py regenerates the fixture checkpoint bit for bit and writes the ViT-B layout."""

import json
import time

import numpy as np
import pytest

import weights_util

torch = pytest.importorskip('torch')  # a dev dependency; only used to read the .pth.tar fixture


@pytest.fixture(scope='module')
def tiny_manifest(fixtures_dir):
  with open(fixtures_dir / 'tiny256' / 'manifest.json') as f:
    return json.load(f)


def test_rules_match_tiny_manifest(tiny_manifest):
  entries = tiny_manifest['entries']
  ours = weights_util.make_manifest(entries, 'tiny256')
  assert [e['rule'] for e in ours['entries']] == [e['rule'] for e in entries]


def test_layout_matches_tiny_manifest(tiny_manifest):
  ours = weights_util.ostrack_entries(embed_dim=64, depth=12, mlp_dim=256, head_channels=32)
  theirs = [{k: e[k] for k in ('key', 'shape', 'dtype')} for e in tiny_manifest['entries']]
  assert ours == theirs
  assert len(ours) == 242


def test_fill_regenerates_fixture_checkpoint_bit_for_bit(tiny_manifest, fixtures_dir):
  arrays = weights_util.fill(tiny_manifest, seed=0)
  ckpt = torch.load(
    fixtures_dir / 'tiny256' / 'tiny256_seed0.pth.tar', map_location='cpu', weights_only=True
  )
  state = ckpt['net']
  assert list(state.keys()) == list(arrays.keys())
  for key, value in arrays.items():
    expected = state[key].numpy()
    assert value.dtype == expected.dtype, key
    assert value.shape == expected.shape, key
    np.testing.assert_array_equal(value, expected, err_msg=key)


def test_fill_depends_on_seed(tiny_manifest):
  a = weights_util.fill(tiny_manifest, seed=0)
  b = weights_util.fill(tiny_manifest, seed=1)
  assert not np.array_equal(
    a['backbone.blocks.0.attn.qkv.weight'], b['backbone.blocks.0.attn.qkv.weight']
  )
  np.testing.assert_array_equal(a['box_head.conv1_ctr.1.num_batches_tracked'], 0)


@pytest.mark.parametrize('search_size,lz,lx', [(256, 64, 256), (384, 144, 576)])
def test_vitb_manifest_layout(search_size, lz, lx):
  manifest = weights_util.vitb_manifest(search_size)
  shapes = {e['key']: tuple(e['shape']) for e in manifest['entries']}
  assert len(shapes) == 242
  assert shapes['backbone.pos_embed'] == (1, 197, 768)
  assert shapes['backbone.pos_embed_z'] == (1, lz, 768)
  assert shapes['backbone.pos_embed_x'] == (1, lx, 768)
  assert shapes['backbone.blocks.11.mlp.fc1.weight'] == (3072, 768)
  assert shapes['box_head.conv1_ctr.0.weight'] == (256, 768, 3, 3)
  assert shapes['box_head.conv5_size.weight'] == (2, 32, 1, 1)
  buffers = ('num_batches_tracked', 'running_mean', 'running_var')
  n_params = sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(buffers))
  # A released OSTrack-256 checkpoint holds 92,518,533 parameters (BatchNorm buffers excluded).
  assert n_params - 768 * (lz + lx) == 92_518_533 - 768 * (64 + 256)


@pytest.mark.slow
def test_vitb_fill_is_fast_and_deterministic():
  start = time.perf_counter()
  weights = weights_util.vitb_weights(256, seed=0)
  elapsed = time.perf_counter() - start
  assert elapsed < 20.0, f'filling ViT-B took {elapsed:.1f} s'
  assert len(weights) == 242
  qkv = weights['backbone.blocks.0.attn.qkv.weight']
  assert qkv.dtype == np.float32 and qkv.shape == (2304, 768)
  assert abs(float(qkv.std()) - 0.02) < 1e-3
  again = weights_util.fill(weights_util.vitb_manifest(256), seed=0)
  np.testing.assert_array_equal(
    again['box_head.conv5_ctr.weight'], weights['box_head.conv5_ctr.weight']
  )


def test_unknown_key_is_an_error():
  with pytest.raises(ValueError, match='no fill rule'):
    weights_util.assign_rule('backbone.something', (3,), {})
