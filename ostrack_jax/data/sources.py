"""Training data sources in their native layouts, with a cached annotation index.

NumPy / OpenCV / PIL only (grain workers import this without JAX).

Each source is a list of :class:`Sequence` records (name, boxes, visibility, where the frames
are) plus ``frame(seq_index, frame_index) -> transforms.Frame`` returning the encoded bytes.
Boxes are xywh in image pixels (float64). A frame is *visible* (may be sampled) as in the
original (spec 6): GOT-10k: not absent, cover > 0, w > 0, h > 0; LaSOT: not fully occluded, not
out of view, w > 0, h > 0; TrackingNet and generic folders: w > 0, h > 0 (and not absent when a
folder has an ``absence.label``). NaN boxes and frames whose image file is missing are never
visible. COCO is an image dataset: one pseudo-sequence of one frame per non-crowd annotation.

Layouts (``root`` is what you pass in ``config.data.roots.<name>`` or ``--root``):

* GOT-10k: ``root/{train,val}/list.txt``, ``root/<split>/<seq>/00000001.jpg``,
  ``groundtruth.txt`` (x,y,w,h per line), ``absence.label``, ``cover.label``. An optional split
  file (one sequence name per line, or 0-based indices into list.txt) selects a subset such as
  the VOT-permitted one.
* LaSOT: ``root/<class>/<class>-<k>/img/00000001.jpg``, ``groundtruth.txt``,
  ``full_occlusion.txt``, ``out_of_view.txt`` (one comma-separated line). The training list is
  ``root/training_set.txt`` (or a file given as ``split_file``); without one, every sequence not
  listed in ``root/testing_set.txt`` is used.
* TrackingNet: ``root/TRAIN_<k>/anno/<seq>.txt``, ``root/TRAIN_<k>/frames/<seq>/<i>.jpg``
  (0-based).
* COCO 2017: ``root/annotations/instances_<split>.json``, ``root/<split>/<file_name>``.
* Generic folder: ``root/<seq>/`` with image files (sorted by name) and ``groundtruth.txt``
  (x,y,w,h; comma, space or tab separated), optional ``absence.label`` (1 = absent); an optional
  ``root/list.txt`` names the sequences, otherwise every sub-folder with a groundtruth.txt.

Bad input is reported, never silently mislabelled: :class:`IndexReport` counts what was skipped
and why (missing or short annotation files, missing frames, zero-size or NaN boxes, sequences
without enough visible frames, empty folders). The index is cached as a folder of ``.npy``
files (memory-mapped, shared by the grain workers) under
``cache_dir`` (default ``~/.cache/ostrack_jax/index``; None disables) keyed by the root, split
and the modification times of the listing files.
"""

import collections
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
from typing import Callable, Dict, List, Optional, Sequence as Seq, Tuple

import numpy as np

from ostrack_jax.data import transforms

INDEX_VERSION = 3
MIN_SEQUENCE_LENGTH = 20  # spec 6: video sequences need >= 20 frames ...
MIN_VISIBLE_FRAMES = 5  # ... and more than 2 * (1 + 1) = 4 visible frames
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def default_cache_dir() -> pathlib.Path:
  return pathlib.Path(
    os.environ.get('OSTRACK_JAX_INDEX_CACHE', '~/.cache/ostrack_jax/index')
  ).expanduser()


@dataclasses.dataclass
class Sequence:
  """One annotated video (or one COCO object).

  name: sequence name; frame_dir: folder of its frames relative to the source root;
  frame_names: one file name per frame, relative to frame_dir (same length as boxes);
  boxes: (N, 4) float64 xywh pixels; visible: (N,) bool, frames that may be sampled;
  image_size: (W, H) if known for all frames, else None.
  """

  name: str
  frame_dir: str
  frame_names: List[str]
  boxes: np.ndarray
  visible: np.ndarray
  image_size: Optional[Tuple[int, int]] = None


class _Names:
  """Read-only list view of utf-8 names stored in a numpy bytes array."""

  def __init__(self, array: np.ndarray):
    self._array = array

  def __len__(self) -> int:
    return len(self._array)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [b.decode() for b in self._array[i]]
    return self._array[i].decode()

  def __iter__(self):
    return (b.decode() for b in self._array)

  def __eq__(self, other) -> bool:
    return list(self) == list(other)


