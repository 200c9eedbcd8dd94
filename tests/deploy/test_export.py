"""The exported tracker (jax.export StableHLO + weights) against the live Tracker.

The artifact is made from the tiny fixture checkpoint and run on the committed DAVIS `soapbox`
frames (tests/fixtures/tracker). Tolerances: the exported float32 step is the live step's
program, so boxes, score maps and eliminated tokens must agree to 1e-6 px / 1e-6 (measured:
bit-identical on CPU); both must also match the ORIGINAL tracker's teacher-forced boxes within
the tracker test's 0.01 px. The bfloat16 variant is compared with the live tracker run in
bfloat16 (same tolerance, measured bit-identical).

The tests that compare the exported tracker with the live one only (bfloat16, another frame
size) run on a small model (train_util.SMALL_MODEL, seed-0 weights) exported for them, compiled
fast (tests/conftest.py): what they check, one program against the other, does not depend on
the weights or the model's size.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

import train_util
from ostrack_jax import export as export_command
from ostrack_jax.configs import get_config
from ostrack_jax.deploy import stablehlo

REPO = pathlib.Path(__file__).resolve().parents[2]
BOX_TOL_PX = 1e-6
ORIGINAL_TOL_PX = 0.01


@pytest.fixture(scope='module')
def artifact(tmp_path_factory, tiny_variables):
  out = tmp_path_factory.mktemp('export') / 'tiny'
  stablehlo.export_tracker(get_config('tiny_256_ce'), tiny_variables, str(out))
  return out


def _track(tracker, frames, gt, n, teacher_forced):
  tracker.initialize(frames[0], gt[0])
  boxes, scores, removed = [], [], []
  for i in range(1, n + 1):
    if teacher_forced:
      tracker.state = gt[i - 1]
    boxes.append(tracker.track(frames[i]))
    scores.append(tracker.last_score_map)
    removed.append(tracker.last_removed_indexes)
  return np.array(boxes), np.array(scores), removed


def _live(variables, dtype, config=None):
  from ostrack_jax.tracking.tracker import Tracker

  config = (config or get_config('tiny_256_ce')).copy_and_resolve_references()
  config.model.dtype = dtype
  return Tracker(config, variables)


@pytest.fixture(scope='module')
def small_artifact(tmp_path_factory):
  """(config, variables, folder) of the small model exported in both variants."""
  from ostrack_jax.models.ostrack import init_variables

  config = train_util.small_config()
  variables = init_variables(config, seed=0)
  out = tmp_path_factory.mktemp('export') / 'small'
  stablehlo.export_tracker(config, variables, str(out))
  return config, variables, out


@pytest.mark.slow
def test_artifact_layout(artifact):
  manifest = json.loads((artifact / 'manifest.json').read_text())
  assert manifest['preset'] == 'tiny_256_ce'
  assert set(manifest['variants']) == {'float32', 'bfloat16'}
  assert manifest['platforms'] == ['cpu', 'cuda']
  assert manifest['format_version'] == 2
  assert manifest['template_shape'] == [1, 128, 128, 3]
  assert manifest['search_shape'] == [1, 256, 256, 3]
  assert manifest['frame_shape'] == [1, 'hb', 'wb', 3]
  assert manifest['variants']['bfloat16'] == {'init': 'init.jax', 'track': 'track_bfloat16.jax'}
  for name in ('weights.npz', 'init.jax', 'track_float32.jax', 'track_bfloat16.jax'):
    assert (artifact / name).stat().st_size > 0
  assert not [p for p in artifact.parent.iterdir() if p.name.startswith('.tmp-')]


@pytest.fixture(scope='module')
def float32_pair(artifact, tiny_variables):
  """(live, exported) float32 trackers, compiled once for the module."""
  return _live(tiny_variables, 'float32'), stablehlo.load_exported(str(artifact))


@pytest.mark.slow
@pytest.mark.parametrize('teacher_forced', [True, False], ids=['teacher_forced', 'free'])
def test_exported_float32_reproduces_live_tracker(float32_pair, soapbox, teacher_forced):
  frames, data = soapbox
  n = 4 if teacher_forced else 12
  live_tracker, exported_tracker = float32_pair
  with jax.default_matmul_precision('highest'):
    live = _track(live_tracker, frames, data['gt'], n, teacher_forced)
  exported = _track(exported_tracker, frames, data['gt'], n, teacher_forced)
  np.testing.assert_allclose(exported[0], live[0], atol=BOX_TOL_PX, rtol=0)
  np.testing.assert_allclose(exported[1], live[1], atol=1e-6, rtol=0)
  for got, want in zip(exported[2], live[2], strict=True):
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
      np.testing.assert_array_equal(g, w)
  if teacher_forced:  # and both agree with the original PyTorch tracker
    err = np.abs(exported[0] - data['tf_boxes'][1 : n + 1]).max()
    assert err < ORIGINAL_TOL_PX, err


@pytest.mark.slow
@pytest.mark.fast_compile
def test_one_artifact_serves_another_frame_size(small_artifact, soapbox):
  """The padded frame's height and width are symbolic: 640x360 frames (bucket 640x384, not the
  854x480 -> 896x512 of the other tests) run through the same files, as the live tracker."""
  frames, data = soapbox
  sx, sy = 640 / frames[0].shape[1], 360 / frames[0].shape[0]
  small = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames[:6]]
  gt = data['gt'] * np.array([sx, sy, sx, sy])
  config, variables, folder = small_artifact
  live_tracker = _live(variables, 'float32', config)
  exported_tracker = stablehlo.load_exported(str(folder))
  frame_aval = exported_tracker.exported.in_avals[-3]  # (1, hb, wb, 3) uint8
  assert all(jax.export.is_symbolic_dim(d) for d in frame_aval.shape[1:3]), frame_aval
  with jax.default_matmul_precision('highest'):
    live = _track(live_tracker, small, gt, 5, False)
    live_crop = live_tracker.last_search_crop
  exported = _track(exported_tracker, small, gt, 5, False)
  np.testing.assert_allclose(exported[0], live[0], atol=BOX_TOL_PX, rtol=0)
  np.testing.assert_allclose(exported[1], live[1], atol=1e-6, rtol=0)
  np.testing.assert_array_equal(exported_tracker.last_search_crop, live_crop)
  size = config.model.template_size
  assert exported_tracker.last_template_crop.shape == (size, size, 3)
  # track_async: the box stays on the device until read
  box = exported_tracker.track_async(small[6 - 1])
  assert np.isfinite(np.asarray(box)).all() and box.shape == (4,)


@pytest.mark.slow
def test_loading_the_folder_again_shares_its_programs(float32_pair, artifact, tmp_path):
  """A second load of the same files, with other weights of the preset, runs the first
  tracker's programs: nothing is traced or compiled again."""
  exported_tracker = float32_pair[1]
  with np.load(artifact / 'weights.npz') as data:
    np.savez(tmp_path / 'other.npz', **{k: data[k] * 0.9 for k in data.files})
  again = stablehlo.load_exported(str(artifact), weights=str(tmp_path / 'other.npz'))
  assert (again.core._track, again.core._init) == (
    exported_tracker.core._track,
    exported_tracker.core._init,
  )


