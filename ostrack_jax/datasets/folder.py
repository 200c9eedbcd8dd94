"""Generic folder layout: your own videos.

``root/<seq>/`` holds the frames (directly or in ``img/``; any of the image extensions, in
natural order: ``frame2.jpg`` before ``frame10.jpg``; when every name is a number a gap is a
missing frame) and one ground-truth file, ``groundtruth.txt``, ``groundtruth_rect.txt`` or
``gt.txt`` (x,y,w,h per frame, comma, space or tab separated; evaluation needs only the first
line), and optionally ``absence.label`` (1 = target absent). ``root/list.txt`` names the
sequences; without it every sub-folder with frames or a ground-truth file is one. A ``root``
that holds frames itself is a single sequence.
"""

import os
import pathlib
from typing import List, Optional, Tuple

from ostrack_jax.datasets import core

GT_NAMES = ('groundtruth.txt', 'groundtruth_rect.txt', 'gt.txt')


def _frames(seq_dir: pathlib.Path) -> Tuple[pathlib.Path, List[str]]:
  names = core.list_images(seq_dir)
  if names:
    return seq_dir, names
  return seq_dir / 'img', core.list_images(seq_dir / 'img')


def _read_folder(
  seq_dir: pathlib.Path, name: Optional[str] = None, allow_first_only: bool = True
) -> core.Video:
  """One folder of frames with a ground-truth file as a :class:`~ostrack_jax.datasets.core.Video`."""
  seq_dir = pathlib.Path(seq_dir)
  name = name or seq_dir.name
  if not seq_dir.is_dir():
    raise core.DatasetError(
      f'folder {seq_dir} does not exist', sequence=name, reason='sequence folder missing'
    )
  gt_path = next((seq_dir / g for g in GT_NAMES if (seq_dir / g).is_file()), None)
  if gt_path is None:
    raise core.DatasetError(
      f'no ground-truth file ({", ".join(GT_NAMES)}) in {seq_dir}',
      sequence=name,
      reason='groundtruth.txt missing',
    )
  gt = core.read_boxes(gt_path)
  folder, listing = _frames(seq_dir)
  names, present = core.sequence_frames(folder, listing)
  if present is not None and len(gt) > len(names):  # numbered frames missing at the end
    names, present = core.numbered_frames(
      folder, len(gt), int(os.path.splitext(names[0])[0]), listing
    )
  full = core.check_frame_count(name, len(names), gt, gt_path, allow_first_only)
  visible = None
  if full and (seq_dir / 'absence.label').is_file():
    visible = core.read_labels(seq_dir / 'absence.label', len(names)) == 0
  return core.Video(
    name,
    core.FramePaths(folder, names),
    gt,
    visible=visible,
    dataset='folder',
    present=present,
    gt_file=str(gt_path),
  )


def read_sequence_folder(
  seq_dir: pathlib.Path, name: Optional[str] = None, allow_first_only: bool = True
) -> core.Video:
  """One sequence folder as a :class:`~ostrack_jax.datasets.core.Video`; a DatasetError names
  the sequence."""
  return core.read_named_folder(_read_folder, seq_dir, name, allow_first_only)


class Folder(core.Layout):
  """The generic folder layout (see the module docstring)."""

  name = 'folder'
  frame_size = 'check'

  def single(self, root: pathlib.Path) -> bool:
    """Whether ``root`` is itself one sequence (it holds frames)."""
    return bool(_frames(root)[1])

  def sequence_names(self, root: pathlib.Path) -> List[str]:
    if self.single(root):
      return ['.']
    if (root / 'list.txt').is_file():
      return core.read_name_list(root / 'list.txt')
    return sorted(
      (
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not d.name.startswith('.')
        and (any((d / g).is_file() for g in GT_NAMES) or _frames(d)[1])
      ),
      key=core.natural_key,
    )

  def check_name(self, name: str) -> None:
    if name != '.':  # '.': the root itself is the sequence (named after the root folder)
      core.check_sequence_name(name)

  def read_sequence(self, root: pathlib.Path, name: str) -> core.Video:
    if name == '.' or (name == root.resolve().name and self.single(root)):
      return read_sequence_folder(root, root.resolve().name)
    return read_sequence_folder(root / name, name)

  def stamp_files(self, root: pathlib.Path):
    stamps = [root / 'list.txt']
    for n in self.sequence_names(root):
      stamps += [root / n / f for f in GT_NAMES + ('absence.label',)]
    return stamps


LAYOUT = Folder()
