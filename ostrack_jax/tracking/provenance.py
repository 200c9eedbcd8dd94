"""Who produced a results folder: the record eval.py keeps in it, and the rule that a run only
adds to results of its own producer.

``<results folder>/provenance.json`` is written (atomically) before the first result file. Its
``producer`` holds everything that changes the boxes:

* ``weights_sha256``: the content hash of the loaded weights
  (``model_file.weights_sha256``: the same for a ``.msgpack`` and the ``.pth`` it came from);
* ``config.model`` and ``config.tracker``: the config's model section (architecture, candidate
  elimination, ``dtype``: the precision) and tracker section (crop factors);
* ``dataset``, ``split`` and ``data_dir`` (resolved): which frames and first boxes;
* ``batching``: ``'exact'`` (batch 1, or ``batch_mode='map'``: bit-identical to batch 1) or
  ``'vmap x<B>'`` (one batched forward over B sequences: not bit-identical to batch 1, and not
  to another B).

Beside it, for people: the checkpoint path, the config name and when the folder was started.

:func:`prepare` applies the rule, before anything is tracked or written: a folder without
results gets the record; a folder whose record names the same producer is resumed (only what
is missing is tracked; ``--sequences`` subsets accumulate); a folder of another producer, or
one with result files and no (readable) record (an older version, another tool), is refused
with one line naming the difference and the two ways out, unless ``overwrite``: then the old
result files (the known layouts, ``submission.zip``, ``report/``) are removed first, so a
folder never mixes producers. Nothing else in the folder is touched.
"""

import datetime
import json
import os
import pathlib
from typing import Dict, List, Optional

import ml_collections

from ostrack_jax.common.errors import InputError
from ostrack_jax.common.fileio import atomic_write_text
from ostrack_jax.tracking import report, results

FILE = 'provenance.json'
FORMAT = 'ostrack_jax.eval_provenance'
FORMAT_VERSION = 1
WAYS_OUT = 'pass --overwrite to replace them, or another --output to keep them'


def batching(batch_size: int, batch_mode: str) -> str:
  """How the batch changes boxes: ``'exact'`` (batch 1 or 'map') or ``'vmap x<B>'`` (in words:
  ``report.describe_batching``)."""
  return 'exact' if batch_size == 1 or batch_mode == 'map' else f'vmap x{batch_size}'


def producer(
  config: ml_collections.ConfigDict,
  weights_sha256: str,
  *,
  dataset: str,
  split: Optional[str],
  data_dir: os.PathLike,
  batch_size: int,
  batch_mode: str,
) -> Dict[str, object]:
  """What changes the boxes (see the module docstring), as JSON values."""
  sections = {k: json.loads(config[k].to_json()) for k in ('model', 'tracker')}
  return {
    'weights_sha256': weights_sha256,
    'config.model': sections['model'],
    'config.tracker': sections['tracker'],
    'dataset': dataset,
    'split': split,
    'data_dir': str(pathlib.Path(data_dir).resolve()),
    'batching': batching(batch_size, batch_mode),
  }


def record(producer_: Dict[str, object], *, checkpoint: str, config_name: str) -> Dict:
  """The file's content: the producer and, for people, the checkpoint path, config name and
  the time."""
  return {
    'format': FORMAT,
    'format_version': FORMAT_VERSION,
    'producer': producer_,
    'checkpoint': str(checkpoint),
    'config': config_name,
    'started': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }


def differences(old: Dict, new: Dict) -> List[str]:
  """The fields in which producer ``old`` (the folder's record) and ``new`` differ, in words:
  ``'config.tracker.search_factor: 4.0 there, 5.0 now'``; weights by short hashes."""
  out = []
  for key in sorted(set(old) | set(new), key=lambda k: (k != 'weights_sha256', k)):
    a, b = old.get(key), new.get(key)
    if a == b:
      continue
    if isinstance(a, dict) and isinstance(b, dict):
      for field in sorted(set(a) | set(b)):
        if a.get(field) != b.get(field):
          out.append(f'{key}.{field}: {_show(a.get(field))} there, {_show(b.get(field))} now')
    elif key == 'weights_sha256':
      out.append(f'weights sha256 {str(a)[:12]} there, {str(b)[:12]} now')
    else:
      out.append(f'{key}: {_show(a)} there, {_show(b)} now')
  return out


def _show(value) -> str:
  return 'unset' if value is None else json.dumps(value)


