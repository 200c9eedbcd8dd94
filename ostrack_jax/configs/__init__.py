"""Configs: one Python file per preset, beside this one, each with a ``get_config()``.

Each preset file is the config: its docstring carries the command that runs it and, where
measured, the result it gives; ``base.py`` holds every field with its meaning. The repository's
top-level ``configs/`` is a link to this folder, so a clone and an installed package see one
copy.

* ``get_config(name)``: a fresh, locked preset; ``PRESETS`` lists the names.
* ``load_config(spec)``: a preset name, or the path of any Python file with a ``get_config()``
  (a user's own config typically starts from a preset:
  ``from ostrack_jax.configs import ostrack_256_ce``).
* ``apply_overrides(config, ['train.lr=1e-3', ...])``: ``--config.a.b=v`` command-line
  overrides; an unknown key is answered with the closest known ones.
* ``check_config(config, training=False)``: rejects values no run can use, before any work.

Every error here is an ``ostrack_jax.common.errors.InputError`` naming the file, preset or field.
"""

import ast
import difflib
import importlib
import importlib.util
import math
import os
from typing import Iterable

import ml_collections

from ostrack_jax.common.errors import InputError

PRESETS = (
  'ostrack_256_ce',
  'ostrack_256',
  'ostrack_384_ce',
  'ostrack_384',
  'ostrack_256_ce_got10k',
  'ostrack_384_ce_got10k',
  'ostrack_vitl_256_ce',
  'tiny_256_ce',
)


def get_config(name: str) -> ml_collections.ConfigDict:
  """A fresh, locked copy of the preset ``name`` (one of ``PRESETS``)."""
  if name not in PRESETS:
    close = difflib.get_close_matches(name, PRESETS, n=3)
    hint = f'did you mean {", ".join(close)}? ' if close else ''
    raise InputError(f'unknown preset {name!r}; {hint}presets: {", ".join(PRESETS)}')
  return importlib.import_module(f'ostrack_jax.configs.{name}').get_config()


def load_config(spec: str) -> ml_collections.ConfigDict:
  """A config from a preset name or from a Python file that defines ``get_config()``."""
  if not (spec.endswith('.py') or os.sep in spec or '/' in spec):
    return get_config(spec)
  if not os.path.isfile(spec):
    raise InputError(
      f'--config {spec}: no such file (give a config file, or a preset name: {", ".join(PRESETS)})'
    )
  name = os.path.splitext(os.path.basename(spec))[0]
  module_spec = importlib.util.spec_from_file_location(f'_ostrack_config_{name}', spec)
  if module_spec is None or module_spec.loader is None:
    raise InputError(f'--config {spec}: not a Python file (give a .py file with a get_config())')
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise InputError(f'--config {spec} line {e.lineno}: {e.msg}') from e
  except Exception as e:  # the user's code: an import, a name, anything it raises
    raise InputError(f'--config {spec}: loading the file raised {_exception_line(e)}') from e
  if not callable(getattr(module, 'get_config', None)):
    raise InputError(f'--config {spec}: the file defines no get_config()')
  try:
    config = module.get_config()
  except Exception as e:
    raise InputError(f'--config {spec}: get_config() raised {_exception_line(e)}') from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise InputError(f'--config {spec}: get_config() returned a {type(config).__name__}')
  return config


def _exception_line(error: Exception) -> str:
  """``'KeyError: 'x' (my_config.py line 7)'``: the exception and where in the user's file."""
  import traceback

  frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != __file__]
  where = f' ({os.path.basename(frames[-1].filename)} line {frames[-1].lineno})' if frames else ''
  text = str(error).replace('\n', ' ')
  return f'{type(error).__name__}' + (f': {text}' if text else '') + where


