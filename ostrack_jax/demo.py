"""Tracks one target through a video and writes an annotated MP4 or GIF.

  python -m ostrack_jax.demo --video clip.mp4 --box 120,80,60,40 \
      --checkpoint model.msgpack --config configs/ostrack_256_ce.py --output tracked.mp4 \
      [--score-map] [--eliminated] [--max-frames 300]

``--video`` is a video file OpenCV can read or a folder of frames (sorted by number, then
name). ``--box`` is the target in the first frame, ``x,y,w,h`` in pixels. The output format
follows the extension of ``--output`` (``.mp4`` or ``.gif``); the boxes are also written next to
it as ``<output>.txt`` (``x,y,w,h`` floats, one line per frame). Both appear only when the
whole clip is done (written beside and renamed): a demo that fails or is stopped leaves no
truncated video, and a previous one at that path stays as it was.

Overlays: the predicted box (green); ``--score-map`` blends the Hann-windowed score map over
the search region; ``--eliminated`` darkens the search tokens removed by candidate elimination
(all CE layers), and outlines the search region.

Pipelined: frames are decoded in a background thread, each is dispatched to the device with
``Tracker.track_async`` (the search crop is cut on the device around the state the previous
step left there), and a frame's box and overlay outputs are fetched only when that frame is
drawn, ``PIPELINE_DEPTH`` frames later, so decoding, drawing and encoding overlap with the
device's work.

Unlike the original ``video_demo.py`` (which feeds OpenCV's BGR frames to the tracker, a
quirk), frames are converted to RGB as in benchmark evaluation.
"""

import argparse
import collections
import os
import pathlib
import queue
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from ostrack_jax import cli
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError
from ostrack_jax.datasets.core import IMAGE_EXTENSIONS
from ostrack_jax.datasets.frames import read_frame

PIPELINE_DEPTH = 4  # frames dispatched to the device before the oldest one is drawn


def _image_names(folder: pathlib.Path) -> list[str]:
  """The image files in ``folder`` (by extension), unsorted."""
  return [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]


def iter_frames(video: str, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
  """RGB uint8 frames of a video file or a folder of images."""
  path = pathlib.Path(video)
  count = 0
  if path.is_dir():
    names = _image_names(path)
    if not names:
      raise ValueError(
        f'--video {video}: the folder holds no images ({", ".join(IMAGE_EXTENSIONS)})'
      )

    def key(n):
      stem = os.path.splitext(n)[0]
      return (0, int(stem), n) if stem.isdigit() else (1, 0, n)

    for i, n in enumerate(sorted(names, key=key)):
      if max_frames is not None and count >= max_frames:
        return
      yield read_frame(str(path / n), path.name, i)
      count += 1
    return
  if not path.is_file():
    raise ValueError(f'--video {video}: no such file or folder')
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    raise ValueError(f'--video {video}: OpenCV cannot open it as a video')
  try:
    while max_frames is None or count < max_frames:
      ok, frame = cap.read()
      if not ok:
        break
      yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      count += 1
  finally:
    cap.release()
  if count == 0:
    raise ValueError(f'--video {video}: no frame could be decoded')


def video_fps(video: str, default: float = 25.0) -> float:
  path = pathlib.Path(video)
  if path.is_file():
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    if fps and fps > 0:
      return float(fps)
  return default


def count_frames(video: str, max_frames: Optional[int] = None) -> Optional[int]:
  """How many frames :func:`iter_frames` will yield, for the progress bar: exact for a folder,
  the container's frame count for a video file (an estimate for some codecs), None if unknown."""
  path = pathlib.Path(video)
  count = None
  if path.is_dir():
    count = len(_image_names(path))
  elif path.is_file():
    cap = cv2.VideoCapture(str(path))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    count = frames if frames > 0 else None
  if count is not None and max_frames is not None:
    count = min(count, max_frames)
  return count


def parse_box(text: str) -> Tuple[float, float, float, float]:
  parts = [p for p in text.replace(' ', ',').split(',') if p]
  try:
    vals = tuple(float(p) for p in parts)
  except ValueError:
    vals = ()
  if len(vals) != 4:
    raise argparse.ArgumentTypeError(f'must be x,y,w,h (4 numbers), got {text!r}')
  return vals


def draw(
  frame: np.ndarray,
  box,
  outputs: Optional[Dict[str, Any]] = None,
  feat_size: Optional[int] = None,
  score_map: bool = False,
  eliminated: bool = False,
) -> np.ndarray:
  """An annotated RGB copy of ``frame``.

  Args:
    frame: (H, W, 3) uint8 RGB.
    box: xywh image pixels (green).
    outputs: that frame's tracker outputs as NumPy (``crop_box_xyxy`` (4,), ``response``
      (F, F), ``removed_indexes`` list of (n_i,)), needed by the overlays; None: box only.
    feat_size: F (the score map's side), for ``eliminated``.
  """
  out = frame.copy()
  if outputs is not None and (score_map or eliminated):
    x1, y1, x2, y2 = (int(v) for v in outputs['crop_box_xyxy'])
    side = x2 - x1
    h, w = out.shape[:2]
    # Region of the crop inside the image.
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if ix2 > ix1 and iy2 > iy1:
      region = out[iy1:iy2, ix1:ix2].astype(np.float32)
      removed = outputs.get('removed_indexes') or []
      if eliminated and removed:
        f = feat_size
        mask = np.zeros(f * f, np.float32)
        mask[np.concatenate([np.asarray(r).reshape(-1) for r in removed])] = 1.0
        mask = cv2.resize(mask.reshape(f, f), (side, side), interpolation=cv2.INTER_NEAREST)
        mask = mask[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1, None]
        region = region * (1.0 - 0.6 * mask)
      if score_map and outputs.get('response') is not None:
        resp = np.asarray(outputs['response'], np.float32)
        resp = resp / max(float(resp.max()), 1e-6)
        heat = cv2.resize(resp, (side, side), interpolation=cv2.INTER_LINEAR)
        heat = heat[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1]
        color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        region = 0.55 * region + 0.45 * color.astype(np.float32)
      out[iy1:iy2, ix1:ix2] = np.clip(region, 0, 255).astype(np.uint8)
      cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 0), 1)
  x, y, bw, bh = (int(round(v)) for v in box)
  cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), (0, 255, 0), 2)
  return out


