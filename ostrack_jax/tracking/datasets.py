"""Benchmark sequences for evaluation, read through the dataset layer (NumPy and OpenCV only).

The layouts (GOT-10k, LaSOT, TrackingNet, OTB-style, generic folder) are read by
:mod:`ostrack_jax.datasets` and named in :mod:`ostrack_jax.datasets.registry` (the names
offered for evaluation: :data:`DATASETS`); the record is
:class:`ostrack_jax.datasets.core.Video` (here also called ``Sequence``): frame paths,
ground truth (xywh, image pixels, float64; test splits have only the first row), the
visibility labels the metrics need, the image size when the dataset states it. Nothing is
decoded until :func:`read_frame` is called.

What is evaluation's own here: which split a name scores (``lasot`` = the 280 test sequences,
``trackingnet`` = TEST), and that a sequence with a missing frame is not tracked. Bad input
raises :class:`DatasetError` naming the dataset, sequence, file and line; with ``errors``
given, :func:`load_dataset` records a bad sequence there and goes on.

A truncated or corrupt frame is found when it is decoded (:func:`read_frame` checks the end
marker of the bytes it has read, which costs nothing): its sequence is reported, naming the
file, and skipped; eval.py counts it among the failed sequences of its summary.
"""

import os
import pathlib
from typing import List, Optional, Sequence as Seq

from ostrack_jax.datasets import core, folder, got10k, registry
from ostrack_jax.datasets.core import (  # noqa: F401  (re-exported: the evaluation API)
  IMAGE_EXTENSIONS,
  DatasetError,
  FrameError,
  MissingRootError,
  UnknownDatasetError,
  Video,
  read_frame,
  to_rgb,
)
from ostrack_jax.datasets.otb import OTB_FRAME_RANGES, OTB_INIT_OMIT  # noqa: F401

Sequence = Video
DATASETS = registry.Names('eval')  # a live view: datasets registered later are included


def read_boxes(path: os.PathLike, sequence: str = '', allow_nan: bool = True):
  """(N >= 1, 4) xywh boxes of a ground-truth or result file (comma, tab or space separated);
  raises :class:`DatasetError` naming the file and line."""
  try:
    return core.read_boxes(path, allow_nan=allow_nan)
  except DatasetError as e:
    e.context(sequence=sequence)
    raise


def check_sequence(video: Video) -> Video:
  """``video`` if it can be tracked: every frame file exists (else DatasetError naming the
  first missing one)."""
  missing = video.missing_frames()
  if missing:
    raise DatasetError(
      f'frame {os.path.basename(missing[0])} is missing (frame numbers jump)'
      + (f'; {len(missing)} missing in all' if len(missing) > 1 else ''),
      sequence=video.name,
      path=os.path.dirname(missing[0]),
      reason='frame missing',
    )
  return video


def load_dataset(
  name: str,
  root: os.PathLike,
  sequences: Optional[Seq[str]] = None,
  split: Optional[str] = None,
  errors: Optional[list] = None,
  root_field: str = '--data-dir',
  sequences_field: str = '--sequences',
) -> List[Video]:
  """Sequences of benchmark ``name`` (one of :data:`DATASETS`) under ``root``.

  ``split`` overrides the entry's split (GOT-10k: val/test/train; TrackingNet: TEST, TRAIN_0,
  ...). With ``errors`` (a list) given, sequences whose files are bad are skipped and recorded
  there as ``(name, message)``; without it the first bad sequence raises
  :class:`DatasetError`. A name that is a path (``..``, absolute, with a separator: see
  :func:`ostrack_jax.datasets.core.check_sequence_name`) is such a bad sequence, named with
  the list file and line it came from, or ``sequences_field`` for ``sequences``. An unknown
  dataset name raises :class:`UnknownDatasetError` listing the valid ones, a missing root
  :class:`MissingRootError` naming ``root_field``.
  """
  entry = registry.get(name, 'eval')
  path = registry.resolve_root(entry, root, root_field)
  options = entry.options('eval')
  if split:
    options['split'] = split
  try:
    names = [core.ListedName(n, sequences_field) for n in sequences] if sequences else None
    out = []
    for item in entry.layout.read(path, names, **options):
      try:
        if isinstance(item, DatasetError):
          raise item
        out.append(check_sequence(item))
      except DatasetError as e:
        e.context(dataset=name)
        if errors is None:
          raise
        errors.append((e.sequence, str(e)))
  except DatasetError as e:
    e.context(dataset=name)
    raise
  return out


# ------------------------------------------------------------------------------ by layout
def load_got10k_sequence(
  seq_dir: os.PathLike, name: Optional[str] = None, allow_first_only: bool = True
) -> Video:
  """One GOT-10k-layout sequence folder."""
  return check_sequence(got10k.read_sequence_folder(pathlib.Path(seq_dir), name, allow_first_only))


def load_folder_sequence(seq_dir: os.PathLike, name: Optional[str] = None) -> Video:
  """One folder of frames with a ground-truth file (only the first box is required)."""
  return check_sequence(folder.read_sequence_folder(pathlib.Path(seq_dir), name))


def load_got10k(root, split: str = 'val', sequences=None, errors=None) -> List[Video]:
  """GOT-10k ``val``, ``test`` or ``train`` (also any GOT-10k-layout folder of sequences)."""
  return load_dataset(f'got10k_{split}', root, sequences, split, errors)


def load_lasot(root, sequences=None, errors=None) -> List[Video]:
  """LaSOT (the 280 test sequences of ``testing_set.txt`` when it exists, else all)."""
  return load_dataset('lasot', root, sequences, None, errors)


def load_trackingnet(root, split: str = 'TEST', sequences=None, errors=None) -> List[Video]:
  """TrackingNet ``TEST`` (first box only) or a ``TRAIN_<k>`` chunk (full annotations)."""
  return load_dataset('trackingnet', root, sequences, split, errors)


def load_otb(root, sequences=None, errors=None) -> List[Video]:
  """OTB-style folders: ``<Seq>/img/*.jpg`` + ``groundtruth_rect[.k].txt``."""
  return load_dataset('otb', root, sequences, None, errors)


def load_folder(root, sequences=None, errors=None) -> List[Video]:
  """A folder of sequence folders, or a single sequence folder."""
  return load_dataset('folder', root, sequences, None, errors)
