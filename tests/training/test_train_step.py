"""The jitted, sharded train step: on 8 simulated CPU devices (tests/conftest.py) one
sharded step gives the same state as one single-device step on the same global batch; non-finite
steps are skipped and counted; bad batch sizes are refused; keep rates share compiled programs by
token counts."""

import jax
import numpy as np
import optax
import pytest

import train_util
from ostrack_jax.configs import get_config
from ostrack_jax.models.ostrack import build_model, init_variables
from ostrack_jax.training import optim, state as state_lib, step as step_lib

GLOBAL_BATCH = 8

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def small_config():
  """A small OSTrack (train_util.SMALL_MODEL: 64/128 crops, 3 blocks, CE at block 1) so that
  compiling stays fast; float32 steps, compared with tight tolerances."""
  return train_util.small_config('model.ce_template_range=ALL', 'train.mixed_precision=False')


def make_batch(seed=0, batch=GLOBAL_BATCH):
  return train_util.random_batch(batch, seed)


def make_train_step(num_devices):
  """(TrainStep on the first ``num_devices`` devices, its optimiser) for small_config()."""
  config = small_config()
  tx = optim.make_optimizer(config, steps_per_epoch=10)
  mesh = step_lib.make_mesh(jax.devices()[:num_devices])
  return step_lib.TrainStep(build_model(config), tx, config, mesh), tx


def run_one_step(num_devices, batch, keep_ratio=0.7, steps=1, train_step=None):
  """``steps`` steps from the seed-0 initialisation; ``train_step`` (from make_train_step):
  reuse its compiled programs."""
  train_step, tx = train_step or make_train_step(num_devices)
  mesh = train_step.mesh
  variables = init_variables(small_config(), seed=0)
  state = jax.device_put(
    state_lib.create_train_state(variables, tx, seed=0), step_lib.replicated(mesh)
  )
  with jax.default_matmul_precision('highest'):
    for _ in range(steps):
      state, metrics = train_step(state, step_lib.shard_batch(batch, mesh), keep_ratio)
  return jax.device_get(state), jax.device_get(metrics)


@pytest.fixture(scope='module')
def single_device_step():
  """The one-device TrainStep, shared: its program is compiled once for the module."""
  return make_train_step(1)


@pytest.fixture(scope='module')
def single_device_result(single_device_step):
  return run_one_step(1, make_batch(), train_step=single_device_step)


@pytest.mark.slow
def test_sharded_step_equals_unsharded(single_device_result):
  # 8 devices against 1: each device count is one more compiled step (~20 s on 2 cores); 2 devices
  # train in test_train_resume.py, 4 and 2 x 2 in test_train_multihost.py.
  assert len(jax.devices()) >= 8, 'conftest.py must simulate 8 CPU devices'
  (ref_state, ref_metrics) = single_device_result
  state, metrics = run_one_step(8, make_batch())
  assert int(state.step) == 1 and bool(metrics['finite'])
  for name in ('Loss/total', 'Loss/giou', 'Loss/l1', 'Loss/location', 'IoU', 'grad_norm'):
    np.testing.assert_allclose(metrics[name], ref_metrics[name], rtol=2e-6, err_msg=name)
  # BatchNorm running statistics come from the global batch (per-device statistics would differ
  # by far more than this).
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(ref_state.batch_stats),
    jax.tree_util.tree_leaves(state.batch_stats),
    strict=True,
  ):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  # Parameters. Adam's first step is lr * g / (|g| + eps): about +-lr whatever |g| is, so an entry
  # whose true gradient is ~0 (e.g. a conv bias followed by train-mode BatchNorm, or a weight
  # whose gradient is ~1e-8) turns float-summation-order noise into a step anywhere in [-lr, lr].
  # Hence: every entry within 2 lr, and all but a few per mille within 3e-6.
  lr = get_config('tiny_256_ce').train.lr
  total = loose = 0
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(ref_state.params),
    jax.tree_util.tree_leaves(state.params),
    strict=True,
  ):
    diff = np.abs(np.asarray(a) - np.asarray(b))
    assert diff.max() <= 2 * lr + 1e-7, jax.tree_util.keystr(path)
    total += diff.size
    loose += int((diff > 3e-6).sum())
  assert loose / total < 2e-3, (loose, total)
  # The step moved the parameters (a no-op step would also "agree").
  init = init_variables(small_config(), seed=0)['params']
  moved = max(
    float(np.abs(np.asarray(x) - y).max())
    for x, y in zip(
      jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(state.params), strict=True
    )
  )
  assert moved > 1e-4


