"""OSTrack = one-stream ViT backbone + center head; model construction and the jitted forward.

Conventions: images are NHWC float32, ImageNet-normalized; ``pred_boxes`` are cxcywh normalized
to the search crop; token indices are row-major on the search grid.
"""

import functools
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ostrack_jax.geometry.crop import IMAGENET_MEAN, IMAGENET_STD
from ostrack_jax.models.head import CenterHead, decode_box
from ostrack_jax.models.vit import DTYPES, BackboneFields, OneStreamViT

Variables = Dict[str, Any]


class OSTrack(BackboneFields):
  """The full network: ``OSTrack(**config.model)``.

  Its fields are exactly ``config.model``'s keys: the backbone's (:class:`vit.BackboneFields`,
  declared once there and handed on to the backbone) and ``head_channels``, the center head's
  width. A config without one of them, or with a key that is none of them, is a TypeError.
  """

  head_channels: int

  @property
  def feat_size(self) -> int:
    return self.search_size // self.patch_size

  @nn.compact
  def __call__(self, template, search, keep_ratio: Optional[float] = None, train: bool = False):
    """Forward pass.

    Args:
      template: (B, template_size, template_size, 3) float, normalized NHWC.
      search: (B, search_size, search_size, 3) float, normalized NHWC.
      keep_ratio: static Python float overriding every CE ratio (1.0 = no elimination), or
        None for the configured ratios.
      train: stochastic depth and BatchNorm batch statistics (needs rng 'drop_path' and
        ``mutable=['batch_stats']``).

    Returns:
      dict: score_map (B,F,F,1), size_map (B,F,F,2), offset_map (B,F,F,2),
      pred_boxes (B,4) cxcywh normalized, backbone_feat (B,Lz+Lx,C) float32,
      kept_indexes (B,n_kept) int32, removed_indexes list of (B,n_i) int32.
    """
    backbone = OneStreamViT(**self.backbone_fields(), name='backbone')
    feat, kept, removed = backbone(
      template.astype(jnp.float32), search.astype(jnp.float32), keep_ratio=keep_ratio, train=train
    )
    f = self.feat_size
    search_map = feat[:, -f * f :].reshape(feat.shape[0], f, f, feat.shape[-1])
    maps = CenterHead(
      self.head_channels,
      dtype=self.matmul_dtype,
      act_dtype=self.act_dtype,
      custom_backward=self.custom_backward,
      name='box_head',
    )(search_map, train)
    maps['pred_boxes'] = decode_box(maps['score_map'], maps['size_map'], maps['offset_map'])
    maps['backbone_feat'] = feat.astype(jnp.float32)
    maps['kept_indexes'] = kept
    maps['removed_indexes'] = removed
    return maps


def build_model(config: ml_collections.ConfigDict) -> OSTrack:
  """The Flax module of ``config.model``: ``OSTrack(**config.model)``; raises ValueError
  naming a field whose value no model can be built from."""
  return OSTrack(**config.model)


def input_shapes(config: ml_collections.ConfigDict, batch: int = 1):
  """(template shape, search shape), NHWC."""
  m = config.model
  return ((batch, m.template_size, m.template_size, 3), (batch, m.search_size, m.search_size, 3))


def _init_leaf(path: tuple, shape: tuple, bias_fan_in: int, rng: np.random.Generator) -> np.ndarray:
  """The original's initialisation of one variable (timm ViT init; OSTrack center head init).

  ``bias_fan_in`` is the fan-in of the layer a conv bias belongs to.
  """
  collection, leaf, parent = path[0], path[-1], path[-2]
  is_conv = path[1] == 'box_head' and parent != 'bn' or parent == 'patch_embed'
  if collection == 'batch_stats':
    return np.zeros(shape) if leaf == 'mean' else np.ones(shape)
  if leaf == 'scale':  # LayerNorm / BatchNorm
    return np.ones(shape)
  if leaf == 'kernel' and is_conv:
    fan_in, fan_out = int(np.prod(shape[:-1])), int(np.prod(shape[:-2])) * shape[-1]
    # Patch embedding: PyTorch Conv2d default (kaiming_uniform, a=sqrt(5)); head: Xavier-uniform.
    bound = 1.0 / np.sqrt(fan_in) if parent == 'patch_embed' else np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape)
  if leaf == 'bias' and is_conv:  # PyTorch conv bias default
    return rng.uniform(-1.0, 1.0, shape) / np.sqrt(bias_fan_in)
  if leaf == 'kernel' or leaf in ('pos_embed_z', 'pos_embed_x'):  # trunc_normal(std=.02)
    return np.clip(rng.normal(0.0, 0.02, shape), -2.0, 2.0)
  return np.zeros(shape)  # Linear / LayerNorm / BatchNorm biases


def init_variables(config: ml_collections.ConfigDict, seed: int = 0) -> Variables:
  """Freshly initialised variables {'params', 'batch_stats'} as the original initialises them.

  Linear weights and position embeddings ~ trunc_normal(0.02), biases 0, norms 1/0 (timm ViT);
  head convs Xavier-uniform with PyTorch-default biases, BatchNorm 1/0 (OSTrack's head). Drawn
  with NumPy from ``seed`` on the host: no compilation (jitting Flax's init costs ~10 s of XLA
  compile on a CPU), deterministic on every backend.
  """
  leaves = sorted(
    (
      (tuple(k.key for k in kp), leaf)
      for kp, leaf in jax.tree_util.tree_leaves_with_path(abstract_variables(config))
    )
  )
  kernel_fan_in = {p[:-1]: int(np.prod(leaf.shape[:-1])) for p, leaf in leaves if p[-1] == 'kernel'}
  rng = np.random.default_rng(seed)
  out: Dict[str, Any] = {}
  for path, leaf in leaves:
    value = _init_leaf(path, tuple(leaf.shape), kernel_fan_in.get(path[:-1], 1), rng)
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = value.astype(leaf.dtype)
  return out


