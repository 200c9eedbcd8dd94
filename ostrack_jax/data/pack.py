"""Packs a dataset into ArrayRecord shards (JPEG bytes per frame) plus a sequence index.

  python -m ostrack_jax.data.pack DATASET --root DIR --out DIR [--split_file F]

DATASET is a source name (got10k_train_full, got10k_val, got10k_vottrain, got10k_votval,
lasot, trackingnet, coco, folder, synthetic, synthetic_val). The pack goes to
``OUT/DATASET/``::

  frames.array_record-00000-of-0000N ...  one record per frame: the file's bytes, unchanged
  index/                                  the source's index (boxes, visibility, names, sizes,
                                          the skip report) + each sequence's first record
  pack.json                               format version, dataset, counts (written last)

Training reads it with ``--config.data.packed=True --config.data.packed_dir=OUT``: the same
sampler and transforms run on :class:`PackedSource`, which differs from the folder source only
in where the bytes come from (a few large files instead of one open per frame, which matters on
network disks). Frames missing on disk are stored as empty records and are never sampled (the
index marks them invisible).

Why plain ``array_record`` and not a TFDS builder: a pack is an index of variable-length
sequences plus frame bytes addressed by position; TFDS would add a builder class that must
live in a package with metadata files, key-hash shuffling that has to be disabled, a feature
encoding we would bypass (frames are decoded by us, at reduced resolution), and its import in
every worker process, while giving nothing the sampler uses. The records are written with
``group_size:1`` as TFDS does for random access, so ``grain.sources.ArrayRecordDataSource``
(or TFDS) can read them.
"""

import argparse
import json
import os
import pathlib
import shutil
import time
from typing import List, Optional

import numpy as np

from ostrack_jax.data import sources as sources_lib
from ostrack_jax.data import transforms

PACK_VERSION = 1


def _writer(path: pathlib.Path):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  return array_record_module.ArrayRecordWriter(str(path), 'group_size:1')


