"""PyTorch -> Flax weight conversion: released OSTrack checkpoints and timm/MAE ViT checkpoints.

Two kinds of file are understood:

* a released (or trainer-written) OSTrack checkpoint ``{'net': state_dict, ...}`` with the 242
  keys of its state dict (backbone, then box head): every tensor is mapped to a Flax variable,
  every key is accounted for (``backbone.cls_token``, ``backbone.pos_embed`` and
  ``num_batches_tracked`` are unused by the forward pass and reported), and every shape is
  checked against the preset;
* a timm / MAE ViT checkpoint (``{'model': state_dict}`` or a bare state dict) with a 14x14
  ``pos_embed``: the backbone is filled, the grid is resized to the template and search grids
  with PyTorch-exact bicubic interpolation, and the head is freshly initialised.

Files are read with ``torch.load(..., weights_only=True)``; the training-settings object the
original trainer pickles is admitted through a stand-in class and nothing else foreign is ever
unpickled. torch is needed only here (``pip install .[dev]``); converted variables are saved with
``ostrack_jax.weights.model_file.save_variables`` and load without torch.
"""

import dataclasses
import math
import os
import re
import typing
import warnings
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Tuple, Union

import ml_collections
import numpy as np

Variables = Dict[str, Any]

# Globals that OSTrack's trainer pickles next to the weights (the training settings object and
# its meters). They are replaced by inert stand-ins; no code from the checkpoint runs.
_STAND_IN_GLOBALS = (
  'lib.train.admin.settings.Settings',
  'lib.train.admin.stats.AverageMeter',
  'lib.train.admin.stats.StatValue',
  'easydict.EasyDict',
)


class CheckpointError(ValueError):
  """A checkpoint that cannot be converted for the given preset; the message says why."""


class _StandIn:
  """Inert replacement for a pickled object of the original trainer: keeps its state as a dict."""

  def __init__(self, *args, **kwargs):
    del args, kwargs

  def __setstate__(self, state):
    if isinstance(state, dict):
      self.__dict__.update(state)
    else:
      self.__dict__['_state'] = state

  def __setitem__(self, key, value):  # EasyDict is a dict subclass
    self.__dict__[key] = value


def _stand_ins():
  classes = []
  for name in _STAND_IN_GLOBALS:
    module, qualname = name.rsplit('.', 1)
    cls = type(qualname, (_StandIn,), {'__module__': module})
    classes.append((cls, name))
  return classes


def _load_failure_reason(error: Exception) -> str:
  """Why ``torch.load(weights_only=True)`` failed, without torch's advice to retry with
  ``weights_only=False`` (which would run any code the file pickles: never suggested here)."""
  text = str(error)
  if 'WeightsUnpickler error:' in text:  # keep the unpickler's own reason only
    text = text.split('WeightsUnpickler error:', 1)[1].strip().split('\n')[0].strip()
  elif 'weights_only' in text:
    text = ''
  else:
    text = text.strip().split('\n')[0]
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def read_torch_file(path: str) -> Dict[str, Any]:
  """Loads a PyTorch checkpoint safely (weights_only) and returns its top-level dict.

  Raises CheckpointError for a missing file, a file that is not a PyTorch checkpoint, or one that
  pickles objects other than tensors, containers and the original trainer's settings.
  """
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      'reading PyTorch checkpoints needs torch: pip install "ostrack_jax[dev]" '
      '(or torch==2.13.0 for the CPU build)'
    ) from e
  if os.path.isdir(path):
    raise CheckpointError(f'{path} is a directory, not a PyTorch checkpoint file')
  if not os.path.isfile(path):
    raise CheckpointError(f'{path}: no such checkpoint file')
  try:
    with torch.serialization.safe_globals(_stand_ins()), warnings.catch_warnings():
      warnings.simplefilter('ignore', UserWarning)  # "Detected pickle protocol 4" and the like
      obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:
    foreign = []
    try:
      foreign = [
        g
        for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if g not in _STAND_IN_GLOBALS
      ]
    except Exception:
      pass
    if foreign:
      raise CheckpointError(
        f'{path}: refusing to unpickle foreign code/objects {foreign}; only tensors, containers and '
        'the OSTrack trainer settings are accepted. If you trust the file, re-save its state dict '
        'with torch.save({"net": sd}, ...) first.'
      ) from e
    raise CheckpointError(
      f'{path}: not a checkpoint torch can read safely ({_load_failure_reason(e)})'
    ) from e
  if not isinstance(obj, Mapping):
    raise CheckpointError(f'{path}: expected a dict at the top level, got {type(obj).__name__}')
  return dict(obj)


