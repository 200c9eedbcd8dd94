"""Comparing trackers (``ostrack_jax.compare_trackers``, ``python -m ostrack_jax.compare``).

Result folders: ours at two "checkpoints" and another tracker in its own official layout, on a
tiny synthetic GOT-10k-layout dataset made here, read both as ``got10k_val`` and as a ``folder``
dataset. Ours are written by ``ResultWriter.write``, the writer eval.py itself writes with (the
comparison only reads files, so boxes written by it are what an eval.py run would leave,
byte for byte in layout and format); one slow test makes them with ``evaluate`` at two real
sets of weights. The other tracker's files are written here by hand as the original OSTrack
and the GOT-10k toolkit write theirs (integers, tab separated; ``%.3f``, comma separated),
without time files.

Each row must equal the single-folder computation: eval.py's ``report.compute_metrics`` on
the folder (ours), or the metric functions fed by ``np.loadtxt`` (the other tracker), over the
sequences the comparison scored.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import train_util
from ostrack_jax.common.errors import InputError
from ostrack_jax.tracking import attribute_labels, compare, eval_sequences, metrics, report, results

REPO = pathlib.Path(__file__).resolve().parents[2]
NAMES = ('SYN_Val_000001', 'SYN_Val_000002', 'SYN_Val_000003')

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  from ostrack_jax.datasets import synthetic

  tmp = tmp_path_factory.mktemp('compare')
  root = synthetic.make_synthetic_dataset(
    tmp / 'syn', num_train=0, num_val=3, num_frames=7, frame_size=(96, 72), seed=3
  )
  return {'tmp': tmp, 'got10k': root, 'folder': root / 'val'}


def _ours(folder, layout, seqs, seed, noise=4.0):
  """Boxes near the ground truth, written as eval.py writes them (with time files)."""
  rng = np.random.default_rng(seed)
  writer = results.ResultWriter(folder, layout)
  for seq in seqs:
    boxes = seq.gt_xywh + rng.normal(0, noise, seq.gt_xywh.shape)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 2.0)
    writer.write(seq.name, boxes, [0.01] * len(seq))
  return folder


def _other(folder, layout, seqs, seed=7):
  """Another tracker's raw results in its official layout: integer boxes, tab separated
  (the original OSTrack's own files) for ``<seq>.txt``; GOT-10k toolkit files (``%.3f``,
  comma separated) for ``<seq>/<seq>_001.txt``; no time files."""
  rng = np.random.default_rng(seed)
  for seq in seqs:
    boxes = seq.gt_xywh + rng.normal(0, 9.0, seq.gt_xywh.shape)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 2.0)
    if layout == 'got10k':
      (folder / seq.name).mkdir(parents=True, exist_ok=True)
      np.savetxt(folder / seq.name / f'{seq.name}_001.txt', boxes, fmt='%.3f', delimiter=',')
    else:
      folder.mkdir(parents=True, exist_ok=True)
      np.savetxt(folder / f'{seq.name}.txt', boxes.astype(int), fmt='%d', delimiter='\t')
  return folder


def _single_run(folder, seqs, layout, dataset):
  """What eval.py computes for one folder of ours alone (report.compute_metrics)."""
  return report.compute_metrics(seqs, results.ResultWriter(folder, layout), layout, dataset)[
    'summary'
  ]


def _other_reference(folder, seqs, layout):
  """The other tracker's numbers from its files read by np.loadtxt (not by our reader)."""
  errors, got_ious = [], []
  for seq in seqs:
    if layout == 'got10k':
      boxes = np.loadtxt(folder / seq.name / f'{seq.name}_001.txt', delimiter=',')
      got_ious.append(metrics.got10k_frame_ious(boxes, seq.gt_xywh, seq.cover, seq.image_size))
    else:
      boxes = np.loadtxt(folder / f'{seq.name}.txt', delimiter='\t')
    errors.append(metrics.ope_sequence_errors(boxes, seq.gt_xywh, seq.visible))
  summary = {}
  if layout == 'got10k':
    summary.update({k: 100 * v for k, v in metrics.got10k_summary(got_ious).items()})
  summary.update(metrics.ope_summary(metrics.ope_curves(errors)))
  return summary