def config_keys(config: ml_collections.ConfigDict, prefix: str = ''):
  """Every leaf key of ``config`` as 'section.field' (nested sections joined with dots)."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from config_keys(value, f'{prefix}{key}.')
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
  """Applies 'a.b.c=value' overrides in place (values parsed as Python literals, strings
  otherwise); an unknown key or a value of the wrong type raises ``InputError``."""
  known = list(config_keys(config))
  for item in overrides:
    if '=' not in item:
      raise InputError(f'config override {item!r} is not of the form key=value')
    key, text = item.split('=', 1)
    key = key.strip()
    if key.startswith('config.'):
      key = key[len('config.') :]
    if key not in known:
      close = difflib.get_close_matches(key, known, n=3)
      raise InputError(
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
    if isinstance(old, float) and isinstance(value, str):  # nan, inf, 1e-3 written oddly
      try:
        value = float(text)
      except ValueError:
        pass
    if isinstance(old, str) and not isinstance(value, str):
      value = text
    if isinstance(old, tuple) and not isinstance(value, tuple):
      value = (value,)
    try:
      node[leaf] = value
    except TypeError as e:
      raise InputError(
        f'config key {key!r}: cannot set {value!r} ({type(value).__name__}) where a '
        f'{type(old).__name__} is expected'
      ) from e
  return config


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_config(config: ml_collections.ConfigDict, training: bool = False) -> None:
  """Raises ``InputError`` naming the first field whose value no run can use.

  Always: ``model.template_size`` and ``model.search_size`` positive multiples of
  ``model.patch_size``; ``model.ce_keep_ratio``, one ratio in (0, 1] per block of
  ``model.ce_loc``; ``tracker.*_factor`` > 0. With ``training``: ``train.batch_size`` >= 1,
  ``train.epochs`` >= 1, ``train.max_steps`` >= 0, ``train.lr`` finite and > 0,
  ``train.score_prior`` in (0, 1) or 0, ``data.num_workers`` >= 0, ``train.pretrained`` a file
  when set, every training/validation dataset registered and its root set and present
  (``ostrack_jax.datasets``), and a named ``data.roots.synthetic`` (when a synthetic source is
  used) must hold a dataset: only the default root is generated, a root the user named is never
  created.
  """
  _check_model(config.model)
  _check_tracker(config.tracker)
  if training:
    _check_training(config.train, config.data)
    _check_datasets(config.data)


def _check_model(m: ml_collections.ConfigDict) -> None:
  if not _is_int(m.patch_size) or m.patch_size < 1:
    raise InputError(f'config.model.patch_size={m.patch_size!r}: must be an integer >= 1')
  for field in ('template_size', 'search_size'):
    size = m[field]
    if not _is_int(size) or size < m.patch_size or size % m.patch_size:
      raise InputError(
        f'config.model.{field}={size!r}: must be a positive multiple of '
        f'config.model.patch_size={m.patch_size} (the image is cut into patches)'
      )
  ratios, locs = tuple(m.ce_keep_ratio), tuple(m.ce_loc)
  if len(ratios) != len(locs):
    raise InputError(
      f'config.model.ce_keep_ratio={ratios}: {len(ratios)} ratio(s) for the '
      f'{len(locs)} block(s) of config.model.ce_loc={locs}'
    )
  bad = [r for r in ratios if not (_is_number(r) and 0 < r <= 1)]
  if bad:
    raise InputError(
      f'config.model.ce_keep_ratio={ratios}: every keep ratio must lie in (0, 1], got {bad[0]!r}'
    )


def _check_tracker(tracker: ml_collections.ConfigDict) -> None:
  for field in ('template_factor', 'search_factor'):
    value = tracker[field]
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
      raise InputError(f'config.tracker.{field}={value!r}: must be a finite number > 0')


def _check_training(t: ml_collections.ConfigDict, data: ml_collections.ConfigDict) -> None:
  if not _is_number(t.batch_size) or t.batch_size < 1:
    raise InputError(
      f'config.train.batch_size={t.batch_size!r}: must be >= 1 (the batch per device)'
    )
  if not _is_number(t.epochs) or t.epochs < 1:
    raise InputError(f'config.train.epochs={t.epochs!r}: must be >= 1')
  if not _is_int(t.max_steps) or t.max_steps < 0:
    raise InputError(
      f'config.train.max_steps={t.max_steps!r}: must be an integer >= 0 (0 = all epochs)'
    )
  if not _is_number(t.lr) or not math.isfinite(t.lr) or t.lr <= 0:
    raise InputError(f'config.train.lr={t.lr!r}: must be a finite number > 0')
  if not (t.score_prior == 0 or 0 < t.score_prior < 1):
    raise InputError(
      f'config.train.score_prior={t.score_prior!r}: must lie in (0, 1), or be 0 '
      'for the original initialisation'
    )
  if data.num_workers < 0:
    raise InputError(f'config.data.num_workers={data.num_workers!r}: must be >= 0')
  if t.pretrained and not os.path.isfile(t.pretrained):
    what = (
      'is a directory, not a checkpoint file' if os.path.isdir(t.pretrained) else 'no such file'
    )
    raise InputError(
      f'config.train.pretrained={t.pretrained!r}: {what} (give the MAE/timm ViT checkpoint, '
      'e.g. mae_pretrain_vit_base.pth, or an OSTrack checkpoint)'
    )


def _check_datasets(data: ml_collections.ConfigDict) -> None:
  # Dataset names and roots (the reading itself comes later): an unknown name lists the
  # valid ones, a missing root names its config.data.roots field; a named synthetic root
  # must hold a dataset (only the default one is generated).
  from ostrack_jax.datasets import registry

  try:
    registry.check_data_config(data)
  except (ValueError, FileNotFoundError) as e:
    raise InputError(str(e)) from e
  used = tuple(data.train_datasets) + tuple(data.val_datasets)
  if data.roots.synthetic and {'synthetic', 'synthetic_val'} & set(used):
    from ostrack_jax.datasets import synthetic

    try:
      synthetic.check_named_root(data.roots.synthetic)
    except FileNotFoundError as e:
      raise InputError(str(e)) from e