@pytest.mark.slow
def test_version_1_artifact_is_refused(tmp_path, artifact):
  old = tmp_path / 'old'
  old.mkdir()
  manifest = json.loads((artifact / 'manifest.json').read_text())
  manifest['format_version'] = 1
  (old / 'manifest.json').write_text(json.dumps(manifest))
  with pytest.raises(ValueError, match='export it again') as err:
    stablehlo.load_exported(str(old))
  assert '\n' not in str(err.value) and 'version 1' in str(err.value)


@pytest.mark.slow
@pytest.mark.fast_compile
def test_exported_bfloat16_reproduces_live_bfloat16_tracker(small_artifact, soapbox):
  frames, data = soapbox
  config, variables, folder = small_artifact
  live = _track(_live(variables, 'bfloat16', config), frames, data['gt'], 4, True)
  exported = _track(
    stablehlo.load_exported(str(folder), dtype='bfloat16'), frames, data['gt'], 4, True
  )
  np.testing.assert_allclose(exported[0], live[0], atol=BOX_TOL_PX, rtol=0)
  np.testing.assert_allclose(exported[1], live[1], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_loader_does_not_build_the_flax_model(artifact):
  # Frames of the soapbox size: the process loads the step the module's float32 tests compiled
  # (the test run's compilation cache) instead of compiling one for a size of its own.
  code = (
    'import sys, numpy as np\n'
    'from ostrack_jax.deploy.stablehlo import load_exported\n'
    f'tr = load_exported({str(artifact)!r})\n'
    'frame = (np.arange(480 * 854 * 3) % 251).astype(np.uint8).reshape(480, 854, 3)\n'
    'tr.initialize(frame, (100, 80, 40, 30))\n'
    'box = tr.track(frame)\n'
    'assert np.isfinite(box).all() and box.shape == (4,), box\n'
    'bad = sorted(m for m in sys.modules if m.split(".")[0] in ("flax", "torch", "optax")\n'
    '             or m.startswith("ostrack_jax.models"))\n'
    'print("IMPORTED", bad)\n'
  )
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120, check=False
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'IMPORTED []' in out.stdout, out.stdout


@pytest.mark.slow
def test_command_line(tmp_path, tiny_checkpoint):
  out = tmp_path / 'cli'
  old_umask = os.umask(0o022)
  try:
    rc = export_command.main(
      [
        '--checkpoint',
        str(tiny_checkpoint),
        '--config',
        str(REPO / 'configs' / 'tiny_256_ce.py'),
        '--output',
        str(out),
        '--dtypes',
        'float32',
        '--platforms',
        'cpu',
      ]
    )
  finally:
    os.umask(old_umask)
  assert rc == 0
  # The user's umask, not mkdtemp's private 0700: colleagues can load the artifact.
  assert out.stat().st_mode & 0o777 == 0o755
  assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
    'manifest.json': 0o644,
    'weights.npz': 0o644,
    'init.jax': 0o644,
    'track_float32.jax': 0o644,
  }
  manifest = stablehlo.read_manifest(str(out))
  assert list(manifest['variants']) == ['float32'] and manifest['platforms'] == ['cpu']
  with pytest.raises(ValueError, match="no 'bfloat16' variant"):
    stablehlo.load_exported(str(out), dtype='bfloat16')


