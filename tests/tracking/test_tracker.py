"""The tracker against the original PyTorch OSTrack tracker (tiny model, tests/fixtures/tracker).

Tolerances: crops pixel-exact (uint8 equality); boxes within 0.01 px frame by frame (measured
<= 2.2e-4 px); raw score maps within 1e-5 (measured ~1e-6). Teacher-forced runs set the state to
the previous frame's ground truth before each frame, as the original's reference run did.
"""

import pathlib

import cv2
import jax
import numpy as np
import pytest

from ostrack_jax.common.errors import SequenceFailure
from ostrack_jax.configs import get_config
from ostrack_jax.geometry import crop as crop_lib
from ostrack_jax.tracking import device_step, host, tracker as tracker_lib, tracking_core

FIXTURES = pathlib.Path(__file__).parents[1] / 'fixtures'
BOX_TOL_PX = 0.01
SCORE_TOL = 1e-5


def _png(buf):
  return cv2.imdecode(np.asarray(buf), cv2.IMREAD_COLOR)[..., ::-1]


class _Seq:
  """Frames (decoded lazily) and the original's outputs for one fixture sequence."""

  def __init__(self, name):
    self.data = np.load(FIXTURES / 'tracker' / f'{name}.npz')
    self._frames = {}

  def frame(self, i):
    if i not in self._frames:
      self._frames[i] = _png(self.data[f'png_{i}'])
    return self._frames[i]

  def __getitem__(self, key):
    return self.data[key]


@pytest.fixture(scope='module')
def tracker():
  # The released-layout PyTorch checkpoint, converted on the fly.
  return tracker_lib.Tracker.from_checkpoint(
    FIXTURES / 'tiny256' / 'tiny256_seed0.pth.tar', get_config('tiny_256_ce')
  )


@pytest.fixture(scope='module', params=['synthetic', 'soapbox'])
def seq(request):
  return _Seq(request.param)


# ------------------------------------------------------------------------- host pieces


def test_hann_window_matches_original(seq):
  np.testing.assert_array_equal(host.hann_window(16), seq['output_window'])


def test_hann_window_values_from_spec():
  h = np.sqrt(np.diag(host.hann_window(16)))
  np.testing.assert_allclose(
    h[:8], [0.03376, 0.13050, 0.27713, 0.45387, 0.63683, 0.80132, 0.92511, 0.99149], atol=6e-6
  )
  np.testing.assert_allclose(h, h[::-1], atol=1e-6)  # float32 cos: symmetric to 1 ulp
  assert host.hann_window(24).shape == (24, 24)


def test_normalization_table_is_float32_imagenet():
  table = host.normalization_table().reshape(256, 3)
  for v in (0, 1, 128, 255):
    for c in range(3):
      expected = (
        np.float32(v) / np.float32(255) - np.float32(crop_lib.IMAGENET_MEAN[c])
      ) / np.float32(crop_lib.IMAGENET_STD[c])
      assert table[v, c] == expected
  img = np.array([[[0, 128, 255]]], np.uint8)
  out = np.asarray(jax.jit(device_step.normalize_uint8)(img, host.normalization_table()))
  np.testing.assert_array_equal(out[0, 0], [table[0, 0], table[128, 1], table[255, 2]])


def test_clip_box_uses_unclamped_corners():
  # x2 = -20 + 50 = 30 is computed before x1 is clamped to 0: w = 30 (not 50).
  np.testing.assert_allclose(host.clip_box([-20, 5, 50, 30], 80, 100), [0, 5, 30, 30])
  # Past the bottom-right: x1 -> W - 10, x2 -> W, w = 10.
  np.testing.assert_allclose(host.clip_box([95, 75, 20, 20], 80, 100), [90, 70, 10, 10])
  # Entirely left/above: x2 = max(10, -30) = 10 -> w = 10.
  np.testing.assert_allclose(host.clip_box([-50, -50, 20, 20], 80, 100), [0, 0, 10, 10])
  # Inside: unchanged.
  np.testing.assert_allclose(host.clip_box([10.5, 20.25, 30, 40], 80, 100), [10.5, 20.25, 30, 40])


def test_map_box_back_hand_values():
  # prev centre (60, 40); crop side 200 -> half 100; crop point (100, 100) maps to the centre.
  out = host.map_box_back([[100.0, 100.0, 20.0, 10.0]], [[50, 30, 20, 20]], [200.0])
  np.testing.assert_allclose(out, [[50, 35, 20, 10]])


def test_check_init_box_rejects_bad_boxes():
  with pytest.raises(ValueError, match='zero or negative'):
    host.check_init_box([1, 2, 0, 5], (100, 100), 'seq frame 0')
  with pytest.raises(ValueError, match='zero or negative'):
    host.check_init_box([1, 2, 5, -3], (100, 100))
  with pytest.raises(ValueError, match=r'seq frame 0: .*outside the 100x50 image'):
    host.check_init_box([120, 2, 5, 5], (50, 100), 'seq frame 0')
  with pytest.raises(ValueError, match='finite'):
    host.check_init_box([np.nan, 2, 5, 5], (50, 100))
  # partly outside is accepted (zero padding, as the original)
  host.check_init_box([-3, -3, 10, 10], (50, 100))


