"""Our own model file: Flax variables + the model config, one msgpack file, no torch needed.

``save_variables(path, variables, config)`` writes atomically (temporary file + rename).
``load_variables(path, config)`` checks that the file's model config and every shape agree with
the preset and says what differs. ``load_checkpoint(path, config)`` accepts either our file or a
PyTorch one (converted on the fly; that needs torch). ``weights_sha256(variables)`` is the
content hash that names a model's weights whatever file they came from.
"""

import hashlib
import json
import os
from typing import Any, Dict

import flax.serialization
import jax
import ml_collections
import numpy as np

from ostrack_jax.common import fileio

FORMAT = 'ostrack_jax.variables'
FORMAT_VERSION = 1
_TORCH_SUFFIXES = ('.pth', '.pt', '.tar', '.pth.tar', '.bin')


def save_variables(path: str, variables: Dict[str, Any], config: ml_collections.ConfigDict) -> str:
  """Writes ``variables`` ({'params', 'batch_stats'}) and ``config.model`` to ``path`` atomically."""
  variables = {k: v for k, v in variables.items() if k in ('params', 'batch_stats')}
  payload = {
    'format': FORMAT,
    'format_version': FORMAT_VERSION,
    'preset': config.name,
    'model_config': config.model.to_json(),
    'variables': jax.tree_util.tree_map(np.asarray, jax.device_get(variables)),
  }
  fileio.atomic_write_bytes(path, flax.serialization.msgpack_serialize(payload))
  return path


def read_variables_file(path: str) -> Dict[str, Any]:
  """The raw payload of one of our files (variables as numpy, model config as a dict)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such model file')
  with open(path, 'rb') as f:
    data = f.read()
  try:
    payload = flax.serialization.msgpack_restore(data)
  except Exception as e:
    raise ValueError(f'{path}: not an ostrack_jax model file ({type(e).__name__}: {e})') from e
  if not isinstance(payload, dict) or payload.get('format') != FORMAT:
    raise ValueError(f'{path}: not an ostrack_jax model file (no {FORMAT!r} header)')
  payload['model_config'] = json.loads(payload['model_config'])
  return payload


def load_variables(path: str, config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """Loads our model file for ``config``; raises ValueError naming any mismatch."""
  from ostrack_jax.models.ostrack import abstract_variables

  payload = read_variables_file(path)
  stored = payload['model_config']
  shape_fields = (
    'template_size',
    'search_size',
    'patch_size',
    'embed_dim',
    'depth',
    'num_heads',
    'mlp_dim',
    'head_channels',
  )
  diffs = [
    f'{k}: file {stored.get(k)} vs preset {config.model[k]}'
    for k in shape_fields
    if k in stored and stored[k] != config.model[k]
  ]
  if diffs:
    raise ValueError(
      f'{path} was saved for preset {payload.get("preset")!r}, which differs from '
      f'{config.name!r} in ' + '; '.join(diffs)
    )
  expected = abstract_variables(config)
  variables = payload['variables']
  exp_flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(expected)}
  got_flat = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(variables)}
  missing = sorted(set(exp_flat) - set(got_flat))
  extra = sorted(set(got_flat) - set(exp_flat))
  bad = [
    f'{k}: {got_flat[k].shape} vs {exp_flat[k].shape}'
    for k in exp_flat
    if k in got_flat and tuple(got_flat[k].shape) != tuple(exp_flat[k].shape)
  ]
  if missing or extra or bad:
    raise ValueError(
      f'{path} does not fit preset {config.name!r}: missing {missing[:5]}, '
      f'unexpected {extra[:5]}, wrong shapes {bad[:5]}'
    )
  return jax.tree_util.tree_map(lambda x, e: np.asarray(x, dtype=e.dtype), variables, expected)


def is_torch_file(path: str) -> bool:
  """PyTorch files are zip archives (or legacy pickles); ours are msgpack."""
  if path.endswith(_TORCH_SUFFIXES):
    return True
  try:
    with open(path, 'rb') as f:
      head = f.read(2)
  except OSError:
    return False
  return head in (b'PK', b'\x80\x02', b'\x80\x03', b'\x80\x04', b'\x80\x05')


def load_checkpoint(path: str, config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """Variables from our model file or from a PyTorch checkpoint (converted on the fly)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such checkpoint')
  if os.path.isdir(path):
    hint = (
      f'; did you mean {os.path.join(path, "model.msgpack")}?'
      if os.path.isfile(os.path.join(path, 'model.msgpack'))
      else ''
    )
    raise IsADirectoryError(
      f'{path} is a directory, not a checkpoint file (give our .msgpack '
      f'model file or a PyTorch .pth file){hint}'
    )
  if is_torch_file(path):
    from ostrack_jax.weights.convert import load_torch_checkpoint

    return load_torch_checkpoint(path, config)
  return load_variables(path, config)


def weights_sha256(variables: Dict[str, Any]) -> str:
  """SHA-256 (hex) of the model's weights: ``params`` and ``batch_stats``, leaf by leaf in the
  order of their sorted tree paths, each as its path, dtype, shape and C-order bytes.

  Depends only on the arrays: the same weights give the same hash whether they were loaded
  from our ``.msgpack`` file or converted from a PyTorch checkpoint, and any changed value,
  shape or dtype gives another. eval.py records it as the producer of its results.
  """
  variables = {k: v for k, v in variables.items() if k in ('params', 'batch_stats')}
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  digest = hashlib.sha256()
  for key, leaf in sorted(((jax.tree_util.keystr(p), x) for p, x in leaves), key=lambda t: t[0]):
    array = np.ascontiguousarray(jax.device_get(leaf))
    digest.update(f'{key} {array.dtype.str} {array.shape}\n'.encode())
    digest.update(array.tobytes())
  return digest.hexdigest()
