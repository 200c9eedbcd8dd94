"""The public API of ``ostrack_jax``: lazy names resolve, the import stays light, the documented
entry points state their shapes and box conventions."""

import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

import ostrack_jax

REPO = pathlib.Path(__file__).resolve().parent.parent


def _readme_api_names():
  """The names in backticks in the first column of the README's "Public API" table."""
  text = (REPO / 'README.md').read_text()
  section = text.split('\n## Public API\n', 1)[1].split('\n## ', 1)[0]
  rows = [line for line in section.splitlines() if line.startswith('|')]
  assert rows[0].startswith('| name |') and set(rows[1]) <= set('|-'), rows[:2]
  names = set()
  for row in rows[2:]:
    first = row.split('|')[1]
    names.update(
      re.match(r'[A-Za-z_]\w*', code).group(0) for code in re.findall(r'`([^`]+)`', first)
    )
  return names


def test_readme_api_table_lists_exactly_the_public_names():
  documented = _readme_api_names()
  exported = set(ostrack_jax.__all__)
  assert not exported - documented, f'not in the README API table: {sorted(exported - documented)}'
  assert not documented - exported, f'in the README API table only: {sorted(documented - exported)}'


@pytest.mark.parametrize('name', sorted(_readme_api_names()))
def test_lazy_name_resolves_and_is_documented(name):
  """Every name of the README's API table resolves on ostrack_jax, is listed by dir() and, if
  callable, has a real docstring."""
  assert name in ostrack_jax.__all__ and name in dir(ostrack_jax)
  obj = getattr(ostrack_jax, name)
  if callable(obj):
    assert obj.__module__.startswith('ostrack_jax.'), (name, obj.__module__)
    doc = inspect.getdoc(obj) or ''
    assert len(doc) > 30, f'ostrack_jax.{name} has no real docstring'


@pytest.mark.slow  # a fresh interpreter importing every module of the API: ~2.3 s
def test_every_documented_name_resolves_in_a_fresh_interpreter():
  """Each name of the README's table resolves from a bare ``import ostrack_jax`` (no other test
  has imported its module first), to an object of the package."""
  names = sorted(_readme_api_names())
  code = (
    'import ostrack_jax\n'
    f'for name in {names!r}:\n'
    '  obj = getattr(ostrack_jax, name)\n'
    '  print(name, getattr(obj, "__module__", None) or type(obj).__module__)\n'
  )
  out = subprocess.run(
    [sys.executable, '-c', code],
    capture_output=True,
    text=True,
    env=dict(os.environ, PYTHONPATH=str(REPO)),
    timeout=120,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  resolved = dict(line.split() for line in out.stdout.splitlines())
  assert sorted(resolved) == names
  for name, module in resolved.items():
    assert module.startswith('ostrack_jax') or name == 'PRESETS', (name, module)


def test_unknown_name_raises_attribute_error():
  with pytest.raises(AttributeError, match='no attribute'):
    _ = ostrack_jax.no_such_name


def test_import_is_light():
  code = (
    'import sys, ostrack_jax\n'
    'heavy = sorted(m for m in ("jax", "flax", "torch", "tensorflow", "grain", "orbax")\n'
    '               if m in sys.modules)\n'
    'print("HEAVY", heavy)\n'
  )
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=60, check=False
  )
  assert out.returncode == 0, out.stderr
  assert 'HEAVY []' in out.stdout, out.stdout


def test_documented_shapes_and_box_conventions():
  from ostrack_jax.models.ostrack import OSTrack

  call_doc = inspect.getdoc(OSTrack.__call__)
  for word in ('(B,', 'score_map', 'pred_boxes', 'cxcywh', 'removed_indexes', 'NHWC'):
    assert word in call_doc, f'OSTrack.__call__ docstring lacks {word!r}'
  tracker = ostrack_jax.Tracker
  for method in ('initialize', 'track'):
    assert 'xywh' in inspect.getdoc(getattr(tracker, method)), method
  assert 'xywh' in inspect.getdoc(tracker.state)
  export_doc = inspect.getdoc(ostrack_jax.load_exported)
  assert 'xywh' in export_doc and 'Tracker' in export_doc


def _public_callables():
  for name in sorted(ostrack_jax.__all__):
    obj = getattr(ostrack_jax, name)
    if inspect.isclass(obj):
      for member, value in vars(obj).items():
        func = getattr(value, '__func__', value)
        if (not member.startswith('_') or member == '__init__') and inspect.isfunction(func):
          yield f'{name}.{member}', func
    elif callable(obj):
      yield name, obj


def test_public_api_has_type_hints():
  """Every parameter and return value of the public functions and methods is annotated."""
  missing = []
  for name, func in _public_callables():
    sig = inspect.signature(func)
    for param, value in sig.parameters.items():
      if param not in ('self', 'cls') and value.annotation is inspect.Parameter.empty:
        missing.append(f'{name}({param})')
    if not name.endswith('__init__') and sig.return_annotation is inspect.Signature.empty:
      missing.append(f'{name} -> ?')
  assert not missing, missing
