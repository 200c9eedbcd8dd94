"""Evaluation end to end (``ostrack_jax.tracking.evaluate``, what eval.py runs) on a tiny
synthetic GOT-10k-format dataset made here.

Checks the official layout, that metrics recomputed from the written files (with the metric
functions fed by plain np.loadtxt, not by eval.py's reader) equal the printed/saved ones,
resume, lockstep batching with unequal lengths, bad sequences, and the test-split zip.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import train_util
from ostrack_jax.common.errors import InputError
from ostrack_jax.configs import apply_overrides, get_config
from ostrack_jax.tracking import evaluate, metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile

# The behaviour tests' model: the small OSTrack of the train.py tests (tests/train_util.py: the
# tiny preset at half its sizes and widths, 3 blocks, one CE layer), a fraction of the network to
# trace, compile and run in every program. What they assert (files, messages, resume, refusals,
# batching and devices against batch 1) holds for any model; the comparison with the original
# (the folder dataset on real frames) keeps the tiny preset itself.
SMALL = tuple(
  f.removeprefix('--config.') for f in train_util.SMALL_MODEL if f.startswith('--config.')
)


def _config(*overrides):
  """The tiny preset with :data:`SMALL` and ``overrides`` applied."""
  return apply_overrides(get_config('tiny_256_ce'), [*SMALL, *overrides])


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  from ostrack_jax.datasets import synthetic
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  tmp = tmp_path_factory.mktemp('eval')
  config = _config()
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
  return {'tmp': tmp, 'ckpt': ckpt, 'data': data}


def _evaluate(
  setup, out, *, dataset='got10k_val', data=None, checkpoint=None, overrides=(), config=None, **kw
):
  """``evaluate`` of the small model (``config``: another) on ``data`` (default: the synthetic
  set) into ``out``, on one device unless ``devices`` says otherwise (the test process has 8
  host devices)."""
  config = config or _config(*overrides)
  return evaluate.evaluate(
    config,
    str(checkpoint or setup['ckpt']),
    dataset,
    str(data or setup['data']),
    output=str(out),
    progress=False,
    **{'devices': 1, **kw},
  )


def _run(setup, out, **kw):
  """The exit status eval.py would give: 0 when every sequence was finished and scored."""
  return 0 if _evaluate(setup, out, **kw).ok else 1


def _got10k_iou(p, g, bound_w, bound_h):
  """GOT-10k toolkit IoU of one frame: continuous coordinates, both boxes clipped to the image."""
  boxes = []
  for x, y, w, h in (p, g):
    x, y = min(max(x, 0.0), bound_w), min(max(y, 0.0), bound_h)
    w, h = min(max(w, 0.0), bound_w - x), min(max(h, 0.0), bound_h - y)
    boxes.append((x, y, x + w, y + h))
  (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = boxes
  inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
  union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
  return min(max(inter / (union + 2.220446049250313e-16), 0.0), 1.0)


def _ope_frame(p, g):
  """pytracking's per-frame IoU (inclusive pixels), centre error and normalized centre error."""
  tl_x, tl_y = max(p[0], g[0]), max(p[1], g[1])
  br_x = min(p[0] + p[2] - 1, g[0] + g[2] - 1)
  br_y = min(p[1] + p[3] - 1, g[1] + g[3] - 1)
  inter = max(br_x - tl_x + 1, 0) * max(br_y - tl_y + 1, 0)
  iou = inter / (p[2] * p[3] + g[2] * g[3] - inter)
  pc = (p[0] + (p[2] - 1) / 2, p[1] + (p[3] - 1) / 2)
  gc = (g[0] + (g[2] - 1) / 2, g[1] + (g[3] - 1) / 2)
  err = ((pc[0] - gc[0]) ** 2 + (pc[1] - gc[1]) ** 2) ** 0.5
  norm = (((pc[0] - gc[0]) / g[2]) ** 2 + ((pc[1] - gc[1]) / g[3]) ** 2) ** 0.5
  return iou, err, norm


