"""Result files in the layouts the official toolkits and servers expect (NumPy only).

Boxes are xywh in image pixels, one line per frame including the initial box, written as
floats (``%.4f``; never truncated to integers as the original does). Every file is written
atomically (a temporary file in the same folder, then ``os.replace``), and a sequence's box
file is written last, so its existence means the sequence is finished: a killed run loses at
most the sequence it was on.

Layouts (``out`` = the results folder):

* ``got10k``: ``out/<seq>/<seq>_001.txt`` (``x,y,w,h``) and ``out/<seq>/<seq>_time.txt``
  (seconds per frame, ``%.8f``), as the GOT-10k toolkit writes them; :meth:`make_zip` packs
  the sequence folders into ``out/submission.zip`` ready for upload (test split).
* ``trackingnet``: ``out/<seq>.txt`` (``x,y,w,h``) and ``out/<seq>_time.txt``;
  :meth:`make_zip` packs only the ``<seq>.txt`` files.
* ``lasot``, ``otb``, ``folder``: ``out/<seq>.txt`` and ``out/<seq>_time.txt``.

A sequence counts as finished only when :meth:`ResultWriter.check` finds its files complete:
one line per frame, 4 finite numbers a line in the box file, 1 in the time file (required
except for TrackingNet, whose official layout has none), and a newline at the end (the writer
always ends with one: a file without it was cut inside its last number). A file cut short,
edited or corrupted is named with what is wrong, and eval.py tracks the sequence again.
"""

import os
import pathlib
import re
import zipfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ostrack_jax.common.fileio import atomic_path, atomic_write_text
from ostrack_jax.datasets.core import check_sequence_name, read_boxes

LAYOUTS = ('got10k', 'trackingnet', 'lasot', 'otb', 'folder')
_SEP = re.compile(r'[,\s;]+')
SUBMISSION_ZIP = 'submission.zip'  # in the results folder: what :meth:`ResultWriter.make_zip` packs


def layout_for_dataset(dataset: str) -> str:
  """The result layout of an eval.py dataset name (its registry entry's ``result_layout``)."""
  from ostrack_jax.datasets import registry

  if dataset in registry.names('eval'):
    return registry.get(dataset, 'eval').result_layout
  if dataset.startswith('got10k'):
    return 'got10k'
  if dataset in LAYOUTS:
    return dataset
  raise ValueError(f'no result layout for dataset {dataset!r}')


def format_boxes(boxes_xywh: np.ndarray, sep: str = ',') -> str:
  boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
  return ''.join(sep.join(f'{v:.4f}' for v in row) + '\n' for row in boxes)


def format_times(times_s: Sequence[float]) -> str:
  return ''.join(f'{float(t):.8f}\n' for t in times_s)


def split_fields(line: str) -> List[str]:
  """The fields of a line of numbers: separated by commas, tabs, spaces or semicolons, as the
  toolkits' result files are (and the attribute tables compare.py reads beside them)."""
  return [p for p in _SEP.split(line) if p]


class ResultFileError(ValueError):
  """A result file that is missing, incomplete or not parseable; the message names it."""


def read_numbers(path: os.PathLike, columns: int, num_lines: Optional[int] = None) -> np.ndarray:
  """(N, columns) float64 from a result file: ``columns`` finite numbers a line.

  Separators: comma, tab, space or semicolon; blank lines are ignored. Raises
  :class:`ResultFileError` naming the file and what is wrong: missing, unreadable, empty,
  a line count other than ``num_lines`` (when given), a line with another number count, a
  non-number, NaN or Inf, no newline after the last line (the file was cut inside its last
  number: ``12.5`` may be what is left of ``12.5000``; the writer always ends a line).
  """
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding='utf-8')
  except FileNotFoundError as e:
    raise ResultFileError(f'{path} is missing') from e
  except (OSError, UnicodeDecodeError) as e:
    raise ResultFileError(f'cannot read {path}: {e}') from e
  lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
  if not lines:
    raise ResultFileError(f'{path} is empty')
  if num_lines is not None and len(lines) != num_lines:
    raise ResultFileError(
      f'{path} has {len(lines)} line{"s" * (len(lines) != 1)}, the sequence '
      f'has {num_lines} frame{"s" * (num_lines != 1)}'
    )
  rows = []
  what = '4 numbers (x,y,w,h)' if columns == 4 else f'{columns} number(s)'
  for lineno, line in lines:
    parts = split_fields(line)
    try:
      row = [float(p) for p in parts]
    except ValueError:
      row = None
    if row is None or len(row) != columns or not all(np.isfinite(row)):
      raise ResultFileError(f'{path} line {lineno}: expected {what}, finite, got {line[:80]!r}')
    rows.append(row)
  if not text.rstrip(' \t').endswith('\n'):
    raise ResultFileError(
      f'{path} line {lines[-1][0]}: no newline at its end (the file was cut inside its last '
      f'line), got {lines[-1][1][-80:]!r}'
    )
  return np.asarray(rows, dtype=np.float64).reshape(-1, columns)