def test_folder_dataset_rows_equal_single_runs_and_plots(data):
  tmp, root = data['tmp'] / 'folder_case', data['folder']
  seqs = eval_sequences.load_dataset('folder', root)
  assert [s.name for s in seqs] == list(NAMES)
  a = _ours(tmp / 'ckpt_a', 'folder', seqs, seed=1, noise=2.0)
  b = _ours(tmp / 'ckpt_b', 'folder', seqs, seed=2, noise=6.0)
  other = _other(tmp / 'OtherTrack', 'folder', seqs)
  out = tmp / 'report'
  c = compare.compare_trackers(
    'folder', root, [f'ours-A={a}', f'ours-B={b}', str(other)], output=out, plots=False
  )
  assert c.sequences == list(NAMES) and c.left_out == {}
  rows = dict(c.rows)
  assert set(rows) == {'ours-A', 'ours-B', 'OtherTrack'}  # a bare folder: its name
  assert rows['ours-A'] == _single_run(a, seqs, 'folder', 'folder')
  assert rows['ours-B'] == _single_run(b, seqs, 'folder', 'folder')
  expected = _other_reference(other, seqs, 'folder')
  assert rows['OtherTrack'] == pytest.approx(expected, abs=1e-12, rel=0)
  aucs = [m['AUC'] for _, m in c.rows]
  assert aucs == sorted(aucs, reverse=True) and len(set(aucs)) == 3
  assert c.columns == report.OPE_COLUMNS
  # The printed table and the saved ones.
  assert c.text.splitlines()[0].split() == ['folder', '(3', 'seq)', *report.OPE_COLUMNS]
  assert [line.split()[0] for line in c.text.splitlines()[2:5]] == [n for n, _ in c.rows]
  assert f'{rows["OtherTrack"]["AUC"]:.2f}' in c.text
  saved = json.loads((out / 'table.json').read_text())
  assert [(t['name'], t['metrics']) for t in saved['trackers']] == [
    (n, pytest.approx(m, abs=1e-12)) for n, m in c.rows
  ]
  assert saved['sequences'] == list(NAMES) and saved['sorted_by'] == ['AUC', 'P@20', 'NP@0.2']
  writer = results.ResultWriter(a, 'folder')
  assert saved['per_sequence']['ours-A'] == dict(
    report.compute_metrics(seqs, writer, 'folder', 'folder')['rows']
  )
  assert (out / 'table.txt').read_text().startswith(c.text.splitlines()[0])
  assert sorted(p.name for p in out.iterdir()) == ['table.json', 'table.txt']  # plots=False


