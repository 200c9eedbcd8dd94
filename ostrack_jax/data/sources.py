"""Training data sources: what the dataset layer reads, as the sampler's sequence table.

NumPy / OpenCV / PIL only (grain workers import this without JAX).

The layouts (GOT-10k, LaSOT, TrackingNet, COCO, generic folder, synthetic) are read by
:mod:`ostrack_jax.datasets` and named in :mod:`ostrack_jax.datasets.registry`; this module
keeps what is training's own:

* the *visibility rule* (the original's sampler): a frame may be sampled when the dataset's
  labels say the target is visible (GOT-10k: not absent; LaSOT: not fully occluded, not out of
  view; folder: not in ``absence.label``), GOT-10k's cover label is > 0, the box is finite with
  w > 0 and h > 0, and its image file exists and is intact (the end of every such file is
  checked when the index is built: a truncated JPEG or PNG is never sampled);
* building the table (:class:`~ostrack_jax.data.index.SequenceTable`) and its report
  (:class:`~ostrack_jax.data.index.IndexReport`: what was skipped and why, with counts) through
  the index cache (:mod:`ostrack_jax.data.index`: memory-mapped ``.npy`` files shared by the
  grain workers) into an :class:`~ostrack_jax.data.index.Source`;
* :func:`open_source` (a registered dataset under a root) and :func:`make_source` (the source
  named in ``config.data.train_datasets`` / ``val_datasets``).

Sequences need >= 20 frames with >= 5 visible ones to be drawn (as the original's sampler).
COCO is an image dataset: one pseudo-sequence of one frame per non-crowd annotation.
"""

import concurrent.futures
import json
import os
import pathlib
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from ostrack_jax.data import index, packed, transforms
from ostrack_jax.data.index import IndexReport, Source, TableRow
from ostrack_jax.datasets import core, frames, registry

_VERIFY_THREADS = 16
_PROBE_FILES = 500  # frame files checked on one thread before deciding whether the disk is slow
_SLOW_CHECK_S = 100e-6


def _image_size(path: str) -> Optional[Tuple[int, int]]:
  try:
    with open(path, 'rb') as f:
      return transforms.image_size(transforms.Frame(f.read(), str(path)))
  except (OSError, transforms.BadSample):
    return None


class _Candidate:
  """A video on its way into the table: the row, and which frames are still to be checked."""

  __slots__ = ('video', 'row', 'folder', 'checkable', 'problems')

  def __init__(self, video, row, folder, checkable):
    self.video, self.row, self.folder, self.checkable = video, row, folder, checkable
    self.problems = None


def _relative(folder: str, frame_root: str, memo: Dict[str, str]) -> str:
  rel = memo.get(folder)
  if rel is None:
    rel = memo[folder] = os.path.relpath(folder, frame_root)
  return rel