def _to_numpy(tensor) -> np.ndarray:
  if hasattr(tensor, 'detach'):
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == 'torch.bfloat16':
      tensor = tensor.float()
    return tensor.numpy()
  return np.asarray(tensor)


def extract_state_dict(
  ckpt: Mapping[str, Any], path: str = '<checkpoint>'
) -> Tuple[str, Dict[str, np.ndarray]]:
  """Finds the weights: returns (kind, state dict as numpy), kind 'ostrack' or 'vit'."""
  if 'net' in ckpt and isinstance(ckpt['net'], Mapping):
    sd, hint = ckpt['net'], 'ostrack'
  elif 'model' in ckpt and isinstance(ckpt['model'], Mapping):
    sd, hint = ckpt['model'], None
  elif 'state_dict' in ckpt and isinstance(ckpt['state_dict'], Mapping):
    sd, hint = ckpt['state_dict'], None
  else:
    sd, hint = ckpt, None
  tensors = {}
  for key, value in sd.items():
    if not hasattr(value, 'shape'):
      continue
    key = key[len('module.') :] if key.startswith('module.') else key
    tensors[key] = _to_numpy(value)
  if not tensors:
    raise CheckpointError(f'{path}: no tensors found (top-level keys: {sorted(ckpt)[:10]})')
  if hint is None:
    hint = 'ostrack' if any(k.startswith('backbone.') for k in tensors) else 'vit'
  return hint, tensors


# ----------------------------------------------------------------------------- bicubic resize


def bicubic_matrix(in_size: int, out_size: int, a: float = -0.75) -> np.ndarray:
  """(out_size, in_size) float32 matrix of PyTorch's bicubic interpolation along one axis.

  Matches ``F.interpolate(mode='bicubic', align_corners=False, antialias=False)``: Keys' cubic
  convolution with a = -0.75, half-pixel source coordinates ``(i + 0.5) * in / out - 0.5``,
  border indices clamped, no renormalisation and no antialiasing when downsampling. Source
  coordinates and weights are computed in float32 as PyTorch does on the CPU.
  """
  f32 = np.float32
  a32 = f32(a)
  near = lambda x: ((a32 + f32(2)) * x - (a32 + f32(3))) * x * x + f32(1)  # |x| <= 1
  far = lambda x: ((a32 * x - f32(5) * a32) * x + f32(8) * a32) * x - f32(4) * a32  # 1 < |x| < 2
  mat = np.zeros((out_size, in_size), dtype=np.float32)
  scale = f32(in_size) / f32(out_size)
  for i in range(out_size):
    src = scale * (f32(i) + f32(0.5)) - f32(0.5)
    x0 = math.floor(src)
    t = f32(src - f32(x0))
    weights = (far(t + f32(1)), near(t), near(f32(1) - t), far(f32(2) - t))
    for tap, weight in zip(range(x0 - 1, x0 + 3), weights, strict=True):
      mat[i, min(max(tap, 0), in_size - 1)] += weight
  return mat


