"""Optimiser and schedules as the original trains (CE keep-rate warm-up, AdamW groups, StepLR).

* AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8, decoupled weight decay lr * wd on
  **all** parameters: biases, norms and position embeddings included).
* Two parameter groups: every parameter whose path contains ``backbone`` gets
  ``lr * backbone_lr_multiplier`` (0.1); the rest (the box head) gets ``lr``.
* Global gradient-norm clipping with PyTorch's rule: scale = max_norm / (norm + 1e-6) when < 1.
* Step decay (StepLR, gamma ``lr_drop_factor``) stepped at the end of each epoch; for the 1-based
  epoch e the rate is ``lr * factor ** ((e - 1) // lr_drop_epoch)``.
* The candidate-elimination keep-rate warm-up, per 1-based epoch (:func:`keep_rate`).

Epochs are counted in optimiser steps: step s (0-based) belongs to epoch
``s // steps_per_epoch + 1``.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

BACKBONE = 'backbone'
HEAD = 'head'


# ---------------------------------------------------------------------------------- schedules


def keep_rate(epoch: int, start_epoch: int, total_epochs: int, base: float) -> float:
  """The CE keep rate for the 1-based ``epoch`` (the original's ``adjust_keep_rate``).

  1.0 before ``start_epoch``; ``base`` from ``total_epochs`` on; in between a cosine from 1.0
  (at ``start_epoch``) down to ``base``. ``total_epochs`` = CE start + CE warm epochs.
  """
  if epoch < start_epoch:
    return 1.0
  if epoch >= total_epochs:
    return float(base)
  progress = (epoch - start_epoch) / (total_epochs - start_epoch)
  return float(base + (1.0 - base) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def keep_rate_for_epoch(config: ml_collections.ConfigDict, epoch: int) -> float:
  """The keep rate the training step uses in ``epoch`` (1.0 for presets without CE)."""
  ratios = tuple(config.model.ce_keep_ratio)
  if not config.model.ce_loc or not ratios:
    return 1.0
  t = config.train
  return keep_rate(epoch, t.ce_start_epoch, t.ce_start_epoch + t.ce_warm_epoch, ratios[0])


def learning_rate_for_epoch(config: ml_collections.ConfigDict, epoch: int, group: str) -> float:
  """The learning rate of ``group`` ('backbone' or 'head') in the 1-based ``epoch`` (host)."""
  t = config.train
  base = t.lr * (t.backbone_lr_multiplier if group == BACKBONE else 1.0)
  return base * t.lr_drop_factor ** ((epoch - 1) // t.lr_drop_epoch)


def step_decay_schedule(
  base_lr: float, steps_per_epoch: int, drop_epoch: int, factor: float
) -> optax.Schedule:
  """An optax schedule of the 0-based step count equal to :func:`learning_rate_for_epoch`."""

  def schedule(count):
    epochs_done = count // steps_per_epoch  # = 1-based epoch - 1
    return base_lr * jnp.power(factor, (epochs_done // drop_epoch).astype(jnp.float32))

  return schedule


def epoch_of_step(step: int, steps_per_epoch: int) -> int:
  """1-based epoch of the 0-based optimiser step."""
  return step // steps_per_epoch + 1


# ---------------------------------------------------------------------------------- transforms


class ClipState(NamedTuple):
  pass


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
  """``torch.nn.utils.clip_grad_norm_``: scale by max_norm / (norm + 1e-6) when that is < 1."""

  def init_fn(params):
    del params
    return ClipState()

  def update_fn(updates, state, params=None):
    del params
    norm = optax.tree.norm(updates)
    coef = max_norm / (norm + 1e-6)
    scale = jnp.minimum(coef, 1.0)
    return jax.tree_util.tree_map(lambda g: (g * scale).astype(g.dtype), updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def param_group_labels(params: Any) -> Any:
  """A pytree like ``params`` with 'backbone' for leaves under a 'backbone' key, else 'head'."""

  def label(path, _):
    names = [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
    return BACKBONE if any(BACKBONE in n for n in names) else HEAD

  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
  config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.GradientTransformation:
  """The original's optimiser: clip (torch rule) -> per-group AdamW with step decay."""
  t = config.train
  if steps_per_epoch < 1:
    raise ValueError(
      f'steps_per_epoch must be >= 1, got {steps_per_epoch} (data.samples_per_epoch '
      f'{config.data.samples_per_epoch} smaller than the global batch?)'
    )

  def adamw(multiplier: float) -> optax.GradientTransformation:
    lr = step_decay_schedule(t.lr * multiplier, steps_per_epoch, t.lr_drop_epoch, t.lr_drop_factor)
    return optax.adamw(learning_rate=lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=t.weight_decay)

  return optax.chain(
    clip_by_global_norm_torch(t.grad_clip_norm),
    optax.multi_transform(
      {HEAD: adamw(1.0), BACKBONE: adamw(t.backbone_lr_multiplier)}, param_group_labels
    ),
  )


def steps_per_epoch_for(config: ml_collections.ConfigDict, global_batch: int) -> int:
  """Optimiser steps per epoch: samples_per_epoch // global batch (drop_last, as the original)."""
  return max(1, config.data.samples_per_epoch // global_batch)