def test_got10k_dataset_leaves_out_missing_and_damaged_sequences(data):
  tmp, root = data['tmp'] / 'got10k_case', data['got10k']
  seqs = eval_sequences.load_dataset('got10k_val', root)
  a = _ours(tmp / 'ckpt_a', 'got10k', seqs, seed=1)
  b = _ours(tmp / 'ckpt_b', 'got10k', seqs, seed=2)
  other = _other(tmp / 'other', 'got10k', seqs)
  shutil.rmtree(b / 'SYN_Val_000002')  # ckpt B never finished it
  damaged = other / 'SYN_Val_000003' / 'SYN_Val_000003_001.txt'
  damaged.write_text(''.join(damaged.read_text().splitlines(True)[:3]))  # cut short
  folders = {'ours-A': a, 'ours-B': b, 'Other': other}
  out = tmp / 'report'
  c = compare.compare_trackers('got10k_val', root, folders, output=out, plots=False)
  assert c.sequences == ['SYN_Val_000001']
  assert set(c.left_out) == {'ours-B', 'Other'}
  assert list(c.left_out['ours-B']) == ['SYN_Val_000002']
  assert c.left_out['ours-B']['SYN_Val_000002'].startswith('missing: ')
  assert list(c.left_out['Other']) == ['SYN_Val_000003']
  assert c.left_out['Other']['SYN_Val_000003'] == (
    f'damaged: {damaged} has 3 lines, the sequence has 7 frames'
  )
  assert "tracker 'ours-B': 1 sequence(s)" in c.text and 'SYN_Val_000003: damaged' in c.text
  # Rows: the single-folder computation over the one sequence every tracker has.
  common = [s for s in seqs if s.name == 'SYN_Val_000001']
  rows = dict(c.rows)
  assert rows['ours-A'] == _single_run(a, common, 'got10k', 'got10k_val')
  assert rows['ours-B'] == _single_run(b, common, 'got10k', 'got10k_val')
  assert rows['Other'] == pytest.approx(_other_reference(other, common, 'got10k'), abs=1e-12)
  assert c.columns == report.GOT10K_COLUMNS + report.OPE_COLUMNS
  aos = [m['AO'] for _, m in c.rows]
  assert aos == sorted(aos, reverse=True)
  saved = json.loads((out / 'table.json').read_text())
  assert saved['left_out'] == c.left_out and saved['sorted_by'] == ['AO', 'SR0.5', 'SR0.75']
  assert c.notes == []
  # A toolkit folder with a second run of a non-deterministic tracker: said, not silently mixed.
  shutil.copy(other / NAMES[0] / f'{NAMES[0]}_001.txt', other / NAMES[0] / f'{NAMES[0]}_002.txt')
  again = compare.compare_trackers('got10k_val', root, folders)
  assert again.rows == c.rows
  assert again.notes == [
    f"tracker 'Other': 1 sequence(s) have more runs ({NAMES[0]}_002.txt ...): only the first "
    '(_001) is scored; the GOT-10k toolkit pools all runs'
  ]
  assert f'note: {again.notes[0]}' in again.text
  # --require-all: the same gap is a named error, before anything is written.
  with pytest.raises(InputError, match=r"--require-all: tracker 'ours-B': sequence 'SYN_Val_0000"):
    compare.compare_trackers('got10k_val', root, folders, output=tmp / 'strict', require_all=True)
  assert not (tmp / 'strict').exists()


def test_attribute_tables_equal_single_runs_on_the_subsets(data):
  tmp, root = data['tmp'] / 'attribute_case', data['got10k']
  seqs = eval_sequences.load_dataset('got10k_val', root)
  a = _ours(tmp / 'a', 'got10k', seqs, seed=1)
  other = _other(tmp / 'other', 'got10k', seqs)
  table = tmp / 'attributes.csv'
  table.write_text(
    'sequence,FM,OCC,NONE\nSYN_Val_000001,1,0,0\nSYN_Val_000002,1,1,0\nSYN_Val_000003,0,1,0\n'
  )
  c = compare.compare_trackers('got10k_val', root, {'A': a, 'B': other}, attributes=table)
  assert list(c.attributes) == ['FM', 'OCC']  # NONE: no sequence has it
  for attribute, members in (('FM', NAMES[:2]), ('OCC', NAMES[1:])):
    entry = c.attributes[attribute]
    assert entry['sequences'] == list(members)
    subset = [s for s in seqs if s.name in members]
    rows = dict(entry['rows'])
    assert rows['A'] == _single_run(a, subset, 'got10k', 'got10k_val')
    assert rows['B'] == pytest.approx(_other_reference(other, subset, 'got10k'), abs=1e-12)
    assert f'{attribute} (2 seq)' in c.text
  # The LaSOT toolkit's annos/att folder: one line of 14 flags per sequence, its names.
  att = tmp / 'att'
  att.mkdir()
  for i, name in enumerate(NAMES):
    (att / f'{name}.txt').write_text(','.join('1' if k == i else '0' for k in range(14)) + '\n')
  labels, titles = attribute_labels.read_attributes(att)
  assert titles['IV'] == 'Illumination Variation' and list(titles)[-1] == 'ARC'
  assert [a for a, v in labels['SYN_Val_000002'].items() if v] == ['POC']
  folder_seqs = eval_sequences.load_dataset(
    'folder', data['folder']
  )  # a layout without pooled IoUs
  ours = _ours(tmp / 'folder_a', 'folder', folder_seqs, seed=1)
  c = compare.compare_trackers('folder', data['folder'], {'A': ours}, attributes=att)
  assert list(c.attributes) == ['IV', 'POC', 'DEF']
  assert c.attributes['POC']['title'] == 'Partial Occlusion'
  subset = [s for s in folder_seqs if s.name == 'SYN_Val_000002']
  assert c.attributes['POC']['rows'] == [('A', _single_run(ours, subset, 'folder', 'folder'))]
  (att / 'x.txt').write_text('0,1,0,0,0,0,0,0,0,0,0\n')  # 11 flags (OTB): order unknown
  with pytest.raises(InputError, match=r'x.txt: 11 flags; .* give a table file'):
    attribute_labels.read_attributes(att)
  bad = tmp / 'bad.csv'
  bad.write_text('sequence,../up\nSYN_Val_000001,1\n')  # names a plot folder: refused
  with pytest.raises(InputError, match=r"bad.csv line 1: attribute name '../up'"):
    attribute_labels.read_attributes(bad)
  bad.write_text('sequence,FM\nSYN_Val_000001,1\n')
  with pytest.raises(InputError, match=r"bad.csv: no labels for sequence 'SYN_Val_000002' \(2 of"):
    compare.compare_trackers('got10k_val', root, {'A': a}, attributes=bad)


