"""TrackingNet layout.

``root/<chunk>/anno/<seq>.txt`` (x,y,w,h per line; only the first line in ``TEST``) and
``root/<chunk>/frames/<seq>/0.jpg, 1.jpg ...`` (numbered from 0, not zero-padded).

Options: ``split``: a chunk folder ('TEST', 'TRAIN_0' ... 'TRAIN_11'; ``root`` may be the
chunk folder itself) or 'TRAIN': every ``TRAIN_<k>`` chunk present, whose sequences are named
``TRAIN_<k>/<seq>`` internally (reports show ``<seq>``); ``chunks`` (indices) limits 'TRAIN'
to some of them.
"""

import logging
import pathlib
import re
from typing import List, Tuple

from ostrack_jax.datasets import core

_TRAIN_CHUNK = re.compile(r'TRAIN_\d+')


def _chunks(root: pathlib.Path, split: str, chunks=None) -> List[pathlib.Path]:
  if split != 'TRAIN':
    return [root / split if (root / split).is_dir() else root]
  dirs = [root / f'TRAIN_{k}' for k in (range(12) if chunks is None else chunks)]
  present = [d for d in dirs if d.is_dir()]
  if not present:
    raise core.DatasetError(
      f'none of the chunk folders exist (e.g. {dirs[0].name})', path=root, reason='no chunk folders'
    )
  if len(present) < len(dirs):
    logging.warning('trackingnet: %d of %d chunk folders in %s', len(present), len(dirs), root)
  return present


class TrackingNet(core.Layout):
  """The TrackingNet layout (see the module docstring)."""

  name = 'trackingnet'

  def _where(self, root: pathlib.Path, name: str, split: str) -> Tuple[pathlib.Path, str]:
    """(chunk folder, sequence name) of an internal name."""
    if '/' in name:
      chunk, seq = name.split('/', 1)
      return root / chunk, seq
    return _chunks(root, split)[0] if split != 'TRAIN' else root, name

  def check_name(self, name: str) -> None:
    """A plain name; in the 'TRAIN' split's internal ``TRAIN_<k>/<seq>`` names, ``<seq>``."""
    chunk, _, seq = str(name).partition('/')
    core.check_sequence_name(seq if _TRAIN_CHUNK.fullmatch(chunk) and seq else name)

  def sequence_names(self, root: pathlib.Path, split: str = 'TEST', chunks=None) -> List[str]:
    names = []
    for chunk in _chunks(root, split, chunks):
      anno = chunk / 'anno'
      if not anno.is_dir():
        if split != 'TRAIN':
          raise core.DatasetError(
            'annotation folder does not exist', path=anno, reason='no anno folder'
          )
        continue
      stems = sorted((p.stem for p in anno.iterdir() if p.suffix == '.txt'), key=core.natural_key)
      names += [f'{chunk.name}/{s}' for s in stems] if split == 'TRAIN' else stems
    return names

  def read_sequence(
    self, root: pathlib.Path, name: str, split: str = 'TEST', chunks=None
  ) -> core.Video:
    del chunks
    chunk, seq = self._where(root, name, split)
    gt_path = chunk / 'anno' / f'{seq}.txt'
    gt = core.read_boxes(gt_path)
    folder = chunk / 'frames' / seq
    names, present = core.numbered_frames(folder, 0, 0)
    if not names:
      raise core.DatasetError('no frames found', sequence=seq, path=folder, reason='no frames')
    if len(gt) > len(names):
      names, present = core.numbered_frames(folder, len(gt), 0)
    core.check_frame_count(seq, len(names), gt, gt_path, allow_first_only=True)
    return core.Video(
      seq,
      core.FramePaths(folder, names),
      gt,
      dataset='trackingnet',
      present=present,
      gt_file=str(gt_path),
    )

  def stamp_files(self, root: pathlib.Path, split: str = 'TEST', chunks=None):
    out = []
    for n in self.sequence_names(root, split, chunks):
      chunk, seq = self._where(root, n, split)
      out.append(chunk / 'anno' / f'{seq}.txt')
    return out


LAYOUT = TrackingNet()
