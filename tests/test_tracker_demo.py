"""The video demo: frame folder and video file in, annotated GIF / MP4 and box file out.

The demo is pipelined (a reader thread, ``track_async``, boxes read a few frames after their
dispatch): its boxes must equal a plain ``Tracker.track`` loop's, and no thread may outlive it.
"""

import threading

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

import train_util
from ostrack_jax import demo

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile

# The model: the small OSTrack of the train.py tests (tests/train_util.py: half the tiny preset's
# sizes and widths, 3 blocks, one CE layer), its flags as the demo takes them; the demo's
# behaviour (files, overlays, boxes equal to a Tracker's, failures) holds for any model.
MODEL = [
  '--config',
  'tiny_256_ce',
  *[f for f in train_util.SMALL_MODEL if f.startswith('--config.')],
]


def _small_config():
  from ostrack_jax.configs import apply_overrides, get_config

  return apply_overrides(
    get_config('tiny_256_ce'), [f.removeprefix('--config.') for f in MODEL[2:]]
  )


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  tmp = tmp_path_factory.mktemp('demo')
  config = _small_config()
  ckpt = tmp / 'model.msgpack'
  save_variables(str(ckpt), init_variables(config, seed=0), config)
  frames_dir = tmp / 'frames'
  frames_dir.mkdir()
  rng = np.random.default_rng(0)
  video = cv2.VideoWriter(str(tmp / 'clip.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), 10, (96, 64))
  for i in range(4):
    img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    img[20:40, 30 + 2 * i : 50 + 2 * i] = (255, 0, 0)
    cv2.imwrite(str(frames_dir / f'{i + 1:05d}.jpg'), img)
    video.write(img)
  video.release()
  return tmp, ckpt


@pytest.mark.slow
def test_demo_gif_from_frame_folder_with_overlays(clip):
  tmp, ckpt = clip
  out = tmp / 'out.gif'
  assert (
    demo.main(
      [
        '--video',
        str(tmp / 'frames'),
        '--box',
        '30,20,20,20',
        '--checkpoint',
        str(ckpt),
        *MODEL,
        '--output',
        str(out),
        '--score-map',
        '--eliminated',
      ]
    )
    == 0
  )
  frames = imageio.mimread(str(out))
  assert len(frames) == 4 and frames[0].shape[:2] == (64, 96)
  boxes = np.loadtxt(str(out) + '.txt', delimiter=',')
  assert boxes.shape == (4, 4)
  np.testing.assert_array_equal(boxes[0], [30, 20, 20, 20])
  assert not [t for t in threading.enumerate() if t.name == 'ostrack-demo-reader']
  # the same boxes as the sequential tracker (the .txt has 4 decimals)
  from ostrack_jax.tracking.tracker import Tracker

  tracker = Tracker.from_checkpoint(str(ckpt), _small_config())
  frames = list(demo.iter_frames(str(tmp / 'frames')))
  tracker.initialize(frames[0], (30, 20, 20, 20))
  expected = [tracker.track(f) for f in frames[1:]]
  np.testing.assert_allclose(boxes[1:], expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_demo_mp4_from_video_file(clip):
  tmp, ckpt = clip
  out = tmp / 'out.mp4'
  assert (
    demo.main(
      [
        '--video',
        str(tmp / 'clip.mp4'),
        '--box',
        '30,20,20,20',
        '--checkpoint',
        str(ckpt),
        *MODEL,
        '--output',
        str(out),
        '--max-frames',
        '3',
      ]
    )
    == 0
  )
  cap = cv2.VideoCapture(str(out))
  n = 0
  while cap.read()[0]:
    n += 1
  assert n == 3


def _status(argv):
  """The exit status of the command (as ``python -m``) on ``argv``."""
  from ostrack_jax import cli

  try:
    return cli.run(demo.main, 'demo', argv)
  except SystemExit as e:  # refused while parsing the flags
    return e.code


def test_demo_bad_arguments(clip, capsys):
  tmp, ckpt = clip
  assert (
    _status(
      [
        '--video',
        str(tmp / 'nope'),
        '--box',
        '1,2,3,4',
        '--checkpoint',
        str(ckpt),
        *MODEL,
        '--output',
        str(tmp / 'x.gif'),
      ]
    )
    == 2
  )
  assert 'no such file or folder' in capsys.readouterr().err
  assert not [t for t in threading.enumerate() if t.name == 'ostrack-demo-reader']
  assert (
    _status(
      [
        '--video',
        str(tmp / 'frames'),
        '--box',
        '1,2,0,4',
        '--checkpoint',
        str(ckpt),
        *MODEL,
        '--output',
        str(tmp / 'x.gif'),
      ]
    )
    == 2
  )
  assert 'zero or negative' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    demo.main(['--video', 'v', '--box', '1,2,3', '--checkpoint', str(ckpt)])


@pytest.mark.slow
def test_failed_demo_leaves_no_video_and_no_partial_file(clip, tmp_path, capsys):
  """A frame that cannot be read late in the clip (frame 10 of 12 is not an image; the first
  frames are already encoded by then): exit status 2, a message naming that frame, and neither
  the video, its box file nor the partial video the writer was filling is left; a video from an
  earlier run at that path is kept as it was."""
  import shutil

  tmp, ckpt = clip
  frames = tmp_path / 'frames'
  frames.mkdir()
  for i in range(12):
    shutil.copy(tmp / 'frames' / f'{i % 4 + 1:05d}.jpg', frames / f'{i + 1:05d}.jpg')
  (frames / '00010.jpg').write_bytes(b'not a jpeg')
  for ext, previous in (('.mp4', None), ('.gif', b'an earlier run')):
    out = tmp_path / f'out{ext}'
    if previous:
      out.write_bytes(previous)
    argv = ['--video', str(frames), '--box', '30,20,20,20', '--checkpoint', str(ckpt)]
    assert _status(argv + [*MODEL, '--output', str(out)]) == 2
    err = capsys.readouterr().err
    assert '00010.jpg' in err and 'Traceback' not in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != 'frames') == (
      ['out.gif'] if previous else []
    )
    if previous:
      assert out.read_bytes() == previous
      out.unlink()


def test_progress_total_is_the_frame_count(clip):
  tmp, _ = clip
  assert demo.count_frames(str(tmp / 'frames')) == 4
  assert demo.count_frames(str(tmp / 'frames'), max_frames=3) == 3
  assert demo.count_frames(str(tmp / 'clip.mp4')) == 4
  assert demo.count_frames(str(tmp / 'nope')) is None
