"""eval.py end to end on a tiny synthetic GOT-10k-format dataset made here.

Checks the official layout, that metrics recomputed from the written files (with the metric
functions fed by plain np.loadtxt, not by eval.py's reader) equal the printed/saved ones,
resume, lockstep batching with unequal lengths, bad sequences, and the test-split zip.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import zipfile

import numpy as np
import pytest

from ostrack_jax.tracking import metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_eval():
  spec = importlib.util.spec_from_file_location('ostrack_eval', ROOT / 'eval.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  from ostrack_jax.checkpoint_io import save_variables
  from ostrack_jax.configs import get_config
  from ostrack_jax.data import synthetic
  from ostrack_jax.models.ostrack import init_variables

  tmp = tmp_path_factory.mktemp('eval')
  config = get_config('tiny_256_ce')
  ckpt = tmp / 'model.msgpack'
  save_variables(str(ckpt), init_variables(config, seed=0), config)
  data = synthetic.make_synthetic_dataset(
    tmp / 'syn', num_train=0, num_val=3, num_frames=7, frame_size=(96, 72), seed=3
  )
  # Unequal lengths: cut the second sequence to 4 frames.
  seq = data / 'val' / 'SYN_Val_000002'
  for i in range(5, 8):
    (seq / f'{i:08d}.jpg').unlink()
  for name in ('groundtruth.txt', 'absence.label', 'cover.label'):
    lines = (seq / name).read_text().splitlines()[:4]
    (seq / name).write_text('\n'.join(lines) + '\n')
  return {'tmp': tmp, 'ckpt': ckpt, 'data': data, 'eval': _load_eval()}


def _run(setup, out, *extra):
  return setup['eval'].main(
    [
      '--config',
      str(ROOT / 'configs' / 'tiny_256_ce.py'),
      '--checkpoint',
      str(setup['ckpt']),
      '--dataset',
      'got10k_val',
      '--data-dir',
      str(setup['data']),
      '--output',
      str(out),
      '--no-progress',
      *extra,
    ]
  )


def _recompute(out, data):
  """AO/SR and AUC/P/NP from the result files and the raw GOT-10k annotation files."""
  got_ious, errs = [], []
  for seq_dir in sorted((data / 'val').iterdir()):
    if not seq_dir.is_dir():
      continue
    name = seq_dir.name
    pred = np.loadtxt(out / name / f'{name}_001.txt', delimiter=',', ndmin=2)
    gt = np.loadtxt(seq_dir / 'groundtruth.txt', delimiter=',', ndmin=2)
    cover = np.loadtxt(seq_dir / 'cover.label', ndmin=1)
    absence = np.loadtxt(seq_dir / 'absence.label', ndmin=1)
    meta = (seq_dir / 'meta_info.ini').read_text()
    res = meta.split('resolution:')[1].strip().strip('()').split(',')
    got_ious.append(metrics.got10k_frame_ious(pred, gt, cover, (int(res[0]), int(res[1]))))
    errs.append(metrics.ope_sequence_errors(pred, gt, absence == 0))
  out_metrics = {k: v * 100 for k, v in metrics.got10k_summary(got_ious).items()}
  out_metrics.update(metrics.ope_summary(metrics.ope_curves(errs)))
  return out_metrics


def test_eval_writes_official_layout_and_metrics_recompute(setup, capsys):
  out = setup['tmp'] / 'out_single'
  assert _run(setup, out) == 0
  printed = capsys.readouterr().out
  for name, n in (('SYN_Val_000001', 7), ('SYN_Val_000002', 4), ('SYN_Val_000003', 7)):
    lines = (out / name / f'{name}_001.txt').read_text().splitlines()
    assert len(lines) == n
    assert all(len(line.split(',')) == 4 for line in lines)
    assert '.' in lines[1]  # floats, not truncated integers
    assert len((out / name / f'{name}_time.txt').read_text().splitlines()) == n
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  recomputed = _recompute(out, setup['data'])
  for key in ('AO', 'SR0.5', 'SR0.75', 'AUC', 'OP50', 'OP75', 'P@20', 'NP@0.2'):
    assert saved['metrics'][key] == pytest.approx(recomputed[key], abs=1e-9), key
    assert key in printed
  assert f'{recomputed["AO"]:.2f}' in printed
  for plot in ('success_plot.png', 'precision_plot.png'):
    assert (out / 'report' / plot).read_bytes()[:4] == b'\x89PNG'
  assert 'tracker' in printed and 'end-to-end' in printed
  assert saved['speed']['tracker_fps'] > 0 and saved['speed']['end_to_end_fps'] > 0


def test_eval_resumes_and_lockstep_matches(setup, capsys):
  out = setup['tmp'] / 'out_single'
  if not (out / 'SYN_Val_000001').exists():
    assert _run(setup, out) == 0
  reference = {
    n: (out / n / f'{n}_001.txt').read_text()
    for n in ('SYN_Val_000001', 'SYN_Val_000002', 'SYN_Val_000003')
  }
  # Resume: a finished run tracks nothing; a deleted sequence alone is re-tracked.
  shutil.rmtree(out / 'SYN_Val_000003')
  capsys.readouterr()
  assert _run(setup, out, '--no-plots') == 0
  assert '1 to track, 2 already done' in capsys.readouterr().out
  assert (out / 'SYN_Val_000003' / 'SYN_Val_000003_001.txt').read_text() == reference[
    'SYN_Val_000003'
  ]
  # Lockstep, batch 2 over unequal lengths (7, 4, 7): 'map' is bit-identical.
  out_map = setup['tmp'] / 'out_map'
  assert (
    _run(
      setup,
      out_map,
      '--batch-size',
      '2',
      '--batch-mode',
      'map',
      '--no-plots',
      '--decode-threads',
      '2',
    )
    == 0
  )  # also frames decoded ahead on threads
  for n, text in reference.items():
    assert (out_map / n / f'{n}_001.txt').read_text() == text, n
  # 'vmap' (one batched forward) agrees up to float rounding.
  out_vmap = setup['tmp'] / 'out_vmap'
  assert _run(setup, out_vmap, '--batch-size', '2', '--no-plots') == 0
  for n in reference:
    a = np.loadtxt(out / n / f'{n}_001.txt', delimiter=',')
    b = np.loadtxt(out_vmap / n / f'{n}_001.txt', delimiter=',')
    np.testing.assert_allclose(a, b, atol=1e-2, rtol=0)


def test_eval_skips_bad_sequences_and_reports_them(setup, capsys):
  data = setup['tmp'] / 'syn_bad'
  if not data.exists():
    shutil.copytree(setup['data'], data)
    (data / 'val' / 'SYN_Val_000001' / '00000003.jpg').write_bytes(b'\xff\xd8 broken')
    (data / 'val' / 'SYN_Val_000002' / 'groundtruth.txt').write_text('1,2,3\n')
    gt3 = data / 'val' / 'SYN_Val_000003' / 'groundtruth.txt'
    lines = gt3.read_text().splitlines()
    lines[2] = 'nan,nan,nan,nan'  # tracked fine, but no metric can be computed
    gt3.write_text('\n'.join(lines) + '\n')
  out = setup['tmp'] / 'out_bad'
  eval_mod = setup['eval']
  code = eval_mod.main(
    [
      '--config',
      'tiny_256_ce',
      '--checkpoint',
      str(setup['ckpt']),
      '--dataset',
      'got10k_val',
      '--data-dir',
      str(data),
      '--output',
      str(out),
      '--no-progress',
      '--no-plots',
    ]
  )
  captured = capsys.readouterr()
  assert code == 1
  assert "'SYN_Val_000001' frame 2: " in captured.err
  assert '00000003.jpg is a truncated JPEG' in captured.err
  assert "'SYN_Val_000002'" in captured.err and 'expected 4 numbers' in captured.err
  assert (out / 'SYN_Val_000003' / 'SYN_Val_000003_001.txt').is_file()
  assert not (out / 'SYN_Val_000001').exists()
  assert "'SYN_Val_000003': no metrics: ground truth contains NaN" in captured.out
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  assert set(saved['failures']) == {'SYN_Val_000001', 'SYN_Val_000002', 'SYN_Val_000003'}
  # --fail-fast stops at the first bad sequence.
  code = eval_mod.main(
    [
      '--config',
      'tiny_256_ce',
      '--checkpoint',
      str(setup['ckpt']),
      '--dataset',
      'got10k_val',
      '--data-dir',
      str(data),
      '--output',
      str(setup['tmp'] / 'out_ff'),
      '--no-progress',
      '--fail-fast',
    ]
  )
  assert code == 2 and 'expected 4 numbers' in capsys.readouterr().err


def test_eval_test_split_writes_submission_zip(setup, capsys):
  data = setup['tmp'] / 'syn_test'
  if not data.exists():
    (data / 'test').mkdir(parents=True)
    src = setup['data'] / 'val' / 'SYN_Val_000002'
    dst = data / 'test' / 'SYN_Test_000001'
    shutil.copytree(src, dst)
    first = (dst / 'groundtruth.txt').read_text().splitlines()[0]
    (dst / 'groundtruth.txt').write_text(first + '\n')  # test split: first box only
    for name in ('absence.label', 'cover.label'):
      (dst / name).unlink()
  out = setup['tmp'] / 'out_test'
  code = setup['eval'].main(
    [
      '--checkpoint',
      str(setup['ckpt']),
      '--dataset',
      'got10k_test',
      '--data-dir',
      str(data),
      '--output',
      str(out),
      '--no-progress',
    ]
  )
  assert code == 0
  names = zipfile.ZipFile(out / 'submission.zip').namelist()
  assert sorted(names) == [
    'SYN_Test_000001/SYN_Test_000001_001.txt',
    'SYN_Test_000001/SYN_Test_000001_time.txt',
  ]
  assert 'submission archive' in capsys.readouterr().out


def test_eval_missing_checkpoint_message(setup, capsys):
  code = setup['eval'].main(
    ['--checkpoint', str(setup['tmp'] / 'nope.msgpack'), '--data-dir', str(setup['data'])]
  )
  assert code == 2
  assert 'nope.msgpack: no such file' in capsys.readouterr().err


def test_eval_folder_dataset_on_real_frames_with_pytorch_checkpoint(setup, capsys):
  """DAVIS soapbox frames from the tracker fixture (real pixels, partly zeroed) as a generic
  folder dataset, evaluated with the released-layout PyTorch checkpoint converted on the fly."""

  fixture = np.load(ROOT / 'tests' / 'fixtures' / 'tracker' / 'soapbox.npz')
  data = setup['tmp'] / 'real'
  seq_dir = data / 'soapbox'
  if not seq_dir.exists():
    seq_dir.mkdir(parents=True)
    for i in range(5):
      (seq_dir / f'{i + 1:05d}.png').write_bytes(fixture[f'png_{i}'].tobytes())
    np.savetxt(seq_dir / 'groundtruth.txt', fixture['gt'][:5], fmt='%.4f', delimiter=',')
  out = setup['tmp'] / 'out_real'
  code = setup['eval'].main(
    [
      '--config',
      'tiny_256_ce',
      '--checkpoint',
      str(ROOT / 'tests' / 'fixtures' / 'tiny256' / 'tiny256_seed0.pth.tar'),
      '--dataset',
      'folder',
      '--data-dir',
      str(data),
      '--output',
      str(out),
      '--no-progress',
      '--no-plots',
    ]
  )
  assert code == 0
  pred = np.loadtxt(out / 'soapbox.txt', delimiter=',')
  assert pred.shape == (5, 4) and (out / 'soapbox_time.txt').is_file()
  # The free-running boxes of the original tracker on these frames (tests/fixtures/tracker).
  np.testing.assert_allclose(pred[1:], fixture['free_boxes'][1:5], atol=1e-2, rtol=0)
  e = metrics.ope_sequence_errors(pred, fixture['gt'][:5])
  expected = metrics.ope_summary(metrics.ope_curves([e]))
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  for key, value in expected.items():
    assert saved['metrics'][key] == pytest.approx(value, abs=1e-9), key
  capsys.readouterr()


def test_eval_retracks_damaged_results_and_reports_unusable_ones(setup, capsys, monkeypatch):
  """A result file cut short, or a corrupt time file, is named and tracked again; a file still
  unusable after tracking (here a write that loses half the lines) is a failure in the summary,
  never a crash or a metric. Files come out with the umask's modes (0644 under 022)."""
  from ostrack_jax.tracking import results

  out = setup['tmp'] / 'out_damaged'
  src = setup['tmp'] / 'out_single'
  if src.exists():
    shutil.copytree(src, out)
  else:
    assert _run(setup, out, '--no-plots') == 0
  box1 = out / 'SYN_Val_000001' / 'SYN_Val_000001_001.txt'
  reference = box1.read_text()
  box1.write_text(''.join(reference.splitlines(True)[:3]))  # 3 of 7 lines
  time3 = out / 'SYN_Val_000003' / 'SYN_Val_000003_time.txt'
  time3.write_text(time3.read_text().replace('.', ',', 1))  # '0,00123456': 2 numbers
  write = results.ResultWriter.write

  def lossy_write(self, name, boxes, times):
    write(self, name, boxes, times)
    if name == 'SYN_Val_000003':  # e.g. a full disk or a tampering tool: half the lines left
      path = self.paths(name)[0]
      path.write_text(''.join(path.read_text().splitlines(True)[:3]))

  monkeypatch.setattr(results.ResultWriter, 'write', lossy_write)
  capsys.readouterr()
  old_umask = os.umask(0o022)
  try:
    code = _run(setup, out, '--no-plots')
  finally:
    os.umask(old_umask)
  captured = capsys.readouterr()
  assert code == 1
  assert (
    f"sequence 'SYN_Val_000001': {box1} has 3 lines, the sequence has 7 frames: tracking it again"
  ) in captured.err
  assert f"sequence 'SYN_Val_000003': {time3} line 1: expected 1 number" in captured.err
  assert '2 to track, 1 already done' in captured.out
  assert box1.read_text() == reference
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  assert list(saved['failures']) == ['SYN_Val_000003']
  assert 'unusable results' in saved['failures']['SYN_Val_000003']
  assert 'has 3 lines, the sequence has 7 frames' in saved['failures']['SYN_Val_000003']
  assert saved['sequences_finished'] == 2 and set(saved['per_sequence']) == {
    'SYN_Val_000001',
    'SYN_Val_000002',
  }
  assert '1 sequence(s) failed' in captured.out
  for path in (
    box1,
    box1.with_name('SYN_Val_000001_time.txt'),
    out / 'report' / 'summary.json',
    out / 'report' / 'summary.txt',
  ):
    assert path.stat().st_mode & 0o777 == 0o644, path