@pytest.mark.slow
def test_non_finite_step_is_skipped_and_counted(single_device_step):
  batch = make_batch()
  batch['search'][0, 0, 0, 0] = np.nan
  state, metrics = run_one_step(1, batch, train_step=single_device_step)
  assert not bool(metrics['finite']) and int(state.bad_steps) == 1 and int(state.step) == 1
  init = init_variables(small_config(), seed=0)
  for x, y in zip(
    jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(state.variables()), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(x), y)
  # Adam (moments, bias-correction count) as if the step never happened, as GradScaler skips
  # optimizer.step(); the learning-rate schedules advance with the global step.
  is_state = lambda n: isinstance(n, (optax.ScaleByAdamState, optax.ScaleByScheduleState))
  nodes = [n for n in jax.tree_util.tree_leaves(state.opt_state, is_leaf=is_state) if is_state(n)]
  adam = [n for n in nodes if isinstance(n, optax.ScaleByAdamState)]
  schedules = [n for n in nodes if isinstance(n, optax.ScaleByScheduleState)]
  assert len(adam) == 2 and len(schedules) == 2  # two parameter groups
  for n in adam:
    assert int(n.count) == 0
    assert all(not np.any(np.asarray(m)) for m in jax.tree_util.tree_leaves((n.mu, n.nu)))
  assert [int(n.count) for n in schedules] == [1, 1]


def test_batch_not_divisible_by_devices_is_refused():
  mesh = step_lib.make_mesh(jax.devices()[:8])
  with pytest.raises(ValueError, match='not divisible by the device count 8'):
    step_lib.check_global_batch(12, mesh)
  step_lib.check_global_batch(16, mesh)


def test_keep_rates_with_equal_token_counts_share_a_program():
  config = get_config('tiny_256_ce')
  cache = {}
  # 256 search tokens: ceil(0.99988 * 256) = 256 (CE effectively off, as in the original) like 1.0.
  assert step_lib.canonical_keep_ratio(config, 1.0, cache) == 1.0
  assert step_lib.canonical_keep_ratio(config, 0.99988, cache) == 1.0
  assert step_lib.canonical_keep_ratio(config, 0.7, cache) == 0.7
  assert step_lib.canonical_keep_ratio(config, 0.7001, cache) == 0.7001  # 180, 127, ... differ
  assert len(cache) == 3


@pytest.mark.slow
def test_mixed_precision_step_keeps_float32_params(single_device_result):
  ref_state, ref_metrics = single_device_result
  config = small_config()
  config.train.mixed_precision = True
  model_config = state_lib.training_config(config)
  assert model_config.model.dtype == 'bfloat16' and config.model.dtype == 'float32'
  model = build_model(model_config)
  tx = optim.make_optimizer(config, steps_per_epoch=10)
  mesh = step_lib.make_mesh(jax.devices()[:2])
  state = jax.device_put(
    state_lib.create_train_state(init_variables(config, seed=0), tx, seed=0),
    step_lib.replicated(mesh),
  )
  state, metrics = step_lib.TrainStep(model, tx, config, mesh)(
    state, step_lib.shard_batch(make_batch(), mesh), 0.7
  )
  state, metrics = jax.device_get((state, metrics))
  assert bool(metrics['finite'])
  assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(state.params))
  # bfloat16 compute (8-bit mantissa): the loss agrees with float32 to about 1%.
  np.testing.assert_allclose(metrics['Loss/total'], ref_metrics['Loss/total'], rtol=3e-2)


@pytest.mark.slow
def test_score_prior_starts_every_score_cell_at_that_probability():
  config = small_config()
  variables = init_variables(config, seed=0)
  primed = state_lib.set_score_prior(variables, 0.1)
  model = build_model(config)
  batch = make_batch(batch=2)
  apply = jax.jit(model.apply)  # one compilation for both calls (op by op took ~10 s)
  with jax.default_matmul_precision('highest'):
    before = apply(variables, batch['template'], batch['search'])['score_map']
    after = apply(primed, batch['template'], batch['search'])['score_map']
  # Only the score head's output bias moved: the logit shifts by the same amount everywhere, and
  # the initial features are small next to log(0.1 / 0.9) = -2.197.
  assert not np.allclose(before, 0.1, atol=0.05)
  np.testing.assert_allclose(after, 0.1, atol=0.05)
  untouched = jax.tree_util.tree_leaves_with_path(variables['params'])
  changed = [
    jax.tree_util.keystr(p) for p, a in untouched if not np.array_equal(a, _at(primed['params'], p))
  ]
  assert changed == ["['box_head']['conv5_ctr']['bias']"]
  with pytest.raises(ValueError, match='score_prior'):
    state_lib.set_score_prior(variables, 1.5)


def _at(tree, path):
  for k in path:
    tree = tree[k.key]
  return tree
