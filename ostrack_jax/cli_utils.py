"""Config loading for the command-line scripts (train.py, eval.py, convert_torch_weights.py).

``load_config('configs/ostrack_256_ce.py')`` imports the file and calls its ``get_config()``;
``load_config('ostrack_256_ce')`` takes the preset by name. ``apply_overrides(config,
['train.lr=1e-3', 'data.roots.got10k=/d/GOT-10k'])`` sets fields with values parsed as Python
literals (strings otherwise); an unknown key fails with a message naming it and the closest
known keys. ``check_config(config, training=True)`` then rejects values no run can use
(a batch size of 0, a NaN learning rate, ...) with a message naming the field, before any work.
"""

import ast
import difflib
import importlib.util
import math
import os
from typing import Iterable

import ml_collections


def load_config(spec: str) -> ml_collections.ConfigDict:
  """A config from a preset file path or a preset name."""
  from ostrack_jax.configs import PRESETS, get_config  # pylint: disable=g-import-not-at-top

  if spec.endswith('.py') or os.sep in spec or '/' in spec:
    if not os.path.isfile(spec):
      raise FileNotFoundError(
        f'--config {spec}: no such file (presets: {", ".join(sorted(PRESETS))})'
      )
    module_spec = importlib.util.spec_from_file_location('_ostrack_config', spec)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
      raise ValueError(f'--config {spec}: the file defines no get_config()')
    return module.get_config()
  return get_config(spec)


def _all_keys(config: ml_collections.ConfigDict, prefix: str = ''):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _all_keys(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}'


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: Iterable[str]
) -> ml_collections.ConfigDict:
  """Applies 'a.b.c=value' overrides in place; unknown keys and bad types raise ValueError."""
  known = list(_all_keys(config))
  for item in overrides:
    if '=' not in item:
      raise ValueError(f'override {item!r} is not of the form key=value')
    key, text = item.split('=', 1)
    key = key.strip()
    if key.startswith('config.'):
      key = key[len('config.') :]
    if key not in known:
      close = difflib.get_close_matches(key, known, n=3)
      raise ValueError(
        f'unknown config key {key!r}' + (f'; did you mean {", ".join(close)}?' if close else '')
      )
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    old = node[leaf]
    value = _parse_value(text)
    if isinstance(old, tuple) and isinstance(value, list):
      value = tuple(value)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if isinstance(old, str) and not isinstance(value, str):
      value = text
    if isinstance(old, tuple) and not isinstance(value, tuple):
      value = (value,)
    try:
      node[leaf] = value
    except TypeError as e:
      raise ValueError(
        f'config key {key!r}: cannot set {value!r} ({type(value).__name__}) where a '
        f'{type(old).__name__} is expected'
      ) from e
  return config


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_config(config: ml_collections.ConfigDict, training: bool = False) -> None:
  """Raises ValueError (FileNotFoundError for a dataset root) naming the first field whose
  value no run can use.

  Always: ``model.ce_keep_ratio``, one ratio in (0, 1] per block of ``model.ce_loc``. With
  ``training``: ``train.batch_size`` >= 1, ``train.lr`` finite and > 0, ``train.score_prior``
  in (0, 1) or 0, and a named ``data.roots.synthetic`` (when a synthetic source is used) must
  hold a dataset: only the default root is generated.
  """
  m = config.model
  ratios, locs = tuple(m.ce_keep_ratio), tuple(m.ce_loc)
  if len(ratios) != len(locs):
    raise ValueError(
      f'config.model.ce_keep_ratio={ratios}: {len(ratios)} ratio(s) for the '
      f'{len(locs)} block(s) of config.model.ce_loc={locs}'
    )
  bad = [r for r in ratios if not (_is_number(r) and 0 < r <= 1)]
  if bad:
    raise ValueError(
      f'config.model.ce_keep_ratio={ratios}: every keep ratio must lie in (0, 1], got {bad[0]!r}'
    )
  if not training:
    return
  t = config.train
  if not _is_number(t.batch_size) or t.batch_size < 1:
    raise ValueError(
      f'config.train.batch_size={t.batch_size!r}: must be >= 1 (the batch per device)'
    )
  if not _is_number(t.lr) or not math.isfinite(t.lr) or t.lr <= 0:
    raise ValueError(f'config.train.lr={t.lr!r}: must be a finite number > 0')
  if not (t.score_prior == 0 or 0 < t.score_prior < 1):
    raise ValueError(
      f'config.train.score_prior={t.score_prior!r}: must lie in (0, 1), or be 0 '
      'for the original initialisation'
    )
  sources = tuple(config.data.train_datasets) + tuple(config.data.val_datasets)
  if config.data.roots.synthetic and {'synthetic', 'synthetic_val'} & set(sources):
    from ostrack_jax.data import synthetic  # pylint: disable=g-import-not-at-top

    synthetic.check_named_root(config.data.roots.synthetic)
