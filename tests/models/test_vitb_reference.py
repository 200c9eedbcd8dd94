"""Full-size ViT-B OSTrack-256 / OSTrack-384 (CE) against the original PyTorch model.

References: tests/fixtures/vitb/*.npz, the original's outputs (botaoye/OSTrack 33b5e12, CPU,
float32) for seed-0 synthetic weights in the released 242-key layout, which
tests/weights_util.py regenerates bit for bit (no ViT-B checkpoint is stored), on inputs drawn
from np.random.default_rng(100) (template then search, standard normal, NCHW). See
tests/fixtures/README.md.

Tolerances (float32, matmul precision 'highest'; measured values in brackets):
* score_map 1e-5 absolute [1.0e-6]; size_map, offset_map 2e-5 [1.9e-6, 5.4e-6];
  pred_boxes 1e-5 [3.0e-7];
* backbone_feat: 16 sampled rows 2e-5 absolute [4.3e-6] (values up to ~4); the float64 sum of
  |feat| over all rows within 1e-6 relative [2.3e-8]; the zero (eliminated) rows identical;
* CE: remaining global indices after blocks 3, 6, 9 and the removed indices of every CE layer
  identical, order included. The reference margins (256: 2.3e-6 to 5.5e-6, 384: 2.2e-7 to
  2.2e-6) are far above our score error (~1e-9: our margins agree within 5e-9 [9e-10]), so equal
  sets are expected.
"""

import jax
import numpy as np
import pytest

import weights_util
from ostrack_jax.configs import get_config
from ostrack_jax.models.ostrack import build_model
from ostrack_jax.weights.convert import convert_ostrack_state_dict

# fixture name -> (preset, keep-ratio override)
CASES = {
  'vitb256ce_seed0': ('ostrack_256_ce', None),
  'vitb256ce_keep1.0_seed0': ('ostrack_256_ce', 1.0),
  'vitb384ce_seed0': ('ostrack_384_ce', None),
}


@pytest.fixture(scope='module')
def converted():
  """Seed-0 ViT-B variables per search size, converted from the released-layout state dict."""
  cache = {}

  def get(preset):
    if preset not in cache:
      config = get_config(preset)
      state_dict = weights_util.vitb_weights(config.model.search_size, seed=0)
      variables, report = convert_ostrack_state_dict(state_dict, config)
      # Every key is accounted for: loaded, or one of the unused cls_token, 197-token pos_embed
      # and the 12 BatchNorm num_batches_tracked counters.
      assert len(report.loaded) + len(report.unused) == len(state_dict) == 242
      unused = sorted(k for k in report.unused if not k.endswith('.num_batches_tracked'))
      assert unused == ['backbone.cls_token', 'backbone.pos_embed']
      assert len(report.unused) == 14
      cache[preset] = (config, variables)
    return cache[preset]

  return get


def _inputs(ref):
  rng = np.random.default_rng(int(ref['input_seed']))
  template = rng.standard_normal(tuple(ref['template_shape'])).astype(np.float32)
  search = rng.standard_normal(tuple(ref['search_shape'])).astype(np.float32)
  np.testing.assert_array_equal(template.reshape(-1)[:8], ref['template_first8'])
  np.testing.assert_array_equal(search.reshape(-1)[:8], ref['search_first8'])
  return template.transpose(0, 2, 3, 1), search.transpose(0, 2, 3, 1)  # NCHW -> NHWC


def _nhwc(x):
  return x.transpose(0, 2, 3, 1)


@pytest.fixture(scope='module')
def outputs(converted, fixtures_dir):
  """name -> (fixture, outputs, backbone intermediates). The cases of one preset (256: keep 0.7
  and 1.0) run together in one jitted program: they share most compiled kernels."""
  done = {}

  def get(name):
    if name not in done:
      preset = CASES[name][0]
      names = sorted(n for n, (p, _) in CASES.items() if p == preset)
      config, variables = converted(preset)
      model = build_model(config)
      refs = [np.load(fixtures_dir / 'vitb' / f'{n}.npz') for n in names]
      keep_ratios = [CASES[n][1] for n in names]

      def passes(variables, inputs):
        return [
          model.apply(variables, t, s, keep_ratio=k, mutable=['intermediates'])
          for k, (t, s) in zip(keep_ratios, inputs, strict=True)
        ]

      with jax.default_matmul_precision('highest'):
        results = jax.jit(passes)(variables, [_inputs(ref) for ref in refs])
      for n, ref, (out, state) in zip(names, refs, results, strict=True):
        done[n] = ref, out, state['intermediates']['backbone']
    return done[name]

  return get


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_vitb_matches_original(converted, outputs, name):
  preset, _ = CASES[name]
  ref, out, inter = outputs(name)
  assert str(ref['preset']) == preset
  config, _ = converted(preset)

  np.testing.assert_allclose(
    np.asarray(out['score_map']), _nhwc(ref['score_map']), atol=1e-5, rtol=0
  )
  np.testing.assert_allclose(np.asarray(out['size_map']), _nhwc(ref['size_map']), atol=2e-5, rtol=0)
  np.testing.assert_allclose(
    np.asarray(out['offset_map']), _nhwc(ref['offset_map']), atol=2e-5, rtol=0
  )
  np.testing.assert_allclose(
    np.asarray(out['pred_boxes']), ref['pred_boxes'][:, 0], atol=1e-5, rtol=0
  )

  feat = np.asarray(out['backbone_feat'])
  np.testing.assert_allclose(
    feat[:, ref['backbone_feat_rows']], ref['backbone_feat_sampled'], atol=2e-5, rtol=0
  )
  np.testing.assert_allclose(
    np.abs(feat.astype(np.float64)).sum(axis=(1, 2)), ref['backbone_feat_abs_sum'], rtol=1e-6
  )
  np.testing.assert_array_equal(np.abs(feat).sum(-1) == 0, ref['backbone_feat_zero_rows'])

  removed = out['removed_indexes']
  assert len(removed) == int(ref['num_removed_lists'])
  for j, ours in enumerate(removed):
    np.testing.assert_array_equal(
      np.asarray(ours),
      ref[f'removed_indexes_s_{j}'].astype(np.int64),
      err_msg=f'CE layer {j}: removed indices differ',
    )
  for i in config.model.ce_loc:
    np.testing.assert_array_equal(
      np.asarray(inter['global_index'][i]),
      ref[f'block{i:02d}_global_index_s'].astype(np.int64),
      err_msg=f'block {i}: kept search indices differ',
    )
    if f'block{i:02d}_ce_margin' in ref:
      assert np.all(ref[f'block{i:02d}_ce_margin'] > 1e-7)
      assert np.all(ref[f'block{i:02d}_rederived_set_matches'])
      np.testing.assert_allclose(
        np.asarray(inter[f'blocks_{i}']['ce_margin'][0]),
        ref[f'block{i:02d}_ce_margin'],
        atol=5e-9,
        rtol=0,
      )