def _recompute(out, data):
  """AO/SR and AUC/OP/P/NP from the result files and the raw GOT-10k annotation files, written
  here from the toolkits' definitions (frame by frame, no ostrack_jax code): GOT-10k pools the
  IoUs of frames 1.. with cover > 0 over all sequences (SR strict >); the one-pass metrics
  replace frame 0 by the ground truth, count invisible frames as failures (IoU -1, error inf)
  and average the per-sequence curves."""
  pooled, curves = [], []
  success_t = [i * 0.05 for i in range(21)]
  for seq_dir in sorted((data / 'val').iterdir()):
    if not seq_dir.is_dir():
      continue
    name = seq_dir.name
    pred = [
      [float(v) for v in line.split(',')]
      for line in (out / name / f'{name}_001.txt').read_text().split()
    ]
    gt = [
      [float(v) for v in line.split(',')]
      for line in (seq_dir / 'groundtruth.txt').read_text().split()
    ]
    cover = [int(v) for v in (seq_dir / 'cover.label').read_text().split()]
    absence = [int(v) for v in (seq_dir / 'absence.label').read_text().split()]
    meta = (seq_dir / 'meta_info.ini').read_text()
    bound_w, bound_h = (
      float(v) for v in meta.split('resolution:')[1].split(')')[0].strip(' (').split(',')
    )
    for i in range(1, len(gt)):
      if cover[i] > 0:
        pooled.append(_got10k_iou(pred[i], gt[i], bound_w, bound_h))
    frames = []
    for i in range(len(gt)):
      p = gt[0] if i == 0 else pred[i]
      if gt[i][2] > 0 and gt[i][3] > 0 and absence[i] == 0:
        frames.append(_ope_frame(p, gt[i]))
      else:
        frames.append((-1.0, float('inf'), -1.0))
    n = len(frames)
    curves.append(
      (
        [sum(f[0] > t for f in frames) / n for t in success_t],
        [sum(f[1] <= t for f in frames) / n for t in range(51)],
        [sum(f[2] <= t / 100 for f in frames) / n for t in range(51)],
      )
    )
  mean = lambda values: sum(values) / len(values)
  success = [mean([c[0][k] for c in curves]) for k in range(21)]
  return {
    'AO': 100 * mean(pooled),
    'SR0.5': 100 * mean([v > 0.5 for v in pooled]),
    'SR0.75': 100 * mean([v > 0.75 for v in pooled]),
    'AUC': 100 * mean(success),
    'OP50': 100 * success[10],
    'OP75': 100 * success[15],
    'P@20': 100 * mean([c[1][20] for c in curves]),
    'NP@0.2': 100 * mean([c[2][20] for c in curves]),
  }


@pytest.mark.slow
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


@pytest.mark.slow
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
  assert _run(setup, out, plots=False) == 0
  assert '1 to track, 2 already done' in capsys.readouterr().out
  assert (out / 'SYN_Val_000003' / 'SYN_Val_000003_001.txt').read_text() == reference[
    'SYN_Val_000003'
  ]
  # Lockstep, batch 2 over unequal lengths (7, 4, 7): 'map' is bit-identical.
  out_map = setup['tmp'] / 'out_map'
  assert _run(setup, out_map, batch_size=2, plots=False, decode_threads=2) == 0  # map: default;
  # also frames decoded ahead on threads
  for n, text in reference.items():
    assert (out_map / n / f'{n}_001.txt').read_text() == text, n
  # 'vmap' (one batched forward) agrees up to float rounding.
  out_vmap = setup['tmp'] / 'out_vmap'
  assert _run(setup, out_vmap, batch_size=2, batch_mode='vmap', plots=False) == 0
  for n in reference:
    a = np.loadtxt(out / n / f'{n}_001.txt', delimiter=',')
    b = np.loadtxt(out_vmap / n / f'{n}_001.txt', delimiter=',')
    np.testing.assert_allclose(a, b, atol=1e-2, rtol=0)


@pytest.mark.slow
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
  code = _run(setup, out, data=data, plots=False)
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
  # fail_fast stops at the first bad sequence (eval.py --fail-fast: exit status 2).
  with pytest.raises(InputError, match='expected 4 numbers'):
    _evaluate(setup, setup['tmp'] / 'out_ff', data=data, fail_fast=True)