def result_files(out_dir: pathlib.Path, with_report: bool = True) -> List[pathlib.Path]:
  """The files of the known result layouts in ``out_dir``: ``<seq>/<seq>_001.txt`` /
  ``<seq>/<seq>_time.txt`` (got10k), ``<seq>.txt`` / ``<seq>_time.txt`` (lasot, otb, folder,
  trackingnet: a pair, or one file of result lines, so that a ``notes.txt`` or
  ``requirements.txt`` is never taken for one), ``submission.zip`` and (``with_report``) the
  files eval.py writes in ``report/``."""
  if not out_dir.is_dir():
    return []
  found = []
  for entry in sorted(out_dir.iterdir()):
    if entry.is_file() and (entry.name == results.SUBMISSION_ZIP or _is_flat_result(entry)):
      found.append(entry)
    elif entry.is_dir() and entry.name != report.REPORT_DIR:
      found += [
        entry / f'{entry.name}{tail}'
        for tail in ('_001.txt', '_time.txt')
        if (entry / f'{entry.name}{tail}').is_file()
      ]
  if with_report:
    report_dir = out_dir / report.REPORT_DIR
    found += [report_dir / n for n in report.REPORT_FILES if (report_dir / n).is_file()]
  return found


def _is_flat_result(path: pathlib.Path) -> bool:
  """Whether ``path`` is a ``<seq>.txt`` / ``<seq>_time.txt`` result file: its partner exists,
  or it holds result lines (4 numbers, or 1 for a time file)."""
  if path.suffix != '.txt':
    return False
  is_time = path.stem.endswith('_time')
  partner = path.with_name(
    path.name[: -len('_time.txt')] + '.txt' if is_time else f'{path.stem}_time.txt'
  )
  if partner.is_file():
    return True
  try:
    results.read_numbers(path, 1 if is_time else 4)
  except results.ResultFileError:
    return False
  return True


def read(out_dir: pathlib.Path) -> Optional[Dict]:
  """The folder's record, None when there is none; raises ``InputError`` for one that is
  not a record of this format (named)."""
  path = out_dir / FILE
  if not path.exists():
    return None
  try:
    data = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise ValueError(f'{path} is not readable ({e})') from e
  if not isinstance(data, dict) or data.get('format') != FORMAT or 'producer' not in data:
    raise ValueError(f'{path} is not an {FORMAT} record')
  if data.get('format_version') != FORMAT_VERSION:
    raise ValueError(f'{path} has format version {data.get("format_version")}')
  return data


def prepare(out_dir: os.PathLike, new: Dict, overwrite: bool) -> str:
  """Applies the rule of the module docstring to ``out_dir`` for record ``new``; returns what
  was done: ``'new'`` (record written), ``'resume'`` (same producer), ``'replaced'`` (another
  producer's or unrecorded results removed with ``overwrite``, record written).

  Raises ``InputError`` (one line: the folder, the difference, the ways out) before writing
  anything when the folder holds results of another producer, or results without a record,
  and ``overwrite`` is not set.
  """
  out_dir = pathlib.Path(out_dir)
  path = out_dir / FILE
  if path.exists() and not path.is_file():
    raise InputError(
      f'{path} is not a file (the path of the provenance record eval.py keeps beside the '
      'results): move it away, or give another --output'
    )
  results_there = result_files(out_dir, with_report=False)
  try:
    old = read(out_dir)
  except ValueError as e:
    old, problem = None, f'{out_dir} holds result files and an unusable provenance record ({e})'
  else:
    problem = (
      f'{out_dir} holds result files but no provenance record ({FILE}: written by an older '
      'version or another tool), so they may come from another model'
    )
  if old is not None:
    diffs = differences(old['producer'], new['producer'])
    if not diffs:
      return 'resume'
    problem = (
      f'{out_dir} holds results of another producer ({"; ".join(diffs)}; checkpoint there '
      f'{old.get("checkpoint")}, now {new["checkpoint"]})'
    )
  if results_there and not overwrite:
    raise InputError(f'{problem}; {WAYS_OUT}')
  remove_results(out_dir)  # also a report left by another producer without results
  atomic_write_text(path, json.dumps(new, indent=1) + '\n')
  return 'replaced' if results_there else 'new'


def remove_results(out_dir: pathlib.Path) -> None:
  """Removes the result files of :func:`result_files` (report included) and the folders they
  leave empty; nothing else."""
  for path in result_files(out_dir):
    path.unlink()
    if path.parent != out_dir and not any(path.parent.iterdir()):
      path.parent.rmdir()
