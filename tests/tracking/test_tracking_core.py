"""The device-resident core and the pipelined runner: lockstep identity, bucketed
compilations, and bad input as a user meets it (odd frame sizes, truncated JPEGs)."""

import pathlib
import warnings

import chex
import cv2
import jax
import numpy as np
import pytest

import train_util
from ostrack_jax.configs import apply_overrides, get_config
from ostrack_jax.datasets.core import FrameError, Video
from ostrack_jax.datasets.frames import read_frame
from ostrack_jax.tracking import device_step, runner, tracker as tracker_lib, tracking_core

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


# The model: the small OSTrack of the train.py tests (tests/train_util.py: half the tiny preset's
# sizes and widths, 3 blocks, one CE layer), as in test_eval: what the tests assert (lockstep and
# devices against one slot, program counts, messages, failures) holds for any model, and it
# compiles and runs in a fraction of the tiny preset's time.
SMALL = tuple(
  f.removeprefix('--config.') for f in train_util.SMALL_MODEL if f.startswith('--config.')
)


def _small_config(*overrides):
  return apply_overrides(get_config('tiny_256_ce'), [*SMALL, *overrides])


@pytest.fixture(scope='module')
def small_variables():
  """Weights (seed 0) of the small model."""
  from ostrack_jax.models.ostrack import init_variables

  return init_variables(_small_config(), seed=0)


@pytest.fixture(scope='module')
def tracker(small_variables):
  return tracker_lib.Tracker(_small_config(), small_variables)


@pytest.fixture(scope='module')
def soapbox8(soapbox):
  """The first 8 soapbox frames and the ground truth (the soapbox fixture of tests/conftest.py)."""
  frames, arrays = soapbox
  return frames[:8], arrays['gt']


def _sequence(tmp_path, name, frames, init_box, ext='png'):
  folder = tmp_path / name
  folder.mkdir()
  paths = []
  for i, f in enumerate(frames):
    path = folder / f'{i + 1:08d}.{ext}'
    cv2.imwrite(str(path), f[..., ::-1])
    paths.append(str(path))
  return Video(name, paths, np.asarray([init_box], np.float64))


def _raise(error):
  raise error


def _track_alone(tracker, seq):
  """``seq`` through the tracker's one-slot core (the pipeline's defaults): its SequenceRun."""
  done = []
  runner.Pipeline(tracker.core, [seq], done.append, _raise).run()
  return done[0]


@pytest.mark.slow
@pytest.mark.fast_compile(older_emitters=False)  # bit-identity with the default emitters (conftest)
def test_lockstep_map_mode_is_bit_identical_and_slots_refill(tracker, soapbox8, tmp_path):
  """Three sequences of 6, 3 and 5 frames through 2 slots ('map'): the short one ends and the
  third takes its slot; every box equals tracking that sequence alone (B = 1 core)."""
  frames, gt = soapbox8
  specs = [
    ('a', 6, gt[0]),
    ('b', 3, gt[0] + [4.0, -3.0, -10.0, 6.0]),
    ('c', 5, gt[1] + [-6.0, 2.0, 8.0, -4.0]),
  ]
  seqs = [_sequence(tmp_path, name, frames[:n], box) for name, n, box in specs]
  alone = {s.name: _track_alone(tracker, s).boxes for s in seqs}
  batch = tracker_lib.BatchTracker(tracker, 2, 'map')
  done, failed, counted = {}, [], []
  runner.Pipeline(
    batch.core,
    seqs,
    lambda r: done.__setitem__(r.name, r),
    failed.append,
    on_frames=counted.append,
    lag=2,
  ).run()
  assert not failed and sorted(done) == ['a', 'b', 'c'] and sum(counted) == 14
  for name, boxes in alone.items():
    np.testing.assert_array_equal(done[name].boxes, boxes, err_msg=name)
  # The pipelined runner gives the Tracker.track boxes (one frame at a time, waiting).
  tracker.initialize(frames[0], gt[0])
  np.testing.assert_array_equal(alone['a'][1:], [tracker.track(f) for f in frames[1:6]])