def test_got10k_success_curve_is_the_toolkits():
  """Pooled IoUs, 101 thresholds, strict '>' (got10k toolkit ``_evaluate``)."""
  curve = metrics.got10k_success_curve([np.array([0.2, 0.6]), np.array([0.9])])
  assert curve.shape == (101,) and curve[0] == 1.0
  assert curve[50] == pytest.approx(2 / 3) and curve[60] == pytest.approx(1 / 3)
  assert curve[90] == 0.0 and curve[89] == pytest.approx(1 / 3)


def test_bad_inputs_are_named_before_any_work(data, tmp_path):
  root = data['folder']
  seqs = eval_sequences.load_dataset('folder', root)
  good = _ours(tmp_path / 'good', 'folder', seqs, seed=1)
  with pytest.raises(InputError, match=r"--results: the name 'good' is given twice"):
    compare.compare_trackers('folder', root, [str(good), f'good={tmp_path}'])
  with pytest.raises(InputError, match=r'--results: .*good is given twice'):
    compare.compare_trackers('folder', root, [str(good), f'again={good}'])
  (tmp_path / 'file').write_text('x')
  with pytest.raises(InputError, match=r'--output .*file/report: .*file is a file, not a folder'):
    compare.compare_trackers('folder', root, [str(good)], output=tmp_path / 'file' / 'report')
  with pytest.raises(InputError, match=r"unknown dataset 'nope'"):
    compare.compare_trackers('nope', root, [str(good)])
  with pytest.raises(InputError, match=r'no sequence with full ground truth'):
    test_root = tmp_path / 'test_split'
    shutil.copytree(data['got10k'] / 'val' / NAMES[0], test_root / 'test' / NAMES[0])
    gt = test_root / 'test' / NAMES[0] / 'groundtruth.txt'
    gt.write_text(gt.read_text().splitlines()[0] + '\n')
    compare.compare_trackers('got10k_test', test_root, [str(good)])


