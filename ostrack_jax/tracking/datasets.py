"""Readers for tracking benchmarks in their native layouts (NumPy and OpenCV only).

Each reader returns a list of :class:`Sequence`: frame paths, ground-truth boxes (xywh, image
pixels, float64; test splits have only the first row) and the visibility labels the metric
needs. Nothing is decoded until :func:`read_frame` is called.

Layouts:

* GOT-10k (``got10k_val`` / ``got10k_test`` / ``got10k_train``): ``<root>/<split>/list.txt``
  (or sub-folders when there is no list.txt); per sequence ``00000001.jpg ...``,
  ``groundtruth.txt`` (``x,y,w,h`` per line), ``absence.label``, ``cover.label`` (0-8) and
  ``meta_info.ini`` (``resolution: (W, H)``). ``<root>`` may also be the split folder itself.
* LaSOT: ``<root>/<class>/<class>-<n>/img/00000001.jpg``, ``groundtruth.txt``,
  ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated 0/1 line);
  ``<root>/testing_set.txt`` selects the 280 test sequences when present.
* TrackingNet: ``<root>/<split>/anno/<seq>.txt`` and ``<root>/<split>/frames/<seq>/<i>.jpg``
  (i from 0, no zero padding); split ``TEST`` by default (first box only).
* OTB-style: ``<root>/<Seq>/img/0001.jpg ...`` and ``groundtruth_rect.txt`` (comma, tab or
  space separated); ``groundtruth_rect.<k>.txt`` gives the sequences ``<Seq>-<k>``.
* Generic folder: ``<root>/<seq>/`` holding images (directly or in ``img/``) and one
  ground-truth file (``groundtruth.txt``, ``groundtruth_rect.txt`` or ``gt.txt``), optionally
  ``absence.label`` (1 = target absent). A root that holds images itself is one sequence.

Bad input raises :class:`DatasetError` naming the sequence, the file and the line.
"""

import ast
import configparser
import dataclasses
import os
import pathlib
import re
from typing import List, Optional, Sequence as Seq, Tuple

import numpy as np

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
DATASETS = ('got10k_val', 'got10k_test', 'got10k_train', 'lasot', 'trackingnet', 'otb', 'folder')


class DatasetError(ValueError):
  """A problem with a benchmark's files; the message names the sequence and file."""


@dataclasses.dataclass
class Sequence:
  """One video with its annotations.

  name: sequence name (used for result files).
  frames: paths of the frames in order.
  gt_xywh: (N, 4) float64 ground truth in image pixels, or (1, 4) when only the initial box
    is public (test splits). Rows may be NaN where the dataset marks no box.
  visible: (N,) bool target visibility, or None (LaSOT: not full occlusion and not out of
    view; GOT-10k: not absent; folder: not absent).
  cover: (N,) int GOT-10k cover labels (0-8), or None.
  image_size: (width, height) from the dataset's metadata, or None.
  dataset: the reader's name ('got10k', 'lasot', 'trackingnet', 'otb', 'folder').
  """

  name: str
  frames: List[str]
  gt_xywh: np.ndarray
  visible: Optional[np.ndarray] = None
  cover: Optional[np.ndarray] = None
  image_size: Optional[Tuple[int, int]] = None
  dataset: str = ''

  @property
  def init_box(self) -> np.ndarray:
    return self.gt_xywh[0]

  @property
  def has_full_gt(self) -> bool:
    return len(self.gt_xywh) == len(self.frames) and len(self.frames) > 1

  def __len__(self) -> int:
    return len(self.frames)


# ------------------------------------------------------------------------------ helpers

_SEP = re.compile(r'[,\s;]+')


def read_boxes(path: os.PathLike, sequence: str = '', allow_nan: bool = True) -> np.ndarray:
  """Reads an (N, 4) xywh box file with comma, tab or space separators.

  Lines ``NaN,NaN,NaN,NaN`` are kept as NaN rows when ``allow_nan``. Empty files, lines with a
  number count other than 4, and unparsable numbers raise :class:`DatasetError`.
  """
  path = pathlib.Path(path)
  where = f'sequence {sequence!r}: ' if sequence else ''
  try:
    text = path.read_text()
  except OSError as e:
    raise DatasetError(f'{where}cannot read ground truth {path}: {e}') from e
  rows = []
  for lineno, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if not line:
      continue
    parts = [p for p in _SEP.split(line) if p]
    if len(parts) != 4:
      raise DatasetError(
        f'{where}{path} line {lineno}: expected 4 numbers (x,y,w,h), got {len(parts)}: {line!r}'
      )
    try:
      vals = [float(p) for p in parts]
    except ValueError as e:
      raise DatasetError(f'{where}{path} line {lineno}: not a number: {line!r}') from e
    if not allow_nan and any(np.isnan(vals)):
      raise DatasetError(f'{where}{path} line {lineno}: NaN box')
    rows.append(vals)
  if not rows:
    raise DatasetError(f'{where}ground truth {path} is empty')
  return np.asarray(rows, dtype=np.float64)


