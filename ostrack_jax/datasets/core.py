"""The record, the error type, the parsers and the frame numbering shared by every dataset layout.

NumPy and OpenCV only (grain workers import this without JAX).

Conventions: boxes are xywh in image pixels (x1, y1, w, h), float64. Frames are ordered by
their number for numbered layouts (GOT-10k, LaSOT, TrackingNet) and by :func:`natural_key`
otherwise (``frame2.jpg`` before ``frame10.jpg``), the same order for training and evaluation.
"""

import collections.abc
import dataclasses
import os
import pathlib
import re
from typing import Iterable, Iterator, List, Optional, Sequence as Seq, Tuple, Union

import numpy as np

from ostrack_jax.common.errors import InputError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
_EXTENSION_SET = frozenset(IMAGE_EXTENSIONS)
_SEP = re.compile(r'[,\s;]+')
_DIGITS = re.compile(r'(\d+)')


# ------------------------------------------------------------------------------ errors
class DatasetError(InputError):
  """A dataset, sequence or file that cannot be used; ``str()`` names where.

  An :class:`ostrack_jax.common.errors.InputError` (a ValueError): the commands print it as one line
  and exit with status 2.

  Fields (all optional): ``dataset`` (registry name), ``sequence``, ``path`` (the file or
  folder) and ``line`` (1-based). ``reason`` is a short category (e.g. 'groundtruth.txt
  missing') under which the training index report counts skipped sequences.
  The message reads ``dataset: sequence 'name': path line N: message``.
  """

  def __init__(
    self,
    message: str,
    *,
    dataset: str = '',
    sequence: str = '',
    path: Union[str, os.PathLike, None] = None,
    line: Optional[int] = None,
    reason: str = '',
  ):
    super().__init__(message)
    self.message = message
    self.dataset = dataset
    self.sequence = sequence
    self.path = str(path) if path is not None else ''
    self.line = line
    self.reason = reason or message

  def context(self, dataset: str = '', sequence: str = '') -> 'DatasetError':
    """Fills in the dataset / sequence where not set yet; returns self (for ``raise``)."""
    self.dataset = self.dataset or dataset
    self.sequence = self.sequence or sequence
    return self

  def __str__(self) -> str:
    parts = []
    if self.dataset:
      parts.append(self.dataset)
    if self.sequence:
      parts.append(f'sequence {self.sequence!r}')
    if self.path:
      parts.append(self.path + (f' line {self.line}' if self.line else ''))
    parts.append(self.message)
    return ': '.join(parts)


class UnknownDatasetError(DatasetError):
  """A dataset name that is not registered for this use; the message lists the valid ones."""


class MissingRootError(DatasetError, FileNotFoundError):
  """A dataset root that is not set or does not exist; the message names the field to set."""

  def __str__(self) -> str:  # FileNotFoundError's own __str__ would print its errno form
    return DatasetError.__str__(self)


class FrameError(DatasetError):
  """A frame that cannot be used (missing, truncated, corrupt)."""


# ------------------------------------------------------------------------------ the record
class FramePaths(collections.abc.Sequence):
  """The frame paths of a video as one folder plus names (compact: no joined strings kept).

  ``paths[i]`` is ``os.path.join(folder, names[i])``; slices give lists of paths.
  """

  __slots__ = ('folder', 'names')

  def __init__(self, folder: Union[str, os.PathLike], names: List[str]):
    self.folder = str(folder)
    self.names = names

  def __len__(self) -> int:
    return len(self.names)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [os.path.join(self.folder, n) for n in self.names[i]]
    return os.path.join(self.folder, self.names[i])

  def __eq__(self, other) -> bool:
    return list(self) == list(other)

  def __repr__(self) -> str:
    return f'FramePaths({self.folder!r}, {len(self.names)} frames)'


