"""Crop, box and augmentation arithmetic of the training pairs (the original's STARKProcessing)."""

import math

import cv2
import numpy as np
import pytest

from ostrack_jax.data import transforms as T
from ostrack_jax.geometry import crop as crop_lib


def _jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
  ok, buf = cv2.imencode(
    '.jpg', cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
  )
  assert ok
  return buf.tobytes()


def _png(image_rgb: np.ndarray) -> bytes:
  ok, buf = cv2.imencode('.png', cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
  assert ok
  return buf.tobytes()


def _textured(h, w, seed=0, cell=8):
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (h // cell + 1, w // cell + 1, 3), dtype=np.uint8)
  return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_box_to_crop_hand_computed():
  # Box (40, 30, 20, 10), factor 2: crop_sz = ceil(sqrt(200) * 2) = ceil(28.28) = 29,
  # x1 = round(50 - 14.5) = round(35.5) = 36 (half to even), y1 = round(20.5) = 20.
  image = np.zeros((80, 100, 3), np.uint8)
  crop = crop_lib.sample_target(image, (40, 30, 20, 10), 2.0, 58)
  assert crop.crop_box_xyxy == (36, 20, 65, 49)
  assert crop.resize_factor == pytest.approx(2.0)
  # GT centred on the reference: centre (S - 1) / 2 = 28.5, size (40, 20), over S = 58.
  np.testing.assert_allclose(
    crop_lib.box_to_crop_normalized((40, 30, 20, 10), (40, 30, 20, 10), 2.0, 58),
    np.array([8.5, 18.5, 40, 20]) / 58,
  )
  # Reference centre 2 px right of the GT centre: c_out = 28.5 - 2 * 2 = 24.5.
  np.testing.assert_allclose(
    crop_lib.box_to_crop_normalized((40, 30, 20, 10), (42, 30, 20, 10), 2.0, 58),
    np.array([4.5, 18.5, 40, 20]) / 58,
  )


def test_flip_box_rule():
  # x1' = W - 1 - (x1 + w): a box touching the left border maps to end at W - 1.
  np.testing.assert_allclose(T.flip_box_xywh(np.array([0, 5, 10, 4.0]), 100), [89, 5, 10, 4])
  np.testing.assert_allclose(T.flip_box_xywh(np.array([20.5, 5, 10, 4.0]), 64), [32.5, 5, 10, 4])


def test_jitter_box_template_unchanged_and_bounds():
  rng = np.random.default_rng(0)
  box = np.array([10.0, 20.0, 30.0, 40.0])
  np.testing.assert_array_equal(T.jitter_box(box, 0.0, 0.0, rng), box)
  # The template draw still consumes 2 normals and 2 uniforms (original RNG order).
  ref = np.random.default_rng(0)
  ref.standard_normal(2)
  ref.random(2)
  assert rng.random() == ref.random()
  # Search jitter: centre within +-max_offset / 2 of the GT centre, max_offset from jittered size.
  for seed in range(200):
    j = T.jitter_box(box, 3.0, 0.25, np.random.default_rng(seed))
    max_offset = math.sqrt(j[2] * j[3]) * 3.0
    offset = j[:2] + j[2:] / 2 - (box[:2] + box[2:] / 2)
    assert np.all(np.abs(offset) <= max_offset / 2 + 1e-9)


@pytest.mark.parametrize('size', [(80, 100), (37, 53)])
def test_pad_mask_matches_sample_target(size):
  h, w = size
  image = np.zeros((h, w, 3), np.uint8)
  rng = np.random.default_rng(1)
  for _ in range(150):
    bw, bh = rng.uniform(1, 60, 2)
    x, y = rng.uniform(-50, w + 20), rng.uniform(-50, h + 20)
    factor = rng.choice([2.0, 4.0, 5.0])
    out = int(rng.choice([16, 32, 64, 128]))
    ref = crop_lib.sample_target(image, (x, y, bw, bh), factor, out)
    ours = T.crop_pad_mask(ref.crop_box_xyxy, (w, h), out)
    np.testing.assert_array_equal(ours, ref.pad_mask)


def test_process_crop_matches_tracker_crop():
  """No jitter, no augmentation: the pair crop is the tracker's crop, normalized."""
  image = _textured(120, 160)
  frame = T.Frame(_png(image), 'frame.png')
  box = np.array([50.3, 40.7, 30.2, 22.9])
  params = T.AugmentParams(output_size=64, factor=2.0, center_jitter=0.0, scale_jitter=0.0)
  img, anno = T.process_crop(
    frame, box, params, np.random.default_rng(0), gray=False, flip=False, train=False
  )
  ref = crop_lib.sample_target(image, box, 2.0, 64)
  np.testing.assert_allclose(img, T.normalize(ref.image.astype(np.float32) / 255), atol=1e-6)
  np.testing.assert_allclose(
    anno, crop_lib.box_to_crop_normalized(box, box, ref.resize_factor, 64), rtol=1e-6
  )


def test_process_crop_flip_matches_crop_of_mirrored_frame():
  image = _textured(120, 160, seed=3)
  frame = T.Frame(_png(image), 'frame.png')
  box = np.array([20.0, 40.0, 30.0, 22.0])
  params = T.AugmentParams(64, 2.0, 0.0, 0.0)
  img, anno = T.process_crop(
    frame, box, params, np.random.default_rng(0), gray=False, flip=True, train=False
  )
  mirrored = np.ascontiguousarray(image[:, ::-1])
  fbox = np.array([160 - 1 - (20 + 30), 40, 30, 22.0])
  ref = crop_lib.sample_target(mirrored, fbox, 2.0, 64)
  np.testing.assert_allclose(img, T.normalize(ref.image.astype(np.float32) / 255), atol=1e-6)
  np.testing.assert_allclose(
    anno, crop_lib.box_to_crop_normalized(fbox, fbox, ref.resize_factor, 64), rtol=1e-6
  )


@pytest.mark.parametrize('flip', [False, True])
def test_reduced_decode_matches_full_resolution(flip):
  """JPEG decoded at 1/2 or 1/4: same labels, crop pixels close to the full-res crop.

  Tolerance, on a texture with 32-px cells: mean absolute difference below 1.5 grey levels and
  99th percentile below 8 (measured 0.85 / 0.43 mean). On finer textures the difference grows
  (7.7 mean with 8-px cells at r = 4) because the reduced decode averages pixels where the
  full-resolution INTER_LINEAR crop aliases; the geometry is the same (best shift 0).
  """
  image = _textured(720, 960, seed=5, cell=32)
  data = _jpeg(image)
  box = np.array([300.4, 200.2, 300.0, 260.0])  # crop side 2 * 279 = 559 -> r = 4 for S = 128
  for out, expect_r in ((128, 4), (256, 2)):
    side = crop_lib.crop_size(box, 2.0)
    assert T.choose_reduction(side, out) == expect_r
    full = T.crop_frame(T.Frame(data, 'f.jpg'), box, 2.0, out, flip=flip, reduced_decode=False)
    red = T.crop_frame(T.Frame(data, 'f.jpg'), box, 2.0, out, flip=flip, reduced_decode=True)
    assert full[1:] == red[1:]  # resize factor, crop box, image size
    diff = np.abs(full[0].astype(np.int32) - red[0].astype(np.int32))
    assert diff.mean() < 1.5, diff.mean()
    assert np.percentile(diff, 99) < 8, np.percentile(diff, 99)
    # A one-pixel misalignment would be visible: shifting by one output pixel is much worse.
    shifted = np.abs(full[0][:, 1:].astype(np.int32) - red[0][:, :-1].astype(np.int32))
    assert shifted.mean() > 2 * diff.mean()


def test_reduced_decode_near_border_is_black_outside():
  image = np.full((480, 640, 3), 200, np.uint8)
  data = _jpeg(image)
  box = np.array([0.0, 0.0, 200.0, 200.0])  # crop extends left/top beyond the image
  full = T.crop_frame(T.Frame(data, 'f.jpg'), box, 2.0, 128, flip=False, reduced_decode=False)
  red = T.crop_frame(T.Frame(data, 'f.jpg'), box, 2.0, 128, flip=False, reduced_decode=True)
  assert T.choose_reduction(400, 128) == 2
  # The crop spans [-100, 300) in x and y: its first quarter (32 px) is padding (black).
  assert full[0][:31, :31].max() == 0 and red[0][:31, :31].max() == 0
  assert full[0][:31].max() == 0 and red[0][:31].max() == 0
  assert abs(int(red[0][100, 100, 0]) - 200) <= 3


def test_flips_keep_box_on_object():
  """A white object on black: inside the labelled box the crop is bright, with any flips."""
  h, w = 200, 300
  image = np.zeros((h, w, 3), np.uint8)
  box = np.array([40.0, 60.0, 50.0, 30.0])  # asymmetric placement
  image[60:90, 40:90] = 255
  image[60:90, 40:65, 1:] = 0  # left half red: tells whether a crop is mirrored
  frame = T.Frame(_png(image), 'f.png')
  tp = T.AugmentParams(128, 2.0, 0.0, 0.0)
  sp = T.AugmentParams(256, 4.0, 3.0, 0.25)
  mirrored = {'template': set(), 'search': set()}
  for seed in range(40):
    rng = np.random.default_rng(seed)
    out = T.process_pair(frame, box, frame, box, tp, sp, rng, grayscale_probability=0.0)
    for key in ('template', 'search'):
      img, anno = out[key], out[key + '_anno']
      s = img.shape[0]
      x1, y1, bw, bh = anno * s
      inner = img[
        int(y1 + 0.25 * bh) : int(y1 + 0.75 * bh), int(x1 + 0.25 * bw) : int(x1 + 0.75 * bw)
      ]
      assert inner.size and inner[:, :, 0].min() > 1.2, (seed, key)  # white * 0.8 -> >= 1.37
      # The bright region matches the box edges. Tolerance in output pixels: 1 (threshold at
      # half intensity and interpolation) + 0.5 (the (S - 1) / 2 label-centre convention)
      # + 0.5 * rf (labels ignore the rounding of the crop origin, up to half a frame pixel),
      # and horizontally 1 * rf more: the original's frame flip maps boxes with
      # x' = W - 1 - (x + w) while the image content moves to W - (x + w).
      rf = bw / 50.0
      bright = img[:, :, 0] > 0.0
      ys, xs = np.nonzero(bright)
      np.testing.assert_allclose(
        [xs.min(), xs.max() + 1], np.clip([x1, x1 + bw], 0, s), atol=1.5 + 1.5 * rf
      )
      np.testing.assert_allclose(
        [ys.min(), ys.max() + 1], np.clip([y1, y1 + bh], 0, s), atol=1.5 + 0.5 * rf
      )
      ym = int(y1 + bh / 2)
      left_red = img[ym, max(int(x1 + 0.2 * bw), 0), 1] < img[ym, min(int(x1 + 0.8 * bw), s - 1), 1]
      mirrored[key].add(bool(not left_red))
  assert mirrored['template'] == {False, True} and mirrored['search'] == {False, True}


def test_brightness_and_normalization():
  img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  for b in (0.8, 1.0, 1.2):
    expected = (
      np.clip(img.astype(np.float32) * np.float32(b / 255), 0, 1) - crop_lib.IMAGENET_MEAN
    ) / crop_lib.IMAGENET_STD
    np.testing.assert_allclose(T.to_normalized_float(img, b), expected, atol=1e-6)


def test_invalid_crops_raise_bad_sample():
  frame = T.Frame(_png(np.zeros((50, 60, 3), np.uint8)), 'f.png')
  params = T.AugmentParams(32, 2.0, 0.0, 0.0)
  cases = [
    (frame, [500.0, 10, 5, 5], 'outside'),  # crop entirely beyond the right border
    (frame, [10.0, 10, 0, 5], 'degenerate'),
    (frame, [10.0, np.nan, 5, 5], 'degenerate'),
    (T.Frame(b'\xff\xd8\xff garbage', 'corrupt.jpg'), [10.0, 10, 5, 5], 'corrupt.jpg'),
  ]
  for source, box, message in cases:
    with pytest.raises(T.BadSample, match=message):
      T.process_crop(
        source,
        np.array(box),
        params,
        np.random.default_rng(0),
        gray=False,
        flip=False,
        train=False,
      )


def test_grayscale_crop():
  img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  g = T.to_gray3(img)
  ref = np.round(img @ np.array([0.299, 0.587, 0.114]))
  assert np.abs(g[:, :, 0].astype(int) - ref).max() <= 1
  assert np.array_equal(g[:, :, 0], g[:, :, 2])


def test_per_crop_brightness_and_flip_exact():
  """Training chain = crop, brightness U(0.8, 1.2), then a mirror with x1' = 1 - (x1 + w)."""
  image = _textured(120, 160, seed=7)
  frame = T.Frame(_png(image), 'f.png')
  box = np.array([60.0, 40.0, 30.0, 20.0])
  params = T.AugmentParams(64, 2.0, 0.0, 0.0)
  ref = crop_lib.sample_target(image, box, 2.0, 64)
  ref_anno = crop_lib.box_to_crop_normalized(box, box, ref.resize_factor, 64)
  flips = set()
  for seed in range(12):
    img, anno = T.process_crop(
      frame, box, params, np.random.default_rng(seed), gray=False, flip=False, train=True
    )
    rng = np.random.default_rng(seed)  # replay: jitter (2 normals, 2 uniforms), brightness, flip
    rng.standard_normal(2)
    rng.random(2)
    brightness = rng.uniform(0.8, 1.2)
    flipped = rng.random() < 0.5
    flips.add(flipped)
    crop = ref.image[:, ::-1] if flipped else ref.image
    expected_anno = ref_anno.copy()
    if flipped:
      expected_anno[0] = 1.0 - (ref_anno[0] + ref_anno[2])
    np.testing.assert_allclose(
      img, T.to_normalized_float(np.ascontiguousarray(crop), brightness), atol=1e-6
    )
    np.testing.assert_allclose(anno, expected_anno, rtol=1e-6)
  assert flips == {False, True}