def resize_pos_embed_grid(grid: np.ndarray, out_size: int) -> np.ndarray:
  """Resizes a (H, W, C) position-embedding grid to (out_size, out_size, C), PyTorch bicubic.

  Interpolates along W first, then H, as PyTorch's kernel does.
  """
  mh = bicubic_matrix(grid.shape[0], out_size)
  mw = bicubic_matrix(grid.shape[1], out_size)
  rows = np.einsum('jw,hwc->hjc', mw, grid.astype(np.float32))
  return np.einsum('ih,hjc->ijc', mh, rows)


# ----------------------------------------------------------------------------- key mapping


@dataclasses.dataclass(frozen=True)
class _Target:
  collection: str  # 'params' or 'batch_stats'
  path: Tuple[str, ...]
  transform: Callable[[np.ndarray], np.ndarray]


_IDENTITY = lambda x: x
_LINEAR = lambda w: w.T  # torch (out, in) -> flax (in, out)
_CONV = lambda w: w.transpose(2, 3, 1, 0)  # torch OIHW -> flax HWIO

_HEAD_BN = {
  'weight': ('params', 'scale'),
  'bias': ('params', 'bias'),
  'running_mean': ('batch_stats', 'mean'),
  'running_var': ('batch_stats', 'var'),
}
_LAYER_NORM = {'weight': 'scale', 'bias': 'bias'}

# Tensors that have no counterpart in the Flax model: unused by the original forward pass.
_UNUSED_OSTRACK = re.compile(r'^(backbone\.cls_token|backbone\.pos_embed|.*\.num_batches_tracked)$')
_UNUSED_VIT = re.compile(
  r'^(cls_token|dist_token|mask_token|head\..*|head_dist\..*|fc_norm\..*|'
  r'pre_logits\..*|decoder.*|.*\.num_batches_tracked)$'
)


def _backbone_target(key: str) -> Optional[_Target]:
  """Maps a ViT key without the 'backbone.' prefix (timm naming) to the Flax backbone."""
  m = re.fullmatch(r'patch_embed\.proj\.(weight|bias)', key)
  if m:
    return _Target(
      'params',
      ('backbone', 'patch_embed', 'kernel' if m[1] == 'weight' else 'bias'),
      _CONV if m[1] == 'weight' else _IDENTITY,
    )
  if key in ('pos_embed_z', 'pos_embed_x'):
    return _Target('params', ('backbone', key), _IDENTITY)
  m = re.fullmatch(r'norm\.(weight|bias)', key)
  if m:
    return _Target('params', ('backbone', 'norm', _LAYER_NORM[m[1]]), _IDENTITY)
  m = re.fullmatch(r'blocks\.(\d+)\.(norm1|norm2)\.(weight|bias)', key)
  if m:
    return _Target('params', ('backbone', f'blocks_{m[1]}', m[2], _LAYER_NORM[m[3]]), _IDENTITY)
  m = re.fullmatch(r'blocks\.(\d+)\.(attn|mlp)\.(qkv|proj|fc1|fc2)\.(weight|bias)', key)
  if m:
    is_w = m[4] == 'weight'
    return _Target(
      'params',
      ('backbone', f'blocks_{m[1]}', m[2], m[3], 'kernel' if is_w else 'bias'),
      _LINEAR if is_w else _IDENTITY,
    )
  return None


def _head_target(key: str) -> Optional[_Target]:
  """Maps a 'box_head.' key (without the prefix) to the Flax center head."""
  m = re.fullmatch(r'(conv[1-4]_(?:ctr|offset|size))\.0\.(weight|bias)', key)
  if m:
    is_w = m[2] == 'weight'
    return _Target(
      'params',
      ('box_head', m[1], 'conv', 'kernel' if is_w else 'bias'),
      _CONV if is_w else _IDENTITY,
    )
  m = re.fullmatch(
    r'(conv[1-4]_(?:ctr|offset|size))\.1\.(weight|bias|running_mean|running_var)', key
  )
  if m:
    collection, leaf = _HEAD_BN[m[2]]
    return _Target(collection, ('box_head', m[1], 'bn', leaf), _IDENTITY)
  m = re.fullmatch(r'(conv5_(?:ctr|offset|size))\.(weight|bias)', key)
  if m:
    is_w = m[2] == 'weight'
    return _Target(
      'params', ('box_head', m[1], 'kernel' if is_w else 'bias'), _CONV if is_w else _IDENTITY
    )
  return None