@pytest.mark.slow
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
  assert _run(setup, out, dataset='got10k_test', data=data) == 0
  names = zipfile.ZipFile(out / 'submission.zip').namelist()
  assert sorted(names) == [
    'SYN_Test_000001/SYN_Test_000001_001.txt',
    'SYN_Test_000001/SYN_Test_000001_time.txt',
  ]
  printed = capsys.readouterr().out
  assert 'submission archive' in printed
  assert 'got10k_test: 1 sequence: 0 scored, 1 tracked without metrics, 0 failed' in printed
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  assert saved['without_metrics'] == {
    'SYN_Test_000001': 'ground truth of the first frame only (a test split: scored by its server)'
  }


def test_eval_missing_checkpoint_message(setup):
  with pytest.raises(InputError, match='nope.msgpack: no such file'):
    _evaluate(setup, setup['tmp'] / 'out_nope', checkpoint=setup['tmp'] / 'nope.msgpack')


@pytest.mark.slow
@pytest.mark.fast_compile(False)  # compared with the original tracker's boxes
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
  pth = ROOT / 'tests' / 'fixtures' / 'tiny256' / 'tiny256_seed0.pth.tar'
  tiny = get_config('tiny_256_ce')
  assert (
    _run(setup, out, dataset='folder', data=data, checkpoint=pth, config=tiny, plots=False) == 0
  )
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


@pytest.mark.slow
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
    assert _run(setup, out, plots=False) == 0
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
    code = _run(setup, out, plots=False)
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


@pytest.mark.slow
def test_interrupted_eval_keeps_finished_sequences_and_says_so(setup, capsys, monkeypatch):
  """Ctrl-C (KeyboardInterrupt) while the second of three sequences is being written: the
  first sequence's results stay, the message says how many are written and how to continue,
  and the same call then tracks only the other two."""
  from ostrack_jax.tracking import results

  out = setup['tmp'] / 'out_interrupted'
  write = results.ResultWriter.write

  def interrupted_write(self, name, boxes, times):
    if name == 'SYN_Val_000002':
      raise KeyboardInterrupt
    write(self, name, boxes, times)

  monkeypatch.setattr(results.ResultWriter, 'write', interrupted_write)
  with pytest.raises(KeyboardInterrupt):
    _evaluate(setup, out, plots=False)
  err = capsys.readouterr().err
  assert (
    'interrupted: results for 1 of the 3 sequences to track are written (kept); '
    'run the same command to continue'
  ) in err
  assert sorted(p.name for p in out.iterdir()) == ['SYN_Val_000001', 'provenance.json']
  monkeypatch.setattr(results.ResultWriter, 'write', write)
  assert _run(setup, out, plots=False) == 0
  assert '2 to track, 1 already done' in capsys.readouterr().out


def test_eval_bad_inputs_name_the_problem(setup):
  """A folder as checkpoint, a named synthetic root without a dataset, a keep ratio > 1, a file
  that is no checkpoint: each an InputError naming it (eval.py: one line, exit status 2)."""
  with pytest.raises(InputError, match=f'--checkpoint {setup["tmp"]} is a directory'):
    _evaluate(setup, setup['tmp'] / 'out_x', checkpoint=setup['tmp'])
  missing = setup['tmp'] / 'no_such_root'
  config = _config(f'data.roots.synthetic={missing}')
  with pytest.raises(InputError, match=f"config.data.roots.synthetic='{missing}': no such folder"):
    evaluate.evaluate(config, str(setup['ckpt']), output=str(setup['tmp'] / 'out_x'))
  assert not missing.exists()
  with pytest.raises(InputError, match=re.escape('config.model.ce_keep_ratio=(0.7, 1.5, 0.7)')):
    _evaluate(setup, setup['tmp'] / 'out_x', overrides=['model.ce_keep_ratio=(0.7,1.5,0.7)'])
  junk = setup['tmp'] / 'junk.pth'
  junk.write_bytes(os.urandom(256))
  with pytest.raises(InputError) as e:
    _evaluate(setup, setup['tmp'] / 'out_junk', checkpoint=junk)
  assert 'junk.pth: not a checkpoint torch can read safely' in str(e.value)
  assert 'weights_only' not in str(e.value)


