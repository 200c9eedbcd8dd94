"""The GPU fast-path switches of ``config.model`` (ostrack_jax.models.vit.BackboneFields),
checked on the CPU. Their defaults are the plain path: the equivalence tests
(test_model_equivalence, test_vitb_reference, test_train_step) run with them unchanged.

Float32, where the maths is the same (matmul precision 'highest'; measured values in brackets):

* ``attention_impl='xla'`` (``jax.nn.dot_product_attention``; the CE scores from a separate
  product of the template-centre row against all keys): the original's tiny fixture at keep
  0.7 / 0.85 / 1.0 within the equivalence test's tolerances (maps 1e-5 [1.2e-6], offsets 1e-5
  [4.4e-6], boxes 1e-5, features 2e-5), the kept indices after every block and the removed ones
  identical, the CE margins within 5e-9 of the original's [4.7e-10].
* ``attention_pad_to`` (the fused kernel's token count padded with masked keys): checked
  against the original's fixture in test_model_equivalence; refused with 'explicit'.
* ``attention_impl='cudnn'`` with float32 operands (cuDNN has no float32 kernel) runs the XLA
  implementation: outputs identical to 'xla'.
* ``remat`` 'block' / 'block_save_dots': the same loss and gradients within 1e-6 relative
  (global norm) [2.6e-8, 2-block model] of no remat, and the traced gradient recomputes exactly the blocks'
  products but fc2 ('block') or their attention products ('block_save_dots') once more.
* ``matmul_backward='autodiff'`` and ``bf16_activations`` have no effect in float32 (bitwise).

bfloat16, deviation from float32 stated (tiny fixture, keep 1.0 so that no CE ranking flip
mixes in; max |difference| over the batch of 2):

* bfloat16 operands (today's mixed precision): score / size maps [9.7e-3 / 9.3e-3], offsets
  [3.4e-2 cells], boxes [2.8e-3];
* ``bf16_activations`` (+ fused attention): score / size maps [1.3e-2 / 7.3e-3], offsets
  [4.1e-2 / 3.6e-2 cells], boxes [1.4e-3 / 2.3e-3];
  both held to maps 3e-2, offsets 0.1 cells, boxes 1e-2;
* with ``bf16_activations`` the head's convolution results still enter BatchNorm in float32:
  a conv + BatchNorm + ReLU whose outputs share a large offset (bias 64) stays within 2e-2 of
  the float32-activation one [7.7e-3] (rounding before BatchNorm: 0.56, and a tiny model's loss
  after 100 steps 24 instead of 21);
* ``matmul_backward='autodiff'`` vs the hand-written backward in bfloat16: the same loss, and
  gradients within 2% (global norm; the two round the cotangents at different places).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_util
from ostrack_jax.configs import get_config
from ostrack_jax.models import flops
from ostrack_jax.models.ostrack import build_model, init_variables
from ostrack_jax.training import step as step_lib

KEEP_RATIOS = {'0.7': None, '0.85': 0.85, '1.0': 1.0}
BFLOAT16_SETTINGS = [
  {'dtype': 'bfloat16'},
  {'dtype': 'bfloat16', 'bf16_activations': True},
  {'dtype': 'bfloat16', 'bf16_activations': True, 'attention_impl': 'xla'},
]


def _nhwc(x):
  return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _config(preset='tiny_256_ce', **fields):
  c = get_config(preset)
  for k, v in fields.items():
    c.model[k] = v
  return c


def _forward(configs, variables, refs, keep_ratios):
  """[(outputs, backbone intermediates)] of each (config, fixture, keep ratio), all in one
  jitted program (passes of one model share most compiled kernels: less compile time than a
  program each, the same outputs bit for bit)."""
  models = [build_model(c) for c in configs]

  def passes(variables, inputs):
    return [
      model.apply(variables, t, s, keep_ratio=keep_ratio, mutable=['intermediates'])
      for model, keep_ratio, (t, s) in zip(models, keep_ratios, inputs, strict=True)
    ]

  inputs = [(_nhwc(ref['template']), _nhwc(ref['search'])) for ref in refs]
  with jax.default_matmul_precision('highest'):
    results = jax.jit(passes)(variables, inputs)
  return [(out, state['intermediates']['backbone']) for out, state in results]


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(KEEP_RATIOS))
def test_fused_attention_float32_matches_original(tiny_variables, fixtures_dir, name):
  # One program per keep ratio: keep 1.0's is also the cudnn test's (tests/conftest.py's cache).
  ref = np.load(fixtures_dir / 'tiny256' / f'forward_keep{name}.npz')
  config = _config(attention_impl='xla')
  [(out, inter)] = _forward([config], tiny_variables, [ref], [KEEP_RATIOS[name]])
  for key, tol in (('score_map', 1e-5), ('size_map', 1e-5), ('offset_map', 1e-5)):
    np.testing.assert_allclose(np.asarray(out[key]), _nhwc(ref[key]), atol=tol, rtol=0)
  np.testing.assert_allclose(np.asarray(out['pred_boxes']), ref['pred_boxes'][:, 0], atol=1e-5)
  np.testing.assert_allclose(np.asarray(out['backbone_feat']), ref['backbone_feat'], atol=2e-5)
  for i in range(config.model.depth):
    np.testing.assert_array_equal(
      np.asarray(inter['global_index'][i]),
      ref[f'block{i:02d}_global_index_s'].astype(np.int64),
      err_msg=f'block {i}: kept search indices differ',
    )
    if f'block{i:02d}_ce_margin' in ref:
      np.testing.assert_allclose(
        np.asarray(inter[f'blocks_{i}']['ce_margin'][0]),
        ref[f'block{i:02d}_ce_margin'],
        atol=5e-9,
        rtol=0,
      )
  removed_ref = [ref[f'removed_indexes_s_{j}'] for j in range(len(out['removed_indexes']))]
  for ours, theirs in zip(out['removed_indexes'], removed_ref, strict=True):
    np.testing.assert_array_equal(np.asarray(ours), theirs.astype(np.int64))


@pytest.fixture(scope='module')
def keep1_outputs(tiny_variables, fixtures_dir):
  """Outputs at keep 1.0 per fast-path setting, computed once for the module."""
  ref = np.load(fixtures_dir / 'tiny256' / 'forward_keep1.0.npz')
  done = {}

  def get(**fields):
    key = tuple(sorted(fields.items()))
    if key not in done:
      # The bfloat16 settings are computed together, in one program, when the first is asked.
      group = BFLOAT16_SETTINGS if fields in BFLOAT16_SETTINGS else [fields]
      results = _forward(
        [_config(**f) for f in group], tiny_variables, [ref] * len(group), [1.0] * len(group)
      )
      for f, (out, _) in zip(group, results, strict=True):
        done[tuple(sorted(f.items()))] = out
    return done[key]

  return ref, get


@pytest.mark.slow
def test_cudnn_request_in_float32_runs_the_xla_implementation(keep1_outputs):
  _, get = keep1_outputs
  a, b = get(attention_impl='cudnn'), get(attention_impl='xla')
  for key in ('score_map', 'size_map', 'offset_map', 'backbone_feat'):
    np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


@pytest.mark.slow
def test_bfloat16_only_switches_have_no_effect_in_float32(keep1_outputs):
  _, get = keep1_outputs
  plain = get()
  for fields in ({'bf16_activations': True}, {'matmul_backward': 'autodiff'}):
    out = get(**fields)
    for key in ('score_map', 'size_map', 'offset_map', 'backbone_feat'):
      np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(plain[key]), err_msg=key)


@pytest.mark.parametrize(
  'fields', BFLOAT16_SETTINGS, ids=['bf16_operands', 'bf16_activations', 'bf16_activations_fused']
)
@pytest.mark.slow
def test_bfloat16_paths_deviation_from_float32(keep1_outputs, fields):
  ref, get = keep1_outputs
  out = get(**fields)
  for key, tol in (('score_map', 3e-2), ('size_map', 3e-2), ('offset_map', 0.1)):
    err = float(np.abs(np.asarray(out[key]) - _nhwc(ref[key])).max())
    assert err <= tol, f'{key}: {err}'
    assert np.asarray(out[key]).dtype == np.float32
  err = float(np.abs(np.asarray(out['pred_boxes']) - ref['pred_boxes'][:, 0]).max())
  assert err <= 1e-2, f'boxes: {err}'


@pytest.mark.slow
@pytest.mark.fast_compile  # our own paths compared (tests/conftest.py)
def test_bf16_activations_keep_batchnorm_input_float32():
  from ostrack_jax.models.head import ConvBNReLU

  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 16)).astype(np.float32))
  outs = []
  for act in (jnp.float32, jnp.bfloat16):
    module = ConvBNReLU(8, dtype=jnp.bfloat16, act_dtype=act)
    variables = jax.jit(functools.partial(module.init, train=False))(jax.random.PRNGKey(0), x)
    variables['params']['conv']['bias'] = jnp.full((8,), 64.0)  # a large common offset
    # One program per setting (op by op, each operation was one).
    y, _ = jax.jit(functools.partial(module.apply, train=True, mutable=['batch_stats']))(
      variables, x
    )
    assert y.dtype == act
    outs.append(np.asarray(y.astype(jnp.float32)))
  assert float(np.abs(outs[1] - outs[0]).max()) <= 2e-2


# ----------------------------------------------------------------------------- gradients


def _small(**fields):
  """A small OSTrack (train_util.SMALL_MODEL with 2 blocks, CE at the second, drop path on) for
  gradients; ``fields`` set model fields."""
  c = train_util.small_config('model.depth=2', 'model.drop_path_rate=0.1')
  for k, v in fields.items():
    c.model[k] = v
  return c


def _loss_fn(config, keep_ratio=None):
  """The train step's loss (weights giou 2, l1 5, focal 1 from tiny_256_ce) of a fixed batch."""
  loss = step_lib.training_loss(build_model(config), config.train)
  batch = train_util.random_batch(4)
  args = (batch['template'], batch['search'], batch, keep_ratio, jax.random.PRNGKey(1))

  def total(params, batch_stats):
    return loss(params, batch_stats, *args)[0]

  return total