class SequenceTable:
  """All sequences of a source in a few flat arrays: compact and fast to pickle.

  COCO has ~860k pseudo-sequences; as Python objects they would take ~0.5 GB per grain worker
  and seconds to pickle. ``table[i]`` returns a :class:`Sequence` whose ``boxes`` and
  ``visible`` are views into the flat arrays (writable) and whose ``frame_names`` is a
  read-only list view.
  """

  def __init__(self, names, frame_dirs, frame_names, offsets, boxes, visible, image_sizes):
    self.names = names  # (N,) bytes
    self.frame_dirs = frame_dirs  # (N,) bytes
    self.frame_names = frame_names  # (F,) bytes
    self.offsets = offsets  # (N + 1,) int64: frames of sequence i are [offsets[i], offsets[i+1])
    self.boxes = boxes  # (F, 4) float64 xywh pixels
    self.visible = visible  # (F,) bool
    self.image_sizes = image_sizes  # (N, 2) int32 (W, H); (-1, -1) = unknown
    self.folder = None  # set when memory-mapped from an index folder

  @classmethod
  def from_sequences(cls, sequences: Seq[Sequence]) -> 'SequenceTable':
    def encode(strings):
      return np.array([x.encode() for x in strings], dtype=bytes) if strings else np.zeros(0, 'S1')

    lengths = np.array([len(s.boxes) for s in sequences], np.int64)
    return cls(
      encode([s.name for s in sequences]),
      encode([s.frame_dir for s in sequences]),
      encode([n for s in sequences for n in s.frame_names]),
      np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      (
        np.concatenate([np.asarray(s.boxes, np.float64).reshape(-1, 4) for s in sequences])
        if sequences
        else np.zeros((0, 4))
      ),
      (
        np.concatenate([np.asarray(s.visible, bool) for s in sequences])
        if sequences
        else np.zeros(0, bool)
      ),
      np.array([s.image_size if s.image_size else (-1, -1) for s in sequences], np.int32).reshape(
        -1, 2
      ),
    )

  @classmethod
  def load(cls, folder) -> 'SequenceTable':
    """Memory-maps a table written by ``_save_index``; it pickles as the folder name."""
    folder = pathlib.Path(folder)
    table = cls(
      **{k: np.load(folder / f'{k}.npy', mmap_mode='r', allow_pickle=False) for k in _TABLE_FIELDS}
    )
    table.folder = str(folder)
    return table

  def __getstate__(self):
    if getattr(self, 'folder', None):
      return {'folder': self.folder}
    return dict(self.__dict__)

  def __setstate__(self, state):
    if set(state) == {'folder'}:
      try:
        self.__dict__.update(SequenceTable.load(state['folder']).__dict__)
      except OSError as e:
        raise DataError(f'index folder {state["folder"]} disappeared or is unreadable: {e}') from e
    else:
      self.__dict__.update(state)

  def arrays(self) -> Dict[str, np.ndarray]:
    return dict(
      names=self.names,
      frame_dirs=self.frame_dirs,
      frame_names=self.frame_names,
      offsets=self.offsets,
      boxes=self.boxes,
      visible=self.visible,
      image_sizes=self.image_sizes,
    )

  def __len__(self) -> int:
    return len(self.names)

  def length(self, i: int) -> int:
    return int(self.offsets[i + 1] - self.offsets[i])

  def image_size(self, i: int) -> Optional[Tuple[int, int]]:
    w, h = self.image_sizes[i]
    return (int(w), int(h)) if w > 0 else None

  def frame_name(self, i: int, frame: int) -> str:
    return self.frame_names[self.offsets[i] + frame].decode()

  def __getitem__(self, i: int) -> Sequence:
    if not -len(self) <= i < len(self):
      raise IndexError(i)
    i = i % len(self)
    a, b = self.offsets[i], self.offsets[i + 1]
    return Sequence(
      self.names[i].decode(),
      self.frame_dirs[i].decode(),
      _Names(self.frame_names[a:b]),
      self.boxes[a:b],
      self.visible[a:b],
      self.image_size(i),
    )

  def __iter__(self):
    return (self[i] for i in range(len(self)))