def pack_source(
  source: sources_lib.Source,
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
  if (out / 'pack.json').exists() and not overwrite:
    raise FileExistsError(f'{out} already holds a pack; pass --overwrite to replace it')
  tmp = out.with_name(out.name + '.tmp')
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  shard_files: List[str] = []
  shard_sizes: List[int] = []
  writer, written, in_shard = None, 0, 0
  first_record = []
  missing = 0
  total_frames = sum(len(s.frame_names) for s in source.sequences)
  start = time.time()
  try:
    for si, seq in enumerate(source.sequences):
      first_record.append(sum(shard_sizes) + in_shard)
      for fi in range(len(seq.frame_names)):
        if writer is None:
          name = f'frames.array_record-{len(shard_files):05d}'
          shard_files.append(name)
          writer = _writer(tmp / name)
          written, in_shard = 0, 0
        try:
          data = source.frame(si, fi).data
        except transforms.BadSample:
          data = b''
          missing += 1
        writer.write(data)
        written += len(data)
        in_shard += 1
        if written >= shard_bytes:
          writer.close()
          shard_sizes.append(in_shard)
          writer, in_shard = None, 0
      if progress and (si + 1) % 200 == 0:
        done = sum(shard_sizes) + in_shard
        print(
          f'  {si + 1}/{len(source.sequences)} sequences, {done}/{total_frames} frames, '
          f'{time.time() - start:.0f} s',
          flush=True,
        )
    if writer is not None:
      writer.close()
      shard_sizes.append(in_shard)
  except BaseException:
    if writer is not None:
      writer.close()
    raise
  # Final shard names carry the shard count, as TFDS names them.
  n = len(shard_files)
  final_names = []
  for i, name in enumerate(shard_files):
    final = f'frames.array_record-{i:05d}-of-{n:05d}'
    os.replace(tmp / name, tmp / final)
    final_names.append(final)
  sources_lib._save_index(tmp / 'index', source.sequences, source.report)  # pylint: disable=protected-access
  np.save(tmp / 'first_record.npy', np.asarray(first_record, np.int64))
  meta = dict(
    version=PACK_VERSION,
    dataset=source.name,
    is_video=source.is_video,
    sequences=len(source.sequences),
    frames=int(sum(shard_sizes)),
    missing_frames=missing,
    shards=final_names,
    shard_sizes=shard_sizes,
  )
  (tmp / 'pack.json').write_text(json.dumps(meta, indent=1))
  if out.exists():
    shutil.rmtree(out)
  os.replace(tmp, out)
  return out


class PackedSource(sources_lib.Source):
  """A source read from a pack: same sequences and report, frames from ArrayRecord shards."""

  def __init__(self, pack_dir):
    pack_dir = pathlib.Path(pack_dir).expanduser()
    meta_path = pack_dir / 'pack.json'
    if not meta_path.exists():
      raise sources_lib.DataError(
        f'{pack_dir} is not a complete pack (no pack.json); write it with '
        f'python -m ostrack_jax.data.pack DATASET --root DIR --out {pack_dir.parent}'
      )
    meta = json.loads(meta_path.read_text())
    if meta.get('version') != PACK_VERSION:
      raise sources_lib.DataError(
        f'{meta_path}: pack version {meta.get("version")}, this code '
        f'reads version {PACK_VERSION}; re-pack the dataset'
      )
    loaded = sources_lib._load_index(pack_dir / 'index')  # pylint: disable=protected-access
    if loaded is None:
      raise sources_lib.DataError(f'{pack_dir / "index"} is missing or unreadable')
    sequences, report = loaded
    self.first_record = np.load(pack_dir / 'first_record.npy')
    self.shard_paths = [str(pack_dir / s) for s in meta['shards']]
    self._reader = None
    super().__init__(meta['dataset'], str(pack_dir), sequences, report, is_video=meta['is_video'])

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_reader'] = None  # reopened lazily in each worker process
    return state

  def _records(self):
    if self._reader is None:
      import grain  # pylint: disable=g-import-not-at-top

      self._reader = grain.sources.ArrayRecordDataSource(self.shard_paths)
    return self._reader

  def frame(self, seq_index: int, frame_index: int) -> transforms.Frame:
    key = int(self.first_record[seq_index]) + int(frame_index)
    data = self._records()[key]
    name = f'{self.root}#{self.frame_key(seq_index, frame_index)}'
    if not data:
      raise transforms.BadSample(f'{name}: frame was missing when the pack was written')
    return transforms.Frame(data, name, self.sequences.image_size(seq_index))


def packed_source_for(dataset: str, data_config) -> PackedSource:
  """The pack of ``dataset`` under ``data_config.packed_dir``."""
  packed_dir = data_config.get('packed_dir', '')
  if not packed_dir:
    raise sources_lib.DataError('config.data.packed is set but config.data.packed_dir is empty')
  return PackedSource(pathlib.Path(packed_dir) / dataset)


def main(argv: Optional[List[str]] = None) -> None:
  from ostrack_jax.configs.base import base_config  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(description='Pack a tracking dataset into ArrayRecord shards.')
  parser.add_argument('dataset', help='source name, e.g. got10k_train_full, lasot, coco')
  parser.add_argument('--root', required=True, help='dataset root in its native layout')
  parser.add_argument('--out', required=True, help='output folder; the pack goes to OUT/DATASET')
  parser.add_argument('--split_file', default='', help='subset list (got10k_vot*, lasot)')
  parser.add_argument('--shard_mb', type=int, default=1024, help='approximate shard size')
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args(argv)
  data = base_config().data
  family = args.dataset.split('_')[0]
  if family not in data.roots:
    parser.error(f'unknown dataset {args.dataset!r}')
  data.roots[family] = args.root
  if args.split_file:
    key = args.dataset if args.dataset in data.split_files else family
    data.split_files[key] = args.split_file
  source = sources_lib.make_source(args.dataset, data)
  print(source.report.summary())
  out = pack_source(
    source,
    pathlib.Path(args.out) / args.dataset,
    shard_bytes=args.shard_mb << 20,
    overwrite=args.overwrite,
  )
  meta = json.loads((out / 'pack.json').read_text())
  print(
    f'packed {meta["frames"]} frames of {meta["sequences"]} sequences into '
    f'{len(meta["shards"])} shard(s) in {out}'
  )


if __name__ == '__main__':
  main()