def _value_and_grad(config, keep_ratio=None, with_jaxpr=False):
  """(loss, gradients flattened) of _loss_fn at the seed-0 initialisation, and with
  ``with_jaxpr`` the jaxpr of the traced value-and-gradient (the compiled program's, traced once)."""
  variables = init_variables(config, seed=0)
  args = (variables['params'], variables['batch_stats'])
  with jax.default_matmul_precision('highest'):
    traced = jax.jit(jax.value_and_grad(_loss_fn(config, keep_ratio))).trace(*args)
    value, grads = traced.lower().compile()(*args)
  value, grads = (
    float(value),
    np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(grads)]),
  )
  return (value, grads, traced.jaxpr) if with_jaxpr else (value, grads)


def _rel(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope='module')
def float32_reference():
  """The small model's loss and gradients without fast paths, computed on first use (inside
  a test, so with that test's compile mode: tests/conftest.py) and kept for the module."""
  done = []

  def get():
    if not done:
      done.append(_value_and_grad(_small()))
    return done[0]

  return get


@pytest.mark.slow
@pytest.mark.parametrize('remat', ['block', 'block_save_dots'])
@pytest.mark.fast_compile  # our own paths compared (tests/conftest.py)
def test_remat_gives_the_same_gradients_and_recomputes(float32_reference, remat):
  ref_loss, ref_grads = float32_reference()
  config = _small(remat=remat)
  loss, grads, jaxpr = _value_and_grad(config, with_jaxpr=True)
  assert loss == pytest.approx(ref_loss, rel=1e-7)
  assert _rel(grads, ref_grads) <= 1e-6
  # The backward pass recomputes: the blocks' products ('block'; all but fc2, whose result only
  # feeds the residual sum, which no gradient needs), or only the batched attention products
  # ('block_save_dots' keeps the weight products' results). Counted in the traced program that
  # gave the gradients above (the loss's own products are the forward's, as in jax.grad's).
  macs = flops.count_macs(config)
  blocks = macs.backbone - macs.patch_embed
  recomputed = blocks - macs.mlp // 2 if remat == 'block' else macs.attn_scores + macs.attn_values
  assert flops.jaxpr_matmul_flops(jaxpr) == 4 * (macs.train_flops + 2 * recomputed)


