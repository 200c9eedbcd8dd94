"""The public API of ``ostrack_jax``: lazy names resolve, the import stays light, the documented
entry points state their shapes and box conventions."""

import inspect
import os
import pathlib
import subprocess
import sys

import pytest

import ostrack_jax

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize('name', ostrack_jax.__all__)
def test_lazy_name_resolves_and_is_documented(name):
  obj = getattr(ostrack_jax, name)
  assert name in dir(ostrack_jax)
  if callable(obj):
    doc = inspect.getdoc(obj) or ''
    assert len(doc) > 30, f'ostrack_jax.{name} has no real docstring'


def test_unknown_name_raises_attribute_error():
  with pytest.raises(AttributeError, match='no attribute'):
    getattr(ostrack_jax, 'no_such_name')


def test_import_is_light():
  code = ('import sys, ostrack_jax\n'
          'heavy = sorted(m for m in ("jax", "flax", "torch", "tensorflow", "grain", "orbax")\n'
          '               if m in sys.modules)\n'
          'print("HEAVY", heavy)\n')
  env = dict(os.environ, PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       timeout=60, check=False)
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
