"""One table from dataset name to layout reader, for training, packing, preview and evaluation.

An entry names a :class:`~ostrack_jax.datasets.core.Layout`, the ``config.data.roots`` field
that holds its root, and the reader options for each use: ``train`` (training, packing and
preview: ``train.py``, ``python -m ostrack_jax.data.pack``, ``python -m
ostrack_jax.data.preview``) and ``eval`` (``eval.py``), None where the dataset is not offered
for that use. One name may mean a different split per use: ``lasot`` trains on the training
sequences and evaluates on the 280 test ones.

Adding a dataset: write a Layout (one module in this package), then one :func:`register` call
(at the end of this module for a built-in one, or at run time)::

  from ostrack_jax.datasets import registry
  registry.register('mine', MyLayout(), root_key='mine', train={}, eval={},
                    result_layout='folder')

and it is a training dataset (``--config.data.train_datasets=mine
--config.data.roots.mine=DIR``), a pack (``python -m ostrack_jax.data.pack mine --root DIR``)
and an evaluation dataset (``eval.py --dataset mine --data-dir DIR``).
"""

import collections.abc
import dataclasses
import difflib
import pathlib
from typing import Callable, Dict, Iterator, Optional, Tuple

from ostrack_jax.datasets import coco, core, folder, got10k, lasot, otb, synthetic, trackingnet

