"""Which sequences an evaluation tracks and scores: evaluation's own rules over the dataset layer.

The layouts (GOT-10k, LaSOT, TrackingNet, OTB-style, generic folder) are read by
:mod:`ostrack_jax.datasets`, which also holds the record (:class:`~ostrack_jax.datasets.core.Video`:
frame paths, xywh ground truth in image pixels, the visibility labels the metrics need),
:func:`~ostrack_jax.datasets.frames.read_frame` and the names offered for evaluation
(``registry.names('eval')``). What evaluation adds, here:

* which split a benchmark name scores (the registry entry's ``eval`` options: ``lasot`` = the
  280 test sequences, ``trackingnet`` = TEST; ``split`` overrides it);
* that a sequence with a missing frame is not tracked (:func:`check_trackable`);
* that a bad sequence is recorded and the others go on (:func:`load_dataset` with ``errors``),
  as eval.py and compare report them;
* the message for a name that is no evaluation dataset (:func:`check_dataset_name`).

A truncated or corrupt frame is found when it is decoded (``read_frame`` checks the end marker
of the bytes it has read, which costs nothing): its sequence is reported, naming the file, and
skipped; eval.py counts it among the failed sequences of its summary. The result layouts are
:mod:`ostrack_jax.tracking.results`.
"""

import os
from typing import List, Optional, Sequence

from ostrack_jax.common.errors import InputError
from ostrack_jax.datasets import core, registry
from ostrack_jax.datasets.core import DatasetError, Video


def check_dataset_name(name: str) -> None:
  """Raises ``InputError`` listing the evaluation datasets unless ``name`` is one."""
  valid = registry.names('eval')
  if name not in valid:
    raise InputError(f'unknown dataset {name!r}; datasets: {", ".join(valid)}')


def check_trackable(video: Video) -> Video:
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
  sequences: Optional[Sequence[str]] = None,
  split: Optional[str] = None,
  errors: Optional[list] = None,
  root_field: str = '--data-dir',
  sequences_field: str = '--sequences',
) -> List[Video]:
  """The trackable sequences of evaluation dataset ``name`` (``registry.names('eval')``) under
  ``root``.

  ``split`` overrides the entry's split (GOT-10k: val/test/train; TrackingNet: TEST, TRAIN_0,
  ...). With ``errors`` (a list) given, sequences whose files are bad are skipped and recorded
  there as ``(name, message)``; without it the first bad sequence raises
  :class:`DatasetError`. A name that is a path (``..``, absolute, with a separator: see
  :func:`ostrack_jax.datasets.core.check_sequence_name`) is such a bad sequence, named with
  the list file and line it came from, or ``sequences_field`` for ``sequences``. An unknown
  dataset name raises ``UnknownDatasetError`` listing the valid ones, a missing root
  ``MissingRootError`` naming ``root_field``.
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
        out.append(check_trackable(item))
      except DatasetError as e:
        e.context(dataset=name)
        if errors is None:
          raise
        errors.append((e.sequence, str(e)))
  except DatasetError as e:
    e.context(dataset=name)
    raise
  return out