def test_lockstep_defaults_to_map_so_metrics_do_not_depend_on_the_batch_size():
  """eval.py and evaluate() default to --batch-mode map (bit-identical to batch 1): the
  measured choice of benchmarks/RESULTS.md; vmap is the option."""
  import inspect
  import runpy

  parse_flags = runpy.run_path(str(ROOT / 'eval.py'))['parse_flags']
  assert parse_flags([]).batch_mode == 'map'
  assert parse_flags(['--batch-mode', 'vmap']).batch_mode == 'vmap'
  assert inspect.signature(evaluate.evaluate).parameters['batch_mode'].default == 'map'


# ------------------------------------------------------------------------ provenance, counts


def _files(out):
  """{relative path: bytes} of every file under ``out`` (what a refused run must not touch)."""
  return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob('*') if p.is_file()}


def _other_checkpoint(setup):
  """The small model with other weights (seed 1): another producer."""
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.weights.model_file import save_variables

  path = setup['tmp'] / 'other.msgpack'
  if not path.exists():
    config = _config()
    save_variables(str(path), init_variables(config, seed=1), config)
  return path


def _sha(path, config=None):
  """The weights hash of checkpoint ``path`` of the small model (``config``: another)."""
  from ostrack_jax.weights import model_file

  return model_file.weights_sha256(model_file.load_checkpoint(str(path), config or _config()))


def test_weights_hash_names_the_weights_not_the_file(tmp_path):
  """The same weights from a PyTorch checkpoint and from our converted file hash alike; other
  weights (one value changed) do not."""
  from ostrack_jax.weights import model_file

  config = get_config('tiny_256_ce')
  pth = ROOT / 'tests' / 'fixtures' / 'tiny256' / 'tiny256_seed0.pth.tar'
  variables = model_file.load_checkpoint(str(pth), config)
  model_file.save_variables(str(tmp_path / 'm.msgpack'), variables, config)
  digest = _sha(pth, config)
  assert _sha(tmp_path / 'm.msgpack', config) == digest and len(digest) == 64
  variables['params']['box_head']['conv5_ctr']['bias'][0] += 1e-6
  assert model_file.weights_sha256(variables) != digest