class FrameReader:
  """Reads the frames of :func:`iter_frames` in a background (daemon) thread.

  Decoding overlaps with tracking; at most ``depth`` frames wait in the queue. Iterating yields
  the frames in order and re-raises a reading error (e.g. ``ValueError`` for a missing file)
  in the caller's thread. Use it as a context manager: leaving stops and joins the thread.
  """

  def __init__(self, video: str, max_frames: Optional[int] = None, depth: int = 8):
    self._queue: 'queue.Queue' = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(
      target=self._run, args=(video, max_frames), daemon=True, name='ostrack-demo-reader'
    )
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def _run(self, video, max_frames):
    frames = iter_frames(video, max_frames)
    try:
      for frame in frames:
        if not self._put(('frame', frame)):
          return
      self._put(('end', None))
    except Exception as e:
      self._put(('error', e))
    finally:
      frames.close()

  def __iter__(self) -> Iterator[np.ndarray]:
    while True:
      kind, value = self._queue.get()
      if kind == 'frame':
        yield value
      elif kind == 'error':
        raise value
      else:
        return

  def close(self) -> None:
    self._stop.set()
    self._thread.join()

  def __enter__(self) -> 'FrameReader':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class _Writer:
  """MP4 (OpenCV) or GIF (imageio) writer chosen by the file extension.

  Atomic: the video goes to a hidden partial file beside ``path`` (same extension, so that the
  encoders pick the same format), which :meth:`close` renames over ``path``; :meth:`abort`
  removes it. A demo that is stopped or fails leaves no truncated video under ``path``.
  """

  def __init__(self, path: str, fps: float):
    self.path = path
    self.fps = fps
    ext = os.path.splitext(path)[1].lower()
    if ext not in ('.mp4', '.gif'):
      raise ValueError(f'--output {path}: use a .mp4 or .gif file name')
    self.gif = ext == '.gif'
    folder, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
      raise ValueError(f'--output {path}: no such folder {folder}')
    self._partial = os.path.join(folder, f'.{name}.{os.getpid()}.partial{ext}')
    self._frames = []
    self._video = None

  def write(self, rgb: np.ndarray) -> None:
    if self.gif:
      self._frames.append(rgb)
      return
    if self._video is None:
      h, w = rgb.shape[:2]
      self._video = cv2.VideoWriter(
        self._partial, cv2.VideoWriter_fourcc(*'mp4v'), self.fps, (w, h)
      )
      if not self._video.isOpened():
        raise RuntimeError(f'--output {self.path}: OpenCV cannot write MP4 here')
    self._video.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

  def close(self) -> None:
    """Finishes the video and puts it at ``path`` (mode as a new file: fileio.file_mode)."""
    if self.gif:
      import imageio.v2 as imageio

      imageio.mimsave(self._partial, self._frames, duration=1.0 / self.fps, loop=0)
    elif self._video is not None:
      self._video.release()
      self._video = None
    if os.path.exists(self._partial):
      os.chmod(self._partial, fileio.file_mode())
      os.replace(self._partial, self.path)

  def abort(self) -> None:
    """Drops the partial video."""
    if self._video is not None:
      self._video.release()
      self._video = None
    if os.path.exists(self._partial):
      os.unlink(self._partial)


