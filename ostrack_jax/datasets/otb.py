"""OTB-style layout.

``root/<Seq>/img/0001.jpg ...`` (natural order) and ``groundtruth_rect.txt`` (comma, tab or
space separated); ``groundtruth_rect.<k>.txt`` gives the sequences ``<Seq>_<k>`` (several
targets in one video). The OTB-100 sequences annotated on part of their frames, and those whose
first frames are skipped, follow the sequence table of pytracking / OSTrack's OTB reader.
"""

import pathlib
import re
from typing import List

from ostrack_jax.datasets import core

# (first, last) annotated frame numbers (1-based, inclusive) where the annotation covers only
# part of the image folder, and the number of leading frames (and boxes) skipped.
OTB_FRAME_RANGES = {
  'BlurCar1': (247, 988),
  'BlurCar3': (3, 359),
  'BlurCar4': (18, 397),
  'David': (300, 770),
}
OTB_INIT_OMIT = {'Tiger1': 5}
_GT = re.compile(r'groundtruth_rect(?:\.(\d+))?\.txt')


class Otb(core.Layout):
  """The OTB layout (see the module docstring)."""

  name = 'otb'

  def sequence_names(self, root: pathlib.Path) -> List[str]:
    names = []
    for seq_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
      for gt in sorted(
        seq_dir.glob('groundtruth_rect*.txt'), key=lambda p: core.natural_key(p.name)
      ):
        m = _GT.fullmatch(gt.name)
        if m:
          names.append(f'{seq_dir.name}_{m.group(1)}' if m.group(1) else seq_dir.name)
    return names

  def _files(self, root: pathlib.Path, name: str):
    if (root / name / 'groundtruth_rect.txt').is_file():
      return root / name, root / name / 'groundtruth_rect.txt'
    folder, _, k = name.rpartition('_')
    if folder and k.isdigit() and (root / folder / f'groundtruth_rect.{k}.txt').is_file():
      return root / folder, root / folder / f'groundtruth_rect.{k}.txt'
    raise core.DatasetError(
      f'no folder with a groundtruth_rect file for it in {root}',
      sequence=name,
      reason='sequence folder missing',
    )

  def read_sequence(self, root: pathlib.Path, name: str) -> core.Video:
    seq_dir, gt_path = self._files(root, name)
    gt = core.read_boxes(gt_path)
    img = seq_dir / 'img'
    names, present = core.sequence_frames(img)
    if seq_dir.name in OTB_FRAME_RANGES and len(names) != len(gt):
      first, last = OTB_FRAME_RANGES[seq_dir.name]
      names = names[first - 1 : last]
      present = present[first - 1 : last] if present is not None else None
    core.check_frame_count(name, len(names), gt, gt_path, allow_first_only=False)
    omit = OTB_INIT_OMIT.get(seq_dir.name, 0)
    if omit:
      names, gt = names[omit:], gt[omit:]
      present = present[omit:] if present is not None else None
    return core.Video(
      name,
      core.FramePaths(img, names),
      gt,
      dataset='otb',
      present=present,
      gt_file=str(gt_path),
    )

  def stamp_files(self, root: pathlib.Path):
    return [self._files(root, n)[1] for n in self.sequence_names(root)]


LAYOUT = Otb()