def test_command_line_bad_input(tmp_path, capsys, tiny_checkpoint):
  from ostrack_jax import cli

  with pytest.raises(SystemExit) as e:  # checked while parsing the flags
    export_command.main(['--checkpoint', str(tmp_path / 'missing.msgpack'), '--output', 'o'])
  assert e.value.code == 2 and 'missing.msgpack: no such file' in capsys.readouterr().err
  argv = [
    '--checkpoint',
    str(tiny_checkpoint),
    '--config',
    'tiny_256_ce',
    '--output',
    str(tmp_path / 'o'),
  ]
  assert cli.run(export_command.main, 'export', argv + ['--dtypes', 'float64']) == 2
  err = capsys.readouterr().err
  assert err.startswith('export: ') and '--dtypes' in err and err.count('\n') == 1


@pytest.mark.slow
def test_bad_inputs(tmp_path, artifact, tiny_variables):
  with pytest.raises(FileNotFoundError, match='not an exported tracker'):
    stablehlo.load_exported(str(tmp_path))
  with pytest.raises(ValueError, match='--dtypes'):
    stablehlo.export_tracker(
      get_config('tiny_256_ce'), tiny_variables, str(tmp_path / 'x'), dtypes=['float16']
    )
  # an existing folder that is not an export is never deleted
  (tmp_path / 'keep').mkdir()
  (tmp_path / 'keep' / 'notes.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='not an exported tracker'):
    stablehlo.export_tracker(get_config('tiny_256_ce'), tiny_variables, str(tmp_path / 'keep'))
  assert (tmp_path / 'keep' / 'notes.txt').read_text() == 'mine'
  # weights of another shape
  bad = tmp_path / 'bad.npz'
  with np.load(artifact / 'weights.npz') as data:
    flat = {k: data[k] for k in data.files}
  key = next(iter(flat))
  flat[key] = np.zeros((3,), np.float32)
  np.savez(bad, **flat)
  with pytest.raises(ValueError, match='wrong shapes'):
    stablehlo.load_exported(str(artifact), weights=str(bad))
  # an artifact lowered only for another platform (the loader reads the manifest's platforms,
  # which export_tracker writes from what it lowered for: test_command_line)
  gpu_only = tmp_path / 'gpu_only'
  shutil.copytree(artifact, gpu_only)
  manifest = json.loads((gpu_only / 'manifest.json').read_text())
  (gpu_only / 'manifest.json').write_text(json.dumps(dict(manifest, platforms=['cuda'])))
  with pytest.raises(ValueError, match="not for this machine's 'cpu'"):
    stablehlo.load_exported(str(gpu_only))