def _candidate(
  report: IndexReport, video: core.Video, frame_root: str, memo: Dict[str, str]
) -> Optional[_Candidate]:
  """The training rule applied to one video (before its frame files are checked)."""
  n = len(video.frames)
  boxes = np.asarray(video.gt_xywh, np.float64).reshape(-1, 4)
  if len(boxes) != n:
    report.skip('only the first box is annotated (a test split?)', video.name)
    return None
  paths = video.frames
  if isinstance(paths, core.FramePaths):
    folder, names = paths.folder, list(paths.names)
  else:
    folder = os.path.dirname(paths[0])
    names = [f[len(folder) + 1 :] if folder else f for f in paths]
    if any(os.path.dirname(f) != folder for f in paths):
      folder, names = frame_root, [os.path.relpath(f, frame_root) for f in paths]
  present = video.present_mask()
  good_box = np.all(np.isfinite(boxes), axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
  visible = present & good_box
  report.frames('image file missing', int(np.sum(~present)), video.name)
  report.frames('zero-size or NaN box', int(np.sum(~good_box & present)), video.name)
  if video.visible is not None:
    hidden = ~np.asarray(video.visible, bool)
    report.frames(
      'target labelled not visible (absent, occluded or out of view)',
      int(np.sum(hidden & present)),
      video.name,
    )
    visible &= ~hidden
  if video.cover is not None:
    covered = np.asarray(video.cover) <= 0
    report.frames(
      'cover.label 0 (target fully covered)', int(np.sum(covered & present)), video.name
    )
    visible &= ~covered
  row = TableRow(
    video.name, _relative(folder, frame_root, memo), names, boxes, visible, video.image_size
  )
  return _Candidate(video, row, folder, np.flatnonzero(visible))


def _check_frames(candidate: _Candidate, memo: Optional[dict] = None) -> List[Tuple[int, str]]:
  """(frame index, problem) of the candidate's sampleable frames whose file is not intact."""
  out = []
  folder, names = candidate.folder, candidate.row.frame_names
  for i in candidate.checkable:
    path = os.path.join(folder, names[i])
    if memo is not None:
      if path not in memo:
        memo[path] = frames.check_image_file(path)
      problem = memo[path]
    else:
      problem = frames.check_image_file(path)
    if problem:
      out.append((int(i), problem))
  return out


def _verify(candidates: List[_Candidate], shared_files: bool) -> None:
  """Checks every sampleable frame file of the candidates (their first and last bytes; see
  :func:`ostrack_jax.datasets.frames.check_image_file`).

  On one thread (about 5 us a file from a local disk, where threads only contend for the GIL),
  unless the first files show a slow disk (over :data:`_SLOW_CHECK_S` each, as on a network
  file system): then the rest are checked on :data:`_VERIFY_THREADS` threads, whose reads
  overlap.
  """
  memo = {} if shared_files else None  # COCO: one image serves several objects
  checked, start, i = 0, time.perf_counter(), 0
  while i < len(candidates) and checked < _PROBE_FILES:
    candidates[i].problems = _check_frames(candidates[i], memo)
    checked += len(candidates[i].checkable)
    i += 1
  rest = candidates[i:]
  slow = checked and (time.perf_counter() - start) / checked > _SLOW_CHECK_S
  if not rest or not slow or shared_files:
    for c in rest:
      c.problems = _check_frames(c, memo)
    return
  with concurrent.futures.ThreadPoolExecutor(_VERIFY_THREADS) as pool:
    for c, problems in zip(rest, pool.map(_check_frames, rest, chunksize=16), strict=True):
      c.problems = problems


def _finish(report: IndexReport, candidate: _Candidate, frame_size: str) -> Optional[TableRow]:
  row = candidate.row
  for i, problem in candidate.problems or ():
    row.visible[i] = False
    report.frames(
      'image file truncated or corrupt',
      1,
      f'{os.path.join(candidate.folder, row.frame_names[i])} ({problem})',
    )
  if not row.visible.any():
    report.skip('no visible frame', row.name)
    return None
  if frame_size == 'uniform':  # one size per video: read one header
    first = int(np.argmax(row.visible))
    row.image_size = _image_size(os.path.join(candidate.folder, row.frame_names[first]))
  elif frame_size == 'check':  # read the first and last headers; differing sizes: per frame
    names = row.frame_names
    size = _image_size(os.path.join(candidate.folder, names[0]))
    one_format = len({os.path.splitext(f)[1].lower() for f in names}) == 1
    same = _image_size(os.path.join(candidate.folder, names[-1])) == size
    row.image_size = size if one_format and same else None
  report.sequences_kept += 1
  report.frames_kept += len(row.frame_names)
  return row


def build_rows(
  name: str,
  layout: core.Layout,
  root: pathlib.Path,
  options: Dict,
  *,
  verify_frames: bool = True,
  is_video: bool = True,
) -> Tuple[List[TableRow], IndexReport]:
  """Reads every sequence of ``layout`` under ``root`` into table rows, with the report."""
  report = IndexReport(name)
  frame_root = str(layout.frame_root(root, **options))
  memo: Dict[str, str] = {}
  candidates = []
  for item in layout.read(root, None, **options):
    report.sequences_found += 1
    if isinstance(item, core.DatasetError):
      report.skip(item.reason, item.sequence or str(item))
      continue
    c = _candidate(report, item, frame_root, memo)
    if c is not None:
      candidates.append(c)
  if not report.sequences_found:
    report.skip('empty dataset folder (no sequences listed or found)', str(root))
  if verify_frames:
    _verify(candidates, shared_files=not is_video)
  rows = [r for r in (_finish(report, c, layout.frame_size) for c in candidates) if r]
  return rows, report


def build_source(
  name: str,
  layout: core.Layout,
  root,
  options: Optional[Dict] = None,
  *,
  cache_dir='default',
  is_video: bool = True,
  verify_frames: bool = True,
) -> Source:
  """The training source of ``layout`` under ``root`` (an existing folder), from the cached
  index when its annotation files did not change."""
  root = pathlib.Path(root).expanduser()
  options = dict(options or {})
  try:
    stamps = layout.stamp_files(root, **options)
    extra = json.dumps([name, sorted(options.items()), bool(verify_frames)], default=str)
    path = index.cache_path(cache_dir, layout.name, root, extra, stamps)
    table, report = index.cached(
      path,
      lambda: build_rows(
        name, layout, root, options, verify_frames=verify_frames, is_video=is_video
      ),
    )
  except core.DatasetError as e:
    e.context(dataset=name)
    raise
  return Source(name, str(layout.frame_root(root, **options)), table, report, is_video=is_video)


def open_source(
  dataset: str,
  root,
  *,
  cache_dir='default',
  split_file: Optional[str] = None,
  root_field: str = '--root',
  name: Optional[str] = None,
  verify_frames: bool = True,
  **options,
) -> Source:
  """The source of registered training dataset ``dataset`` under ``root``.

  ``root_field`` names where the root came from in errors; ``options`` override the
  registry's layout options (e.g. ``split``).
  """
  entry = registry.get(dataset, 'train')
  path = registry.resolve_root(entry, root, root_field)
  opts = entry.options('train')
  opts.update(options)
  if split_file:
    opts['split_file'] = str(split_file)
  elif entry.split_file_required:
    raise core.DatasetError(
      f'needs the list of its sequences: set config.data.split_files.{dataset} to a file of '
      'sequence names or 0-based indices into train/list.txt, or use got10k_train_full',
      dataset=dataset,
      reason='split file missing',
    )
  return build_source(
    name or dataset,
    entry.layout,
    path,
    opts,
    cache_dir=cache_dir,
    is_video=entry.is_video,
    verify_frames=verify_frames,
  )


def make_source(dataset: str, data_config, cache_dir='default') -> Source:
  """The source named in ``config.data.train_datasets`` / ``val_datasets``.

  Names: :func:`ostrack_jax.datasets.registry.names` ``('train')`` (got10k_train_full,
  got10k_vottrain, got10k_votval, got10k_val, lasot, trackingnet, coco, folder, synthetic,
  synthetic_val, and any registered later); an unknown one raises
  :class:`~ostrack_jax.datasets.core.UnknownDatasetError` (a ValueError) listing them. The root
  is ``data_config.roots.<root field>`` (a missing one raises
  :class:`~ostrack_jax.datasets.core.MissingRootError`, a FileNotFoundError naming the field);
  ``synthetic`` uses ``data_config.roots.synthetic`` or, when empty, the default synthetic
  dataset (generated on first use). With ``data_config.packed`` the source is read from
  ``<packed_dir>/<dataset>`` written by ``python -m ostrack_jax.data.pack``.
  ``data_config.verify_frames`` (default True) checks every frame file's end when the index
  is built.
  """
  entry = registry.get(dataset, 'train')
  if data_config.get('packed', False):
    return packed.packed_source_for(dataset, data_config)
  roots = data_config.roots
  split_files = data_config.get('split_files', None) or {}
  split_file = split_files.get(entry.split_file, '') if entry.split_file else ''
  return open_source(
    dataset,
    roots.get(entry.root_key, ''),
    cache_dir=cache_dir,
    split_file=split_file or None,
    root_field=f'config.data.roots.{entry.root_key}',
    verify_frames=bool(data_config.get('verify_frames', True)),
  )