def _parser() -> cli.Parser:
  p = cli.Parser('python -m ostrack_jax.demo', __doc__.split('\n\n')[0], config='ostrack_256_ce')
  p.add_argument('--video', required=True, help='video file or folder of frames')
  p.add_argument('--box', required=True, type=parse_box, help='x,y,w,h of the target in frame 1')
  p.add_argument(
    '--checkpoint',
    required=True,
    type=cli.existing_file,
    help='our .msgpack or a PyTorch checkpoint',
  )
  p.add_argument('--output', default='tracked.mp4', help='.mp4 or .gif (default: %(default)s)')
  p.add_argument('--score-map', action='store_true', help='overlay the windowed score map')
  p.add_argument(
    '--eliminated',
    action='store_true',
    help='darken the search tokens removed by candidate elimination',
  )
  p.add_argument('--max-frames', type=cli.positive_int, default=None)
  p.add_argument(
    '--fps', type=cli.positive_float, default=None, help='output frame rate (default: input)'
  )
  return p


def _track_video(args: argparse.Namespace, writer: _Writer) -> Tuple[List[np.ndarray], float]:
  """Tracks ``args.box`` through ``args.video`` and writes each annotated frame to ``writer``.

  Returns the (4,) xywh float64 box of every frame and the wall time in seconds (compilation
  included). Raises ValueError / RuntimeError for a video that cannot be read or a
  non-finite box.
  """
  import jax
  from tqdm import tqdm

  from ostrack_jax.tracking.tracker import Tracker

  # The step outputs each overlay needs (kept on the device until the frame is drawn).
  needed = (
    (['crop_box_xyxy'] if args.score_map or args.eliminated else [])
    + (['response'] if args.score_map else [])
    + (['removed_indexes'] if args.eliminated else [])
  )
  boxes: List[np.ndarray] = []
  # The reader starts first: the first frames decode while the model loads.
  with FrameReader(args.video, args.max_frames) as reader:
    tracker = Tracker.from_checkpoint(args.checkpoint, args.config)
    # Pipelined: frame k's box is read (which waits for the device) only when frame k is
    # drawn, PIPELINE_DEPTH frames later, so the host reads, pads and uploads the next
    # frames while the device tracks; the state never leaves the device in between.
    pending: collections.deque = collections.deque()

    def emit():
      frame, box, outputs = pending.popleft()
      box = np.asarray(box, np.float64)  # waits for this frame's step
      if not np.isfinite(box).all():
        raise RuntimeError(
          f'frame {len(boxes) + 1}: the network returned a non-finite box (bad checkpoint?)'
        )
      if outputs is not None:  # (1, ...) device arrays -> this frame's NumPy values
        outputs = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], jax.device_get(outputs))
      writer.write(draw(frame, box, outputs, tracker.feat_size, args.score_map, args.eliminated))
      boxes.append(box)
      progress.update()

    t0 = time.perf_counter()
    with tqdm(total=count_frames(args.video, args.max_frames), unit='frame') as progress:
      for i, frame in enumerate(reader):
        if i == 0:
          tracker.initialize(frame, args.box)
          pending.append((frame, np.asarray(args.box, np.float64), None))
        else:
          box = tracker.track_async(frame)
          # The outputs dict of this very step (the tracker keeps only the latest).
          step_outputs = tracker.last_outputs
          pending.append((frame, box, {k: step_outputs[k] for k in needed} if needed else None))
        if len(pending) > PIPELINE_DEPTH:
          emit()
      while pending:
        emit()
  return boxes, time.perf_counter() - t0


def main(argv=None) -> int:
  p = _parser()
  args = p.parse(argv)
  if not os.path.exists(args.video):
    p.fail(f'--video {args.video}: no such file or folder')
  fileio.check_writable(args.output, f'--output {args.output}', is_file=True, create=False)

  from ostrack_jax.tracking.results import format_boxes

  writer = None
  try:
    writer = _Writer(args.output, args.fps or video_fps(args.video))
    boxes, wall = _track_video(args, writer)
    writer.close()
    fileio.atomic_write_text(args.output + '.txt', format_boxes(np.array(boxes)))
  except BaseException as e:
    if writer is not None:
      writer.abort()
    if isinstance(e, (ValueError, RuntimeError)):
      raise InputError(str(e)) from e
    raise
  print(
    f'wrote {args.output} ({len(boxes)} frames, {len(boxes) / max(wall, 1e-9):.1f} frames/s '
    f'including compilation) and {args.output}.txt'
  )
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main, 'python -m ostrack_jax.demo'))