class ResultWriter:
  """Writes, finds and reads back the results of one tracker on one benchmark."""

  def __init__(self, out_dir: os.PathLike, layout: str):
    if layout not in LAYOUTS:
      raise ValueError(f'unknown result layout {layout!r}; known: {", ".join(LAYOUTS)}')
    self.out_dir = pathlib.Path(out_dir)
    self.layout = layout

  def paths(self, name: str) -> Tuple[pathlib.Path, pathlib.Path]:
    """(box file, time file) of sequence ``name``, inside ``out_dir``: a name that is a path
    (``..``, absolute, with a separator) raises ``DatasetError`` (the dataset layer refuses
    such names when it reads them; this is the last line of defence)."""
    check_sequence_name(name)
    if self.layout == 'got10k':
      d = self.out_dir / name
      return d / f'{name}_001.txt', d / f'{name}_time.txt'
    return self.out_dir / f'{name}.txt', self.out_dir / f'{name}_time.txt'

  def has_files(self, name: str) -> bool:
    """Whether the box file of ``name`` exists (finished, unless it is damaged)."""
    return self.paths(name)[0].is_file()

  def check(self, name: str, num_frames: int) -> Optional[str]:
    """None when the results of ``name`` are complete for ``num_frames`` frames, else what
    is wrong with which file, in words (e.g. ``out/X.txt has 30 lines, the sequence has 80
    frames``)."""
    box_path, time_path = self.paths(name)
    try:
      read_numbers(box_path, 4, num_frames)
      if self.layout != 'trackingnet' or time_path.exists():
        read_numbers(time_path, 1, num_frames)
    except ResultFileError as e:
      return str(e)
    return None

  def is_done(self, name: str, num_frames: Optional[int] = None) -> bool:
    """Whether ``name`` is finished: its box file exists and, given ``num_frames``, its
    files pass :meth:`check`."""
    if num_frames is None:
      return self.has_files(name)
    return self.check(name, num_frames) is None

  def write(self, name: str, boxes_xywh: np.ndarray, times_s: Sequence[float]) -> None:
    """Writes one finished sequence (time file first, box file last)."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if len(times_s) != len(boxes):
      raise ValueError(f'{name}: {len(boxes)} boxes but {len(times_s)} frame times')
    box_path, time_path = self.paths(name)
    atomic_write_text(time_path, format_times(times_s))
    atomic_write_text(box_path, format_boxes(boxes))

  def read(self, name: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(boxes (N, 4), times (N,) or None) of a finished sequence."""
    box_path, time_path = self.paths(name)
    boxes = read_boxes(box_path)  # comma, tab, space or semicolon separated; NaN allowed
    times = None
    if time_path.is_file():
      times = read_numbers(time_path, 1)[:, 0]
    return boxes, times

  def make_zip(self, names: Sequence[str], zip_path: Optional[os.PathLike] = None) -> pathlib.Path:
    """Packs the results of ``names`` for upload (GOT-10k test server, TrackingNet eval.ai).

    GOT-10k: ``<seq>/<seq>_001.txt`` and ``<seq>/<seq>_time.txt`` at the zip root.
    TrackingNet: ``<seq>.txt`` at the zip root. Others: the box and time files.
    The raw files are kept. Returns the zip path (default ``out/submission.zip``).
    """
    zip_path = pathlib.Path(zip_path) if zip_path else self.out_dir / SUBMISSION_ZIP
    members: List[Tuple[pathlib.Path, str]] = []
    for name in names:
      box_path, time_path = self.paths(name)
      if not box_path.is_file():
        raise FileNotFoundError(f'{name}: no result file {box_path}')
      members.append((box_path, box_path.relative_to(self.out_dir).as_posix()))
      if self.layout != 'trackingnet' and time_path.is_file():
        members.append((time_path, time_path.relative_to(self.out_dir).as_posix()))
    with atomic_path(zip_path) as tmp:
      with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as zf:
        for src, arc in members:
          zf.write(src, arc)
    return zip_path
