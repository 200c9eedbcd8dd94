"""GOT-10k layout (also the synthetic dataset's, and any folder of GOT-10k-style sequences).

``root/<split>/list.txt`` (or, without it, every sub-folder) names the sequences; per sequence
``root/<split>/<seq>/00000001.jpg ...`` (numbered from 1), ``groundtruth.txt`` (x,y,w,h per
line; only the first line in the test split), and optionally ``absence.label`` (1 = target
absent), ``cover.label`` (0-8: visible fraction in eighths) and ``meta_info.ini``
(``resolution: (W, H)``). ``root`` may also be the split folder itself.

Options: ``split`` ('train', 'val', 'test'); ``split_file``: a subset, one sequence name per
line or 0-based indices into ``list.txt`` (the form of the VOT-permitted lists
``got10k_vot_train_split.txt`` / ``got10k_vot_val_split.txt``).
"""

import os
import pathlib
import re
from typing import List, Optional, Tuple

from ostrack_jax.datasets import core

_RESOLUTION = re.compile(r'^\s*resolution\s*[:=]\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)', re.M | re.I)
_LABELS = ('groundtruth.txt', 'absence.label', 'cover.label')


def split_dir(root: pathlib.Path, split: str) -> pathlib.Path:
  """``root/<split>``, or ``root`` itself when it is the split folder."""
  return root / split if (root / split).is_dir() else root


def read_resolution(meta: pathlib.Path) -> Optional[Tuple[int, int]]:
  """``resolution: (W, H)`` from meta_info.ini (with or without its [METAINFO] header)."""
  try:
    text = meta.read_text(encoding='utf-8', errors='replace')
  except OSError as e:
    raise core.DatasetError(
      f'cannot read: {e}', path=meta, reason='unreadable meta_info.ini'
    ) from e
  m = _RESOLUTION.search(text)
  return (int(m.group(1)), int(m.group(2))) if m else None


def _read_folder(
  seq_dir: pathlib.Path, name: Optional[str] = None, allow_first_only: bool = True
) -> core.Video:
  """One GOT-10k-layout sequence folder as a :class:`~ostrack_jax.datasets.core.Video`."""
  seq_dir = pathlib.Path(seq_dir)
  name = name or seq_dir.name
  try:
    listing = os.listdir(seq_dir)
  except (FileNotFoundError, NotADirectoryError):
    raise core.DatasetError(
      f'folder {seq_dir} does not exist', sequence=name, reason='sequence folder missing'
    ) from None
  files = set(listing)
  gt_path = seq_dir / 'groundtruth.txt'
  if 'groundtruth.txt' not in files:
    raise core.DatasetError(
      'groundtruth.txt missing', sequence=name, path=gt_path, reason='groundtruth.txt missing'
    )
  gt = core.read_boxes(gt_path)
  names, present = core.numbered_frames(seq_dir, 0, 1, listing)
  if not names:
    raise core.DatasetError('no frames found', sequence=name, path=seq_dir, reason='no frames')
  if len(gt) > len(names):  # a full annotation whose last frames are missing
    names, present = core.numbered_frames(seq_dir, len(gt), 1, listing)
  full = core.check_frame_count(name, len(names), gt, gt_path, allow_first_only)
  visible = cover = None
  if full and 'absence.label' in files:
    visible = core.read_labels(seq_dir / 'absence.label', len(names)) == 0
  if full and 'cover.label' in files:
    cover = core.read_labels(seq_dir / 'cover.label', len(names))
  image_size = read_resolution(seq_dir / 'meta_info.ini') if 'meta_info.ini' in files else None
  return core.Video(
    name,
    core.FramePaths(seq_dir, names),
    gt,
    visible=visible,
    cover=cover,
    image_size=image_size,
    dataset='got10k',
    present=present,
    gt_file=str(gt_path),
  )


def read_sequence_folder(
  seq_dir: pathlib.Path, name: Optional[str] = None, allow_first_only: bool = True
) -> core.Video:
  """One sequence folder as a :class:`~ostrack_jax.datasets.core.Video`; a DatasetError names
  the sequence."""
  return core.read_named_folder(_read_folder, seq_dir, name, allow_first_only)


class Got10k(core.Layout):
  """The GOT-10k layout (see the module docstring)."""

  name = 'got10k'
  frame_size = 'uniform'

  def frame_root(self, root: pathlib.Path, split: str = 'train', **options) -> pathlib.Path:
    del options
    return split_dir(root, split)

  def sequence_names(
    self, root: pathlib.Path, split: str = 'train', split_file: Optional[str] = None
  ) -> List[str]:
    folder = split_dir(root, split)
    list_path = folder / 'list.txt'
    if list_path.is_file():
      names = core.read_name_list(list_path)
    else:
      subdirs = [d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith('.')]
      if folder == root and (not subdirs or {'train', 'val', 'test'} & set(subdirs)):
        raise core.DatasetError(
          f'no {split}/ folder (expected the GOT-10k layout root/{split}/list.txt)',
          path=root,
          reason='not a GOT-10k layout',
        )
      names = sorted(subdirs, key=core.natural_key)
    if not split_file:
      return names
    entries = core.read_name_list(pathlib.Path(split_file).expanduser())
    if entries and all(e.isdigit() for e in entries):
      bad = [e for e in entries if int(e) >= len(names)]
      if bad:
        raise core.DatasetError(
          f'index {bad[0]} out of range ({len(names)} sequences in {list_path})',
          path=split_file,
          reason='split file index out of range',
        )
      return [names[int(e)] for e in entries]
    return entries

  def read_sequence(
    self, root: pathlib.Path, name: str, split: str = 'train', split_file=None
  ) -> core.Video:
    del split_file
    return read_sequence_folder(split_dir(root, split) / name, name)

  def stamp_files(self, root: pathlib.Path, split: str = 'train', split_file=None):
    names = self.sequence_names(root, split, split_file)
    folder = split_dir(root, split)
    stamps = [folder / 'list.txt'] + ([pathlib.Path(split_file)] if split_file else [])
    return stamps + [folder / n / f for n in names for f in _LABELS]


LAYOUT = Got10k()
