"""Sequence names stay inside their folders.

A name read from a list file (a folder layout's or GOT-10k's ``list.txt``, LaSOT's
``testing_set.txt``), a folder name or ``--sequences`` is joined to the output folder
(``<name>.txt``, ``<name>/<name>_001.txt``) and to the dataset root. A name that is a path
(``..``, absolute, with a separator, empty, with a NUL) is refused by the dataset layer for
every layout and use, naming the sequence and where it came from; the other sequences go on.
The result writer refuses one too (the last line of defence).
"""

import os
import pathlib
import runpy

import cv2
import numpy as np
import pytest

import train_util
from ostrack_jax import cli
from ostrack_jax.configs import get_config
from ostrack_jax.data import sources
from ostrack_jax.datasets import core, folder, registry
from ostrack_jax.tracking import eval_sequences, results

REPO = pathlib.Path(__file__).resolve().parents[2]
BAD_NAMES = ['..', '../x', '../../x', '/abs/x', 'a/b', 'a\\b', '.', '', 'a\x00b']

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def _sequence(folder: pathlib.Path, n: int = 3, pattern: str = '{:08d}.jpg', start: int = 1):
  """A sequence folder of ``n`` small frames with a full ground truth."""
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    cv2.imwrite(
      str(folder / pattern.format(start + i)), np.full((72, 96, 3), 40 * i % 256, np.uint8)
    )
  (folder / 'groundtruth.txt').write_text(''.join(f'{30 + i},20,24,18\n' for i in range(n)))
  return folder


def _files(root: pathlib.Path):
  """The files under ``root``, relative to it (folders are not listed)."""
  return sorted(str(p.relative_to(root)) for p in root.rglob('*') if not p.is_dir())


@pytest.mark.parametrize('name', BAD_NAMES)
def test_the_rule_refuses_paths_and_names_the_source(name):
  listed = core.ListedName(name, 'data/list.txt', 4)
  with pytest.raises(core.DatasetError) as e:
    core.check_sequence_name(listed)
  assert e.value.sequence == name and e.value.path == 'data/list.txt' and e.value.line == 4
  named = f'sequence {name!r}: ' if name else ''  # an empty name: 'it is empty'
  assert str(e.value).startswith(f'{named}data/list.txt line 4: not a plain sequence name: it')
  for ok in ('GOT-10k_Val_000001', 'airplane-1', 'a..b', '.hidden', 'seq 1'):
    core.check_sequence_name(ok)


def test_got10k_and_lasot_lists_name_the_file_and_line_and_the_rest_goes_on(tmp_path):
  root = tmp_path / 'data'
  _sequence(root / 'val' / 'GOT-10k_Val_000001')
  _sequence(tmp_path / 'x')  # what ../../x reaches from root/val
  (root / 'val' / 'list.txt').write_text('GOT-10k_Val_000001\n../../x\n')
  errors = []
  seqs = eval_sequences.load_dataset('got10k_val', root, errors=errors)
  assert [s.name for s in seqs] == ['GOT-10k_Val_000001']
  ((name, message),) = errors
  assert name == '../../x'
  assert f"got10k_val: sequence '../../x': {root / 'val' / 'list.txt'} line 2: not a plain" in (
    message
  )
  # LaSOT: the test list at the root.
  lasot = tmp_path / 'lasot'
  for seq in ('cat-1', 'cat-2'):
    d = _sequence(lasot / 'cat' / seq / 'img')
    (d.parent / 'groundtruth.txt').write_text((d / 'groundtruth.txt').read_text())
    for flag in ('full_occlusion.txt', 'out_of_view.txt'):
      (d.parent / flag).write_text('0,0,0')
  (lasot / 'testing_set.txt').write_text(f'cat-1\n{lasot / "cat" / "cat-2"}\n')
  errors = []
  assert [s.name for s in eval_sequences.load_dataset('lasot', lasot, errors=errors)] == ['cat-1']
  assert f'{lasot / "testing_set.txt"} line 2: not a plain' in errors[0][1]


@pytest.mark.parametrize('dataset', ['folder', 'got10k_val', 'lasot', 'trackingnet', 'otb'])
def test_sequences_argument_is_checked_for_every_layout(tmp_path, dataset):
  root = tmp_path / 'data'
  root.mkdir()
  (root / 'TEST' / 'anno').mkdir(parents=True)  # TrackingNet's annotation folder
  errors = []
  assert eval_sequences.load_dataset(dataset, root, ['../x', 'a/b'], errors=errors) == []
  assert [n for n, _ in errors] == ['../x', 'a/b']
  assert all(f"{dataset}: sequence '{n}': --sequences: not a plain" in m for n, m in errors)
  with pytest.raises(core.DatasetError, match=r"sequence '\.\./x': --sequences: not a plain"):
    eval_sequences.load_dataset(dataset, root, ['../x'])  # eval.py --fail-fast