@pytest.mark.slow
def test_bucketed_frames_compile_one_program_per_bucket(tracker, soapbox8):
  frames, gt = soapbox8
  # Functions of its own: the core's programs are this test's only (cores share programs).
  fns = device_step.make_tracking_fns(tracker.config, None, full_outputs=False)
  core = tracking_core.TrackingCore(
    tracker.config, tracker.variables, 1, None, full_outputs=False, fns=fns, cast=False
  )
  sizes = [(480, 854), (500, 860), (360, 640), (480, 854), (720, 1280), (355, 630)]
  buckets = {tracking_core.bucket_shape(*hw) for hw in sizes}
  assert len(buckets) == 3
  for h, w in sizes:
    frame = cv2.resize(frames[1], (w, h))
    core.initialize_slot(0, frame, np.array([w / 3, h / 3, w / 5, h / 5]))
    padded = tracking_core.pad_to(frame, tracking_core.bucket_shape(h, w))[None]
    core.step(padded, np.array([[h, w]]), np.ones(1, bool))
  assert core._track._cache_size() == len(buckets)
  assert core.compilations() == 2 * len(buckets)  # the template crop: one per bucket too


@pytest.mark.slow
def test_frame_size_change_is_tracked_and_said_once(tracker, soapbox8):
  frames, gt = soapbox8
  tracker.initialize(frames[0], gt[0])
  tracker.track(frames[1])
  small = cv2.resize(frames[2], (640, 360))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    box = tracker.track(small)
    tracker.track(cv2.resize(frames[3], (640, 360)))
  said = [w for w in caught if 'frame 2 is 640x360' in str(w.message)]
  assert len(said) == 1, [str(w.message) for w in caught]
  x, y, w, h = box
  assert 0 <= x <= 640 - 10 and 0 <= y <= 360 - 10 and x + w <= 640 + 1e-3


@pytest.mark.slow
def test_runner_warns_once_for_a_size_change(tracker, soapbox8, tmp_path):
  frames, gt = soapbox8
  mixed = frames[:3] + [cv2.resize(f, (640, 360)) for f in frames[3:5]]
  seq = _sequence(tmp_path, 'mixed', mixed, gt[0])
  said = []
  done = []
  runner.Pipeline(tracker.core, [seq], done.append, pytest.fail, on_warning=said.append).run()
  assert len(said) == 1 and "'mixed' frame 3 is 640x360, its first frame 854x480" in said[0]
  assert np.isfinite(done[0].boxes).all() and done[0].boxes[4, 0] <= 630


@pytest.mark.parametrize('shape', [(1, 1, 3), (5, 300, 3), (300, 9)])
def test_tiny_frames_are_a_clear_error(tracker, soapbox8, shape):
  frames, gt = soapbox8
  with pytest.raises(
    ValueError,
    match=r'initialize: the frame is \d+x\d+ pixels; the tracker '
    r'needs at least 11x11',
  ):
    tracker.initialize(np.zeros(shape, np.uint8), (0, 0, 1, 1))
  tracker.initialize(frames[0], gt[0])
  with pytest.raises(ValueError, match=r'frame \d+: the frame is \d+x\d+ pixels'):
    tracker.track(np.zeros(shape, np.uint8))


