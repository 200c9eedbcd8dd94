"""Packs a dataset into ArrayRecord shards (the frame files' bytes) plus its sequence index.

  python -m ostrack_jax.data.pack DATASET --root DIR --output DIR [--split-file F]

DATASET is a training dataset name of :mod:`ostrack_jax.datasets.registry` (got10k_train_full,
got10k_val, got10k_vottrain, got10k_votval, lasot, trackingnet, coco, folder, synthetic,
synthetic_val, or one registered later). The pack goes to ``OUTPUT/DATASET/``::

  frames.array_record-00000-of-0000N ...  one record per frame: the file's bytes, unchanged
  index/                                  the source's index (boxes, visibility, names, sizes,
                                          the skip report) + each sequence's first record
  pack.json                               format version, dataset, counts (written last)

Training reads it with ``--config.data.packed=True --config.data.packed_dir=OUT``: the same
sampler and transforms run on :class:`~ostrack_jax.data.packed.PackedSource`, which differs
from the folder source only in where the bytes come from (a few large files instead of one open
per frame, which matters on network disks). Frames missing, truncated or corrupt on disk are
stored as empty records, marked never sampled in the pack's index and counted in its report.

Why plain ``array_record`` and not a TFDS builder: a pack is an index of variable-length
sequences plus frame bytes addressed by position; TFDS would add a builder class that must
live in a package with metadata files, key-hash shuffling that has to be disabled, a feature
encoding we would bypass (frames are decoded by us, at reduced resolution), and its import in
every worker process, while giving nothing the sampler uses (and tensorflow-datasets is not a
dependency). The records are written with ``group_size:1`` for random access, so
``grain.sources.ArrayRecordDataSource`` reads them.
"""

import collections
import copy
import json
import os
import pathlib
import shutil
import sys
import time
from typing import List, Optional

import numpy as np

from ostrack_jax.data import index, packed, sources, transforms
from ostrack_jax.datasets import registry


def _writer(path: pathlib.Path):
  from array_record.python import array_record_module

  return array_record_module.ArrayRecordWriter(str(path), 'group_size:1')


def _unusable(source: index.Source, failed: List[tuple]):
  """(table, report) of ``source`` with the frames that could not be packed never sampled."""
  table = source.sequences
  visible = np.array(table.visible, copy=True)
  report = copy.deepcopy(source.report)
  for si, fi, reason, what in failed:
    k = int(table.offsets[si]) + fi
    if visible[k]:
      visible[k] = False
      report.frames(reason, 1, what)
  arrays = table.arrays()
  arrays['visible'] = visible
  return index.SequenceTable(**{k: np.asarray(v) for k, v in arrays.items()}), report


def pack_source(
  source: index.Source,
  out_dir,
  *,
  shard_bytes: int = 1 << 30,
  overwrite: bool = False,
  progress: bool = True,
) -> pathlib.Path:
  """Writes ``source`` as a pack under ``out_dir`` (a folder for this one dataset).

  The pack is assembled in ``out_dir.tmp`` and renamed into place when complete.
  """
  out = pathlib.Path(out_dir).expanduser()
  _check_no_pack(out, overwrite)
  tmp = out.with_name(out.name + '.tmp')
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  shards = _Shards(tmp, shard_bytes)
  try:
    first_record, failed = _write_frames(source, shards, progress)
  except BaseException:
    shards.abort()
    raise
  shard_names = shards.finish()
  table, report = _unusable(source, failed) if failed else (source.sequences, source.report)
  index.save_index(tmp / 'index', table, report)
  np.save(tmp / 'first_record.npy', np.asarray(first_record, np.int64))
  meta = dict(
    version=packed.PACK_VERSION,
    dataset=source.name,
    is_video=source.is_video,
    sequences=len(source.sequences),
    frames=shards.records,
    missing_frames=len(failed),
    unusable_frames=dict(collections.Counter(f[2] for f in failed)),
    shards=shard_names,
    shard_sizes=shards.sizes,
  )
  (tmp / 'pack.json').write_text(json.dumps(meta, indent=1))
  if out.exists():
    shutil.rmtree(out)
  os.replace(tmp, out)
  return out


