"""The jitted, data-parallel train and eval steps.

Data parallelism with ``jax.sharding``: a 1-D mesh ``('data',)`` over every device (of every
process), the global batch sharded along it (``P('data')``), the train state replicated
(``P()``). One ``jax.jit`` program per step with the state donated; XLA inserts the gradient
all-reduce, and BatchNorm's batch mean/variance are taken over the **global** batch (the
reductions run on the sharded array), i.e. SyncBN, where the original used per-GPU statistics.

The CE keep rate changes the token counts, hence the shapes: one program is compiled per distinct
count tuple (the keep rates of the warm-up that give the same counts share a program).

Batches (host side, per process: its own slice of the global batch) are dicts of numpy arrays:

* ``template`` (B, Ht, Wt, 3), ``search`` (B, Hs, Ws, 3): float32 ImageNet-normalized RGB;
* ``search_anno`` (B, 4): GT xywh normalized to the search crop;
* ``heatmap`` (B, F, F, 1): the Gaussian target, built by the data workers
  (:func:`ostrack_jax.data.transforms.gaussian_heatmap`).
"""

import functools
from typing import Any, Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from ostrack_jax.models.vit import keep_counts
from ostrack_jax.training import losses
from ostrack_jax.training.state import TrainState

Batch = Dict[str, Any]
Metrics = Dict[str, jax.Array]

BATCH_KEYS = ('template', 'search', 'search_anno', 'heatmap')


# ------------------------------------------------------------------------------------ mesh


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D ('data',) mesh over ``devices`` (default: all devices of all processes).

  Axis type Auto (GSPMD propagation): the model is written sharding-agnostic, and pure data
  parallelism needs no per-op sharding annotations.
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh(
    (len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
  )


def check_global_batch(global_batch: int, mesh: jax.sharding.Mesh) -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(
      f'global batch size {global_batch} is not divisible by the device count {n} '
      '(config.train.batch_size is per device; set it so that batch_size * devices '
      'divides evenly)'
    )


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def shard_batch(batch: Batch, mesh) -> Batch:
  """This process's numpy slice -> global arrays sharded on P('data')."""
  sharding = data_sharded(mesh)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k])) for k in BATCH_KEYS
  }


# ------------------------------------------------------------------------------------ steps


def canonical_keep_ratio(
  config: ml_collections.ConfigDict, keep_ratio: float, cache: Dict[Tuple[int, ...], float]
) -> float:
  """The first keep ratio seen that yields the same token counts as ``keep_ratio``."""
  m = config.model
  counts = tuple(
    keep_counts(
      (m.search_size // m.patch_size) ** 2,
      tuple(m.ce_loc),
      tuple(m.ce_keep_ratio),
      m.depth,
      float(keep_ratio),
    )
  )
  return cache.setdefault(counts, float(keep_ratio))


def training_loss(model: nn.Module, train_config: ml_collections.ConfigDict) -> Callable:
  """The training loss as the train step differentiates it (train mode, drop path, batch
  statistics updated; loss weights from ``train_config``):

  ``loss(params, batch_stats, template, search, batch, keep_ratio, drop_key)
  -> (total, (metrics, new batch_stats, pred_boxes))``, with ``template`` / ``search`` the
  normalised float32 NHWC crops and ``batch`` holding ``search_anno`` and ``heatmap``.
  """
  t = train_config

  def loss(params, batch_stats, template, search, batch, keep_ratio, drop_key):
    outputs, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      template,
      search,
      keep_ratio=keep_ratio,
      train=True,
      rngs={'drop_path': drop_key},
      mutable=['batch_stats'],
    )
    total, metrics = losses.ostrack_loss(
      outputs, batch['search_anno'], batch['heatmap'], t.giou_weight, t.l1_weight, t.focal_weight
    )
    return total, (metrics, updates['batch_stats'], outputs['pred_boxes'])

  return loss