@pytest.mark.slow
def test_results_of_another_producer_are_refused_and_overwrite_replaces_them(setup, capsys):
  """--output: another checkpoint, tracker setting, precision or vmap batching is refused in one
  line naming the difference and the ways out, nothing touched; the same producer resumes
  (map batching is exact); --overwrite with a subset removes every result of the old producer
  (not the user's other files), and the new producer then resumes."""
  out = setup['tmp'] / 'out_producer'
  if (setup['tmp'] / 'out_single' / 'provenance.json').exists():
    shutil.copytree(setup['tmp'] / 'out_single', out)
  else:
    assert _run(setup, out, plots=False) == 0
  before = _files(out)
  ours, other = _sha(setup['ckpt']), _other_checkpoint(setup)
  theirs = _sha(other)
  refused = [
    (dict(checkpoint=other), f'weights sha256 {ours[:12]} there, {theirs[:12]} now'),
    (dict(overrides=['tracker.search_factor=5.0']), 'tracker.search_factor: 4.0 there, 5.0 now'),
    (dict(overrides=['model.dtype=bfloat16']), 'model.dtype: "float32" there, "bfloat16" now'),
    (dict(batch_size=2, batch_mode='vmap'), 'batching: "exact" there, "vmap x2" now'),
  ]
  for kw, words in refused:
    with pytest.raises(InputError) as e:
      _evaluate(setup, out, plots=False, **kw)
    message = str(e.value)
    assert message.startswith(f'{out} holds results of another producer ('), message
    assert words in message and '\n' not in message, message
    assert 'pass --overwrite to replace them, or another --output to keep them' in message
    assert _files(out) == before, kw
  # The same producer: nothing to track; the summary names it.
  capsys.readouterr()
  assert _run(setup, out, batch_size=2, batch_mode='map', plots=False) == 0
  printed = capsys.readouterr().out
  assert '0 to track, 3 already done' in printed
  assert (
    f'producer: {setup["ckpt"]} (weights sha256 {ours[:12]}), config tiny_256_ce, '
    'batching exact (batch 1 or map), precision float32'
  ) in printed
  assert 'got10k_val: 3 sequences: 3 scored, 0 tracked without metrics, 0 failed' in printed
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  assert (saved['weights_sha256'], saved['batching'], saved['precision']) == (
    ours,
    'exact',
    'float32',
  )
  assert (saved['batch_mode'], saved['batch_size']) == ('map', 2)
  # --overwrite with one sequence: the old producer's results all go, the user's file stays.
  (out / 'notes.md').write_text('mine\n')
  result = _evaluate(
    setup, out, checkpoint=other, sequences=['SYN_Val_000002'], overwrite=True, plots=False
  )
  assert result.ok and result.payload['weights_sha256'] == theirs
  assert 'removed the earlier results' in capsys.readouterr().out
  assert sorted(p.name for p in out.iterdir()) == [
    'SYN_Val_000002',
    'notes.md',
    'provenance.json',
    'report',
  ]
  record = json.loads((out / 'provenance.json').read_text())
  assert record['producer']['weights_sha256'] == theirs and record['checkpoint'] == str(other)
  assert list(result.payload['per_sequence']) == ['SYN_Val_000002']
  kept = (out / 'SYN_Val_000002' / 'SYN_Val_000002_001.txt').read_text()
  assert _run(setup, out, checkpoint=other, plots=False) == 0
  assert '2 to track, 1 already done' in capsys.readouterr().out
  assert (out / 'SYN_Val_000002' / 'SYN_Val_000002_001.txt').read_text() == kept


def test_unrecorded_results_are_refused(setup):
  """Result files without a provenance record (an older version, another tool), or with an
  unreadable one, are refused like another producer's; nothing is touched."""
  from ostrack_jax.tracking import results

  out = setup['tmp'] / 'out_legacy'
  results.ResultWriter(out, 'got10k').write('SYN_Val_000001', np.ones((7, 4)), [0.01] * 7)
  before = _files(out)
  with pytest.raises(InputError) as e:
    _evaluate(setup, out, plots=False)
  assert str(e.value) == (
    f'{out} holds result files but no provenance record (provenance.json: written by an older '
    'version or another tool), so they may come from another model; pass --overwrite to '
    'replace them, or another --output to keep them'
  )
  assert _files(out) == before
  (out / 'provenance.json').write_text('{"format": "something else"}')
  before = _files(out)
  with pytest.raises(
    InputError,
    match='result files and an unusable provenance record .*'
    'provenance.json is not an ostrack_jax.eval_provenance record',
  ):
    _evaluate(setup, out, plots=False)
  assert _files(out) == before


@pytest.mark.slow
def test_eval_py_refuses_another_checkpoint_in_the_default_folder(setup, tmp_path, monkeypatch):
  """The loop 'train longer, evaluate again' into workdirs/<config>/eval/<dataset>: eval.py
  exits 2 with one line before writing anything (--overwrite: the test above)."""
  monkeypatch.chdir(tmp_path)
  config = _config()
  evaluate.evaluate(
    config, str(setup['ckpt']), data_dir=str(setup['data']), progress=False, plots=False
  )
  out = tmp_path / 'workdirs' / 'tiny_256_ce' / 'eval' / 'got10k_val'
  before = _files(out)
  assert 'provenance.json' in before and 'SYN_Val_000001/SYN_Val_000001_001.txt' in before
  other = _other_checkpoint(setup)
  argv = [sys.executable, str(ROOT / 'eval.py'), '--checkpoint', str(other), '--data-dir']
  argv += [str(setup['data']), '--no-progress', '--no-plots', *[f'--config.{o}' for o in SMALL]]
  proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.count('\n') == 1 and proc.stderr.startswith(
    'eval.py: workdirs/tiny_256_ce/eval/got10k_val holds results of another producer '
    f'(weights sha256 {_sha(setup["ckpt"])[:12]} there, {_sha(other)[:12]} now'
  ), proc.stderr
  assert proc.stderr.endswith(
    '; pass --overwrite to replace them, or another --output to keep them\n'
  )
  assert _files(out) == before