@pytest.mark.slow
@pytest.mark.fast_compile  # our own paths compared (tests/conftest.py)
def test_fused_attention_float32_gradients(float32_reference):
  ref_loss, ref_grads = float32_reference()
  loss, grads = _value_and_grad(_small(attention_impl='xla'))
  assert loss == pytest.approx(ref_loss, rel=1e-6)
  assert _rel(grads, ref_grads) <= 2e-6


@pytest.mark.slow
@pytest.mark.fast_compile  # our own paths compared (tests/conftest.py)
def test_autodiff_backward_in_bfloat16_is_close_to_the_custom_one():
  # One block without CE holds every kind of product the rule differentiates (patch embedding,
  # qkv, attention, projection, MLP, the head's convolutions) at a third of the compile time.
  # Both in one program (their forward passes compile to the same kernels).
  small = dict(dtype='bfloat16', depth=1, ce_loc=(), ce_keep_ratio=())
  configs = (_small(**small), _small(matmul_backward='autodiff', **small))
  variables = init_variables(configs[0], seed=0)  # the setting adds no variable
  grad_fns = [jax.value_and_grad(_loss_fn(c)) for c in configs]
  with jax.default_matmul_precision('highest'):
    both = jax.jit(lambda p, b: [f(p, b) for f in grad_fns])(
      variables['params'], variables['batch_stats']
    )
  (custom_loss, custom), (auto_loss, auto) = [
    (float(v), np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(grads)]))
    for v, grads in both
  ]
  assert auto_loss == custom_loss
  assert _rel(auto, custom) <= 2e-2


def test_bad_values_are_refused():
  for field, value in (
    ('attention_impl', 'flash'),
    ('matmul_backward', 'xla'),
    ('remat', 'all'),
  ):
    with pytest.raises(ValueError, match=f'config.model.{field}'):
      build_model(_config(**{field: value}))
  for fields, message in (
    ({'attention_impl': 'xla', 'attention_pad_to': -8}, 'attention_pad_to=-8: expected 0'),
    ({'attention_pad_to': 64}, "needs config.model.attention_impl 'xla' or 'cudnn'"),
  ):
    with pytest.raises(ValueError, match=message):
      build_model(_config(**fields))