def train_step_fn(
  model: nn.Module, tx: optax.GradientTransformation, config: ml_collections.ConfigDict
) -> Callable[..., Tuple[TrainState, Metrics]]:
  """The pure step ``(state, batch, keep_ratio) -> (state, metrics)`` (not jitted).

  A step whose loss, gradients or predicted boxes are not finite leaves params, batch_stats and
  the Adam moments and step count unchanged, as PyTorch's GradScaler skips ``optimizer.step()``;
  it still counts as a step (the data order is unaffected), the learning-rate schedules advance
  with it (the original's per-epoch StepLR does not see skipped steps), and ``bad_steps`` is
  incremented; ``metrics['finite']`` says which happened.
  """
  loss = training_loss(model, config.train)

  def step(state: TrainState, batch: Batch, keep_ratio: float):
    drop_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
      return loss(
        params, state.batch_stats, batch['template'], batch['search'], batch, keep_ratio, drop_key
      )

    (total, (metrics, batch_stats, pred_boxes)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    grad_norm = optax.tree.norm(grads)
    boxes_finite = jnp.all(jnp.isfinite(pred_boxes))
    finite = jnp.isfinite(total) & jnp.isfinite(grad_norm) & boxes_finite

    def apply_update():
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      return optax.apply_updates(state.params, updates), batch_stats, opt_state

    def skip_update():
      return state.params, state.batch_stats, advance_schedules(state.opt_state)

    # A conditional, not a select: selecting between old and new over params, batch stats and
    # both Adam moments read and wrote the whole optimiser state again (4x the cost of AdamW
    # itself on a CPU, 0.24 s of a ViT-B step).
    params, batch_stats, opt_state = jax.lax.cond(finite, apply_update, skip_update)
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      batch_stats=batch_stats,
      opt_state=opt_state,
      bad_steps=state.bad_steps + jnp.where(finite, 0, 1).astype(jnp.int32),
    )
    metrics = dict(metrics, grad_norm=grad_norm, finite=finite, boxes_finite=boxes_finite)
    return new_state, metrics

  return step


def advance_schedules(opt_state: Any) -> Any:
  """``opt_state`` with the step count of every optax schedule (``ScaleByScheduleState``) + 1.

  What a skipped step does to the optimiser: the learning rate stays a function of the global
  step, while Adam's moments and bias-correction count are untouched.
  """

  def advance(node):
    if isinstance(node, optax.ScaleByScheduleState):
      return node._replace(count=optax.safe_increment(node.count))
    return node

  return jax.tree_util.tree_map(
    advance, opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByScheduleState)
  )


class TrainStep:
  """The jitted, sharded train step with a compile cache per CE token-count tuple.

  ``step(state, batch, keep_ratio) -> (state, metrics)``; ``batch`` holds global arrays sharded
  on P('data') (see :func:`shard_batch`); ``state`` is replicated and donated.
  """

  def __init__(
    self,
    model: nn.Module,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
  ):
    self.config = config
    self.mesh = mesh
    repl, data = replicated(mesh), data_sharded(mesh)
    self._jitted = jax.jit(
      train_step_fn(model, tx, config),
      static_argnums=(2,),
      in_shardings=(repl, data),
      out_shardings=(repl, repl),
      donate_argnums=(0,),
    )
    self._ratios: Dict[Tuple[int, ...], float] = {}

  def __call__(self, state: TrainState, batch: Batch, keep_ratio: float):
    ratio = canonical_keep_ratio(self.config, keep_ratio, self._ratios)
    return self._jitted(state, batch, ratio)


def make_eval_step(model: nn.Module, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """Jitted validation step ``(variables, batch, keep_ratio) -> metrics`` (BN running stats, no
  drop-path; the original validates with the current epoch's keep rate)."""
  t = config.train
  repl, data = replicated(mesh), data_sharded(mesh)

  @functools.partial(jax.jit, static_argnums=(2,), in_shardings=(repl, data), out_shardings=repl)
  def eval_step(variables, batch, keep_ratio):
    outputs = model.apply(
      variables,
      batch['template'],
      batch['search'],
      keep_ratio=keep_ratio,
      train=False,
    )
    _, metrics = losses.ostrack_loss(
      outputs, batch['search_anno'], batch['heatmap'], t.giou_weight, t.l1_weight, t.focal_weight
    )
    return metrics

  return eval_step
