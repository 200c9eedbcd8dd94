"""Training's own view of a dataset: the sequence table, its skip report, its cache, and the
:class:`Source` the sampler draws from (table + frame bytes).

NumPy only (grain workers import this without JAX). The readers are in
:mod:`ostrack_jax.datasets`; :mod:`ostrack_jax.data.sources` turns what they read into a table
(the training visibility rule) and :mod:`ostrack_jax.data.packed` reads a table's frames from
ArrayRecord packs.

The index is cached as a folder of ``.npy`` files (memory-mapped, shared by the grain workers)
under ``cache_dir`` (default ``$OSTRACK_JAX_INDEX_CACHE``, else ``~/.cache/ostrack_jax/index``;
None disables), keyed by the dataset, root, options and every annotation file's path, mtime and
size.
"""

import collections
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
from typing import Callable, Dict, List, Optional, Sequence as Seq, Tuple

import numpy as np

from ostrack_jax.data import transforms
from ostrack_jax.datasets import core, frames

INDEX_VERSION = 4
# Version 3 (before the dataset layer) wrote the same arrays and a report without
# 'unsampleable': packs written then still load. (A cache key includes the version, so the
# cache never mixes them.)
_READABLE_VERSIONS = (3, INDEX_VERSION)
MIN_SEQUENCE_LENGTH = 20  # the original's sampler: video sequences need >= 20 frames ...
MIN_VISIBLE_FRAMES = 5  # ... and more than 2 * (1 + 1) = 4 visible frames
UNSAMPLEABLE = (
  f'fewer than {MIN_SEQUENCE_LENGTH} frames or {MIN_VISIBLE_FRAMES} visible frames '
  '(never drawn, as in the original)'
)


def default_cache_dir() -> pathlib.Path:
  return pathlib.Path(
    os.environ.get('OSTRACK_JAX_INDEX_CACHE', '~/.cache/ostrack_jax/index')
  ).expanduser()


@dataclasses.dataclass
class TableRow:
  """One sequence of the training table (a COCO object is a sequence of one frame).

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


_TABLE_FIELDS = ('names', 'frame_dirs', 'frame_names', 'offsets', 'boxes', 'visible', 'image_sizes')


class SequenceTable:
  """All sequences of a source in a few flat arrays: compact and fast to pickle.

  COCO has ~860k pseudo-sequences; as Python objects they would take ~0.5 GB per grain worker
  and seconds to pickle. ``table[i]`` returns a :class:`TableRow` whose ``boxes`` and
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
  def from_sequences(cls, sequences: Seq[TableRow]) -> 'SequenceTable':
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
    """Memory-maps a table written by :func:`save_index`; it pickles as the folder name."""
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
        raise core.DatasetError(
          f'index folder {state["folder"]} disappeared or is unreadable: {e}'
        ) from e
    else:
      self.__dict__.update(state)

  def arrays(self) -> Dict[str, np.ndarray]:
    return {k: getattr(self, k) for k in _TABLE_FIELDS}

  def __len__(self) -> int:
    return len(self.names)

  def length(self, i: int) -> int:
    return int(self.offsets[i + 1] - self.offsets[i])

  def image_size(self, i: int) -> Optional[Tuple[int, int]]:
    w, h = self.image_sizes[i]
    return (int(w), int(h)) if w > 0 else None

  def frame_name(self, i: int, frame: int) -> str:
    return self.frame_names[self.offsets[i] + frame].decode()

  def __getitem__(self, i: int) -> TableRow:
    if not -len(self) <= i < len(self):
      raise IndexError(i)
    i = i % len(self)
    a, b = self.offsets[i], self.offsets[i + 1]
    return TableRow(
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
  """What an index build kept and skipped, with reasons, counts and up to 3 examples each.

  ``skipped``: sequences left out (by reason); ``invisible_frames``: frames of kept sequences
  that are never sampled (by reason); ``unsampleable``: kept sequences the sampler never draws
  (too short, too few visible frames).
  """

  source: str
  sequences_found: int = 0
  sequences_kept: int = 0
  frames_kept: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  invisible_frames: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  unsampleable: int = 0

  def _example(self, reason: str, what: str) -> None:
    ex = self.examples.setdefault(reason, [])
    if len(ex) < 3 and what not in ex:
      ex.append(what)

  def skip(self, reason: str, what: str) -> None:
    self.skipped[reason] += 1
    self._example(reason, what)

  def frames(self, reason: str, count: int, what: str) -> None:
    if count:
      self.invisible_frames[reason] += int(count)
      self._example(reason, what)

  def set_unsampleable(self, count: int, examples: Seq[str]) -> None:
    """Records the kept sequences the sampler never draws (idempotent: a reloaded report)."""
    self.unsampleable = int(count)
    self.examples[UNSAMPLEABLE] = list(examples)[:3]

  def _eg(self, reason: str) -> str:
    ex = self.examples.get(reason) or []
    return f' (e.g. {", ".join(ex)})' if ex else ''

  def reasons(self) -> str:
    """The skipped and never-drawn sequences by reason, on one line."""
    parts = [f'{n} {reason}{self._eg(reason)}' for reason, n in sorted(self.skipped.items())]
    if self.unsampleable:
      parts.append(f'{self.unsampleable} with {UNSAMPLEABLE}{self._eg(UNSAMPLEABLE)}')
    return '; '.join(parts) or 'no sequences found'

  def summary(self) -> str:
    lines = [
      f'{self.source}: {self.sequences_kept} of {self.sequences_found} sequences kept '
      f'({self.frames_kept} frames)'
    ]
    for reason, n in sorted(self.skipped.items()):
      lines.append(f'  skipped {n} sequence(s): {reason}{self._eg(reason)}')
    if self.unsampleable:
      lines.append(
        f'  {self.unsampleable} sequence(s) never drawn: {UNSAMPLEABLE}{self._eg(UNSAMPLEABLE)}'
      )
    for reason, n in sorted(self.invisible_frames.items()):
      lines.append(f'  {n} frame(s) never sampled: {reason}{self._eg(reason)}')
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
      unsampleable=self.unsampleable,
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
      d.get('unsampleable', 0),
    )