@dataclasses.dataclass
class Video:
  """One annotated video (or one COCO object: a video of one frame), as every reader returns it.

  name: sequence name (result files, reports).
  frames: paths of the frames in order (a list of str or a :class:`FramePaths`).
  gt_xywh: (N, 4) float64 xywh ground truth in image pixels, or (1, 4) when only the first box
    is public (test splits). Rows may be NaN where the file says NaN.
  visible: (N,) bool, the dataset's own target-visibility labels (GOT-10k and folders: not in
    ``absence.label``; LaSOT: not full occlusion and not out of view), or None (no labels).
  cover: (N,) int GOT-10k cover labels (0-8, visible fraction in eighths), or None.
  image_size: (W, H) when the dataset states it (GOT-10k meta_info.ini, COCO), else None.
  dataset: the layout ('got10k', 'lasot', 'trackingnet', 'otb', 'coco', 'folder', ...).
  present: (N,) bool, False where a numbered layout's frame file does not exist; None = all
    frames exist (or the layout cannot tell).
  gt_file: the ground-truth file (for messages).
  """

  name: str
  frames: Seq[str]
  gt_xywh: np.ndarray
  visible: Optional[np.ndarray] = None
  cover: Optional[np.ndarray] = None
  image_size: Optional[Tuple[int, int]] = None
  dataset: str = ''
  present: Optional[np.ndarray] = None
  gt_file: str = ''

  @property
  def init_box(self) -> np.ndarray:
    return self.gt_xywh[0]

  @property
  def has_full_gt(self) -> bool:
    return len(self.gt_xywh) == len(self.frames) and len(self.frames) > 1

  def __len__(self) -> int:
    return len(self.frames)

  def present_mask(self) -> np.ndarray:
    """(N,) bool: which frame files exist (all True when the layout cannot tell)."""
    return np.ones(len(self.frames), bool) if self.present is None else self.present

  def missing_frames(self) -> List[str]:
    """Paths of the frames whose file does not exist (numbered layouts only)."""
    if self.present is None:
      return []
    return [self.frames[i] for i in np.flatnonzero(~self.present)]

  def check_ground_truth(self) -> None:
    """Raises DatasetError naming the file and line of the first NaN box (no metrics then).

    Readers keep NaN rows (training treats them as frames without a box); the metrics of
    the official toolkits refuse them, so evaluation calls this before computing them.
    """
    gt = np.asarray(self.gt_xywh)
    bad = np.flatnonzero(np.isnan(gt).any(axis=1))
    if not len(bad):
      return
    row, line = int(bad[0]), None
    if self.gt_file:
      try:
        numbered = [
          i
          for i, t in enumerate(pathlib.Path(self.gt_file).read_text().splitlines(), 1)
          if t.strip()
        ]
        line = numbered[row] if row < len(numbered) else None
      except OSError:
        pass
    if line:
      where = f'{self.gt_file} line {line}'
    else:
      where = f'{self.gt_file} box {row + 1}' if self.gt_file else f'box {row + 1}'
    raise DatasetError(
      f'ground truth contains NaN: {where} ({len(bad)} NaN box(es); the metrics need a box on '
      'every frame)',
      reason='NaN box in the ground truth',
    )


# ------------------------------------------------------------------------------ parsing
def _read_text(path: pathlib.Path, what: str) -> str:
  try:
    return path.read_text(encoding='utf-8')
  except FileNotFoundError as e:
    raise DatasetError(f'{what} missing', path=path, reason=f'{path.name} missing') from e
  except (OSError, UnicodeDecodeError) as e:
    raise DatasetError(
      f'cannot read {what}: {e}', path=path, reason=f'unreadable {path.name}'
    ) from e


