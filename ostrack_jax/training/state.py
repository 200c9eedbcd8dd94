"""The train state: one pytree holding everything a resumed run needs besides the data iterator.

``TrainState`` fields:

* ``step``: int32 scalar, optimiser steps taken (= batches consumed).
* ``params``, ``batch_stats``: the model's variables (float32, also under mixed precision).
* ``opt_state``: optax state of :func:`ostrack_jax.training.optim.make_optimizer`.
* ``rng``: uint32[2] raw PRNG key; the drop-path key of step s is ``fold_in(rng, s)``, so a
  resumed run draws the same stochastic depth masks.
* ``bad_steps``: int32 scalar, steps skipped because the loss or the gradients were not finite.
"""

from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

Variables = Dict[str, Any]


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  bad_steps: jax.Array

  def variables(self) -> Variables:
    return {'params': self.params, 'batch_stats': self.batch_stats}


def training_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with ``model.dtype`` = bfloat16 when ``train.mixed_precision`` is on."""
  if not config.train.mixed_precision or config.model.dtype == 'bfloat16':
    return config
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy
  config.model.dtype = 'bfloat16'
  config.lock()
  return config


def set_score_prior(variables: Variables, prior: float) -> Variables:
  """``variables`` with the score head's output bias = log(prior / (1 - prior)) (copy).

  Every cell of the score map then starts near probability ``prior``: at initialisation the
  conv's weighted input is small next to the bias.
  """
  if not 0.0 < prior < 1.0:
    raise ValueError(
      f'config.train.score_prior={prior!r}: must lie in (0, 1), or be 0 for the '
      'original initialisation'
    )
  params = jax.tree_util.tree_map(lambda x: x, variables['params'])  # new containers
  bias = params['box_head']['conv5_ctr']['bias']
  params['box_head']['conv5_ctr'] = dict(
    params['box_head']['conv5_ctr'], bias=jnp.full_like(bias, np.log(prior / (1.0 - prior)))
  )
  return dict(variables, params=params)


def create_train_state(
  variables: Variables, tx: optax.GradientTransformation, seed: int
) -> TrainState:
  """A fresh state from model ``variables`` ({'params', 'batch_stats'}).

  One jitted program: its outputs are new arrays (the step donates the state, which must not
  delete the caller's), and the optimiser's zero moments come from one compilation instead of
  one small eager compilation per leaf shape.
  """

  def build(params, batch_stats):
    # Explicit copies: never the caller's buffers, even if jit forwarded unchanged inputs.
    params = jax.tree_util.tree_map(jnp.copy, params)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=jax.tree_util.tree_map(jnp.copy, batch_stats),
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.PRNGKey(seed)).astype(jnp.uint32),
      bad_steps=jnp.zeros((), jnp.int32),
    )

  return jax.jit(build)(variables['params'], variables.get('batch_stats', {}))
