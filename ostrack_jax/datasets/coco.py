"""COCO 2017 layout: an image dataset read as one-frame videos (one per object).

``root/annotations/instances_<split>.json`` and ``root/<split>/<file_name>``. Every non-crowd
instance annotation is a pseudo-sequence named by its annotation id, of one frame with its
``bbox`` (xywh pixels) and the image's size.

Options: ``split`` ('train2017').
"""

import json
import pathlib
from typing import Iterator, List, Union

import numpy as np

from ostrack_jax.datasets import core


class Coco(core.Layout):
  """The COCO layout (see the module docstring)."""

  name = 'coco'

  def _annotations(self, root: pathlib.Path, split: str) -> pathlib.Path:
    path = root / 'annotations' / f'instances_{split}.json'
    if not path.is_file():
      raise core.DatasetError('annotation file not found', path=path, reason='no annotation file')
    return path

  def _load(self, root: pathlib.Path, split: str) -> dict:
    path = self._annotations(root, split)
    try:
      with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)
    except (OSError, ValueError) as e:
      raise core.DatasetError(
        f'cannot read: {e}', path=path, reason='unreadable annotations'
      ) from e

  def sequence_names(self, root: pathlib.Path, split: str = 'train2017') -> List[str]:
    return [str(a.get('id')) for a in self._load(root, split).get('annotations', [])]

  def read(
    self, root: pathlib.Path, names=None, split: str = 'train2017'
  ) -> Iterator[Union[core.Video, core.DatasetError]]:
    data = self._load(root, split)
    images = {im['id']: im for im in data.get('images', [])}
    annotations = data.get('annotations', [])
    if names is None:
      items = ((str(a.get('id')), a) for a in annotations)
    else:
      by_id = {str(a.get('id')): a for a in annotations}
      items = ((n, by_id.get(n)) for n in names)
    folder = str(root / split)
    for name, ann in items:
      try:
        core.check_sequence_name(name)
      except core.DatasetError as e:
        yield e
        continue
      if ann is None:
        yield core.DatasetError('no such annotation id', sequence=name, reason='unknown id')
        continue
      if ann.get('iscrowd', 0):
        yield core.DatasetError('crowd annotation', sequence=name, reason='crowd annotation')
        continue
      im = images.get(ann.get('image_id'))
      if im is None:
        yield core.DatasetError(
          f'image id {ann.get("image_id")} is not in the images list',
          sequence=name,
          reason='annotation of an unknown image id',
        )
        continue
      box = np.asarray(ann.get('bbox', [np.nan] * 4), np.float64).reshape(1, 4)
      size = (int(im['width']), int(im['height'])) if 'width' in im and 'height' in im else None
      yield core.Video(
        name, core.FramePaths(folder, [im['file_name']]), box, image_size=size, dataset='coco'
      )

  def read_sequence(self, root: pathlib.Path, name: str, split: str = 'train2017') -> core.Video:
    item = next(self.read(root, [name], split=split))
    if isinstance(item, core.DatasetError):
      raise item
    return item

  def stamp_files(self, root: pathlib.Path, split: str = 'train2017'):
    return [self._annotations(root, split)]


LAYOUT = Coco()