def read_numbers(path: Union[str, os.PathLike], columns: Optional[int] = None) -> np.ndarray:
  """The one number parser: a text table separated by commas, spaces, tabs or semicolons.

  Blank lines are ignored; ``nan`` is allowed. Returns float64 (lines, columns), or for
  ``columns=None`` all numbers flattened (one per line or one comma-separated line: label
  files). Raises :class:`DatasetError` naming the file and line of a non-number or of a line
  with another number count.
  """
  path = pathlib.Path(path)
  text = _read_text(path, 'file')
  lines = [t for t in (s.strip() for s in text.splitlines()) if t]
  rows = [[p for p in _SEP.split(t) if p] for t in lines]
  try:  # fast path: numpy converts the strings in C
    if columns is None:
      return np.array([p for r in rows for p in r], dtype=np.float64)
    if all(len(r) == columns for r in rows):
      return np.array(rows, dtype=np.float64).reshape(-1, columns)
  except ValueError:
    pass
  numbered = [(i, t) for i, t in enumerate(text.splitlines(), 1) if t.strip()]
  for (lineno, line), parts in zip(numbered, rows, strict=True):
    try:
      [float(p) for p in parts]
    except ValueError as e:
      raise DatasetError(
        f'not a number: {line.strip()[:80]!r}',
        path=path,
        line=lineno,
        reason=f'unreadable {path.name}',
      ) from e
    if columns is not None and len(parts) != columns:
      what = f'{columns} numbers (x,y,w,h)' if columns == 4 else f'{columns} numbers'
      raise DatasetError(
        f'expected {what}, got {len(parts)}: {line.strip()[:80]!r}',
        path=path,
        line=lineno,
        reason=f'unreadable {path.name}',
      )
  raise AssertionError('unreachable')  # pragma: no cover


def read_boxes(path: Union[str, os.PathLike], allow_nan: bool = True) -> np.ndarray:
  """(N >= 1, 4) float64 xywh boxes; an empty file (or NaN with ``allow_nan=False``) raises."""
  boxes = read_numbers(path, 4)
  if not len(boxes):
    raise DatasetError(
      'no boxes (empty file)', path=path, reason=f'empty {pathlib.Path(path).name}'
    )
  if not allow_nan:
    bad = np.flatnonzero(np.isnan(boxes).any(axis=1))
    if len(bad):
      raise DatasetError(f'NaN box (box {bad[0] + 1})', path=path, reason='NaN box')
  return boxes


def read_labels(path: Union[str, os.PathLike], count: int) -> np.ndarray:
  """(count,) int64 per-frame labels (one per line or comma-separated); another count raises."""
  values = read_numbers(path)
  if len(values) != count:
    name = pathlib.Path(path).name
    raise DatasetError(
      f'{len(values)} labels for {count} frames',
      path=path,
      reason=f'{name} length differs from the frames',
    )
  if not np.all(np.isfinite(values)):
    name = pathlib.Path(path).name
    raise DatasetError('labels must be finite numbers', path=path, reason=f'unreadable {name}')
  return values.astype(np.int64)


def read_name_list(path: Union[str, os.PathLike]) -> List['ListedName']:
  """Non-blank, stripped lines of a list file (list.txt, split files), each a
  :class:`ListedName` that remembers the file and its line (checked when the sequence is read)."""
  text = _read_text(pathlib.Path(path), 'list file')
  return [ListedName(t.strip(), path, i) for i, t in enumerate(text.splitlines(), 1) if t.strip()]


# ------------------------------------------------------------------------------ sequence names
class ListedName(str):
  """A sequence name (a ``str``) that remembers where it was given, for messages.

  ``source``: the list file it was read from, or the argument that gave it (e.g.
  ``--sequences``); ``line``: its 1-based line in that file, or None.
  """

  def __new__(cls, name: str, source: Union[str, os.PathLike] = '', line: Optional[int] = None):
    self = super().__new__(cls, name)
    self.source = str(source)
    self.line = line
    return self