def test_training_index_skips_a_listed_path_with_its_reason(tmp_path):
  root = tmp_path / 'data'
  _sequence(root / 'good', n=20)
  _sequence(tmp_path / 'outside', n=20)
  (root / 'list.txt').write_text('good\n../outside\n')
  source = sources.open_source('folder', root, cache_dir=None, verify_frames=False)
  assert list(source.sequences.names) == [b'good']
  assert len(source.report.skipped) == 1
  assert 'skipped 1 sequence(s): not a plain sequence name' in source.report.summary()
  assert '(e.g. ../outside)' in source.report.summary()


def test_a_dataset_name_is_a_plain_name_too():
  """Packs go to ``<output>/<dataset>``: a registered dataset name follows the same rule."""
  with pytest.raises(ValueError, match=r"dataset name '\.\./packs': not a plain sequence name"):
    registry.register('../packs', folder.LAYOUT, root_key='folder', train={})
  assert '../packs' not in registry.names('train')


@pytest.mark.parametrize('layout', results.LAYOUTS)
def test_result_writer_refuses_a_name_that_would_escape(tmp_path, layout):
  writer = results.ResultWriter(tmp_path / 'out', layout)
  for name in BAD_NAMES:
    with pytest.raises(core.DatasetError, match='not a plain sequence name'):
      writer.write(name, np.ones((1, 4)), [0.1])
    with pytest.raises(core.DatasetError, match='not a plain sequence name'):
      writer.has_files(name)
  assert _files(tmp_path) == []
  writer.write('seq-1', np.ones((1, 4)), [0.1])
  assert writer.is_done('seq-1', 1)


def _eval_argv(tmp_path, data, out, *extra):
  """eval.py's flags: the small OSTrack of the train.py tests (tests/train_util.py; batch 1 and
  frames of 96x72, as tests/tracking/test_eval.py: its compiled step is cached) on the folder
  dataset ``data`` into ``out``."""
  small = [f for f in train_util.SMALL_MODEL if f.startswith('--config.')]
  ckpt = tmp_path / 'model.msgpack'
  if not ckpt.exists():
    from ostrack_jax.configs import apply_overrides
    from ostrack_jax.models.ostrack import init_variables
    from ostrack_jax.weights.model_file import save_variables

    config = apply_overrides(
      get_config('tiny_256_ce'), [f.removeprefix('--config.') for f in small]
    )
    save_variables(str(ckpt), init_variables(config, seed=0), config)
  argv = ['--checkpoint', str(ckpt), '--dataset', 'folder', '--data-dir', str(data), *small]
  return argv + ['--output', str(out), '--no-progress', '--no-plots', *extra]


@pytest.mark.slow
def test_eval_py_keeps_listed_paths_out_and_tracks_the_rest(tmp_path, capfd):
  """A folder dataset whose list.txt names a good sequence, ``../outside_seq`` and an absolute
  path, both real sequences outside the dataset: the good one is tracked, the two are failures
  naming list.txt and the line (exit status 1), and nothing is written outside --output. With
  --fail-fast the first one stops the run before anything is tracked (exit status 2). eval.py's
  main runs as the command runs it, in-process (``cli.run``; capfd sees all it prints on the
  file descriptors, a library's own output included)."""
  data = tmp_path / 'data'
  _sequence(data / 'good')
  _sequence(tmp_path / 'outside_seq')
  _sequence(tmp_path / 'abs_seq')
  (data / 'list.txt').write_text(f'good\n../outside_seq\n{tmp_path / "abs_seq"}\n')
  before = set(_files(tmp_path))
  eval_main = runpy.run_path(str(REPO / 'eval.py'))['main']
  argv = _eval_argv(tmp_path, data, tmp_path / 'out' / 'results')
  assert cli.run(eval_main, 'eval.py', argv) == 1
  err = capfd.readouterr().err
  assert 'Traceback' not in err
  list_file = data / 'list.txt'
  assert f"folder: sequence '../outside_seq': {list_file} line 2: not a plain" in err
  assert f"folder: sequence '{tmp_path / 'abs_seq'}': {list_file} line 3: not a plain" in err
  new = set(_files(tmp_path)) - before  # nothing written beside the output folder
  assert {f for f in new if not f.startswith('out/')} == {'model.msgpack'}
  assert (tmp_path / 'out' / 'results' / 'good.txt').is_file()
  assert os.listdir(tmp_path / 'out') == ['results']
  # --fail-fast: nothing is tracked.
  argv = _eval_argv(tmp_path, data, tmp_path / 'out2', '--fail-fast')
  assert cli.run(eval_main, 'eval.py', argv) == 2
  err = capfd.readouterr().err
  assert err.count('\n') == 1 and err.startswith("eval.py: folder: sequence '../outside_seq': ")
  assert not (tmp_path / 'out2').exists()
