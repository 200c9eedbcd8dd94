"""LaSOT layout.

``root/<class>/<class>-<k>/img/00000001.jpg ...`` (numbered from 1), ``groundtruth.txt``
(x,y,w,h per line), ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated 0/1
line). A frame is *visible* when it is neither fully occluded nor out of view.

Options: ``split``: 'test' (the sequences of ``root/testing_set.txt``; all when it is absent),
'train' (``split_file`` if given, else ``root/training_set.txt``, else every sequence not in
``testing_set.txt``) or 'all'.
"""

import logging
import os
import pathlib
from typing import List, Optional

from ostrack_jax.datasets import core

_FLAGS = ('full_occlusion.txt', 'out_of_view.txt')


def _class_of(name: str) -> str:
  return name.rsplit('-', 1)[0]


class Lasot(core.Layout):
  """The LaSOT layout (see the module docstring)."""

  name = 'lasot'

  def all_names(self, root: pathlib.Path) -> List[str]:
    return [
      s.name
      for c in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name)
      for s in sorted(c.iterdir(), key=lambda d: core.natural_key(d.name))
      if s.is_dir() and (s / 'groundtruth.txt').is_file()
    ]

  def sequence_names(
    self, root: pathlib.Path, split: str = 'test', split_file: Optional[str] = None
  ) -> List[str]:
    test_file = root / 'testing_set.txt'
    if split == 'test':
      return core.read_name_list(test_file) if test_file.is_file() else self.all_names(root)
    if split == 'all':
      return self.all_names(root)
    if split != 'train':
      raise core.DatasetError(
        f"unknown LaSOT split {split!r} (use 'train', 'test' or 'all')", reason='bad split'
      )
    list_file = pathlib.Path(split_file).expanduser() if split_file else root / 'training_set.txt'
    if list_file.is_file():
      return core.read_name_list(list_file)
    if split_file:
      raise core.DatasetError('split file not found', path=list_file, reason='split file missing')
    test = set(core.read_name_list(test_file)) if test_file.is_file() else set()
    names = self.all_names(root)
    if not test:
      logging.warning(
        'lasot: no training_set.txt or testing_set.txt in %s: using all %d sequences',
        root,
        len(names),
      )
    return [n for n in names if n not in test]

  def read_sequence(self, root: pathlib.Path, name: str, **options) -> core.Video:
    del options
    seq_dir = root / _class_of(name) / name
    if not seq_dir.is_dir():
      raise core.DatasetError(
        f'folder {seq_dir} does not exist', sequence=name, reason='sequence folder missing'
      )
    gt_path = seq_dir / 'groundtruth.txt'
    gt = core.read_boxes(gt_path)
    img = seq_dir / 'img'
    names, present = core.numbered_frames(img, 0, 1)
    if not names:
      raise core.DatasetError('no frames found', sequence=name, path=img, reason='no frames')
    if len(gt) > len(names):
      names, present = core.numbered_frames(img, len(gt), 1)
    core.check_frame_count(name, len(names), gt, gt_path, allow_first_only=False)
    visible = None
    for flag_file in _FLAGS:
      path = seq_dir / flag_file
      if not os.path.exists(path):
        raise core.DatasetError(f'{flag_file} missing', path=path, reason=f'{flag_file} missing')
      hidden = core.read_labels(path, len(names)) != 0
      visible = ~hidden if visible is None else visible & ~hidden
    return core.Video(
      name,
      core.FramePaths(img, names),
      gt,
      visible=visible,
      dataset='lasot',
      present=present,
      gt_file=str(gt_path),
    )

  def stamp_files(self, root: pathlib.Path, split: str = 'test', split_file=None):
    names = self.sequence_names(root, split, split_file)
    stamps = [root / 'testing_set.txt', root / 'training_set.txt']
    stamps += [pathlib.Path(split_file)] if split_file else []
    return stamps + [
      root / _class_of(n) / n / f for n in names for f in ('groundtruth.txt',) + _FLAGS
    ]


LAYOUT = Lasot()