def test_eval_py_empty_dataset_is_an_error_before_the_model(tmp_path):
  """A folder dataset without sequences: exit 2 naming the data dir and layout, before the
  checkpoint (here not a model at all) is read."""
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'junk.msgpack').write_bytes(b'not a model')
  argv = [sys.executable, str(ROOT / 'eval.py'), '--checkpoint', 'junk.msgpack']
  argv += ['--dataset', 'folder', '--data-dir', 'empty']
  proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and proc.stderr == (
    'eval.py: --data-dir empty: no sequences of --dataset folder in it (the folder layout)\n'
  ), proc.stderr
  assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'junk.msgpack']


@pytest.mark.slow
def test_every_sequence_is_counted_once(setup, capsys):
  """A folder dataset of a scored sequence, a 1-frame one (tracked, nothing to score) and one
  with a bad annotation: 3 sequences = 1 scored + 1 without metrics (with its reason) + 1
  failed, printed and saved; the summary names the vmap batching."""
  data = setup['tmp'] / 'counts'
  if not data.exists():
    src = setup['data'] / 'val' / 'SYN_Val_000001'
    gt = (src / 'groundtruth.txt').read_text().splitlines()
    for name, frames, lines in (('full', 3, gt[:3]), ('single', 1, gt[:1]), ('bad', 3, ['1,2'])):
      (data / name).mkdir(parents=True)
      for i in range(1, frames + 1):
        shutil.copy(src / f'{i:08d}.jpg', data / name)
      (data / name / 'groundtruth.txt').write_text('\n'.join(lines) + '\n')
  out = setup['tmp'] / 'out_counts'
  result = _evaluate(
    setup, out, dataset='folder', data=data, plots=False, batch_size=2, batch_mode='vmap'
  )
  printed = capsys.readouterr().out
  assert 'batching vmap, batch size 2 (boxes differ slightly from batch 1), precision float32' in (
    printed
  )
  assert 'folder: 3 sequences: 1 scored, 1 tracked without metrics, 1 failed' in printed
  assert (
    '1 sequence(s) tracked without metrics (one frame: nothing to score after the initial box): '
    'single'
  ) in printed
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  assert list(saved['per_sequence']) == ['full'] and list(saved['failures']) == ['bad']
  assert saved['without_metrics'] == {'single': 'one frame: nothing to score after the initial box'}
  assert (saved['sequences_total'], saved['sequences_scored']) == (3, 1)
  assert (saved['sequences_without_metrics'], saved['sequences_failed']) == (1, 1)
  assert (saved['batching'], saved['batch_mode'], saved['batch_size']) == ('vmap x2', 'vmap', 2)
  assert not result.ok


def _reference(setup):
  """The one-device, one-process box files of the synthetic set (test_eval's first run)."""
  out = setup['tmp'] / 'out_single'
  if not (out / 'SYN_Val_000001').exists():
    assert _run(setup, out, plots=False) == 0
  return {n: (out / n / f'{n}_001.txt').read_text() for n in SEQUENCES}


SEQUENCES = ('SYN_Val_000001', 'SYN_Val_000002', 'SYN_Val_000003')  # 7, 4 and 7 frames