@dataclasses.dataclass
class IndexReport:
  """What an index build kept and skipped, with reasons and counts."""

  source: str
  sequences_found: int = 0
  sequences_kept: int = 0
  frames_kept: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  invisible_frames: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: Dict[str, List[str]] = dataclasses.field(default_factory=dict)

  def skip(self, reason: str, what: str) -> None:
    self.skipped[reason] += 1
    self.examples.setdefault(reason, [])
    if len(self.examples[reason]) < 3:
      self.examples[reason].append(what)

  def frames(self, reason: str, count: int, what: str) -> None:
    if count:
      self.invisible_frames[reason] += int(count)
      self.examples.setdefault(reason, [])
      if len(self.examples[reason]) < 3:
        self.examples[reason].append(what)

  def summary(self) -> str:
    lines = [
      f'{self.source}: {self.sequences_kept} of {self.sequences_found} sequences kept '
      f'({self.frames_kept} frames)'
    ]
    for reason, n in sorted(self.skipped.items()):
      lines.append(f'  skipped {n} sequence(s): {reason} (e.g. {", ".join(self.examples[reason])})')
    for reason, n in sorted(self.invisible_frames.items()):
      lines.append(
        f'  {n} frame(s) never sampled: {reason} (e.g. {", ".join(self.examples[reason])})'
      )
    return '\n'.join(lines)

  def to_json(self) -> dict:
    return dict(
      source=self.source,
      sequences_found=self.sequences_found,
      sequences_kept=self.sequences_kept,
      frames_kept=self.frames_kept,
      skipped=dict(self.skipped),
      invisible_frames=dict(self.invisible_frames),
      examples=self.examples,
    )

  @classmethod
  def from_json(cls, d: dict) -> 'IndexReport':
    return cls(
      d['source'],
      d['sequences_found'],
      d['sequences_kept'],
      d['frames_kept'],
      collections.Counter(d['skipped']),
      collections.Counter(d['invisible_frames']),
      d['examples'],
    )


class DataError(ValueError):
  """A dataset that cannot be used at all (missing root, nothing usable)."""