def _read_flags(path: pathlib.Path, sequence: str) -> np.ndarray:
  """Integer labels, one per line or comma-separated on one line."""
  try:
    parts = [p for p in _SEP.split(path.read_text().strip()) if p]
    return np.asarray([int(float(p)) for p in parts], dtype=np.int64)
  except (OSError, ValueError) as e:
    raise DatasetError(f'sequence {sequence!r}: cannot read labels {path}: {e}') from e


def _read_frame_labels(path, name: str, num_frames: int, what: str):
  """Per-frame integer labels (cover, absence); one per frame or a DatasetError naming both counts."""
  labels = _read_flags(path, name)
  if len(labels) != num_frames:
    raise DatasetError(f'sequence {name!r}: {len(labels)} {what} labels for {num_frames} frames')
  return labels


def _list_images(folder: pathlib.Path) -> List[str]:
  if not folder.is_dir():
    return []
  names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]

  def key(n):
    stem = os.path.splitext(n)[0]
    return (0, int(stem), n) if stem.isdigit() else (1, 0, n)

  return [str(folder / n) for n in sorted(names, key=key)]


def _missing_frame(frames: List[str]) -> Optional[str]:
  """The first gap in numerically named frames (e.g. 00000004.jpg after 00000003.jpg)."""
  stems = [os.path.splitext(os.path.basename(f))[0] for f in frames]
  if not all(s.isdigit() for s in stems):
    return None
  nums = [int(s) for s in stems]
  for prev, cur, stem in zip(nums, nums[1:], stems[1:]):
    if cur != prev + 1:
      return f'{prev + 1:0{len(stem)}d}' + os.path.splitext(frames[0])[1]
  return None


def _check_lengths(
  name: str, frames: List[str], gt: np.ndarray, gt_path: pathlib.Path, allow_first_only: bool
) -> None:
  if not frames:
    raise DatasetError(f'sequence {name!r}: no frames found')
  missing = _missing_frame(frames)
  if missing is not None:
    raise DatasetError(f'sequence {name!r}: frame {missing} is missing (frame numbers jump)')
  if len(gt) == len(frames):
    return
  if allow_first_only and len(gt) == 1:
    return
  raise DatasetError(f'sequence {name!r}: {len(frames)} frames but {len(gt)} boxes in {gt_path}')


def _select(seqs: List[Sequence], names: Optional[Seq[str]]) -> List[Sequence]:
  if not names:
    return seqs
  by_name = {s.name: s for s in seqs}
  missing = [n for n in names if n not in by_name]
  if missing:
    raise DatasetError(f'unknown sequences: {", ".join(missing)}')
  return [by_name[n] for n in names]


def _collect(names, load_one, errors: Optional[list]) -> List[Sequence]:
  """Loads each name; with ``errors`` given, a bad sequence is recorded there and skipped."""
  out = []
  for name in names:
    try:
      out.append(load_one(name))
    except DatasetError as e:
      if errors is None:
        raise
      errors.append((name, str(e)))
  return out


