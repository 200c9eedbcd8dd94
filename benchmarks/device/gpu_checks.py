#!/usr/bin/env python3
"""Exactness checks of the device-resident tracker on whatever backend JAX runs (a GPU here).

The suite (tests/) runs on CPUs; this script repeats its GPU-sensitive claims where pytest may
not be installed: the device crop equals cv2.resize pixel for pixel on random boxes over a real
frame (S = 128/192/256/384), the tracker reproduces the original's boxes on the fixture
sequences (float32, highest matmul precision), and an exported artifact with symbolic frame
sizes lowers and runs on this backend. Prints one line per check and exits non-zero on failure.

  python benchmarks/device/gpu_checks.py
"""

import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import cv2
import jax
import numpy as np

from ostrack_jax.configs import get_config
from ostrack_jax.geometry import crop as crop_lib, device_crop
from ostrack_jax.tracking import tracker as tracker_lib, tracking_core

FIXTURES = REPO / 'tests' / 'fixtures'


def png(buf):
  return cv2.imdecode(np.asarray(buf), cv2.IMREAD_COLOR)[..., ::-1]


def check_crops(n_boxes=500):
  data = np.load(FIXTURES / 'tracker' / 'soapbox.npz')
  image = png(data['png_5'])
  h, w = image.shape[:2]
  rng = np.random.default_rng(0)
  sizes = np.exp(rng.uniform(np.log(0.3), np.log(1200), (n_boxes, 2)))
  xy = rng.uniform(-sizes - 60, [w + 60, h + 60])
  boxes = np.concatenate([xy, sizes], 1)
  padded = tracking_core.pad_to(image, tracking_core.bucket_shape(h, w))
  hw = np.array([h, w], np.int32)
  geo = [
    crop_lib.sample_target(image[:1, :1], b, 4.0, None, with_mask=False).crop_box_xyxy
    for b in boxes
  ]
  side = np.array([g[2] - g[0] for g in geo], np.int32)
  x1 = np.array([g[0] for g in geo], np.int32)
  y1 = np.array([g[1] for g in geo], np.int32)
  ok = True
  for s in (128, 192, 256, 384):
    fn = jax.jit(
      jax.vmap(device_crop.crop_and_resize, in_axes=(None, None, 0, 0, 0, None)), static_argnums=5
    )
    got = np.asarray(fn(padded, hw, side, x1, y1, s))
    bad = 0
    for i, b in enumerate(boxes):
      ref = crop_lib.sample_target(image, b, 4.0, s, with_mask=False).image
      bad += int(not np.array_equal(got[i], ref))
    print(f'crop S={s}: {bad} of {n_boxes} random crops differ from cv2.resize')
    ok &= bad == 0
  return ok


def check_tracker():
  from ostrack_jax.weights.model_file import load_checkpoint

  config = get_config('tiny_256_ce')
  variables = load_checkpoint(str(FIXTURES / 'tiny256' / 'tiny256_seed0.pth.tar'), config)
  tracker = tracker_lib.Tracker(config, variables)
  ok = True
  with jax.default_matmul_precision('highest'):
    for name in ('synthetic', 'soapbox'):
      data = np.load(FIXTURES / 'tracker' / f'{name}.npz')
      gt = data['gt']
      for run in ('tf', 'free'):
        n = int(data[f'{run}_frames'])
        tracker.initialize(png(data['png_0']), gt[0])
        boxes, crops_ok = [], True
        for i in range(1, n + 1):
          if run == 'tf':
            tracker.state = gt[i - 1]
          boxes.append(tracker.track(png(data[f'png_{i}'])))
          key = f'{run}_search_crop_f{i}'
          if key in data.files:
            crops_ok &= np.array_equal(tracker.last_search_crop, png(data[key]))
        err = np.abs(np.array(boxes) - data[f'{run}_boxes'][1 : n + 1]).max()
        print(
          f'tracker {name} {run}: {n} frames, max box error {err:.2e} px vs the original '
          f'(bar 0.01), search crops {"exact" if crops_ok else "DIFFER"}'
        )
        ok &= bool(err < 0.01) and crops_ok
  return ok


def check_export():
  from ostrack_jax.deploy import stablehlo
  from ostrack_jax.models.ostrack import init_variables

  config = get_config('tiny_256_ce')
  variables = init_variables(config)
  platform = {'gpu': 'cuda'}.get(jax.default_backend(), jax.default_backend())
  with tempfile.TemporaryDirectory() as tmp:
    out = stablehlo.export_tracker(
      config, variables, tmp + '/art', dtypes=('float32',), platforms=(platform,)
    )
    exported = stablehlo.load_exported(out)
    live = tracker_lib.Tracker(config, variables)
    rng = np.random.default_rng(0)
    worst = 0.0
    for hw in ((480, 854), (360, 640)):
      frames = [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for _ in range(4)]
      box = (hw[1] * 0.4, hw[0] * 0.4, 60.0, 40.0)
      with jax.default_matmul_precision('highest'):
        exported.initialize(frames[0], box)
        live.initialize(frames[0], box)
        for f in frames[1:]:
          worst = max(worst, float(np.abs(exported.track(f) - live.track(f)).max()))
  print(
    f'export ({platform}, symbolic frame size): 2 frame sizes, max box difference to the '
    f'live tracker {worst:.2e} px'
  )
  return worst < 1e-3


def main():
  print(f'jax {jax.__version__} on {jax.devices()}; opencv {cv2.__version__}', flush=True)
  results = {}
  for name, fn in (('crops', check_crops), ('tracker', check_tracker), ('export', check_export)):
    try:
      results[name] = fn()
    except Exception as e:
      print(f'{name}: FAILED with {type(e).__name__}: {e}')
      results[name] = False
    sys.stdout.flush()
  print('gpu checks:', ', '.join(f'{k} {"ok" if v else "FAILED"}' for k, v in results.items()))
  return 0 if all(results.values()) else 1


if __name__ == '__main__':
  sys.exit(main())