# ------------------------------------------------------------------------------ reading helpers
def read_numbers(path: pathlib.Path, columns: Optional[int] = None) -> np.ndarray:
  """Reads a text table of numbers separated by commas, spaces or tabs; 'nan' allowed.

  Returns float64 (lines, columns) (or (N,) for columns=None and one value per line or one
  comma-separated line). Raises ValueError naming the file and line for unparsable input.
  """
  rows = []
  with open(path, 'r', encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      parts = [p for p in re.split(r'[,\s;]+', line) if p]
      try:
        rows.append([float(p) for p in parts])
      except ValueError as e:
        raise ValueError(f'{path}:{lineno}: not numbers: {line[:80]!r}') from e
  if columns is None:
    flat = [v for r in rows for v in r]
    return np.asarray(flat, np.float64)
  for lineno, r in enumerate(rows, 1):
    if len(r) != columns:
      raise ValueError(f'{path}: line {lineno} has {len(r)} values, expected {columns}')
  return np.asarray(rows, np.float64).reshape(-1, columns)


def _good_box(boxes: np.ndarray) -> np.ndarray:
  return np.all(np.isfinite(boxes), axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def _image_files(folder: pathlib.Path) -> List[str]:
  try:
    names = os.listdir(folder)
  except FileNotFoundError:
    return []
  return [n for n in names if n.lower().endswith(_IMAGE_EXTS)]


def _natural_key(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def _image_size(path: pathlib.Path) -> Optional[Tuple[int, int]]:
  try:
    with open(path, 'rb') as f:
      return transforms.image_size(transforms.Frame(f.read(), str(path)))
  except (OSError, transforms.BadSample):
    return None


def _finish_sequence(
  report: IndexReport,
  name: str,
  frame_dir: str,
  frame_names: List[str],
  boxes: np.ndarray,
  visible: np.ndarray,
  present: np.ndarray,
  image_size=None,
) -> Optional[Sequence]:
  """Applies the common visibility rules and reports; returns None if nothing is usable."""
  bad_box = ~_good_box(boxes)
  report.frames('zero-size or NaN box', int(np.sum(bad_box & present)), name)
  report.frames('image file missing', int(np.sum(~present)), name)
  visible = visible & ~bad_box & present
  if not visible.any():
    report.skip('no visible frame', name)
    return None
  report.sequences_kept += 1
  report.frames_kept += len(frame_names)
  return Sequence(name, frame_dir, frame_names, boxes, visible, image_size)


# ------------------------------------------------------------------------------ the Source class
class Source:
  """A list of sequences plus frame access. Picklable (grain ships it to worker processes)."""

  def __init__(self, name: str, root: str, sequences, report: IndexReport, is_video: bool = True):
    """``sequences``: a SequenceTable or a list of Sequence (converted to a table)."""
    if not isinstance(sequences, SequenceTable):
      sequences = SequenceTable.from_sequences(list(sequences))
    self.name = name
    self.root = str(root)
    self.sequences = sequences
    self.report = report
    self.is_video = is_video
    if not len(sequences):
      raise DataError(f'{name}: no usable sequence under {root}\n{report.summary()}')
    if is_video:
      lengths = np.diff(sequences.offsets)
      visible_counts = (
        np.add.reduceat(sequences.visible.astype(np.int64), sequences.offsets[:-1])
        if len(sequences.visible)
        else 0
      )
      visible_counts = np.where(lengths > 0, visible_counts, 0)
      ok = (lengths >= MIN_SEQUENCE_LENGTH) & (visible_counts >= MIN_VISIBLE_FRAMES)
      self.sampleable = np.flatnonzero(ok).astype(np.int64)
      too_short = len(sequences) - len(self.sampleable)
      if too_short:
        report.invisible_frames[
          f'in sequences with < {MIN_SEQUENCE_LENGTH} frames or < {MIN_VISIBLE_FRAMES} '
          'visible frames (never drawn, as in the original)'
        ] = too_short
      if not len(self.sampleable):
        raise DataError(
          f'{name}: no sequence under {root} has >= {MIN_SEQUENCE_LENGTH} frames '
          f'and >= {MIN_VISIBLE_FRAMES} visible frames\n{report.summary()}'
        )
    else:
      self.sampleable = np.arange(len(sequences), dtype=np.int64)

  def __len__(self) -> int:
    return len(self.sequences)

  def frame_key(self, seq_index: int, frame_index: int) -> str:
    """The frame's path relative to the source root."""
    table = self.sequences
    return os.path.join(
      table.frame_dirs[seq_index].decode(), table.frame_name(seq_index, frame_index)
    )

  def frame(self, seq_index: int, frame_index: int) -> transforms.Frame:
    """The encoded frame; raises transforms.BadSample if the file cannot be read."""
    path = os.path.join(self.root, self.frame_key(seq_index, frame_index))
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise transforms.BadSample(f'{path}: cannot read frame ({e})') from e
    return transforms.Frame(data, path, self.sequences.image_size(seq_index))


# ------------------------------------------------------------------------------ index cache
def _cache_path(
  cache_dir, kind: str, root: pathlib.Path, extra: str, stamp_files: Seq[pathlib.Path]
) -> Optional[pathlib.Path]:
  if cache_dir is None:
    return None
  if cache_dir == 'default':  # resolved per call, so $OSTRACK_JAX_INDEX_CACHE may change
    cache_dir = default_cache_dir()
  stamps = []
  for p in stamp_files:
    try:
      st = p.stat()
      stamps.append(f'{p}:{st.st_mtime_ns}:{st.st_size}')
    except OSError:
      stamps.append(f'{p}:missing')
  key = json.dumps([INDEX_VERSION, kind, str(root.resolve()), extra, stamps])
  # The key covers the listing and every annotation file (path, mtime, size): editing an
  # annotation rebuilds the index. Frame files are not stamped (adding or deleting frames
  # without touching the annotations needs cache_dir=None or deleting the cache file).
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  return pathlib.Path(cache_dir).expanduser() / f'{kind}-{digest}'


_TABLE_FIELDS = ('names', 'frame_dirs', 'frame_names', 'offsets', 'boxes', 'visible', 'image_sizes')


def _save_index(path: Optional[pathlib.Path], sequences, report: IndexReport) -> None:
  """Writes a SequenceTable (or list of Sequence) and its report as a folder of .npy files.

  The folder is assembled under a temporary name and renamed into place.
  """
  if path is None:
    return
  table = (
    sequences
    if isinstance(sequences, SequenceTable)
    else SequenceTable.from_sequences(list(sequences))
  )
  tmp = path.with_name(f'{path.name}.tmp-{os.getpid()}')
  try:
    tmp.mkdir(parents=True, exist_ok=True)
    for key, array in table.arrays().items():
      np.save(tmp / f'{key}.npy', np.ascontiguousarray(array))
    (tmp / 'meta.json').write_text(json.dumps(dict(version=INDEX_VERSION, report=report.to_json())))
    if path.exists():
      shutil.rmtree(path)
    os.replace(tmp, path)
  except OSError as e:  # a read-only cache (or a concurrent writer) is not fatal
    logging.warning('could not write index cache %s: %s', path, e)
    shutil.rmtree(tmp, ignore_errors=True)


def _load_index(path: Optional[pathlib.Path]):
  """(SequenceTable, IndexReport) from an index folder, or None if absent or unreadable.

  The arrays are memory-mapped read-only, and the table pickles as its folder name: grain
  workers map the same pages instead of receiving copies (LaSOT + TrackingNet are ~20 M
  frames, ~1 GB of boxes and names).
  """
  if path is None or not (path / 'meta.json').exists():
    return None
  try:
    meta = json.loads((path / 'meta.json').read_text())
    if meta.get('version') != INDEX_VERSION:
      return None
    table = SequenceTable.load(path)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('ignoring unreadable index cache %s: %s', path, e)
    return None
  return table, IndexReport.from_json(meta['report'])


def _cached(
  kind: str,
  root: pathlib.Path,
  extra: str,
  stamp_files,
  cache_dir,
  build: Callable[[], Tuple[List[Sequence], IndexReport]],
):
  path = _cache_path(cache_dir, kind, root, extra, stamp_files)
  loaded = _load_index(path)
  if loaded is not None:
    return loaded
  sequences, report = build()
  table = SequenceTable.from_sequences(sequences)
  _save_index(path, table, report)
  return _load_index(path) or (table, report)


def _check_root(root, what: str) -> pathlib.Path:
  if not root:
    raise DataError(f'{what}: no dataset root given (set config.data.roots.* or --root)')
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise DataError(f'{what}: dataset root {root} is not a directory')
  return root


def _read_name_list(path: pathlib.Path) -> List[str]:
  return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------ GOT-10k
def _got10k_sequence(report: IndexReport, split_dir: pathlib.Path, name: str):
  seq_dir = split_dir / name
  if not seq_dir.is_dir():
    report.skip('sequence folder missing', name)
    return None
  gt_path = seq_dir / 'groundtruth.txt'
  try:
    boxes = read_numbers(gt_path, 4)
  except FileNotFoundError:
    report.skip('groundtruth.txt missing', name)
    return None
  except ValueError as e:
    report.skip('unreadable groundtruth.txt', str(e))
    return None
  files = set(_image_files(seq_dir))
  numbered = sorted(
    (int(os.path.splitext(f)[0]) for f in files if os.path.splitext(f)[0].isdigit())
  )
  num_frames = max(numbered[-1] if numbered else 0, len(boxes))
  if len(boxes) < num_frames:
    report.skip('annotation has fewer lines than frames', f'{name} ({len(boxes)} < {num_frames})')
    return None
  if not files:
    report.skip('no frames', name)
    return None
  names = [f'{i + 1:08d}.jpg' for i in range(num_frames)]
  present = np.array([n in files for n in names])
  visible = np.ones(num_frames, bool)
  for label, rule in (('absence.label', lambda v: v == 0), ('cover.label', lambda v: v > 0)):
    p = seq_dir / label
    if p.exists():
      try:
        values = read_numbers(p)
      except ValueError as e:
        report.skip(f'unreadable {label}', str(e))
        return None
      if len(values) != num_frames:
        report.skip(
          f'{label} length differs from groundtruth.txt', f'{name} ({len(values)} vs {num_frames})'
        )
        return None
      hidden = ~rule(values)
      report.frames(f'{label}: target not visible', int(np.sum(hidden & present)), name)
      visible &= ~hidden
  return _finish_sequence(report, name, name, names, boxes, visible, present)


def got10k(
  root,
  split: str = 'train',
  split_file: Optional[str] = None,
  cache_dir='default',
  name: Optional[str] = None,
) -> Source:
  """GOT-10k ``split`` ('train' or 'val'), optionally restricted to ``split_file``.

  ``split_file`` lists sequence names (``GOT-10k_Train_000001``) or 0-based indices into
  ``list.txt``, one per line (the form of the VOT-permitted subsets).
  """
  name = name or f'got10k_{split}'
  root = _check_root(root, name)
  split_dir = root / split
  list_path = split_dir / 'list.txt'
  if list_path.exists():
    all_names = _read_name_list(list_path)
  else:
    if not split_dir.is_dir():
      raise DataError(
        f'{name}: {split_dir} does not exist (expected the GOT-10k layout root/{split}/list.txt)'
      )
    all_names = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
  selected = all_names
  if split_file:
    entries = _read_name_list(pathlib.Path(split_file).expanduser())
    if all(e.isdigit() for e in entries):
      bad = [e for e in entries if int(e) >= len(all_names)]
      if bad:
        raise DataError(f'{split_file}: index {bad[0]} out of range ({len(all_names)} sequences)')
      selected = [all_names[int(e)] for e in entries]
    else:
      selected = entries

  def build():
    report = IndexReport(name, sequences_found=len(selected))
    if not selected:
      report.skip('empty dataset folder (no sequences listed or found)', str(split_dir))
    seqs = [s for s in (_got10k_sequence(report, split_dir, n) for n in selected) if s]
    for s in seqs:  # GOT-10k frames in a sequence share one size
      s.image_size = _image_size(split_dir / s.frame_dir / s.frame_names[int(np.argmax(s.visible))])
    return seqs, report

  stamps = [list_path, pathlib.Path(split_file) if split_file else list_path]
  stamps += [
    split_dir / n / f for n in selected for f in ('groundtruth.txt', 'absence.label', 'cover.label')
  ]
  seqs, report = _cached(
    'got10k', root, f'{split}|{split_file}|{len(selected)}', stamps, cache_dir, build
  )
  return Source(name, str(split_dir), seqs, report)


# ------------------------------------------------------------------------------ LaSOT
def lasot(
  root, split_file: Optional[str] = None, cache_dir='default', name: str = 'lasot'
) -> Source:
  """LaSOT training sequences (see the module docstring for how the list is found)."""
  root = _check_root(root, name)
  classes = sorted(d.name for d in root.iterdir() if d.is_dir())
  all_seqs = [
    f'{c}/{s.name}'
    for c in classes
    for s in sorted((root / c).iterdir())
    if s.is_dir() and (s / 'groundtruth.txt').exists()
  ]
  list_file = pathlib.Path(split_file).expanduser() if split_file else root / 'training_set.txt'
  if list_file.exists():
    wanted = _read_name_list(list_file)
    selected = [f'{n.rsplit("-", 1)[0]}/{n}' for n in wanted]
  else:
    test_file = root / 'testing_set.txt'
    test = set(_read_name_list(test_file)) if test_file.exists() else set()
    if not test:
      logging.warning(
        '%s: no training_set.txt or testing_set.txt in %s: using all %d sequences',
        name,
        root,
        len(all_seqs),
      )
    selected = [s for s in all_seqs if s.split('/')[1] not in test]

  def build():
    report = IndexReport(name, sequences_found=len(selected))
    if not selected:
      report.skip('empty dataset folder (no sequences found)', str(root))
    seqs = []
    for rel in selected:
      seq_dir = root / rel
      try:
        boxes = read_numbers(seq_dir / 'groundtruth.txt', 4)
      except FileNotFoundError:
        report.skip('groundtruth.txt missing', rel)
        continue
      except ValueError as e:
        report.skip('unreadable groundtruth.txt', str(e))
        continue
      files = set(_image_files(seq_dir / 'img'))
      n = len(boxes)
      numbered = [int(os.path.splitext(f)[0]) for f in files if os.path.splitext(f)[0].isdigit()]
      if numbered and max(numbered) > n:
        report.skip('annotation has fewer lines than frames', f'{rel} ({n} < {max(numbered)})')
        continue
      names = [f'img/{i + 1:08d}.jpg' for i in range(n)]
      present = np.array([nm[4:] in files for nm in names])
      visible = np.ones(n, bool)
      ok = True
      for label in ('full_occlusion.txt', 'out_of_view.txt'):
        try:
          flags = read_numbers(seq_dir / label)
        except (FileNotFoundError, ValueError) as e:
          report.skip(f'{label} missing or unreadable', f'{rel} ({e})')
          ok = False
          break
        if len(flags) != n:
          report.skip(
            f'{label} length differs from groundtruth.txt', f'{rel} ({len(flags)} vs {n})'
          )
          ok = False
          break
        report.frames(f'{label}: target not visible', int(np.sum((flags != 0) & present)), rel)
        visible &= flags == 0
      if ok:
        s = _finish_sequence(report, rel.split('/')[1], rel, names, boxes, visible, present)
        if s:
          seqs.append(s)
    return seqs, report

  stamps = [list_file] + [
    root / rel / f
    for rel in selected
    for f in ('groundtruth.txt', 'full_occlusion.txt', 'out_of_view.txt')
  ]
  seqs, report = _cached(
    'lasot', root, str(list_file) + f'|{len(selected)}', stamps, cache_dir, build
  )
  return Source(name, str(root), seqs, report)


# ------------------------------------------------------------------------------ TrackingNet
def trackingnet(
  root, chunks: Seq[int] = tuple(range(12)), cache_dir='default', name: str = 'trackingnet'
) -> Source:
  """TrackingNet TRAIN_<k> chunks (0-based frame files ``frames/<seq>/<i>.jpg``)."""
  root = _check_root(root, name)
  chunk_dirs = [root / f'TRAIN_{k}' for k in chunks]
  missing = [str(c) for c in chunk_dirs if not c.is_dir()]
  if len(missing) == len(chunk_dirs):
    raise DataError(f'{name}: none of the chunk folders exist, e.g. {missing[0]}')
  if missing:
    logging.warning('%s: %d chunk folder(s) missing, e.g. %s', name, len(missing), missing[0])

  def build():
    report = IndexReport(name)
    seqs = []
    for chunk in chunk_dirs:
      anno_dir = chunk / 'anno'
      if not anno_dir.is_dir():
        continue
      for anno in sorted(anno_dir.glob('*.txt')):
        report.sequences_found += 1
        rel = f'{chunk.name}/frames/{anno.stem}'
        try:
          boxes = read_numbers(anno, 4)
        except ValueError as e:
          report.skip('unreadable annotation file', str(e))
          continue
        files = set(_image_files(root / rel))
        numbered = [int(os.path.splitext(f)[0]) for f in files if os.path.splitext(f)[0].isdigit()]
        if numbered and max(numbered) + 1 > len(boxes):
          report.skip(
            'annotation has fewer lines than frames', f'{rel} ({len(boxes)} < {max(numbered) + 1})'
          )
          continue
        names = [f'{i}.jpg' for i in range(len(boxes))]
        present = np.array([n in files for n in names])
        s = _finish_sequence(
          report, anno.stem, rel, names, boxes, np.ones(len(boxes), bool), present
        )
        if s:
          seqs.append(s)
    if not report.sequences_found:
      report.skip('empty dataset folder (no anno/*.txt)', str(root))
    return seqs, report

  stamps = [a for c in chunk_dirs for a in sorted((c / 'anno').glob('*.txt'))]
  seqs, report = _cached('trackingnet', root, ','.join(map(str, chunks)), stamps, cache_dir, build)
  return Source(name, str(root), seqs, report)


# ------------------------------------------------------------------------------ COCO
def coco(root, split: str = 'train2017', cache_dir='default', name: str = 'coco') -> Source:
  """COCO: one single-frame pseudo-sequence per non-crowd instance annotation."""
  root = _check_root(root, name)
  ann_path = root / 'annotations' / f'instances_{split}.json'
  if not ann_path.exists():
    raise DataError(f'{name}: annotation file {ann_path} not found')

  def build():
    with open(ann_path, 'r', encoding='utf-8') as f:
      data = json.load(f)
    images = {im['id']: im for im in data.get('images', [])}
    report = IndexReport(name)
    seqs = []
    for ann in data.get('annotations', []):
      report.sequences_found += 1
      if ann.get('iscrowd', 0):
        report.skip('crowd annotation', str(ann.get('id')))
        continue
      im = images.get(ann.get('image_id'))
      if im is None:
        report.skip('annotation of an unknown image id', str(ann.get('id')))
        continue
      box = np.asarray(ann.get('bbox', [np.nan] * 4), np.float64).reshape(1, 4)
      s = _finish_sequence(
        report,
        str(ann['id']),
        split,
        [im['file_name']],
        box,
        np.ones(1, bool),
        np.ones(1, bool),
        (int(im['width']), int(im['height'])) if 'width' in im else None,
      )
      if s:
        seqs.append(s)
    if not report.sequences_found:
      report.skip('empty dataset (no annotations)', str(ann_path))
    return seqs, report

  seqs, report = _cached('coco', root, split, [ann_path], cache_dir, build)
  return Source(name, str(root), seqs, report, is_video=False)


# ------------------------------------------------------------------------------ generic folder
def folder(root, cache_dir='default', name: str = 'folder') -> Source:
  """A folder of sequences: images sorted by (natural) name plus groundtruth.txt each."""
  root = _check_root(root, name)
  list_path = root / 'list.txt'
  if list_path.exists():
    selected = _read_name_list(list_path)
  else:
    selected = sorted(d.name for d in root.iterdir() if d.is_dir())

  def build():
    report = IndexReport(name, sequences_found=len(selected))
    if not selected:
      report.skip('empty dataset folder (no sequence folders)', str(root))
    seqs = []
    for seq_name in selected:
      seq_dir = root / seq_name
      gt = seq_dir / 'groundtruth.txt'
      if not gt.exists():
        report.skip('groundtruth.txt missing', seq_name)
        continue
      try:
        boxes = read_numbers(gt, 4)
      except ValueError as e:
        report.skip('unreadable groundtruth.txt', str(e))
        continue
      files = sorted(_image_files(seq_dir), key=_natural_key)
      if not files:
        report.skip('no frames', seq_name)
        continue
      if len(boxes) < len(files):
        report.skip(
          'annotation has fewer lines than frames', f'{seq_name} ({len(boxes)} < {len(files)})'
        )
        continue
      if len(boxes) > len(files):
        # With free-form names a missing frame cannot be located: refuse rather than shift.
        report.skip(
          'more annotation lines than frames (a frame is missing?)',
          f'{seq_name} ({len(boxes)} > {len(files)})',
        )
        continue
      visible = np.ones(len(files), bool)
      absence = seq_dir / 'absence.label'
      if absence.exists():
        try:
          flags = read_numbers(absence)
        except ValueError as e:
          report.skip('unreadable absence.label', str(e))
          continue
        if len(flags) != len(files):
          report.skip('absence.label length differs from the frames', seq_name)
          continue
        report.frames('absence.label: target not visible', int(np.sum(flags != 0)), seq_name)
        visible &= flags == 0
      s = _finish_sequence(
        report,
        seq_name,
        seq_name,
        files,
        boxes,
        visible,
        np.ones(len(files), bool),
        _image_size(seq_dir / files[0]),
      )
      if s and _image_size(seq_dir / files[-1]) != s.image_size:
        s.image_size = None  # frames of different sizes: read each frame's header
      if s:
        if len({os.path.splitext(f)[1].lower() for f in files}) > 1:
          s.image_size = None  # mixed formats: read sizes per frame
        seqs.append(s)
    return seqs, report

  stamps = [list_path] + [
    root / n / f for n in selected for f in ('groundtruth.txt', 'absence.label')
  ]
  seqs, report = _cached('folder', root, '|'.join(selected), stamps, cache_dir, build)
  return Source(name, str(root), seqs, report)


# ------------------------------------------------------------------------------ by config name
def make_source(dataset: str, data_config, cache_dir='default') -> Source:
  """The source named in ``config.data.train_datasets`` / ``val_datasets``.

  Names: got10k_train_full, got10k_vottrain, got10k_votval, got10k_val, lasot, trackingnet,
  coco, folder, synthetic, synthetic_val. ``synthetic`` uses ``data_config.roots.synthetic``
  or, when empty, the default synthetic dataset (generated on first use). With
  ``data_config.packed`` the source is read from ``<root>/packed/<dataset>`` written by
  ``python -m ostrack_jax.data.pack``.
  """
  roots = data_config.roots
  split_files = data_config.get('split_files', {})
  if data_config.get('packed', False):
    from ostrack_jax.data import pack  # pylint: disable=g-import-not-at-top

    return pack.packed_source_for(dataset, data_config)
  if dataset in ('synthetic', 'synthetic_val'):
    from ostrack_jax.data import synthetic  # pylint: disable=g-import-not-at-top

    root = synthetic.ensure_synthetic_dataset(roots.synthetic or None)
    split = 'train' if dataset == 'synthetic' else 'val'
    return got10k(root, split, cache_dir=cache_dir, name=dataset)
  if dataset == 'got10k_train_full':
    return got10k(roots.got10k, 'train', cache_dir=cache_dir, name=dataset)
  if dataset == 'got10k_val':
    return got10k(roots.got10k, 'val', cache_dir=cache_dir, name=dataset)
  if dataset in ('got10k_vottrain', 'got10k_votval'):
    split_file = split_files.get(dataset, '') if split_files else ''
    if not split_file:
      raise DataError(
        f'{dataset} needs the list of its sequences: set config.data.split_files.{dataset} '
        'to a file of sequence names or 0-based indices into train/list.txt, or use '
        'got10k_train_full'
      )
    return got10k(roots.got10k, 'train', split_file, cache_dir=cache_dir, name=dataset)
  if dataset == 'lasot':
    return lasot(
      roots.lasot,
      split_files.get('lasot', '') or None if split_files else None,
      cache_dir=cache_dir,
    )
  if dataset == 'trackingnet':
    return trackingnet(roots.trackingnet, cache_dir=cache_dir)
  if dataset == 'coco':
    return coco(roots.coco, cache_dir=cache_dir)
  if dataset == 'folder':
    return folder(roots.folder, cache_dir=cache_dir)
  raise DataError(f'unknown dataset name {dataset!r}')