def abstract_variables(config: ml_collections.ConfigDict) -> Variables:
  """Shapes and dtypes of the variables (jax.ShapeDtypeStruct leaves), without computing them.

  Traced once per distinct ``config.model`` (a trace of the model's init: 0.3-0.5 s on a CPU,
  paid by every checkpoint load and initialisation otherwise); each call returns its own dicts.
  """
  model, shapes = build_model(config), input_shapes(config)
  try:
    traced = _cached_variables(model, *shapes)
  except TypeError:  # a field holding a list (unhashable): traced without the cache
    traced = _trace_variables(model, *shapes)
  return jax.tree_util.tree_map(lambda x: x, traced)


def _trace_variables(model: OSTrack, t_shape: tuple, s_shape: tuple) -> Variables:
  return jax.eval_shape(
    functools.partial(model.init, train=False),
    jax.random.PRNGKey(0),
    jax.ShapeDtypeStruct(t_shape, jnp.float32),
    jax.ShapeDtypeStruct(s_shape, jnp.float32),
  )


_cached_variables = functools.lru_cache(maxsize=32)(_trace_variables)


def _numbers(values: np.ndarray) -> str:
  """Float32 constants as short decimals in parentheses, for a message."""
  return '(' + ', '.join(f'{v:g}' for v in values.tolist()) + ')'


def check_inputs(config: ml_collections.ConfigDict, template, search) -> None:
  """Raises ValueError naming the argument when an input has the wrong shape, layout or dtype."""
  m = config.model
  for name, x, size in (('template', template, m.template_size), ('search', search, m.search_size)):
    shape = tuple(getattr(x, 'shape', ()))
    dtype = getattr(x, 'dtype', None)
    if len(shape) != 4:
      raise ValueError(f'{name} must be a (B, {size}, {size}, 3) NHWC batch, got shape {shape}')
    if shape[1:] != (size, size, 3):
      hint = (
        ' (it looks NCHW: transpose to NHWC)' if shape[1] == 3 and shape[2:] == (size, size) else ''
      )
      raise ValueError(
        f'{name} must have shape (B, {size}, {size}, 3) for preset {config.name!r}, '
        f'got {shape}{hint}'
      )
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
        f'{name} must be a float array normalized with the ImageNet mean/std, got dtype '
        f'{dtype}: convert uint8 images as (x / 255 - mean) / std with the ImageNet mean '
        f'{_numbers(IMAGENET_MEAN)} and std {_numbers(IMAGENET_STD)}'
      )
  if template.shape[0] != search.shape[0]:
    raise ValueError(
      f'template and search batch sizes differ: {template.shape[0]} vs {search.shape[0]}'
    )


def compute_dtype(config: ml_collections.ConfigDict):
  """The matmul operand dtype of ``config.model.dtype`` (jnp.float32 or jnp.bfloat16)."""
  return DTYPES[config.model.dtype]


def cast_kernels(variables: Variables, dtype) -> Variables:
  """Matmul/conv kernels cast to the compute ``dtype`` once (inference), the rest unchanged.

  The layers cast their kernels to the compute dtype anyway; doing it once up front saves
  re-reading the float32 weights on every call (~10% of a bfloat16 forward on a CPU).
  """
  if dtype == jnp.float32:
    return variables
  return jax.tree_util.tree_map_with_path(
    lambda path, x: x.astype(dtype) if getattr(path[-1], 'key', None) == 'kernel' else x, variables
  )


def make_forward(
  config: ml_collections.ConfigDict, variables: Variables
) -> Callable[..., Dict[str, Any]]:
  """A jitted inference forward bound to ``variables``.

  Returns ``fn(template, search, keep_ratio=None) -> dict``:
    template (B, Ht, Wt, 3) and search (B, Hs, Ws, 3) float32 NHWC, ImageNet-normalized, with
    the preset's sizes; keep_ratio None (the preset's CE ratios) or a float in (0, 1] replacing
    every CE ratio (1.0 = no elimination).
    The dict holds score_map (B, F, F, 1), size_map (B, F, F, 2) (w, h normalized),
    offset_map (B, F, F, 2) (x, y in cells), pred_boxes (B, 4) cxcywh normalized to the
    search crop, backbone_feat (B, Lz + Lx, C), kept_indexes (B, n_kept) and
    removed_indexes (a list of (B, n_i) int32 search-token indices per CE layer).
  Inputs are validated on the host; one program is compiled per (batch size, keep_ratio).
  """
  model = build_model(config)
  variables = jax.device_put(cast_kernels(variables, DTYPES[config.model.dtype]))

  @functools.partial(jax.jit, static_argnames='keep_ratio')
  def _forward(variables, template, search, keep_ratio=None):
    return model.apply(variables, template, search, keep_ratio=keep_ratio, train=False)

  def forward(template, search, keep_ratio: Optional[float] = None):
    check_inputs(config, template, search)
    if keep_ratio is not None:
      keep_ratio = float(keep_ratio)
      if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f'keep_ratio must be in (0, 1], got {keep_ratio}')
    return _forward(variables, template, search, keep_ratio=keep_ratio)

  return forward


def count_params(variables: Variables) -> int:
  return int(
    sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(variables.get('params', variables)))
  )