# ------------------------------------------------------------------------- equivalence


def _run(tracker, seq, run):
  n = int(seq[f'{run}_frames'])
  gt = seq['gt']
  tracker.initialize(seq.frame(0), gt[0])
  np.testing.assert_array_equal(tracker.last_template_crop, _png(seq['template_crop']))
  boxes, crops, scores = [], {}, []
  for i in range(1, n + 1):
    if run == 'tf':
      tracker.state = gt[i - 1]
    boxes.append(tracker.track(seq.frame(i)))
    crops[i] = tracker.last_search_crop
    scores.append(tracker.last_score_map)
  return np.array(boxes), crops, np.array(scores), n


@pytest.mark.slow
@pytest.mark.parametrize('run', ['tf', 'free'])
def test_tracker_matches_original(tracker, seq, run):
  with jax.default_matmul_precision('highest'):
    boxes, crops, scores, n = _run(tracker, seq, run)
  for k in (1, 2, 3):
    if k <= n and f'{run}_search_crop_f{k}' in seq.data:
      np.testing.assert_array_equal(
        crops[k], _png(seq[f'{run}_search_crop_f{k}']), err_msg=f'search crop of frame {k}'
      )
  ref = seq[f'{run}_boxes'][1 : n + 1]
  err = np.abs(boxes - ref).max(axis=1)
  assert (err < BOX_TOL_PX).all(), f'per-frame box error (px): {err}'
  np.testing.assert_allclose(scores, seq[f'{run}_score_map'][:n], atol=SCORE_TOL, rtol=0)


@pytest.mark.slow
def test_one_compilation_for_all_frames(tracker):
  s = _Seq('soapbox')
  with jax.default_matmul_precision('highest'):
    tracker.initialize(s.frame(0), s['gt'][0])
    tracker.track(s.frame(1))
    compiled = tracker.core.compilations()
    for i in range(2, 6):
      tracker.track(s.frame(i))
  assert tracker.core.compilations() == compiled


@pytest.mark.slow
@pytest.mark.fast_compile  # behaviour (tests/conftest.py)
def test_state_is_readable_and_writable(tracker):
  s = _Seq('soapbox')
  tracker.initialize(s.frame(0), s['gt'][0])
  np.testing.assert_array_equal(tracker.state, s['gt'][0])
  tracker.state = (100.0, 50.0, 40.0, 30.0)
  tracker.track(s.frame(1))
  x1, y1, x2, y2 = tracker.last_crop_box_xyxy
  assert (x1 + x2) / 2 == pytest.approx(120, abs=1) and (y1 + y2) / 2 == pytest.approx(65, abs=1)
  with pytest.raises(ValueError, match='w, h > 0'):
    tracker.state = (1, 2, 0, 4)
  with pytest.raises(ValueError):
    tracker.state = (1, 2, 3)


@pytest.mark.slow
@pytest.mark.fast_compile  # behaviour (tests/conftest.py)
def test_visualisation_outputs(tracker):
  s = _Seq('soapbox')
  tracker.initialize(s.frame(0), s['gt'][0])
  tracker.track(s.frame(1))
  assert tracker.last_score_map.shape == (16, 16)
  np.testing.assert_allclose(
    tracker.last_response, tracker.last_score_map * host.hann_window(16), rtol=1e-6
  )
  removed = tracker.last_removed_indexes
  assert [len(r) for r in removed] == [76, 54, 37]
  flat = np.concatenate(removed)
  assert len(np.unique(flat)) == len(flat) and flat.min() >= 0 and flat.max() < 256


@pytest.mark.fast_compile  # behaviour (tests/conftest.py)
def test_grayscale_and_rgba_frames(tracker):
  s = _Seq('soapbox')
  gray = cv2.cvtColor(s.frame(1), cv2.COLOR_RGB2GRAY)
  gray0 = cv2.cvtColor(s.frame(0), cv2.COLOR_RGB2GRAY)
  tracker.initialize(gray0, s['gt'][0])
  b_gray = tracker.track(gray)
  tracker.initialize(np.repeat(gray0[..., None], 3, 2), s['gt'][0])
  b_rep = tracker.track(np.repeat(gray[..., None], 3, 2))
  np.testing.assert_array_equal(b_gray, b_rep)
  rgba = np.concatenate([s.frame(1), np.full(gray.shape + (1,), 255, np.uint8)], axis=2)
  tracker.initialize(s.frame(0), s['gt'][0])
  b_rgb = tracker.track(s.frame(1))
  tracker.initialize(s.frame(0), s['gt'][0])
  np.testing.assert_array_equal(tracker.track(rgba), b_rgb)