def test_truncated_jpeg_is_named_and_its_sequence_skipped(tracker, soapbox8, tmp_path):
  frames, gt = soapbox8
  seq = _sequence(tmp_path, 'cut', frames[:4], gt[0], ext='jpg')
  data = pathlib.Path(seq.frames[2]).read_bytes()
  pathlib.Path(seq.frames[2]).write_bytes(data[: len(data) // 2])
  with pytest.raises(
    FrameError,
    match=r"sequence 'cut' frame 2: .*00000003.jpg is a "
    r'truncated JPEG',
  ):
    read_frame(seq.frames[2], 'cut', 2)
  ok = _sequence(tmp_path, 'ok', frames[:3], gt[0], ext='jpg')
  done, failed = [], []
  runner.Pipeline(tracker.core, [seq, ok], done.append, failed.append).run()
  assert [r.name for r in done] == ['ok'] and len(failed) == 1
  assert 'truncated JPEG' in str(failed[0]) and "'cut' frame 2" in str(failed[0])
  # A complete JPEG (with bytes after its end marker, as some encoders write) is accepted.
  pathlib.Path(seq.frames[2]).write_bytes(data + b'\x00\x00')
  assert read_frame(seq.frames[2], 'cut', 2).shape == (480, 854, 3)


def test_wrong_shapes_are_caught_when_the_step_is_traced(tracker):
  core = tracking_core.TrackingCore(
    tracker.config, tracker.variables, 2, 'vmap', full_outputs=False, cast=False
  )
  with pytest.raises(AssertionError, match='shape'):  # 3 frames for 2 slots
    core.step(np.zeros((3, 64, 64, 3), np.uint8), np.ones((3, 2)), np.ones(3, bool))
  with pytest.raises(AssertionError, match='type'):  # float frames
    core.step(np.zeros((2, 64, 64, 3), np.float32), np.ones((2, 2)), np.ones(2, bool))


def test_batch_tracker_refuses_bad_slots_before_changing_anything(tracker, soapbox8):
  """A slot out of range (ValueError naming it and the valid ones; it was an IndexError after
  slot 1's state had been overwritten) and a frame for a slot that holds no sequence (it
  returned all-zero boxes) are refused before any device state, flag or size changes."""
  frames, gt = soapbox8
  batch = tracker_lib.BatchTracker(tracker, 2, 'map')
  before = jax.device_get(batch.core.state)
  for slot in (5, 2, -1, 1.0):
    with pytest.raises(ValueError, match=rf'slot {slot} does not exist: the slots are 0 to 1'):
      batch.initialize(slot, frames[0], gt[0])
  with pytest.raises(ValueError, match='slot 2 does not exist'):
    batch.release(2)
  with pytest.raises(ValueError, match=r'slot 1 holds no sequence .* initialize\(1, frame, box\)'):
    batch.track([None, frames[1]])
  with pytest.raises(ValueError, match='slot 0 holds no sequence'):
    batch.track_async([frames[1], None])
  with pytest.raises(ValueError, match='slot 0: initial box .* lies outside the 854x480 image'):
    batch.initialize(0, frames[0], (900.0, 10.0, 20.0, 20.0))
  chex.assert_trees_all_equal(jax.device_get(batch.core.state), before)
  assert not batch.active.any() and (batch.image_hw == 1).all()


@pytest.mark.slow
def test_vmap_and_map_lockstep_agree(tracker, soapbox8):
  """'vmap' (one batched forward) equals 'map' (slot by slot) up to float rounding: boxes within
  1e-3 px over five frames of two slots."""
  frames, gt = soapbox8
  outs = {}
  for mode in ('vmap', 'map'):
    batch = tracker_lib.BatchTracker(tracker, 2, mode)
    batch.initialize(0, frames[0], gt[0])
    batch.initialize(1, frames[0], gt[0] + [5.0, 3.0, -8.0, 4.0])
    outs[mode] = {f'frame{i}': batch.track([frames[i], frames[i]]) for i in range(1, 6)}
  chex.assert_trees_all_close(outs['vmap'], outs['map'], atol=1e-3, rtol=0)


def test_trackers_of_one_setup_share_programs_and_keep_their_weights(small_variables, soapbox8):
  """A second Tracker of the preset (its config made anew), with other weights of the same
  shapes, runs the first one's jitted programs (nothing traced or compiled again), and each
  tracks with its own weights: tracked in turn, each gives the boxes it gives alone. A change
  of a config field the programs read, of the batching, the outputs, the weights' structure or
  the functions gives other programs."""
  frames, gt = soapbox8
  tracker = tracker_lib.Tracker(_small_config(), small_variables)
  other_weights = jax.tree_util.tree_map(lambda x: x * 0.9, small_variables)
  other = tracker_lib.Tracker(_small_config(), other_weights)
  assert (other.core._track, other.core._init) == (tracker.core._track, tracker.core._init)
  alone = {}
  for name, t in (('first', tracker), ('other', other)):
    t.initialize(frames[0], gt[0])
    alone[name] = np.array([t.track(f) for f in frames[1:4]])
  assert np.abs(alone['first'] - alone['other']).max() > 0.1  # the weights matter
  compiled = tracker.core.compilations()
  tracker.initialize(frames[0], gt[0])
  other.initialize(frames[0], gt[0])
  for i, frame in enumerate(frames[1:4]):
    np.testing.assert_array_equal(tracker.track(frame), alone['first'][i])
    np.testing.assert_array_equal(other.track(frame), alone['other'][i])
  assert other.core.compilations() == compiled

  def programs(config=tracker.config, variables=tracker.variables, **kw):
    return tracking_core.TrackingCore(config, variables, cast=False, **kw)._track

  overrides = [
    'model.dtype=bfloat16',
    'model.ce_keep_ratio=(0.8,)',
    'model.search_size=320',
    'model.attention_impl=xla',
    'tracker.search_factor=4.5',
    'tracker.template_factor=2.5',
  ]
  changed = [programs(_small_config(o)) for o in overrides]
  changed += [
    programs(full_outputs=False),
    programs(batch_size=2, batch_mode='map'),
    programs(variables={'params': tracker.variables['params']}),
    programs(fns=device_step.make_tracking_fns(tracker.config)),
  ]
  ids = {id(p) for p in changed}
  assert id(tracker.core._track) not in ids and len(ids) == len(changed)
  fns = device_step.make_tracking_fns(tracker.config)
  assert programs(fns=fns) is programs(fns=fns)  # prebuilt functions: shared by identity


@pytest.mark.slow
def test_batch_tracker_on_two_devices_gives_the_tracker_boxes(tracker, soapbox8):
  """Two slots over two of the test process's host devices, one per device: each device runs
  the one-slot step (one program over the mesh), so the boxes are Tracker's bit for bit, and
  the states stay sharded on the slot axis."""
  import jax
  from jax.sharding import PartitionSpec

  frames, gt = soapbox8
  boxes = [gt[0], gt[0] + [5.0, 3.0, -8.0, 4.0]]
  tracking_core.shared_programs.cache_clear()  # programs of this test only (others share them)
  batch = tracker_lib.BatchTracker(tracker, 2, 'vmap', devices=jax.devices()[:2])
  for slot, box in enumerate(boxes):
    batch.initialize(slot, frames[0], box)
  got = np.stack([batch.track([frames[i], frames[i]]) for i in range(1, 4)], axis=1)
  state = batch.core.state.boxes
  assert state.sharding.spec == PartitionSpec('slots')
  assert {s.device for s in state.addressable_shards} == set(jax.devices()[:2])
  assert batch.core.compilations() == 2  # one step and one template program for both devices
  for slot, box in enumerate(boxes):
    tracker.initialize(frames[0], box)
    np.testing.assert_array_equal(got[slot], [tracker.track(frames[i]) for i in range(1, 4)])


def test_slots_must_divide_over_the_devices(tracker):
  import jax

  with pytest.raises(ValueError, match=r'batch_size 3 does not divide over 2 devices'):
    tracker_lib.BatchTracker(tracker, 3, 'map', devices=jax.devices()[:2])
  with pytest.raises(ValueError, match='names a device twice'):
    tracker_lib.BatchTracker(tracker, 2, 'map', devices=jax.devices()[:1] * 2)


class _NonFiniteAtStep:
  """A stand-in core with one slot and no device: step ``bad_step`` (1-based) returns a NaN
  box, every other step the box (20, 20, 20, 20)."""

  batch_size = 1

  def __init__(self, bad_step):
    self.bad_step = bad_step
    self.steps = 0

  def upload(self, padded):
    return padded

  def initialize_slot(self, slot, image, box, padded=None):
    pass

  def step(self, frames, hw, active):
    self.steps += 1
    value = np.nan if self.steps == self.bad_step else 20.0
    return {'boxes': np.full((1, 4), value, np.float32)}


def _in_memory(names, length, image):
  box = np.array([[8.0, 8.0, 20.0, 20.0]])
  seqs = [Video(n, [f'{n}_{i}.png' for i in range(length)], box) for n in names]
  return seqs, lambda seq, index: image


def test_a_non_finite_box_fails_its_sequence_and_the_next_takes_the_slot():
  """The NaN box of frame 2 of 'first' comes back ``lag`` steps later, while 'first' still
  holds the slot and its next frame is read: 'first' fails naming the frame, the frame read for
  it is not tracked, and 'second' is tracked in the slot (the loop used to stop with an
  AttributeError)."""
  seqs, read = _in_memory(['first', 'second'], 8, np.zeros((64, 64, 3), np.uint8))
  core = _NonFiniteAtStep(bad_step=2)
  done, failed = [], []
  runner.Pipeline(core, seqs, done.append, failed.append, lag=2, read=read).run()
  assert [str(e) for e in failed] == [
    "sequence 'first' frame 2: the network returned a non-finite box (bad checkpoint?)"
  ]
  assert [r.name for r in done] == ['second'] and (done[0].boxes[1:] == 20.0).all()
  assert core.steps == 4 + 7  # frames 1-4 of 'first' (frame 5 read, not tracked), 1-7 of 'second'


def test_a_failure_names_a_sequence_whose_name_is_a_word_of_the_message():
  """The sequence is named also when its name occurs in the message ('box' did not get its
  'sequence ... frame ...' prefix: the check looked for the bare name)."""
  seqs, read = _in_memory(['box'], 2, np.zeros((64, 64, 3), np.uint8))
  failed = []
  runner.Pipeline(_NonFiniteAtStep(bad_step=1), seqs, pytest.fail, failed.append, read=read).run()
  assert [str(e) for e in failed] == [
    "sequence 'box' frame 1: the network returned a non-finite box (bad checkpoint?)"
  ]