def check_sequence_name(name: str) -> None:
  """Raises :class:`DatasetError` unless ``name`` is a plain sequence name: one file or folder
  name (no ``/`` or ``\\``, not ``.`` or ``..``, not empty, no NUL).

  The one rule for every name that becomes part of a path (result files
  ``<output>/<name>.txt``, sequence folders ``<root>/<name>``): a name from a list file, a
  folder, an annotation or ``--sequences``. The error names the sequence and, for a
  :class:`ListedName`, the file and line (or argument) it came from.
  """
  if not isinstance(name, str):
    problem = f'it is a {type(name).__name__}, not a string'
  elif not name:
    problem = 'it is empty'
  elif '\x00' in name:
    problem = 'it contains a NUL character'
  elif name in ('.', '..'):
    problem = f"it is {name!r}, {'the parent folder' if name == '..' else 'the folder itself'}"
  elif os.path.isabs(name) or name.startswith(('/', '\\')):
    problem = 'it is an absolute path'
  elif '/' in name or '\\' in name:
    problem = 'it contains a path separator'
  elif os.path.splitdrive(name)[0]:
    problem = 'it names a drive'
  else:
    return
  raise DatasetError(
    f'not a plain sequence name: {problem} (a name is one file or folder name, so that its '
    'results stay inside the output folder)',
    sequence=str(name),
    path=getattr(name, 'source', None) or None,
    line=getattr(name, 'line', None),
    reason='not a plain sequence name',
  )


# ------------------------------------------------------------------------------ frame files
def natural_key(name: str):
  """Sort key ordering the digit runs of a name by value: frame2.jpg before frame10.jpg."""
  return [int(t) if t.isdigit() else t for t in _DIGITS.split(name)]


def is_image_name(name: str) -> bool:
  dot = name.rfind('.')
  return dot > 0 and name[dot:].lower() in _EXTENSION_SET


def list_images(folder: Union[str, os.PathLike]) -> List[str]:
  """Image file names in ``folder`` (one of :data:`IMAGE_EXTENSIONS`), in natural order.

  A folder that does not exist has none.
  """
  try:
    names = os.listdir(folder)
  except (FileNotFoundError, NotADirectoryError):
    return []
  return sorted((n for n in names if is_image_name(n)), key=natural_key)


def numbered_frames(
  folder: Union[str, os.PathLike],
  count: int = 0,
  base: int = 1,
  listing: Optional[Iterable[str]] = None,
  default_name: str = '{:08d}.jpg',
) -> Tuple[List[str], Optional[np.ndarray]]:
  """(names, present) of frames numbered ``base, base + 1, ...`` (e.g. 00000001.jpg).

  The sequence has ``max(count, highest number - base + 1)`` frames; a number without a file
  gets the name its neighbours' pattern gives and ``present`` False (``present`` is None when
  every file exists). Files whose stem is not a number are ignored; two files for one number
  raise :class:`DatasetError`.
  """
  if listing is None:
    try:
      listing = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
      listing = ()
  numbered = {}
  for n in listing:
    dot = n.rfind('.')
    if dot <= 0 or n[dot:].lower() not in _EXTENSION_SET:
      continue
    stem = n[:dot]
    if not (stem.isdigit() and stem.isascii()):
      continue
    k = int(stem) - base
    if k < 0:
      continue
    if k in numbered:
      raise DatasetError(
        f'two files for frame {k + base}: {numbered[k]} and {n}',
        path=folder,
        reason='two files for one frame number',
      )
    numbered[k] = n
  total = max(count, max(numbered) + 1 if numbered else 0)
  if len(numbered) == total:
    return [numbered[k] for k in range(total)], None
  if numbered:
    sample = numbered[min(numbered)]
    dot = sample.rfind('.')
    stem, ext = sample[:dot], sample[dot:]
    width = len(stem) if len(stem) > 1 and stem[0] == '0' else 0
    default_name = '{:0%dd}%s' % (width, ext) if width else '{:d}' + ext
  names = [numbered.get(k) or default_name.format(k + base) for k in range(total)]
  present = np.fromiter((k in numbered for k in range(total)), bool, total)
  return names, present


def sequence_frames(
  folder: Union[str, os.PathLike], names: Optional[List[str]] = None
) -> Tuple[List[str], Optional[np.ndarray]]:
  """(names, present) of a folder of freely named frames, in natural order.

  When every stem is a number (0001.jpg ...) a gap in the numbers is a missing frame
  (``present`` False at its place), as in :func:`numbered_frames` from the lowest number.
  """
  names = list_images(folder) if names is None else names
  stems = [os.path.splitext(n)[0] for n in names]
  if names and all(s.isdigit() and s.isascii() for s in stems):
    first = min(int(s) for s in stems)
    return numbered_frames(folder, 0, first, names)
  return names, None