class _Shards:
  """Frame records appended to ArrayRecord shards of about ``shard_bytes`` each, in ``folder``.

  ``records``: records written so far; ``sizes``: records per closed shard. :meth:`finish`
  gives the shards their final names, which carry the shard count (as TFDS names them).
  """

  def __init__(self, folder: pathlib.Path, shard_bytes: int):
    self.folder, self.shard_bytes = folder, shard_bytes
    self.names: List[str] = []
    self.sizes: List[int] = []
    self._writer, self._bytes, self._in_shard = None, 0, 0

  @property
  def records(self) -> int:
    return sum(self.sizes) + self._in_shard

  def write(self, data: bytes) -> None:
    if self._writer is None:
      self.names.append(f'frames.array_record-{len(self.names):05d}')
      self._writer = _writer(self.folder / self.names[-1])
      self._bytes, self._in_shard = 0, 0
    self._writer.write(data)
    self._bytes += len(data)
    self._in_shard += 1
    if self._bytes >= self.shard_bytes:
      self._close_shard()

  def _close_shard(self) -> None:
    self._writer.close()
    self.sizes.append(self._in_shard)
    self._writer, self._in_shard = None, 0

  def abort(self) -> None:
    if self._writer is not None:
      self._writer.close()

  def finish(self) -> List[str]:
    """Closes the last shard and renames all to ``frames.array_record-<i>-of-<n>``."""
    if self._writer is not None:
      self._close_shard()
    final = [
      f'frames.array_record-{i:05d}-of-{len(self.names):05d}' for i in range(len(self.names))
    ]
    for name, final_name in zip(self.names, final, strict=True):
      os.replace(self.folder / name, self.folder / final_name)
    return final


def _write_frames(source: index.Source, shards: _Shards, progress: bool):
  """Writes every frame of ``source`` as one record, in table order.

  Returns (each sequence's first record, the frames that could not be read as (sequence,
  frame, reason, what): written as empty records).
  """
  first_record, failed = [], []
  total_frames = int(source.sequences.offsets[-1])
  start = time.time()
  for si in range(len(source.sequences)):
    first_record.append(shards.records)
    for fi in range(source.sequences.length(si)):
      try:
        data = source.frame(si, fi).data
      except transforms.BadSample as e:
        data, what = b'', str(e)
        reason = (
          'image file missing' if 'cannot read' in what else 'image file truncated or corrupt'
        )
        failed.append((si, fi, reason, what))
      shards.write(data)
    if progress and (si + 1) % 200 == 0:
      print(
        f'  {si + 1}/{len(source.sequences)} sequences, {shards.records}/{total_frames} frames, '
        f'{time.time() - start:.0f} s',
        flush=True,
      )
  return first_record, failed


def _check_no_pack(out: pathlib.Path, overwrite: bool) -> None:
  """FileExistsError if ``out`` holds a pack and ``overwrite`` is not set."""
  if (out / 'pack.json').exists() and not overwrite:
    raise FileExistsError(f'{out} already holds a pack; pass --overwrite to replace it')


def main(argv: Optional[List[str]] = None) -> None:
  """The pack command; bad input raises ``DatasetError`` (an ``InputError``: one line, status 2
  from the command line)."""
  from ostrack_jax import cli
  from ostrack_jax.common import fileio
  from ostrack_jax.common.errors import InputError

  parser = cli.Parser(
    'python -m ostrack_jax.data.pack',
    'Pack a tracking dataset into ArrayRecord shards.',
  )
  parser.add_argument(
    'dataset', help=f'training dataset name ({", ".join(registry.names("train"))})'
  )
  parser.add_argument('--root', required=True, help='dataset root in its native layout')
  parser.add_argument(
    '--output', required=True, help='output folder; the pack goes to OUTPUT/DATASET'
  )
  parser.add_argument('--split-file', default='', help='subset list (got10k_vot*, lasot)')
  parser.add_argument(
    '--shard-mb', type=cli.nonnegative_int, default=1024, help='approximate shard size (MB)'
  )
  parser.add_argument('--overwrite', action='store_true', help='replace an existing pack')
  args = parser.parse(argv)
  entry = registry.get(args.dataset, 'train')  # an unknown name lists the valid ones
  if args.split_file and not entry.split_file:
    parser.error(f'--split-file does not apply to {args.dataset}')
  out = pathlib.Path(args.output) / args.dataset
  fileio.check_writable(out, f'--output {args.output}')
  try:  # before indexing the dataset, which may take long
    _check_no_pack(out, args.overwrite)
  except FileExistsError as e:
    raise InputError(f'--output {args.output}: {e}') from None
  source = sources.open_source(
    args.dataset, args.root, split_file=args.split_file or None, root_field='--root'
  )
  print(source.report.summary())
  out = pack_source(
    source,
    out,
    shard_bytes=args.shard_mb << 20,
    overwrite=args.overwrite,
  )
  meta = json.loads((out / 'pack.json').read_text())
  print(
    f'packed {meta["frames"]} frames of {meta["sequences"]} sequences into '
    f'{len(meta["shards"])} shard(s) in {out}'
    + (
      f'; {meta["missing_frames"]} frame(s) unusable, never sampled'
      if meta['missing_frames']
      else ''
    )
  )


if __name__ == '__main__':
  from ostrack_jax import cli

  sys.exit(cli.run(main, 'python -m ostrack_jax.data.pack'))