# ------------------------------------------------------------------------------ the Source class
class Source:
  """A table of sequences plus frame access. Picklable (grain ships it to worker processes).

  ``frame(seq_index, frame_index)`` returns the encoded frame (``transforms.Frame``) read from
  ``root / frame_dir / frame_name``; a file that is missing, truncated or corrupt
  (:func:`ostrack_jax.datasets.frames.check_image_bytes`) raises ``transforms.BadSample`` naming
  it, and the sampler draws another pair.
  """

  def __init__(self, name: str, root: str, sequences, report: IndexReport, is_video: bool = True):
    """``sequences``: a SequenceTable or a list of TableRow (converted to a table)."""
    if not isinstance(sequences, SequenceTable):
      sequences = SequenceTable.from_sequences(list(sequences))
    self.name = name
    self.root = str(root)
    self.sequences = sequences
    self.report = report
    self.is_video = is_video
    if not len(sequences):
      raise core.DatasetError(
        f'no usable sequence under {root}: {report.reasons()}',
        dataset=name,
        reason='no usable sequence',
      )
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
      bad = np.flatnonzero(~ok)
      report.set_unsampleable(len(bad), [sequences.names[i].decode() for i in bad[:3]])
      if not len(self.sampleable):
        raise core.DatasetError(
          f'no usable sequence under {root}: {report.reasons()}',
          dataset=name,
          reason='no usable sequence',
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
    """The encoded frame; raises transforms.BadSample if the file cannot be used."""
    path = os.path.join(self.root, self.frame_key(seq_index, frame_index))
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise transforms.BadSample(f'{path}: cannot read frame ({e})') from e
    problem = frames.check_image_bytes(data)
    if problem:
      raise transforms.BadSample(f'{path}: frame is {problem}')
    return transforms.Frame(data, path, self.sequences.image_size(seq_index))


# ------------------------------------------------------------------------------ index cache
def cache_path(
  cache_dir, kind: str, root: pathlib.Path, extra: str, stamp_files: Optional[Seq[pathlib.Path]]
) -> Optional[pathlib.Path]:
  """The index folder for this key, or None (no cache dir, or no stamp files to key on).

  The key covers ``extra`` and every stamp file's path, mtime and size: editing an annotation
  rebuilds the index. Frame files are not stamped (adding, deleting or replacing frames without
  touching the annotations needs cache_dir=None or deleting the cache folder; a frame cut short
  later is still caught when it is read).
  """
  if cache_dir is None or stamp_files is None:
    return None
  if cache_dir == 'default':  # resolved per call, so $OSTRACK_JAX_INDEX_CACHE may change
    cache_dir = default_cache_dir()
  stamps = []
  for p in stamp_files:
    try:
      st = os.stat(p)
      stamps.append(f'{p}:{st.st_mtime_ns}:{st.st_size}')
    except OSError:
      stamps.append(f'{p}:missing')
  key = json.dumps([INDEX_VERSION, kind, str(pathlib.Path(root).resolve()), extra, stamps])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  return pathlib.Path(cache_dir).expanduser() / f'{kind}-{digest}'


def save_index(path: Optional[pathlib.Path], sequences, report: IndexReport) -> None:
  """Writes a SequenceTable (or list of TableRow) and its report as a folder of .npy files.

  The folder is assembled under a temporary name and renamed into place.
  """
  if path is None:
    return
  path = pathlib.Path(path)
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


def load_index(path: Optional[pathlib.Path]) -> Optional[Tuple[SequenceTable, IndexReport]]:
  """(SequenceTable, IndexReport) from an index folder, or None if absent or unreadable.

  The arrays are memory-mapped read-only, and the table pickles as its folder name: grain
  workers map the same pages instead of receiving copies (LaSOT + TrackingNet are ~20 M
  frames, ~1 GB of boxes and names).
  """
  if path is None:
    return None
  path = pathlib.Path(path)
  if not (path / 'meta.json').exists():
    return None
  try:
    meta = json.loads((path / 'meta.json').read_text())
    if meta.get('version') not in _READABLE_VERSIONS:
      return None
    table = SequenceTable.load(path)
  except Exception as e:
    logging.warning('ignoring unreadable index cache %s: %s', path, e)
    return None
  return table, IndexReport.from_json(meta['report'])


def cached(
  path: Optional[pathlib.Path],
  build: Callable[[], Tuple[List[TableRow], IndexReport]],
) -> Tuple[SequenceTable, IndexReport]:
  """The index at ``path`` (see :func:`cache_path`), built and saved there when missing."""
  loaded = load_index(path)
  if loaded is not None:
    return loaded
  rows, report = build()
  table = SequenceTable.from_sequences(rows)
  save_index(path, table, report)
  return load_index(path) or (table, report)
