"""The device crop (ostrack_jax.geometry.device_crop) against OpenCV, pixel for pixel.

Reference: ``ostrack_jax.geometry.crop.sample_target`` (the original's crop arithmetic in float64,
``cv2.resize`` INTER_LINEAR on uint8; itself checked against the original's crops in
test_tracker.py). Tolerance: none (uint8 equality) for the resize; the float32 crop placement
is compared with the float64 one separately. Tested with opencv-python-headless 5.0 (the range
pinned in pyproject.toml).
"""

import pathlib

import cv2
import jax
import numpy as np
import pytest

from ostrack_jax.geometry import crop as crop_lib, device_crop
from ostrack_jax.tracking import device_step, host, tracking_core

FIXTURES = pathlib.Path(__file__).parents[1] / 'fixtures'


def _real_frame():
  data = np.load(FIXTURES / 'tracker' / 'soapbox.npz')
  return cv2.imdecode(data['png_5'], cv2.IMREAD_COLOR)[..., ::-1]  # 854x480 DAVIS frame


@jax.jit
def _crops(frame, hw, side, x1, y1):
  return {
    s: jax.vmap(device_crop.crop_and_resize, in_axes=(None, None, 0, 0, 0, None))(
      frame, hw, side, x1, y1, s
    )
    for s in (128, 192, 256, 384)
  }


def _random_boxes(rng, n, h, w):
  """Boxes of every kind: tiny (1-3 px), small, large, larger than the frame; inside, partly
  and mostly outside; integer and fractional."""
  boxes = []
  for i in range(n):
    kind = i % 5
    if kind == 0:
      bw, bh = rng.uniform(0.3, 3.0, 2)
    elif kind == 1:
      bw, bh = rng.uniform(3, 60, 2)
    elif kind == 2:
      bw, bh = rng.uniform(20, 300, 2)
    elif kind == 3:
      bw, bh = rng.uniform(100, 900, 2)
    else:
      bw, bh = np.round(rng.uniform(1, 120, 2))
    x = rng.uniform(-bw - 60, w + 60)
    y = rng.uniform(-bh - 60, h + 60)
    if i % 7 == 0:
      x, y = np.round(x), np.round(y)
    boxes.append((x, y, bw, bh))
  return boxes


# Every frame of this module is padded to one shape and the boxes go in fixed-size chunks, so the
# crops compile once for the module (each frame shape and box count was a program of its own).
# The crop reads only the frame's real height and width (``hw``), never the padding (filled with
# 77 here, so a read of it shows): a pad larger than the frame's bucket is as valid an input.
PADDED_HW = (768, 896)  # the bucket of the largest frame here (720x405 -> 768x512, 854 -> 896)
CHUNK = 64


