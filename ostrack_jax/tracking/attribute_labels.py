"""Per-sequence attribute labels for :mod:`ostrack_jax.tracking.compare` (``--attributes``).

Two formats (:func:`read_attributes`): a text table with a header naming the attributes, or the
LaSOT toolkit's ``annos/att`` folder of one-line flag files. Bad input raises
:class:`ostrack_jax.common.errors.InputError` naming the file and line.
"""

import os
import pathlib
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ostrack_jax.common.errors import InputError
from ostrack_jax.tracking.results import split_fields

# The LaSOT toolkit's attribute order and names (run_tracker_performance_evaluation.m), for the
# one-line flag files of its annos/att/<seq>.txt.
LASOT_ATTRIBUTES = (
  ('IV', 'Illumination Variation'),
  ('POC', 'Partial Occlusion'),
  ('DEF', 'Deformation'),
  ('MB', 'Motion Blur'),
  ('CM', 'Camera Motion'),
  ('ROT', 'Rotation'),
  ('BC', 'Background Clutter'),
  ('VC', 'Viewpoint Change'),
  ('SV', 'Scale Variation'),
  ('FOC', 'Full Occlusion'),
  ('FM', 'Fast Motion'),
  ('OV', 'Out-of-View'),
  ('LR', 'Low Resolution'),
  ('ARC', 'Aspect Ratio Change'),
)
_ATTRIBUTE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')


def read_attributes(path: os.PathLike) -> Tuple[Dict[str, Dict[str, bool]], Dict[str, str]]:
  """Per-sequence attribute labels: ``({sequence: {attribute: has it}}, {attribute: title})``.

  Two formats:

  * a text table: the first line names the columns, ``sequence`` then the attributes; then one
    line per sequence, its name and a number per attribute (> 0: the sequence has it), comma,
    tab, space or semicolon separated, e.g. ``sequence,IV,FM`` / ``airplane-1,0,1``;
  * a folder of ``<seq>.txt`` files of one line of 14 flags each: the LaSOT toolkit's
    ``annos/att/`` (its attribute order: :data:`LASOT_ATTRIBUTES`).

  Attribute names are letters, digits and ``_.+-`` (they name the plot folders). Raises
  :class:`InputError` naming the file and line of anything else.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    return _read_attribute_folder(path)
  if not path.is_file():
    raise InputError(f'--attributes {path}: no such file or folder')
  lines = [(i, t.strip()) for i, t in enumerate(_read(path).splitlines(), 1) if t.strip()]
  if len(lines) < 2:
    raise InputError(f'--attributes {path}: expected a header line and a line per sequence')
  header = split_fields(lines[0][1])
  names = header[1:]
  if not names:
    raise InputError(f'--attributes {path} line {lines[0][0]}: the header names no attribute')
  for name in names:
    if not _ATTRIBUTE_NAME.fullmatch(name):
      raise InputError(
        f'--attributes {path} line {lines[0][0]}: attribute name {name!r} (use letters, digits '
        'and _.+-)'
      )
  if len(set(names)) != len(names):
    raise InputError(f'--attributes {path} line {lines[0][0]}: an attribute is named twice')
  labels = {}
  for lineno, line in lines[1:]:
    parts = split_fields(line)
    flags = _flags(parts[1:], len(names), f'--attributes {path} line {lineno}')
    if parts[0] in labels:
      raise InputError(f'--attributes {path} line {lineno}: sequence {parts[0]!r} listed twice')
    labels[parts[0]] = dict(zip(names, flags, strict=True))
  return labels, {n: n for n in names}


def _read_attribute_folder(folder: pathlib.Path):
  files = sorted(folder.glob('*.txt'))
  if not files:
    raise InputError(f'--attributes {folder}: a folder without <seq>.txt attribute files')
  names = [a for a, _ in LASOT_ATTRIBUTES]
  labels = {}
  for f in files:
    parts = split_fields(_read(f))
    if len(parts) != len(names):
      raise InputError(
        f'--attributes {f}: {len(parts)} flags; a folder of flag files is read as the LaSOT '
        f"toolkit's annos/att ({len(names)} flags: {' '.join(names)}); for other attributes "
        'give a table file with a header naming them'
      )
    labels[f.stem] = dict(zip(names, _flags(parts, len(names), f'--attributes {f}'), strict=True))
  return labels, dict(LASOT_ATTRIBUTES)


def _read(path: pathlib.Path) -> str:
  try:
    return path.read_text(encoding='utf-8')
  except (OSError, UnicodeDecodeError) as e:
    raise InputError(f'--attributes {path}: cannot read: {e}') from e


def _flags(parts: Sequence[str], count: int, where: str) -> List[bool]:
  try:
    values = [float(p) for p in parts]
  except ValueError:
    values = []
  if len(values) != count or not all(np.isfinite(values)):
    raise InputError(f'{where}: expected {count} number(s), got {" ".join(parts)[:80]!r}')
  return [v > 0 for v in values]
