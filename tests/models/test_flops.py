"""The analytic FLOP count (ostrack_jax/models/flops.py) against the traced program and XLA.

* Exact: the products of the traced forward (``jax.make_jaxpr``, every ``dot_general``) equal
  ``forward_flops`` for the tiny model at three keep ratios and for ViT-B OSTrack-256 / 384, and
  the products of the traced float32 gradient equal ``train_flops`` (3 x forward less the patch
  embedding's input gradient).
* XLA's own count on the CPU (``compiled.cost_analysis()['flops']``, which also counts the
  elementwise work: norms, softmax, GELU) for the ViT-B OSTrack-256 CE forward at batch 1 is
  within 0-3% above the analytic count (measured +1.45%).
"""

import jax
import jax.numpy as jnp
import pytest

from ostrack_jax.configs import get_config
from ostrack_jax.models import flops
from ostrack_jax.models.ostrack import abstract_variables, build_model, input_shapes
from ostrack_jax.training import losses


def _abstract_inputs(config, batch=1):
  t, s = input_shapes(config, batch)
  return jax.ShapeDtypeStruct(t, jnp.float32), jax.ShapeDtypeStruct(s, jnp.float32)


@pytest.mark.parametrize(
  'preset,keep_ratio',
  [
    ('tiny_256_ce', None),
    ('tiny_256_ce', 0.85),
    ('tiny_256_ce', 1.0),
    # The full-size presets: ~1 s of tracing each, outside the quick set (-m "not slow").
    pytest.param('ostrack_256_ce', None, marks=pytest.mark.slow),
    pytest.param('ostrack_384_ce', None, marks=pytest.mark.slow),
    pytest.param('ostrack_256', None, marks=pytest.mark.slow),
  ],
)
def test_forward_count_equals_the_traced_products(preset, keep_ratio):
  config = get_config(preset)
  model = build_model(config)
  jaxpr = jax.make_jaxpr(lambda v, t, s: model.apply(v, t, s, keep_ratio=keep_ratio))(
    abstract_variables(config), *_abstract_inputs(config, batch=2)
  )
  assert (
    flops.jaxpr_matmul_flops(jaxpr) == 2 * flops.count_macs(config, keep_ratio).forward_flops
  )  # batch 2


def test_known_totals():
  """OSTrack-256 CE at keep 0.7: 22.64 GMACs (45.3 GFLOP) forward, 135.5 GFLOP per training
  sample; without CE 30.9 GMACs (CE saves 27%)."""
  ce = flops.count_macs(get_config('ostrack_256_ce'))
  assert ce.total == 22_639_694_848
  assert ce.train_flops == 3 * 2 * ce.total - 2 * ce.patch_embed == 135_460_681_728
  assert flops.count_macs(get_config('ostrack_256_ce'), 1.0).total == 30_911_537_152
  assert flops.count_macs(get_config('ostrack_256')).total == 30_911_537_152


@pytest.mark.slow
@pytest.mark.parametrize('preset', ['tiny_256_ce', 'ostrack_256_ce'])
def test_train_count_equals_the_traced_gradient(preset):
  config = get_config(preset)
  model = build_model(config)
  variables = abstract_variables(config)
  batch = 2
  anno = jax.ShapeDtypeStruct((batch, 4), jnp.float32)
  f = config.model.search_size // config.model.patch_size
  heatmap = jax.ShapeDtypeStruct((batch, f, f, 1), jnp.float32)

  def loss(params, batch_stats, template, search, anno, heatmap):
    out, _ = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      template,
      search,
      train=True,
      rngs={'drop_path': jax.random.PRNGKey(0)},
      mutable=['batch_stats'],
    )
    return losses.ostrack_loss(out, anno, heatmap, 2.0, 5.0, 1.0)[0]

  jaxpr = jax.make_jaxpr(jax.grad(loss))(
    variables['params'],
    variables['batch_stats'],
    *_abstract_inputs(config, batch),
    anno,
    heatmap,
  )
  assert flops.jaxpr_matmul_flops(jaxpr) == batch * flops.count_macs(config).train_flops


@pytest.mark.slow
def test_xla_count_on_the_cpu_is_close_above():
  config = get_config('ostrack_256_ce')
  model = build_model(config)
  compiled = (
    jax.jit(lambda v, t, s: model.apply(v, t, s))
    .lower(abstract_variables(config), *_abstract_inputs(config))
    .compile()
  )
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  ratio = float(cost['flops']) / flops.count_macs(config).forward_flops
  assert 1.0 <= ratio <= 1.03, ratio


def test_device_peaks_and_mfu():
  assert flops.device_peak_tflops('NVIDIA H100 80GB HBM3') == (989.0, 'H100')
  assert flops.device_peak_tflops('NVIDIA H100 PCIe') == (756.0, 'H100 PCIe')
  assert flops.device_peak_tflops('NVIDIA H200', 'float32') == (495.0, 'H200')
  assert flops.device_peak_tflops('NVIDIA A100-SXM4-80GB') == (312.0, 'A100')
  assert flops.device_peak_tflops('cpu') == (None, None)
  # The figure: batch 32 in 35.3 ms on an H200 at 135.5 GFLOP per sample.
  per_sample = flops.count_macs(get_config('ostrack_256_ce')).train_flops
  assert flops.mfu(32 * per_sample, 0.0353, 989.0) == pytest.approx(0.1242, abs=1e-4)