def _ostrack_target(key: str) -> Optional[_Target]:
  if key.startswith('backbone.'):
    return _backbone_target(key[len('backbone.') :])
  if key.startswith('box_head.'):
    return _head_target(key[len('box_head.') :])
  return None


def _flatten(tree, prefix=()) -> Dict[Tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: Mapping[Tuple[str, ...], Any]) -> Dict[str, Any]:
  tree: Dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = value
  return tree


def _preset_hint(config: ml_collections.ConfigDict) -> str:
  m = config.model
  return (
    f'preset {config.name!r} (template {m.template_size}, search {m.search_size}, '
    f'embed_dim {m.embed_dim}, depth {m.depth})'
  )


def _shape_error(path: str, key: str, got, expected, config) -> str:
  msg = f'{path}: {key} has shape {tuple(got)} but {_preset_hint(config)} expects {tuple(expected)}'
  if key.endswith(('pos_embed_z', 'pos_embed_x')) and len(got) == 3 and got[2] == expected[2]:
    side = int(round(math.sqrt(got[1]))) * config.model.patch_size
    kind = 'template' if key.endswith('_z') else 'search'
    msg += (
      f': the checkpoint was trained with {kind} size {side}, the preset uses '
      f'{config.model.template_size if kind == "template" else config.model.search_size} '
      '(a 256 checkpoint needs an ostrack_256* preset, a 384 one an ostrack_384* preset)'
    )
  elif got and expected and len(got) == len(expected) and got[-1] != expected[-1]:
    msg += ': the width differs (ViT-B is 768, ViT-L 1024): wrong backbone size for this preset'
  return msg


@dataclasses.dataclass
class ConversionReport:
  """What a conversion did with every key of the checkpoint."""

  kind: str
  loaded: List[str]
  unused: List[str]  # present in the file, not needed by the model (cls token, classifier, ...)
  initialised: List[str]  # Flax variables not in the file, freshly initialised (timm/MAE only)
  resized: List[str]

  def summary(self) -> str:
    lines = [f'{self.kind} checkpoint: {len(self.loaded)} tensors loaded']
    if self.resized:
      lines.append(f'  resized (PyTorch bicubic): {", ".join(self.resized)}')
    if self.unused:
      lines.append(f'  unused by the model ({len(self.unused)}): {", ".join(self.unused)}')
    if self.initialised:
      lines.append(
        f'  freshly initialised ({len(self.initialised)}): '
        f'{", ".join(self.initialised[:8])}{" ..." if len(self.initialised) > 8 else ""}'
      )
    return '\n'.join(lines)


def _place(
  key, value, target: _Target, expected, filled, loaded, unknown, errors, path, config
) -> None:
  """Puts one checkpoint tensor into its Flax slot, or records why it cannot go there.

  A slot the preset lacks (e.g. blocks.12.* for a 12-block preset) makes the key unexpected; a
  shape that differs after the layout transform becomes an error naming both shapes.
  """
  full = (target.collection,) + target.path
  if full not in expected:
    unknown.append(key)
    return
  array = target.transform(np.asarray(value, dtype=np.float32))
  if array.shape != tuple(expected[full].shape):
    errors.append(
      _shape_error(path, key, value.shape, _inverse_shape(target, expected[full].shape), config)
    )
    return
  filled[full] = array
  loaded.append(key)