def test_eval_bad_inputs_name_the_problem(setup, capsys):
  """A folder as --checkpoint, a named synthetic root without a dataset, a keep ratio > 1."""
  code = setup['eval'].main(['--checkpoint', str(setup['tmp']), '--data-dir', str(setup['data'])])
  assert code == 2
  assert f'--checkpoint {setup["tmp"]} is a directory' in capsys.readouterr().err
  missing = setup['tmp'] / 'no_such_root'
  code = setup['eval'].main(
    ['--checkpoint', str(setup['ckpt']), f'--config.data.roots.synthetic={missing}']
  )
  assert code == 2
  assert f"config.data.roots.synthetic='{missing}': no such folder" in capsys.readouterr().err
  assert not missing.exists()
  code = setup['eval'].main(
    [
      '--checkpoint',
      str(setup['ckpt']),
      '--data-dir',
      str(setup['data']),
      '--config.model.ce_keep_ratio=(0.7,1.5,0.7)',
    ]
  )
  assert code == 2
  assert 'config.model.ce_keep_ratio=(0.7, 1.5, 0.7)' in capsys.readouterr().err
  junk = setup['tmp'] / 'junk.pth'
  junk.write_bytes(os.urandom(256))
  code = setup['eval'].main(
    [
      '--checkpoint',
      str(junk),
      '--data-dir',
      str(setup['data']),
      '--output',
      str(setup['tmp'] / 'out_junk'),
      '--no-progress',
    ]
  )
  err = capsys.readouterr().err
  assert code == 2 and 'junk.pth: not a checkpoint torch can read safely' in err
  assert 'weights_only' not in err