def _sequence_names(split_dir: pathlib.Path) -> List[str]:
  list_file = split_dir / 'list.txt'
  if list_file.is_file():
    return [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
  return sorted(d.name for d in split_dir.iterdir() if d.is_dir())


# ------------------------------------------------------------------------------ GOT-10k


def _got10k_split_dir(root: pathlib.Path, split: str) -> pathlib.Path:
  if (root / split).is_dir():
    return root / split
  return root  # the split folder itself


def load_got10k_sequence(
  seq_dir: pathlib.Path, name: Optional[str] = None, allow_first_only: bool = True
) -> Sequence:
  """One GOT-10k-layout sequence folder."""
  seq_dir = pathlib.Path(seq_dir)
  name = name or seq_dir.name
  if not seq_dir.is_dir():
    raise DatasetError(f'sequence {name!r}: folder {seq_dir} does not exist')
  frames = _list_images(seq_dir)
  gt_path = seq_dir / 'groundtruth.txt'
  gt = read_boxes(gt_path, name)
  _check_lengths(name, frames, gt, gt_path, allow_first_only)
  cover = visible = None
  if (seq_dir / 'cover.label').is_file() and len(gt) == len(frames):
    cover = _read_frame_labels(seq_dir / 'cover.label', name, len(frames), 'cover')
  if (seq_dir / 'absence.label').is_file() and len(gt) == len(frames):
    visible = _read_frame_labels(seq_dir / 'absence.label', name, len(frames), 'absence') == 0
  image_size = None
  meta = seq_dir / 'meta_info.ini'
  if meta.is_file():
    image_size = _read_resolution(meta, name)
  return Sequence(
    name, frames, gt, visible=visible, cover=cover, image_size=image_size, dataset='got10k'
  )


def _read_resolution(meta: pathlib.Path, name: str) -> Optional[Tuple[int, int]]:
  """``resolution: (W, H)`` from GOT-10k's meta_info.ini (an INI without a section header)."""
  parser = configparser.ConfigParser()
  try:
    text = meta.read_text()
    if not text.lstrip().startswith('['):
      text = '[METAINFO]\n' + text
    parser.read_string(text)
    for section in parser.sections():
      if parser.has_option(section, 'resolution'):
        w, h = ast.literal_eval(parser.get(section, 'resolution'))
        return int(w), int(h)
  except (OSError, ValueError, SyntaxError, configparser.Error) as e:
    raise DatasetError(f'sequence {name!r}: cannot parse {meta}: {e}') from e
  return None


def load_got10k(
  root: os.PathLike,
  split: str = 'val',
  sequences: Optional[Seq[str]] = None,
  errors: Optional[list] = None,
) -> List[Sequence]:
  """GOT-10k ``val``, ``test`` or ``train`` (also any GOT-10k-layout folder of sequences)."""
  split_dir = _got10k_split_dir(pathlib.Path(root), split)
  if not split_dir.is_dir():
    raise DatasetError(f'GOT-10k folder {split_dir} does not exist')
  names = list(sequences) if sequences else _sequence_names(split_dir)
  return _collect(names, lambda n: load_got10k_sequence(split_dir / n, n), errors)


# ------------------------------------------------------------------------------ LaSOT


def load_lasot(
  root: os.PathLike, sequences: Optional[Seq[str]] = None, errors: Optional[list] = None
) -> List[Sequence]:
  """LaSOT (the 280 test sequences of ``testing_set.txt`` when it exists, else all)."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DatasetError(f'LaSOT folder {root} does not exist')
  if sequences:
    names = list(sequences)
  elif (root / 'testing_set.txt').is_file():
    names = [ln.strip() for ln in (root / 'testing_set.txt').read_text().splitlines() if ln.strip()]
  else:
    names = sorted(
      s.name
      for c in root.iterdir()
      if c.is_dir()
      for s in c.iterdir()
      if s.is_dir() and (s / 'groundtruth.txt').is_file()
    )

  def load_one(name):
    cls = name.rsplit('-', 1)[0]
    seq_dir = root / cls / name
    if not seq_dir.is_dir():
      raise DatasetError(f'sequence {name!r}: folder {seq_dir} does not exist')
    frames = _list_images(seq_dir / 'img')
    gt_path = seq_dir / 'groundtruth.txt'
    gt = read_boxes(gt_path, name)
    _check_lengths(name, frames, gt, gt_path, allow_first_only=False)
    visible = np.ones(len(frames), dtype=bool)
    for flag_file in ('full_occlusion.txt', 'out_of_view.txt'):
      p = seq_dir / flag_file
      if p.is_file():
        flags = _read_flags(p, name)
        if len(flags) != len(frames):
          raise DatasetError(
            f'sequence {name!r}: {len(flags)} flags in {p} for {len(frames)} frames'
          )
        visible &= flags == 0
    return Sequence(name, frames, gt, visible=visible, dataset='lasot')

  return _collect(names, load_one, errors)


# ------------------------------------------------------------------------------ TrackingNet


def load_trackingnet(
  root: os.PathLike,
  split: str = 'TEST',
  sequences: Optional[Seq[str]] = None,
  errors: Optional[list] = None,
) -> List[Sequence]:
  """TrackingNet ``TEST`` (first box only) or a ``TRAIN_<k>`` chunk (full annotations)."""
  root = pathlib.Path(root)
  split_dir = root / split if (root / split).is_dir() else root
  anno_dir = split_dir / 'anno'
  if not anno_dir.is_dir():
    raise DatasetError(f'TrackingNet annotations {anno_dir} do not exist')
  names = (
    list(sequences)
    if sequences
    else sorted(p.stem for p in anno_dir.iterdir() if p.suffix == '.txt')
  )

  def load_one(name):
    gt_path = anno_dir / f'{name}.txt'
    gt = read_boxes(gt_path, name)
    frames = _list_images(split_dir / 'frames' / name)
    _check_lengths(name, frames, gt, gt_path, allow_first_only=True)
    return Sequence(name, frames, gt, dataset='trackingnet')

  return _collect(names, load_one, errors)


# ------------------------------------------------------------------------------ OTB

# OTB-100 sequences whose annotation covers only part of the image folder: (first, last) frame
# numbers (1-based, inclusive), and sequences whose first frames are skipped (frames and boxes),
# as in the sequence table of pytracking / OSTrack's OTB reader.
OTB_FRAME_RANGES = {
  'BlurCar1': (247, 988),
  'BlurCar3': (3, 359),
  'BlurCar4': (18, 397),
  'David': (300, 770),
}
OTB_INIT_OMIT = {'Tiger1': 5}


def load_otb(
  root: os.PathLike, sequences: Optional[Seq[str]] = None, errors: Optional[list] = None
) -> List[Sequence]:
  """OTB-style folders: ``<Seq>/img/*.jpg`` + ``groundtruth_rect[.k].txt``."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DatasetError(f'OTB folder {root} does not exist')
  out = []
  for seq_dir in sorted(d for d in root.iterdir() if d.is_dir()):
    gt_files = sorted(seq_dir.glob('groundtruth_rect*.txt'))
    if not gt_files:
      continue
    frames = _list_images(seq_dir / 'img')
    for gt_path in gt_files:
      m = re.fullmatch(r'groundtruth_rect\.(\d+)\.txt', gt_path.name)
      name = f'{seq_dir.name}_{m.group(1)}' if m else seq_dir.name
      if sequences and name not in sequences:
        continue

      def load_one(name, gt_path=gt_path, frames=frames, seq_dir=seq_dir):
        gt = read_boxes(gt_path, name)
        seq_frames = frames
        if seq_dir.name in OTB_FRAME_RANGES and len(frames) != len(gt):
          first, last = OTB_FRAME_RANGES[seq_dir.name]
          seq_frames = frames[first - 1 : last]
        _check_lengths(name, seq_frames, gt, gt_path, allow_first_only=False)
        omit = OTB_INIT_OMIT.get(seq_dir.name, 0)
        seq_frames, gt = seq_frames[omit:], gt[omit:]
        return Sequence(name, seq_frames, gt, dataset='otb')

      out.extend(_collect([name], load_one, errors))
  if sequences:
    found = {s.name for s in out} | {e[0] for e in (errors or [])}
    missing = [n for n in sequences if n not in found]
    if missing:
      raise DatasetError(f'unknown sequences: {", ".join(missing)}')
    out = [s for n in sequences for s in out if s.name == n]
  return out


# ------------------------------------------------------------------------------ folder

_GT_NAMES = ('groundtruth.txt', 'groundtruth_rect.txt', 'gt.txt')


def load_folder_sequence(seq_dir: os.PathLike, name: Optional[str] = None) -> Sequence:
  """One folder of frames with a ground-truth file (only the first box is required)."""
  seq_dir = pathlib.Path(seq_dir)
  name = name or seq_dir.name
  frames = _list_images(seq_dir) or _list_images(seq_dir / 'img')
  gt_path = next((seq_dir / g for g in _GT_NAMES if (seq_dir / g).is_file()), None)
  if gt_path is None:
    raise DatasetError(
      f'sequence {name!r}: no ground-truth file ({", ".join(_GT_NAMES)}) in {seq_dir}'
    )
  gt = read_boxes(gt_path, name)
  _check_lengths(name, frames, gt, gt_path, allow_first_only=True)
  visible = None
  if (seq_dir / 'absence.label').is_file() and len(gt) == len(frames):
    visible = _read_frame_labels(seq_dir / 'absence.label', name, len(frames), 'absence') == 0
  return Sequence(name, frames, gt, visible=visible, dataset='folder')


def load_folder(
  root: os.PathLike, sequences: Optional[Seq[str]] = None, errors: Optional[list] = None
) -> List[Sequence]:
  """A folder of sequence folders, or a single sequence folder."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DatasetError(f'folder {root} does not exist')
  if _list_images(root) or _list_images(root / 'img'):
    return _select([load_folder_sequence(root)], sequences)
  names = (
    list(sequences)
    if sequences
    else sorted(
      d.name for d in root.iterdir() if d.is_dir() and any((d / g).is_file() for g in _GT_NAMES)
    )
  )
  return _collect(names, lambda n: load_folder_sequence(root / n, n), errors)


# ------------------------------------------------------------------------------ dispatch


def load_dataset(
  name: str,
  root: os.PathLike,
  sequences: Optional[Seq[str]] = None,
  split: Optional[str] = None,
  errors: Optional[list] = None,
) -> List[Sequence]:
  """Sequences of benchmark ``name`` (one of :data:`DATASETS`) under ``root``.

  With ``errors`` (a list) given, sequences whose files are bad are skipped and recorded there
  as ``(name, message)``; without it the first bad sequence raises :class:`DatasetError`.
  """
  if name == 'got10k_val':
    return load_got10k(root, split or 'val', sequences, errors)
  if name == 'got10k_test':
    return load_got10k(root, split or 'test', sequences, errors)
  if name == 'got10k_train':
    return load_got10k(root, split or 'train', sequences, errors)
  if name == 'lasot':
    return load_lasot(root, sequences, errors)
  if name == 'trackingnet':
    return load_trackingnet(root, split or 'TEST', sequences, errors)
  if name == 'otb':
    return load_otb(root, sequences, errors)
  if name == 'folder':
    return load_folder(root, sequences, errors)
  raise DatasetError(f'unknown dataset {name!r}; known: {", ".join(DATASETS)}')


# ------------------------------------------------------------------------------ frames


class FrameError(DatasetError):
  """A frame that cannot be used (missing, corrupt)."""


def read_frame(path: str, sequence: str = '', index: Optional[int] = None) -> np.ndarray:
  """Decodes a frame as (H, W, 3) uint8 RGB, as the original (OpenCV, BGR -> RGB).

  Grayscale frames are replicated to 3 channels and RGBA frames lose their alpha (OpenCV's
  IMREAD_COLOR does both). Missing, undecodable and truncated JPEG files (no end-of-image
  marker: libjpeg would fill the missing rows with grey and only warn) raise
  :class:`FrameError` naming the sequence, the frame index and the path.
  """
  import cv2  # pylint: disable=g-import-not-at-top

  where = f'sequence {sequence!r} frame {index}' if sequence else f'frame {index}'
  if not os.path.isfile(path):
    raise FrameError(f'{where}: file {path} is missing')
  with open(path, 'rb') as f:
    data = f.read()
  if data[:2] == b'\xff\xd8' and not data.rstrip(b'\x00\r\n\t ').endswith(b'\xff\xd9'):
    # libjpeg decodes a cut file with grey rows and only a warning on stderr: refuse it.
    raise FrameError(f'{where}: {path} is a truncated JPEG (no end-of-image marker)')
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None or image.size == 0:
    raise FrameError(f'{where}: cannot decode {path} (corrupt or not an image)')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_rgb(frame: np.ndarray) -> np.ndarray:
  """Any (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 array as (H, W, 3) RGB."""
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(f'frames must be uint8, got {frame.dtype}')
  if frame.ndim == 2:
    return np.repeat(frame[:, :, None], 3, axis=2)
  if frame.ndim == 3 and frame.shape[2] == 1:
    return np.repeat(frame, 3, axis=2)
  if frame.ndim == 3 and frame.shape[2] == 4:
    return np.ascontiguousarray(frame[:, :, :3])
  if frame.ndim == 3 and frame.shape[2] == 3:
    return frame
  raise ValueError(
    f'expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) frame, got {frame.shape}'
  )