PURPOSES = ('train', 'eval')
_WHAT = {'train': 'training', 'eval': 'evaluation'}


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered dataset.

  name: the name used in configs and on command lines.
  layout: the reader.
  root_key: the ``config.data.roots`` field holding its root (``--root`` / ``--data-dir``
    on the command lines that take one).
  train, eval: the layout's options for that use (e.g. ``{'split': 'val'}``), or None when
    the dataset is not offered for it.
  result_layout: evaluation result files (``ostrack_jax.tracking.results.LAYOUTS``).
  is_video: False for image datasets (COCO: template and search from the same image).
  resolve_root: maps the configured root (maybe empty) to the folder to read; default: the
    root itself, which must be set and exist. The synthetic dataset generates its default.
  split_file: the ``config.data.split_files`` field the training use reads (or '' for none);
    ``split_file_required``: training refuses to run without it.
  """

  name: str
  layout: core.Layout
  root_key: str
  train: Optional[Dict] = None
  eval: Optional[Dict] = None
  result_layout: str = 'folder'
  is_video: bool = True
  resolve_root: Optional[Callable[[str], pathlib.Path]] = None
  split_file: str = ''
  split_file_required: bool = False

  def options(self, purpose: str) -> Dict:
    opts = getattr(self, purpose)
    return dict(opts) if opts is not None else {}


_ENTRIES: Dict[str, Entry] = {}


def register(name: str, layout: core.Layout, *, root_key: str, replace: bool = False, **fields):
  """Registers dataset ``name`` (see :class:`Entry` for the fields); returns the entry."""
  if name in _ENTRIES and not replace:
    raise ValueError(f'dataset {name!r} is already registered (pass replace=True)')
  try:  # a plain name: packs go to <output>/<name>, evaluation results to .../eval/<name>
    core.check_sequence_name(name)
  except core.DatasetError as e:
    raise ValueError(f'dataset name {name!r}: {e.message}') from None
  entry = Entry(name, layout, root_key, **fields)
  _ENTRIES[name] = entry
  return entry


def unregister(name: str) -> None:
  _ENTRIES.pop(name, None)


def names(purpose: str) -> Tuple[str, ...]:
  """The dataset names offered for ``purpose`` ('train' or 'eval'), in registration order."""
  if purpose not in PURPOSES:
    raise ValueError(f'purpose must be one of {PURPOSES}, got {purpose!r}')
  return tuple(n for n, e in _ENTRIES.items() if getattr(e, purpose) is not None)


class Names(collections.abc.Sequence):
  """A live view of :func:`names` (e.g. argparse ``choices``: sees later registrations)."""

  def __init__(self, purpose: str):
    self.purpose = purpose

  def __len__(self) -> int:
    return len(names(self.purpose))

  def __getitem__(self, i):
    return names(self.purpose)[i]

  def __contains__(self, name) -> bool:
    return name in names(self.purpose)

  def __repr__(self) -> str:
    return repr(names(self.purpose))


def get(name: str, purpose: str) -> Entry:
  """The entry of ``name`` for ``purpose``, or :class:`UnknownDatasetError` listing the valid
  names for that use (and saying so when ``name`` belongs to the other one)."""
  entry = _ENTRIES.get(name)
  if entry is not None and getattr(entry, purpose) is not None:
    return entry
  valid = names(purpose)
  hint = ''
  if entry is not None:
    other = [p for p in PURPOSES if getattr(entry, p) is not None]
    hint = f' ({name} is a dataset for {" and ".join(_WHAT[p] for p in other)} only'
    close = [n for n in valid if n.startswith(name) or name.startswith(n)]
    hint += f'; for {_WHAT[purpose]} use {close[0]})' if close else ')'
  else:
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
  raise UnknownDatasetError(
    f'unknown {_WHAT[purpose]} dataset {name!r}{hint}; valid: {", ".join(valid)}',
    reason='unknown dataset',
  )


def entries() -> Iterator[Entry]:
  return iter(list(_ENTRIES.values()))


def check_data_config(data_config) -> None:
  """Raises (before anything is read) for a training or validation dataset name that is not
  registered (:class:`~ostrack_jax.datasets.core.UnknownDatasetError`, a ValueError) or whose
  root is not set or does not exist (:class:`~ostrack_jax.datasets.core.MissingRootError`, a
  FileNotFoundError naming ``config.data.roots.<field>``); packed configs check the pack
  folder."""
  names = tuple(data_config.train_datasets) + tuple(data_config.val_datasets)
  for dataset in names:
    entry = get(dataset, 'train')
    if data_config.get('packed', False):
      if not data_config.get('packed_dir', ''):
        raise core.MissingRootError(
          'config.data.packed is set but config.data.packed_dir is empty', dataset=dataset
        )
      continue
    if entry.resolve_root is None:
      root = data_config.roots.get(entry.root_key, '')
      resolve_root(entry, root, f'config.data.roots.{entry.root_key}')


UnknownDatasetError = core.UnknownDatasetError


def resolve_root(entry: Entry, root, field: str) -> pathlib.Path:
  """The folder to read for ``entry`` given the configured ``root``; an unset or missing root
  raises :class:`~ostrack_jax.datasets.core.MissingRootError` naming ``field`` (e.g.
  ``config.data.roots.got10k`` or ``--data-dir``)."""
  if entry.resolve_root is not None:
    return pathlib.Path(entry.resolve_root(str(root) if root else ''))
  if not root:
    raise core.MissingRootError(
      f'no dataset root: set {field}=DIR (the {entry.layout.name} layout)',
      dataset=entry.name,
      reason='no dataset root',
    )
  path = pathlib.Path(root).expanduser()
  if not path.is_dir():
    what = 'is not a directory' if path.exists() else 'does not exist'
    raise core.MissingRootError(
      f'{field}={str(root)!r} {what} (expected the {entry.layout.name} layout)',
      dataset=entry.name,
      reason='dataset root missing',
    )
  return path


def _synthetic_root(root: str) -> pathlib.Path:
  try:
    return synthetic.ensure_synthetic_dataset(root or None, log=_announce)
  except FileNotFoundError as e:  # a named root without a dataset: never generated
    raise core.MissingRootError(str(e), reason='no synthetic dataset') from e


def _announce(message: str) -> None:
  print(message, flush=True)


# ------------------------------------------------------------------------------ built-in datasets
def _register_builtins() -> None:
  g = got10k.LAYOUT
  register('got10k_train_full', g, root_key='got10k', train={'split': 'train'})
  for name in ('got10k_vottrain', 'got10k_votval'):
    register(
      name,
      g,
      root_key='got10k',
      train={'split': 'train'},
      split_file=name,
      split_file_required=True,
    )
  register(
    'got10k_val',
    g,
    root_key='got10k',
    train={'split': 'val'},
    eval={'split': 'val'},
    result_layout='got10k',
  )
  register('got10k_test', g, root_key='got10k', eval={'split': 'test'}, result_layout='got10k')
  register('got10k_train', g, root_key='got10k', eval={'split': 'train'}, result_layout='got10k')
  register(
    'lasot',
    lasot.LAYOUT,
    root_key='lasot',
    train={'split': 'train'},
    eval={'split': 'test'},
    result_layout='lasot',
    split_file='lasot',
  )
  register(
    'trackingnet',
    trackingnet.LAYOUT,
    root_key='trackingnet',
    train={'split': 'TRAIN'},
    eval={'split': 'TEST'},
    result_layout='trackingnet',
  )
  register('coco', coco.LAYOUT, root_key='coco', train={'split': 'train2017'}, is_video=False)
  register('otb', otb.LAYOUT, root_key='otb', eval={}, result_layout='otb')
  register('folder', folder.LAYOUT, root_key='folder', train={}, eval={}, result_layout='folder')
  for name, split in (('synthetic', 'train'), ('synthetic_val', 'val')):
    register(
      name,
      g,
      root_key='synthetic',
      train={'split': split},
      resolve_root=_synthetic_root,
    )


_register_builtins()