@pytest.mark.fast_compile  # behaviour (tests/conftest.py)
def test_messages_show_plain_numbers(tracker):
  """Boxes in messages are plain numbers, ``(900.0, 10.0, 20.0, 20.0)``, never NumPy reprs such
  as ``(np.float64(900.0), ...)`` (a dataset's ground truth is a NumPy array)."""
  gt = np.array([900.0, 10.0, 20.0, 20.0])
  flat = gt * [1, 1, 0, 1]
  cases = [
    (
      lambda: host.check_init_box(gt, (480, 854), "sequence 'x' frame 0"),
      "sequence 'x' frame 0: initial box (900.0, 10.0, 20.0, 20.0) lies outside the 854x480 image",
    ),
    (
      lambda: host.check_init_box(flat, (480, 854)),
      'initial box (900.0, 10.0, 0.0, 20.0) has zero or negative width/height',
    ),
    (
      lambda: host.check_init_box((np.float32(1), np.float64(2), np.int64(3)), (9, 9)),
      'initial box must be 4 finite numbers x,y,w,h; got (1.0, 2.0, 3.0)',
    ),
    (
      lambda: crop_lib.crop_size(flat, 2.0),
      'box (900.0, 10.0, 0.0, 20.0) has zero or negative size',
    ),
    (
      lambda: setattr(tracker, 'state', gt * 10),
      'state (9000.0, 100.0, 200.0, 200.0) lies outside the 854x480 image',
    ),
  ]
  s = _Seq('soapbox')
  tracker.initialize(s.frame(0), s['gt'][0])
  for call, message in cases:
    with pytest.raises(ValueError) as e:
      call()
    assert str(e.value) == message


@pytest.mark.fast_compile  # behaviour (tests/conftest.py)
def test_track_before_initialize_and_target_leaving_frame(tracker):
  config = tracker.config
  fresh = tracker_lib.Tracker(config, tracker.variables, cast=False)
  with pytest.raises(RuntimeError, match='not initialized'):
    fresh.track(np.zeros((64, 64, 3), np.uint8))
  # A state far outside the frame: the crop is all padding, the box is clipped back into the
  # image with at least 10 px (the original's behaviour).
  s = _Seq('soapbox')
  fresh.initialize(s.frame(0), s['gt'][0])
  with pytest.raises(ValueError, match='outside the 854x480 image'):
    fresh.state = (5000.0, 5000.0, 30.0, 30.0)
  # A state mostly outside the frame: the crop is mostly padding, the box is clipped back
  # into the image with at least 10 px (the original's behaviour).
  fresh.state = (850.0, 478.0, 30.0, 30.0)
  x, y, w, h = fresh.track(s.frame(1))
  assert 0 <= x <= 854 - 10 and 0 <= y <= 480 - 10 and w >= 10 and h >= 10


@pytest.mark.slow
@pytest.mark.fast_compile(older_emitters=False)  # bit-identity with the default emitters (conftest)
def test_batch_tracker_map_mode_is_bit_identical_with_unequal_lengths(tracker):
  """Two sequences of 5 and 3 frames in a batch of 3 (one slot idle), 'map' mode."""
  s = _Seq('soapbox')
  frames = [s.frame(i) for i in range(6)]
  inits = [s['gt'][0], s['gt'][0] + np.array([4.0, -3.0, -10.0, 6.0])]
  lengths = [5, 3]
  singles = []
  for init, n in zip(inits, lengths, strict=True):
    tracker.initialize(frames[0], init)
    singles.append(np.array([tracker.track(frames[i]) for i in range(1, n)]))
  tracking_core.shared_programs.cache_clear()  # programs of this test only (others share them)
  batch = tracker_lib.BatchTracker(tracker, 3, 'map')
  for slot, init in enumerate(inits):
    batch.initialize(slot, frames[0], init)
  got = [[], []]
  for i in range(1, max(lengths)):
    step_frames = [frames[i] if i < n else None for n in lengths] + [None]
    for slot, n in enumerate(lengths):
      if i == n:
        batch.release(slot)
    states = batch.track(step_frames)
    for slot, n in enumerate(lengths):
      if i < n:
        got[slot].append(states[slot])
  for slot in range(2):
    np.testing.assert_array_equal(np.array(got[slot]), singles[slot])
  assert batch.core._track._cache_size() == 1


@pytest.mark.parametrize(
  'box, problem',
  [((10, 10, 0, 20), 'zero or negative'), ((900, 10, 20, 20), 'outside the 854x480 image')],
)
@pytest.mark.fast_compile  # behaviour (tests/conftest.py)
def test_runner_rejects_bad_initial_box_naming_sequence_and_frame(tracker, tmp_path, box, problem):
  from ostrack_jax.datasets.core import Video
  from ostrack_jax.tracking import runner

  s = _Seq('soapbox')
  paths = []
  for i in range(2):
    paths.append(str(tmp_path / f'{i + 1:08d}.png'))
    (tmp_path / f'{i + 1:08d}.png').write_bytes(s[f'png_{i}'].tobytes())
  seq = Video('bad_init', paths, np.array([box], np.float64))

  def fail(error):
    raise error

  with pytest.raises(SequenceFailure, match=f"sequence 'bad_init' frame 0: .*{problem}"):
    runner.Pipeline(tracker.core, [seq], pytest.fail, fail).run()