def convert_ostrack_state_dict(
  sd: Mapping[str, np.ndarray], config: ml_collections.ConfigDict, path: str = '<checkpoint>'
) -> Tuple[Variables, ConversionReport]:
  """Released OSTrack state dict (242 keys) -> Flax variables; strict on keys and shapes."""
  from ostrack_jax.models.ostrack import abstract_variables

  expected = {
    (col,) + p: v
    for col, tree in abstract_variables(config).items()
    for p, v in _flatten(tree).items()
  }
  filled: Dict[Tuple[str, ...], np.ndarray] = {}
  loaded: List[str] = []
  unused: List[str] = []
  unknown: List[str] = []
  errors: List[str] = []
  for key, value in sd.items():
    target = _ostrack_target(key)
    if target is None:
      (unused if _UNUSED_OSTRACK.match(key) else unknown).append(key)
      continue
    _place(key, value, target, expected, filled, loaded, unknown, errors, path, config)
  missing = [('/'.join(p)) for p in expected if p not in filled]
  if errors:
    raise CheckpointError(_first_of(errors))
  if unknown or missing:
    parts = []
    if unknown:
      parts.append(
        f'unexpected keys for {_preset_hint(config)}: {unknown[:10]}{" ..." if len(unknown) > 10 else ""}'
      )
    if missing:
      parts.append(f'missing tensors: {missing[:10]}{" ..." if len(missing) > 10 else ""}')
    raise CheckpointError(f'{path}: ' + '; '.join(parts))
  report = ConversionReport('OSTrack', loaded, unused, [], [])
  return _unflatten(filled), report


def _inverse_shape(target: _Target, flax_shape) -> tuple:
  """The torch-layout shape that maps to ``flax_shape`` (for error messages)."""
  probe = np.empty(flax_shape)
  if target.transform is _LINEAR:
    return probe.T.shape
  if target.transform is _CONV:
    return probe.transpose(3, 2, 0, 1).shape
  return tuple(flax_shape)