@pytest.mark.slow
def test_eval_on_several_devices_gives_the_one_device_boxes(setup, capsys):
  """Slots spread over 2 of the test process's host devices: --batch-size 3 rounds up to 4 slots
  (2 per device); 'map' gives the one-device boxes bit for bit, 'vmap' within float rounding;
  each sequence is tracked once (the frames per device add up to the dataset's 18)."""
  reference = _reference(setup)
  capsys.readouterr()
  out = setup['tmp'] / 'out_devices_map'
  assert _run(setup, out, devices=2, batch_size=3, batch_mode='map', plots=False) == 0
  printed = capsys.readouterr().out
  assert '4 slot(s) (--batch-size 3 rounded up) on 2 device(s)' in printed
  for n, text in reference.items():
    assert (out / n / f'{n}_001.txt').read_text() == text, n
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  # Slots 0, 1 (device 0) take the first two sequences, slot 2 (device 1) the third.
  assert (saved['devices'], saved['processes'], saved['frames_per_device']) == (2, 1, [11, 7])
  assert 'tracked on 2 device(s) in 1 process(es); frames per device: 11, 7' in printed
  out_vmap = setup['tmp'] / 'out_devices_vmap'
  assert _run(setup, out_vmap, devices=2, batch_size=4, batch_mode='vmap', plots=False) == 0
  for n in reference:
    a = np.loadtxt(setup['tmp'] / 'out_single' / n / f'{n}_001.txt', delimiter=',')
    b = np.loadtxt(out_vmap / n / f'{n}_001.txt', delimiter=',')
    np.testing.assert_allclose(a, b, atol=1e-2, rtol=0)  # as one device's vmap (above)


