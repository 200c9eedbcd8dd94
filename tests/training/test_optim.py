"""Optimiser and schedules: the keep-rate warm-up at epochs whose values are worked out by hand,
the learning rate per group per epoch, and whole optimiser steps against torch.optim.AdamW +
clip_grad_norm_ + StepLR (the original's exact recipe, run here with torch as the reference)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ostrack_jax.configs import get_config
from ostrack_jax.training import optim


@pytest.mark.parametrize(
  'epoch, expected',
  [
    (1, 1.0),
    (19, 1.0),
    (20, 1.0),
    (21, 0.99988),
    (40, 0.9561),
    (60, 0.85),
    (80, 0.7439),
    (99, 0.7001),
    (100, 0.7),
    (300, 0.7),
  ],
)
def test_keep_rate_four_dataset_schedule(epoch, expected):
  config = get_config('ostrack_256_ce')
  assert optim.keep_rate_for_epoch(config, epoch) == pytest.approx(expected, abs=5e-5)


def test_keep_rate_exact_points_and_got10k_schedule():
  assert optim.keep_rate(20, 20, 100, 0.7) == 1.0
  assert optim.keep_rate(60, 20, 100, 0.7) == pytest.approx(0.85, abs=1e-12)
  config = get_config('ostrack_256_ce_got10k')
  assert optim.keep_rate_for_epoch(config, 45) == pytest.approx(0.85, abs=1e-12)
  assert optim.keep_rate_for_epoch(config, 70) == 0.7
  assert optim.keep_rate_for_epoch(config, 69) > 0.7
  assert optim.keep_rate_for_epoch(get_config('ostrack_256'), 200) == 1.0  # no CE


@pytest.mark.parametrize(
  'preset, epoch, head, backbone',
  [
    ('ostrack_256_ce', 1, 4e-4, 4e-5),
    ('ostrack_256_ce', 240, 4e-4, 4e-5),
    ('ostrack_256_ce', 241, 4e-5, 4e-6),
    ('ostrack_256_ce', 300, 4e-5, 4e-6),
    ('ostrack_384_ce_got10k', 80, 4e-4, 4e-5),
    ('ostrack_384_ce_got10k', 81, 4e-5, 4e-6),
    ('ostrack_384_ce_got10k', 100, 4e-5, 4e-6),
  ],
)
def test_learning_rate_per_group_per_epoch(preset, epoch, head, backbone):
  config = get_config(preset)
  assert optim.learning_rate_for_epoch(config, epoch, 'head') == pytest.approx(head, rel=1e-12)
  assert optim.learning_rate_for_epoch(config, epoch, 'backbone') == pytest.approx(
    backbone, rel=1e-12
  )
  # The in-graph schedule (0-based step counts) agrees, 468 steps per epoch.
  spe = 468
  for group, expected in (('head', head), ('backbone', backbone)):
    mult = 1.0 if group == 'head' else 0.1
    sched = optim.step_decay_schedule(4e-4 * mult, spe, config.train.lr_drop_epoch, 0.1)
    for step in ((epoch - 1) * spe, epoch * spe - 1):
      assert float(sched(jnp.int32(step))) == pytest.approx(expected, rel=1e-6)


def test_param_group_labels():
  params = {'backbone': {'blocks_0': {'w': 1}}, 'box_head': {'conv': {'kernel': 2}}}
  assert optim.param_group_labels(params) == {
    'backbone': {'blocks_0': {'w': 'backbone'}},
    'box_head': {'conv': {'kernel': 'head'}},
  }


@pytest.mark.slow  # torch.optim's first optimizer imports torch._dynamo: 1.5-2.5 s
def test_optimizer_steps_match_torch_adamw_with_clip_and_steplr():
  torch = pytest.importorskip('torch')  # a dev dependency (pyproject [dev]); CI installs it
  config = get_config('tiny_256_ce')
  with config.unlocked():
    config.train.lr, config.train.backbone_lr_multiplier = 4e-4, 0.1  # the original's
    config.train.lr_drop_epoch = 2
    config.train.weight_decay = 0.5  # large enough for the decoupled decay to show at rtol 2e-6
  steps_per_epoch = 2
  rng = np.random.default_rng(0)
  init = {
    'backbone': {'w': rng.normal(size=(3, 4)).astype(np.float32)},
    'box_head': {
      'b': rng.normal(size=(4,)).astype(np.float32),
      'k': rng.normal(size=(2, 2)).astype(np.float32),
    },
  }
  grads = [
    jax.tree_util.tree_map(lambda x, s=s: rng.normal(size=x.shape).astype(np.float32) * s, init)
    for s in (1.0, 0.01, 3.0, 0.02, 1.0, 0.5, 0.001, 2.0)
  ]

  tx = optim.make_optimizer(config, steps_per_epoch)
  params = jax.tree_util.tree_map(jnp.asarray, init)
  state = tx.init(params)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p))

  t_params = {
    k: torch.nn.Parameter(torch.tensor(v))
    for k, v in (
      ('backbone.w', init['backbone']['w']),
      ('box_head.b', init['box_head']['b']),
      ('box_head.k', init['box_head']['k']),
    )
  }
  t_opt = torch.optim.AdamW(
    [
      {'params': [t_params['box_head.b'], t_params['box_head.k']]},
      {'params': [t_params['backbone.w']], 'lr': 4e-4 * 0.1},
    ],
    lr=4e-4,
    weight_decay=0.5,
  )
  t_sched = torch.optim.lr_scheduler.StepLR(t_opt, step_size=2)

  for i, g in enumerate(grads):
    updates, state = update(jax.tree_util.tree_map(jnp.asarray, g), state, params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    t_opt.zero_grad()
    t_params['backbone.w'].grad = torch.tensor(g['backbone']['w'])
    t_params['box_head.b'].grad = torch.tensor(g['box_head']['b'])
    t_params['box_head.k'].grad = torch.tensor(g['box_head']['k'])
    torch.nn.utils.clip_grad_norm_(list(t_params.values()), max_norm=0.1)
    t_opt.step()
    if (i + 1) % steps_per_epoch == 0:
      t_sched.step()  # end of epoch
    for name, ours in (
      ('backbone.w', params['backbone']['w']),
      ('box_head.b', params['box_head']['b']),
      ('box_head.k', params['box_head']['k']),
    ):
      np.testing.assert_allclose(
        np.asarray(ours),
        t_params[name].detach().numpy(),
        rtol=2e-6,
        atol=1e-7,
        err_msg=f'step {i} {name}',
      )
  # 8 steps at 2 per epoch with the drop after epoch 2: the last steps ran at lr x0.01.
  assert t_opt.param_groups[0]['lr'] == pytest.approx(4e-6)