def test_command_names_every_bad_folder_in_one_line(data, tmp_path):
  """Missing, a file, empty, another layout (GOT-10k files for a folder dataset): one line on
  stderr naming all four, exit status 2, nothing written."""
  seqs = eval_sequences.load_dataset('got10k_val', data['got10k'])
  good = _ours(tmp_path / 'good', 'folder', seqs, seed=1)
  wrong = _ours(tmp_path / 'wrong', 'got10k', seqs, seed=1)
  (tmp_path / 'file.txt').write_text('x')
  (tmp_path / 'empty').mkdir()
  out = tmp_path / 'report'
  cmd = [sys.executable, '-m', 'ostrack_jax.compare', '--dataset', 'folder', '--data-dir',
         str(data['folder']), '--results', f'ok={good}', f'gone={tmp_path / "missing"}',
         f'file={tmp_path / "file.txt"}', str(tmp_path / 'empty'), f'wrong={wrong}',
         '--output', str(out)]  # fmt: skip
  env = {'PYTHONPATH': str(REPO), 'PATH': '/usr/bin:/bin'}
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
  assert proc.returncode == 2, proc.stderr
  assert proc.stdout == '' and len(proc.stderr.splitlines()) == 1, proc.stderr
  line = proc.stderr.strip()
  assert line.startswith('python -m ostrack_jax.compare: --results: gone=')
  assert f'gone={tmp_path / "missing"}: no such folder' in line
  assert f'file={tmp_path / "file.txt"}: not a folder' in line
  assert f'empty={tmp_path / "empty"}: empty' in line
  assert f'wrong={wrong}: wrong layout: no result file <seq>.txt (folder)' in line
  assert 'SYN_Val_000001/' in line and 'ok=' not in line
  assert not out.exists()


@pytest.mark.slow
def test_ours_at_two_checkpoints_through_evaluate_equal_eval_numbers(data, tmp_path, capsys):
  """eval.py's own runs (``evaluate``) of a model at two sets of weights, and another tracker:
  each of our rows is exactly what eval.py printed for that folder alone. The model: the small
  OSTrack of the train.py tests (tests/train_util.py), as in test_eval."""
  from ostrack_jax.configs import apply_overrides, get_config
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.tracking import evaluate
  from ostrack_jax.weights.model_file import save_variables

  small = [f.removeprefix('--config.') for f in train_util.SMALL_MODEL if f.startswith('--config.')]
  config = apply_overrides(get_config('tiny_256_ce'), small)
  runs = {}
  for seed in (0, 1):
    ckpt = tmp_path / f'seed{seed}.msgpack'
    save_variables(str(ckpt), init_variables(config, seed=seed), config)
    out = tmp_path / f'eval_seed{seed}'
    runs[f'tiny-seed{seed}'] = (
      out,
      evaluate.evaluate(
        config, str(ckpt), 'got10k_val', str(data['got10k']), output=str(out), progress=False,
        plots=False,
      ),
    )  # fmt: skip
  seqs = eval_sequences.load_dataset('got10k_val', data['got10k'])
  other = _other(tmp_path / 'other', 'got10k', seqs)
  folders = {name: out for name, (out, _) in runs.items()}
  report_dir = tmp_path / 'report'
  attributes = tmp_path / 'attributes.txt'
  attributes.write_text(f'sequence\tFM\n{NAMES[0]}\t1\n{NAMES[1]}\t1\n{NAMES[2]}\t0\n')
  c = compare.compare_trackers(
    'got10k_val', data['got10k'], dict(folders, Other=other), output=report_dir,
    attributes=attributes,
  )  # fmt: skip
  capsys.readouterr()
  rows = dict(c.rows)
  assert c.sequences == list(NAMES)
  for name, (_, result) in runs.items():
    assert result.ok and rows[name] == result.metrics, name
  assert rows['tiny-seed0'] != rows['tiny-seed1']
  assert rows['Other'] == pytest.approx(_other_reference(other, seqs, 'got10k'), abs=1e-12)
  assert c.attributes['FM']['sequences'] == list(NAMES[:2])
  for folder in (report_dir, report_dir / 'attributes' / 'FM'):
    for plot in ('success', 'precision', 'norm_precision', 'got10k_success'):
      assert (folder / f'{plot}_plot.png').read_bytes()[:4] == b'\x89PNG', (folder, plot)
