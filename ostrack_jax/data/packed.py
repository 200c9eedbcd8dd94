"""Reading ArrayRecord packs: a training :class:`~ostrack_jax.data.index.Source` whose frame
bytes come from a few large files (written by :mod:`ostrack_jax.data.pack`).

A pack folder holds ``frames.array_record-<i>-of-<n>`` shards (one record per frame, the file's
bytes unchanged, empty for a frame that was missing or corrupt when packed), ``index/`` (the
source's table and report, :func:`ostrack_jax.data.index.save_index`), ``first_record.npy``
(each sequence's first record) and ``pack.json`` (format version, dataset, counts; written
last).
"""

import json
import pathlib

import numpy as np

from ostrack_jax.data import index, transforms
from ostrack_jax.datasets import core, frames

PACK_VERSION = 1


class PackedSource(index.Source):
  """A source read from a pack: same sequences and report, frames from ArrayRecord shards."""

  def __init__(self, pack_dir):
    pack_dir = pathlib.Path(pack_dir).expanduser()
    meta_path = pack_dir / 'pack.json'
    if not meta_path.exists():
      raise core.MissingRootError(
        f'{pack_dir} is not a complete pack (no pack.json); write it with '
        f'python -m ostrack_jax.data.pack {pack_dir.name} --root DIR --output {pack_dir.parent}',
        reason='no pack',
      )
    meta = json.loads(meta_path.read_text())
    if meta.get('version') != PACK_VERSION:
      raise core.DatasetError(
        f'pack version {meta.get("version")}, this code reads version {PACK_VERSION}; '
        're-pack the dataset',
        path=meta_path,
        reason='old pack',
      )
    loaded = index.load_index(pack_dir / 'index')
    if loaded is None:
      raise core.DatasetError('missing or unreadable', path=pack_dir / 'index', reason='bad pack')
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
      import grain

      self._reader = grain.sources.ArrayRecordDataSource(self.shard_paths)
    return self._reader

  def frame(self, seq_index: int, frame_index: int) -> transforms.Frame:
    key = int(self.first_record[seq_index]) + int(frame_index)
    data = self._records()[key]
    name = f'{self.root}#{self.frame_key(seq_index, frame_index)}'
    if not data:
      raise transforms.BadSample(f'{name}: frame was missing when the pack was written')
    problem = frames.check_image_bytes(data)
    if problem:
      raise transforms.BadSample(f'{name}: frame is {problem}')
    return transforms.Frame(data, name, self.sequences.image_size(seq_index))


def packed_source_for(dataset: str, data_config) -> PackedSource:
  """The pack of ``dataset`` under ``data_config.packed_dir``."""
  packed_dir = data_config.get('packed_dir', '')
  if not packed_dir:
    raise core.MissingRootError(
      'config.data.packed is set but config.data.packed_dir is empty',
      dataset=dataset,
      reason='no packed_dir',
    )
  return PackedSource(pathlib.Path(packed_dir) / dataset)