def _eval_process(setup, out, port, index, *, die_on_write=False):
  """eval.py as process ``index`` of 2 (jax.distributed on localhost, one host device each);
  ``die_on_write``: SIGKILLed at its first result file (a process lost mid-run)."""
  import subprocess
  import sys

  args = [
    str(ROOT / 'eval.py'),
    '--checkpoint', str(setup['ckpt']), '--data-dir', str(setup['data']), '--output', str(out),
    '--no-progress', '--no-plots', '--multihost', '--coordinator', f'localhost:{port}',
    '--num-processes', '2', '--process-id', str(index), *[f'--config.{o}' for o in SMALL],
  ]  # fmt: skip
  if die_on_write:
    code = (
      'import os, runpy, signal, sys; from ostrack_jax.tracking import results; '
      'results.ResultWriter.write = lambda *a: os.kill(os.getpid(), signal.SIGKILL); '
      'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")'
    )
    args = ['-c', code, *args]
  env = train_util.command_env(1)
  return subprocess.Popen(
    [sys.executable, *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _free_port():
  import socket

  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_eval_on_two_processes_tracks_each_sequence_once_and_resumes(setup):
  """eval.py --multihost as two jax.distributed processes on localhost. Process 1 is killed
  as it writes its first result (process 0 is then stopped too, as a cluster stops a job), and
  the same command, rerun, tracks only the missing sequence; the boxes are the one-process
  ones, and process 0 alone writes the one report, which counts both processes."""
  import time

  reference = _reference(setup)
  out = setup['tmp'] / 'out_two_processes'
  # Longest first onto the least loaded: process 0 gets 000001 (7) and 000002 (4), process 1
  # gets 000003 (7).
  port = _free_port()
  first = [
    _eval_process(setup, out, port, 0),
    _eval_process(setup, out, port, 1, die_on_write=True),
  ]
  try:
    lost = first[1].communicate(timeout=300)[0]
    assert first[1].returncode == -9, lost[-3000:]
    deadline = time.monotonic() + 120  # process 0 finishes its share, then waits for process 1
    while time.monotonic() < deadline and not all(
      (out / n / f'{n}_001.txt').exists() for n in SEQUENCES[:2]
    ):
      time.sleep(0.2)
  finally:
    first[0].kill()
    first[0].communicate()
  assert sorted(p.name for p in out.iterdir()) == [*SEQUENCES[:2], 'provenance.json']
  done = {n: (out / n / f'{n}_001.txt').stat().st_mtime_ns for n in SEQUENCES[:2]}

  port = _free_port()
  second = [_eval_process(setup, out, port, i) for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in second]
  for i, (p, log) in enumerate(zip(second, logs, strict=True)):
    assert p.returncode == 0, f'process {i}:\n{log[-3000:]}'
  assert '3 sequences in' in logs[0] and '1 to track, 2 already done' in logs[0]
  assert 'process 0 of 2: loaded' in logs[0] and '1 sequence(s), 1 slot(s)' in logs[0]
  assert 'loaded' not in logs[1] and 'to track' not in logs[1]  # nothing left for process 1
  assert 'AO' in logs[0] and 'AO' not in logs[1]  # the one report, by process 0
  for n, text in reference.items():
    assert (out / n / f'{n}_001.txt').read_text() == text, n
  assert {n: (out / n / f'{n}_001.txt').stat().st_mtime_ns for n in SEQUENCES[:2]} == done
  saved = json.loads((out / 'report' / 'summary.json').read_text())
  assert (saved['devices'], saved['processes'], saved['frames_per_device']) == (2, 2, [7, 0])
  assert saved['sequences_finished'] == 3 and not saved['failures']
  assert 'tracked on 2 device(s) in 2 process(es); frames per device: 7, 0' in logs[0]


def test_sequences_split_over_processes_by_frame_count():
  """Longest first onto the least loaded process (ties: the lower index), each share in the
  input order; every sequence in exactly one share."""
  from ostrack_jax.tracking import distributed

  seqs = [f'{"x" * n}' for n in (10, 3, 7, 7, 2, 5)]  # len() = frame count
  shares = distributed.split_by_frames(seqs, 2)
  assert [[len(s) for s in share] for share in shares] == [[10, 2, 5], [3, 7, 7]]
  assert distributed.split_by_frames(seqs, 1) == [seqs]
  assert [len(s) for s in distributed.split_by_frames(seqs[:1], 3)] == [1, 0, 0]
  assert [distributed.slots_for(b, 4) for b in (None, 1, 4, 5, 8)] == [4, 4, 4, 8, 8]
  with pytest.raises(InputError, match='--devices 9: this process has 8 device'):
    distributed.local_devices(9)


def test_processes_take_process_0s_list_and_refuse_different_datasets(monkeypatch):
  """Every process tracks from process 0's list (it alone reads the results folder); a process
  that reads another dataset (names or frame counts) stops all of them with one message."""
  from ostrack_jax.tracking import distributed

  class Seq:  # what the split and the check read of a sequence: its name and frame count
    def __init__(self, name, frames):
      self.name, self.frames = name, frames

    def __len__(self):
      return self.frames

  seqs = [Seq('a', 5), Seq('b', 3)]
  other = [Seq('a', 5), Seq('b', 4)]  # a frame missing on process 1's disk, say
  views = [
    {'dataset': distributed.fingerprint(seqs), 'sequences': 2, 'todo': ['b'], 'refusal': None},
    {'dataset': distributed.fingerprint(seqs), 'sequences': 2},
  ]
  process1 = distributed.Processes(index=1, count=2)
  monkeypatch.setattr(process1, 'share', lambda name, value: views)
  assert process1.agree(seqs, []) == [seqs[1]]
  views[1]['dataset'] = distributed.fingerprint(other)
  with pytest.raises(InputError, match=r'process\(es\) 1 see a different dataset than process 0'):
    process1.agree(other, [])
  # Process 0 refuses the results folder (another producer): every process stops with its line.
  views[1]['dataset'] = distributed.fingerprint(seqs)
  views[0]['refusal'] = 'out holds results of another producer (...)'
  with pytest.raises(InputError, match=r'^out holds results of another producer \(\.\.\.\)$'):
    process1.agree(seqs, [])
  with pytest.raises(InputError, match='another producer'):
    distributed.Processes().agree(seqs, seqs, 'out holds results of another producer')


def test_evaluation_modules_read_in_short_steps():
  """The evaluation's modules are split into named steps: no function over 80 lines, no module
  over 600 (evaluate was 171 lines, write_report 106, compare_trackers 91)."""
  import ast

  folder = ROOT / 'ostrack_jax' / 'tracking'
  names = ['attribute_labels', 'compare', 'eval_sequences', 'evaluate', 'metrics', 'provenance']
  too_long = []
  for name in names + ['report', 'results']:
    source = (folder / f'{name}.py').read_text()
    if len(source.splitlines()) > 600:
      too_long.append(f'{name}.py: {len(source.splitlines())} lines')
    for node in ast.walk(ast.parse(source)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > 80:
          too_long.append(f'{name}.{node.name}: {lines} lines')
  assert not too_long, too_long