# ------------------------------------------------------------------------------ layouts
class Layout:
  """A dataset layout: lists the sequences under a root and reads them.

  Subclasses implement :meth:`sequence_names` and :meth:`read_sequence` (raising
  :class:`DatasetError`, with a ``reason``, for a sequence that cannot be used), and may
  override :meth:`read` (COCO parses one JSON file for all its objects). ``options`` are the
  keyword arguments a registry entry gives the layout (``split``, ``split_file`` ...).

  For the training index: :meth:`frame_root` is the folder training stores frame paths
  relative to; :meth:`stamp_files` the annotation files whose change (path, mtime, size)
  rebuilds the cached index (None: never cached); ``frame_size`` says what the frames of one
  video share: 'uniform' (one size: one header is read), 'check' (compare the first and last
  frames) or 'unknown' (each frame's header is read when it is sampled).
  """

  name = ''
  frame_size = 'unknown'

  def sequence_names(self, root: pathlib.Path, **options) -> List[str]:
    raise NotImplementedError

  def read_sequence(self, root: pathlib.Path, name: str, **options) -> Video:
    raise NotImplementedError

  def check_name(self, name: str) -> None:
    """Raises :class:`DatasetError` for a name this layout must not join to its root:
    :func:`check_sequence_name`, unless a layout's own names have more parts."""
    check_sequence_name(name)

  def read(
    self, root: pathlib.Path, names: Optional[Seq[str]] = None, **options
  ) -> Iterator[Union[Video, DatasetError]]:
    """One item per sequence (``names``, default all), in order: the :class:`Video`, or the
    :class:`DatasetError` saying why that sequence cannot be used (yielded, not raised).

    Every name is checked before it is read (:meth:`check_name`), and every video's name
    (what results are written under) with :func:`check_sequence_name`.
    """
    if names is None:
      names = self.sequence_names(root, **options)
    for name in names:
      try:
        self.check_name(name)
        video = self.read_sequence(root, name, **options)
        check_sequence_name(video.name)
      except DatasetError as e:
        yield e.context(sequence=str(name).rsplit('/', 1)[-1])
        continue
      yield video

  def frame_root(self, root: pathlib.Path, **options) -> pathlib.Path:
    del options
    return root

  def stamp_files(self, root: pathlib.Path, **options) -> Optional[List[pathlib.Path]]:
    del root, options
    return None


def check_frame_count(
  name: str, num_frames: int, gt: np.ndarray, gt_path, allow_first_only: bool
) -> bool:
  """True when ``gt`` has one box per frame, False when it has only the first box (allowed
  with ``allow_first_only``, for test splits); otherwise DatasetError with both counts."""
  if not num_frames:
    raise DatasetError('no frames found', reason='no frames')
  if len(gt) == num_frames:
    return True
  if allow_first_only and len(gt) == 1:
    return False
  reason = (
    'annotation has fewer lines than frames'
    if len(gt) < num_frames
    else 'more annotation lines than frames (a frame is missing?)'
  )
  raise DatasetError(f'{num_frames} frames but {len(gt)} boxes in {gt_path}', reason=reason)


def read_named_folder(read_folder, seq_dir, name: Optional[str], allow_first_only: bool) -> Video:
  """``read_folder(seq_dir, name, allow_first_only)`` for one sequence folder, its name (the
  folder's when None) added to a DatasetError's context: the one wrapper of the layouts whose
  sequences are plain folders (got10k, folder)."""
  name = name or pathlib.Path(seq_dir).name
  try:
    return read_folder(pathlib.Path(seq_dir), name, allow_first_only)
  except DatasetError as e:
    e.context(sequence=name)
    raise