def _place_pos_embed(
  value, expected, filled, unused, errors, resized, path, config: ml_collections.ConfigDict
) -> None:
  """Resizes a timm ``pos_embed`` of shape (1, N, C), N tokens of a square grid with or without
  a cls slot in front, to the preset's template and search grids and puts both into ``filled``,
  or records in ``errors`` why it cannot."""
  m = config.model
  pos = np.asarray(value, dtype=np.float32)
  if pos.ndim != 3:
    errors.append(f'{path}: pos_embed has shape {pos.shape}, expected (1, N, C)')
    return
  n = pos.shape[1]
  side = int(round(math.sqrt(n)))
  if side * side != n:  # a cls slot in front
    side = int(round(math.sqrt(n - 1)))
    if side * side != n - 1:
      errors.append(
        f'{path}: pos_embed has {n} tokens, not a square grid (with or without a cls slot)'
      )
      return
    pos = pos[:, 1:]
    unused.append('pos_embed[cls slot]')
  grid = pos[0].reshape(side, side, pos.shape[2])
  for name, size in (
    ('pos_embed_z', m.template_size // m.patch_size),
    ('pos_embed_x', m.search_size // m.patch_size),
  ):
    full = ('params', 'backbone', name)
    new = resize_pos_embed_grid(grid, size).reshape(1, size * size, -1)
    if new.shape != tuple(expected[full].shape):
      errors.append(
        _shape_error(
          path, 'pos_embed', pos.shape, (1, side * side, expected[full].shape[2]), config
        )
      )
      return
    filled[full] = new
    resized.append(f'pos_embed {side}x{side} -> {name} {size}x{size}')


def convert_vit_state_dict(
  sd: Mapping[str, np.ndarray],
  config: ml_collections.ConfigDict,
  init_variables: Variables,
  path: str = '<checkpoint>',
) -> Tuple[Variables, ConversionReport]:
  """timm/MAE ViT state dict -> backbone variables; the rest taken from ``init_variables``."""
  expected = {
    (col,) + p: v for col, tree in init_variables.items() for p, v in _flatten(tree).items()
  }
  filled = dict(expected)
  loaded: List[str] = []
  unused: List[str] = []
  unknown: List[str] = []
  errors: List[str] = []
  resized: List[str] = []
  for key, value in sd.items():
    if key == 'pos_embed':
      _place_pos_embed(value, expected, filled, unused, errors, resized, path, config)
      loaded.append(key)
      continue
    target = _backbone_target(key)
    if target is None or key in ('pos_embed_z', 'pos_embed_x'):
      (unused if _UNUSED_VIT.match(key) else unknown).append(key)
      continue
    _place(key, value, target, expected, filled, loaded, unknown, errors, path, config)
  if errors:
    raise CheckpointError(_first_of(errors))
  if unknown:
    raise CheckpointError(
      f'{path}: unexpected keys for a ViT backbone of {_preset_hint(config)}: '
      f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}'
    )
  backbone_keys = [p for p in expected if p[:2] == ('params', 'backbone')]
  # pos_embed (resized into both grids above) is the one loaded key without a target.
  loaded_paths = {('params',) + t.path for t in map(_backbone_target, loaded) if t is not None}
  loaded_paths |= (
    {('params', 'backbone', 'pos_embed_z'), ('params', 'backbone', 'pos_embed_x')}
    if resized
    else set()
  )
  missing = ['/'.join(p) for p in backbone_keys if p not in loaded_paths]
  if missing:
    raise CheckpointError(
      f'{path}: the ViT checkpoint lacks backbone tensors {missing[:10]}'
      f'{" ..." if len(missing) > 10 else ""} for {_preset_hint(config)}'
    )
  initialised = ['/'.join(p) for p in expected if p[:2] != ('params', 'backbone')]
  report = ConversionReport('timm/MAE ViT', loaded, unused, initialised, resized)
  return _unflatten(filled), report


def _first_of(errors: List[str]) -> str:
  """One line: the first shape error, and how many more tensors have one."""
  more = len(errors) - 1
  return errors[0] + (f' (and {more} more tensor(s) of the wrong shape)' if more else '')


# The return type follows return_report (two overloads for the type checker, then the function).
@typing.overload
def load_torch_checkpoint(
  path: str,
  config: ml_collections.ConfigDict,
  *,
  seed: int = ...,
  verbose: bool = ...,
  return_report: Literal[False] = ...,
) -> Dict[str, Any]: ...
@typing.overload
def load_torch_checkpoint(
  path: str,
  config: ml_collections.ConfigDict,
  *,
  seed: int = ...,
  verbose: bool = ...,
  return_report: Literal[True],
) -> Tuple[Dict[str, Any], 'ConversionReport']: ...
def load_torch_checkpoint(
  path: str,
  config: ml_collections.ConfigDict,
  *,
  seed: int = 0,
  verbose: bool = False,
  return_report: bool = False,
) -> Union[Dict[str, Any], Tuple[Dict[str, Any], 'ConversionReport']]:
  """Flax variables {'params', 'batch_stats'} from a PyTorch checkpoint file.

  Args:
    path: a released OSTrack checkpoint (``{'net': ...}``) or a timm/MAE ViT checkpoint
      (``{'model': ...}`` or a bare state dict).
    config: the preset the weights are for; every shape is checked against it.
    seed: initialisation seed of the parts a ViT checkpoint does not provide (the head).
    verbose: print the conversion report.
    return_report: also return the :class:`ConversionReport`.
  """
  ckpt = read_torch_file(path)
  kind, sd = extract_state_dict(ckpt, path)
  if kind == 'ostrack':
    variables, report = convert_ostrack_state_dict(sd, config, path)
  else:
    import jax

    from ostrack_jax.models.ostrack import init_variables

    fresh = jax.tree_util.tree_map(np.asarray, init_variables(config, seed))
    variables, report = convert_vit_state_dict(sd, config, fresh, path)
  if verbose:
    print(report.summary())
  return (variables, report) if return_report else variables