def _compare(image, boxes, factor):
  h, w = image.shape[:2]
  hb, wb = tracking_core.bucket_shape(h, w)
  assert hb <= PADDED_HW[0] and wb <= PADDED_HW[1], (h, w)
  padded = tracking_core.pad_to(image, PADDED_HW, np.full(PADDED_HW + (3,), 77, np.uint8))
  geo = [
    crop_lib.sample_target(image[:1, :1], b, factor, None, with_mask=False).crop_box_xyxy
    for b in boxes
  ]
  n = -(-len(boxes) // CHUNK) * CHUNK  # the last chunk filled with 1-px crops at the origin
  side = np.ones(n, np.int32)
  x1, y1 = np.zeros(n, np.int32), np.zeros(n, np.int32)
  side[: len(geo)] = [g[2] - g[0] for g in geo]
  x1[: len(geo)] = [g[0] for g in geo]
  y1[: len(geo)] = [g[1] for g in geo]
  hw = np.array([h, w], np.int32)
  chunks = [
    _crops(padded, hw, side[i : i + CHUNK], x1[i : i + CHUNK], y1[i : i + CHUNK])
    for i in range(0, n, CHUNK)
  ]
  got = {s: np.concatenate([np.asarray(c[s]) for c in chunks]) for s in chunks[0]}
  for s, crops in got.items():
    for i, b in enumerate(boxes):
      ref = crop_lib.sample_target(image, b, factor, s, with_mask=False).image
      if not np.array_equal(crops[i], ref):
        bad = np.argwhere(crops[i] != ref)
        pytest.fail(
          f'S={s} box {b} (side {side[i]}): {len(bad)} pixels differ, first at {bad[0].tolist()}'
        )
  return len(boxes) * len(got)


@pytest.mark.slow
def test_resize_matches_cv2_on_a_real_frame_for_random_boxes():
  rng = np.random.default_rng(0)
  image = _real_frame()
  n = _compare(image, _random_boxes(rng, 250, *image.shape[:2]), 4.0)
  n += _compare(image, _random_boxes(rng, 100, *image.shape[:2]), 2.0)
  assert n == 1400


@pytest.mark.slow
@pytest.mark.parametrize('hw', [(37, 101), (300, 173), (720, 405)])
def test_resize_matches_cv2_on_random_non_square_frames(hw):
  rng = np.random.default_rng(hw[0])
  image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
  _compare(image, _random_boxes(rng, 60, *hw), 4.0)


@pytest.mark.slow  # compiles the module's crop program (~2 s), which the slow tests share
def test_resize_traps_exact_scales_and_tiny_crops():
  """Exact 2x downscale (cv2 takes INTER_AREA's path), exact 2x upscale (border rows keep
  fractional weights), identity, 1-3 px crops, odd sides, crops bigger than the frame."""
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
  boxes = []
  for side in (
    1,
    2,
    3,
    5,
    63,
    64,
    65,
    96,
    127,
    128,
    129,
    191,
    192,
    256,
    384,
    512,
    768,
    1023,
    1024,
    2049,
  ):
    for cx, cy in ((400.0, 300.0), (1.0, 2.0), (799.0, 599.0), (-3.0, 300.0)):
      boxes.append((cx - side / 8, cy - side / 8, side / 4, side / 4))  # factor 4 -> side
  _compare(image, boxes, 4.0)


def test_rounded_quotient_is_the_correctly_rounded_float32():
  num = np.concatenate(
    [np.arange(-300, 300), np.random.default_rng(0).integers(-(2**23), 2**23, 20000)]
  ).astype(np.int32)
  for denom in (256, 384, 512, 768, 96, 6):
    got = np.asarray(jax.jit(device_crop._rounded_quotient, static_argnums=1)(num, denom))
    np.testing.assert_array_equal(
      got, (num.astype(np.float64) / denom).astype(np.float32), err_msg=f'denominator {denom}'
    )


@pytest.mark.slow
def test_float32_geometry_agrees_with_the_original_float64():
  """crop_sz and the rounded origin from float32 boxes equal the float64 arithmetic except when
  sqrt(w h) * factor lies within float32 rounding of an integer (measured: 0 of 20000 random
  boxes; integer boxes always agree)."""
  rng = np.random.default_rng(2)
  boxes = np.concatenate(
    [
      rng.uniform([-100, -100, 0.5, 0.5], [1900, 1100, 800, 800], (20000, 4)),
      np.round(rng.uniform([-100, -100, 1, 1], [1900, 1100, 800, 800], (5000, 4))),
    ]
  ).astype(np.float32)
  g = jax.jit(device_crop.crop_geometry, static_argnums=(1, 2))(boxes, 4.0, 256)
  ref = np.array(
    [
      crop_lib.sample_target(
        np.zeros((1, 1, 1), np.uint8), b, 4.0, None, with_mask=False
      ).crop_box_xyxy
      for b in boxes
    ]
  )
  got = np.stack(
    [np.asarray(g.x1), np.asarray(g.y1), np.asarray(g.x1 + g.side), np.asarray(g.y1 + g.side)], 1
  )
  differ = (got != ref).any(1)
  assert differ.sum() <= 2, f'{differ.sum()} placements differ: {boxes[differ][:5]}'
  assert not differ[20000:].any()  # integer boxes
  np.testing.assert_array_equal(
    np.asarray(g.resize_factor), (256.0 / (ref[:, 2] - ref[:, 0])).astype(np.float32)
  )


def test_device_map_back_and_clip_stay_within_1e3_px_of_float64():
  rng = np.random.default_rng(3)
  n = 5000
  prev = np.concatenate([rng.uniform(-50, 900, (n, 2)), rng.uniform(10, 400, (n, 2))], 1)
  prev = prev.astype(np.float32)
  pred = rng.uniform(-0.2, 1.2, (n, 4)).astype(np.float32)
  hw = np.tile(np.array([[480, 854]], np.int32), (n, 1))
  g = device_crop.crop_geometry(prev, 4.0, 256)
  got = np.asarray(
    jax.jit(device_step.boxes_to_image_device, static_argnums=5)(
      pred, prev, g.side, g.resize_factor, hw, 256
    ),
    np.float64,
  )
  side = np.asarray(g.side).astype(np.float64)
  ref = host.boxes_to_image(pred, prev.astype(np.float64), 256.0 / side, hw, 256)
  err = np.abs(got - ref).max()
  assert err < 1e-3, f'float32 map-back/clip moved a box by {err} px'


def test_bucket_sizes():
  assert [
    tracking_core.bucket_size(n) for n in (1, 64, 65, 360, 480, 540, 720, 854, 1080, 1280, 1920)
  ] == [64, 64, 80, 384, 512, 640, 768, 896, 1280, 1280, 2048]
  for n in range(1, 5000, 7):
    b = tracking_core.bucket_size(n)
    assert n <= b <= max(64, 1.25 * n)
