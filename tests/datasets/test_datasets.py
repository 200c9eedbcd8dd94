"""The dataset layer: one parser, one frame order, one error type, integrity checks, the registry
(a toy layout registered once is a training source, a pack and an evaluation dataset)."""

import pathlib
import sys

import cv2
import numpy as np
import pytest

from ostrack_jax.common.errors import InputError
from ostrack_jax.configs import get_config
from ostrack_jax.data import pack, sampler as sampler_lib, sources, transforms as T
from ostrack_jax.data.packed import PackedSource
from ostrack_jax.datasets import core, frames, registry
from ostrack_jax.tracking import eval_sequences, results

W, H = 64, 48


def _image(i: int) -> np.ndarray:
  """A frame whose top-left block encodes i (to check which file was read)."""
  img = np.full((H, W, 3), 90, np.uint8)
  img[:8, :8] = (i * 37) % 256
  return img


def _boxes(n: int) -> np.ndarray:
  t = np.arange(n, dtype=np.float64)
  return np.stack([10 + t % 7, 8 + t % 5, 20 + 0 * t, 16 + 0 * t], axis=1)


def _write_gt(path: pathlib.Path, boxes, sep=','):
  path.write_text(''.join(sep.join(f'{v:g}' for v in row) + '\n' for row in boxes))


def _clip(folder: pathlib.Path, n: int, pattern: str, start: int = 1, ext='.jpg'):
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    cv2.imwrite(str(folder / (pattern.format(start + i) + ext)), _image(i))
  _write_gt(folder / 'groundtruth.txt', _boxes(n))


def _pixel(path: str) -> int:
  return int(cv2.imread(path)[2, 2, 0])


# ------------------------------------------------------------------------------ frame order


def test_unpadded_frame_names_in_natural_order_for_training_and_evaluation(tmp_path):
  _clip(tmp_path / 'clip', 20, 'frame{}')  # frame1.jpg ... frame20.jpg, no zero padding
  want = [f'frame{i}.jpg' for i in range(1, 21)]
  train = sources.open_source('folder', tmp_path, cache_dir=None)
  assert list(train.sequences[0].frame_names) == want
  (seq,) = eval_sequences.load_dataset('folder', tmp_path)
  assert [pathlib.Path(f).name for f in seq.frames] == want
  for i in (1, 9, 10, 19):  # frame i + 1 is image i: the boxes line up on both sides
    assert abs(_pixel(seq.frames[i]) - (i * 37) % 256) <= 3
    assert abs(_pixel(str(tmp_path / train.frame_key(0, i))) - (i * 37) % 256) <= 3
  assert core.natural_key('frame2.jpg') < core.natural_key('frame10.jpg')


def test_numbered_frames_mark_missing_ones():
  names, present = core.numbered_frames('unused', 5, 1, ['00000001.jpg', '00000002.jpg', '4.jpg'])
  assert names == ['00000001.jpg', '00000002.jpg', '00000003.jpg', '4.jpg', '00000005.jpg']
  np.testing.assert_array_equal(present, [True, True, False, True, False])
  names, present = core.numbered_frames('unused', 0, 0, ['0.png', '2.png', 'notes.txt', 'x.jpg'])
  assert names == ['0.png', '1.png', '2.png'] and present.tolist() == [True, False, True]
  with pytest.raises(core.DatasetError, match='two files for frame 1'):
    core.numbered_frames('unused', 0, 1, ['1.jpg', '01.jpg'])


# ------------------------------------------------------------------------------ parsing


def test_one_parser_names_file_and_line(tmp_path):
  p = tmp_path / 'groundtruth.txt'
  p.write_text('1,2,3,4\n\n5 6\t7;8\nnan,nan,nan,nan\n')
  boxes = core.read_numbers(p, 4)
  assert boxes.shape == (3, 4) and np.isnan(boxes[2]).all()
  np.testing.assert_array_equal(boxes[1], [5, 6, 7, 8])
  p.write_text('1,2,3,4\n\n1,2,x,4\n')
  with pytest.raises(core.DatasetError, match=r'groundtruth.txt line 3: not a number'):
    core.read_numbers(p, 4)
  p.write_text('1,2,3,4\n1,2,3\n')
  with pytest.raises(core.DatasetError, match=r'line 2: expected 4 numbers \(x,y,w,h\), got 3'):
    core.read_numbers(p, 4)
  (tmp_path / 'flags.txt').write_text('0,1,0,0')
  np.testing.assert_array_equal(core.read_labels(tmp_path / 'flags.txt', 4), [0, 1, 0, 0])
  with pytest.raises(core.DatasetError, match='flags.txt: 4 labels for 5 frames'):
    core.read_labels(tmp_path / 'flags.txt', 5)
  err = core.DatasetError('bad', path='a.txt', line=3).context(dataset='lasot', sequence='x-1')
  assert str(err) == "lasot: sequence 'x-1': a.txt line 3: bad"
  assert isinstance(err, InputError) and isinstance(err, ValueError)


def test_nan_box_in_the_ground_truth_is_named_with_its_line(tmp_path):
  _clip(tmp_path / 'seq', 24, '{:08d}')
  boxes = _boxes(24)
  boxes[3] = np.nan
  _write_gt(tmp_path / 'seq' / 'groundtruth.txt', boxes)
  (seq,) = eval_sequences.load_dataset('folder', tmp_path)  # tracked: the first box is fine
  with pytest.raises(
    core.DatasetError, match=r'^ground truth contains NaN: .*seq/groundtruth.txt line 4 \(1 NaN'
  ):
    seq.check_ground_truth()
  train = sources.open_source(
    'folder', tmp_path, cache_dir=None
  )  # training: that frame is never sampled
  assert not train.sequences[0].visible[3] and train.sequences[0].visible.sum() == 23


# ------------------------------------------------------------------------------ integrity


def test_image_checks_find_truncated_files_and_allow_padding(tmp_path):
  data = cv2.imencode('.jpg', _image(3))[1].tobytes()
  png = cv2.imencode('.png', _image(3))[1].tobytes()
  cases = {
    'ok.jpg': (data, None),
    'padded.jpg': (data + b'\x00' * 100, None),
    'cut.jpg': (data[: len(data) // 2], 'truncated JPEG'),
    'ok.png': (png, None),
    'cut.png': (png[:-20], 'truncated PNG'),
    'empty.jpg': (b'', 'empty file'),
  }
  for name, (blob, problem) in cases.items():
    (tmp_path / name).write_bytes(blob)
    for found in (frames.check_image_file(tmp_path / name), frames.check_image_bytes(blob)):
      assert (found is None) if problem is None else (problem in found), (name, found)
  assert frames.check_image_file(tmp_path / 'nope.jpg') == 'missing'
  with pytest.raises(core.FrameError, match=r"sequence 's' frame 2: .*cut.png is a truncated PNG"):
    frames.read_frame(str(tmp_path / 'cut.png'), 's', 2)


def test_truncated_frame_marked_unusable_for_training_and_named_in_evaluation(tmp_path):
  _clip(tmp_path / 'train' / 'a', 24, '{:08d}')
  (tmp_path / 'train' / 'list.txt').write_text('a\n')
  frame = tmp_path / 'train' / 'a' / '00000007.jpg'
  frame.write_bytes(frame.read_bytes()[:300])
  src = sources.open_source('got10k_train_full', tmp_path, cache_dir=None)
  assert not src.sequences[0].visible[6] and src.sequences[0].visible.sum() == 23
  assert src.report.invisible_frames['image file truncated or corrupt'] == 1
  assert '00000007.jpg (a truncated JPEG' in src.report.summary()
  # Without the index-time check, the sampler meets it when decoding and draws another pair.
  unchecked = sources.open_source(
    'got10k_train_full', tmp_path, cache_dir=None, verify_frames=False
  )
  assert unchecked.sequences[0].visible[6]
  with pytest.raises(T.BadSample, match='00000007.jpg: frame is a truncated JPEG'):
    unchecked.frame(0, 6)
  # Evaluation: the sequence is read, and the frame is named when it is decoded.
  (seq,) = eval_sequences.load_dataset('got10k_train', tmp_path)
  with pytest.raises(core.FrameError, match=r"sequence 'a' frame 6: .*00000007.jpg is a trunc"):
    frames.read_frame(seq.frames[6], seq.name, 6)


# ------------------------------------------------------------------------------ errors


def test_no_usable_sequence_gives_the_counts_by_reason(tmp_path):
  _clip(tmp_path / 'short', 10, 'f{}')  # too short to be drawn
  _clip(tmp_path / 'shorter', 5, 'f{}')
  (tmp_path / 'nogt').mkdir()
  cv2.imwrite(str(tmp_path / 'nogt' / '1.jpg'), _image(0))
  with pytest.raises(core.DatasetError) as info:
    sources.open_source('folder', tmp_path, cache_dir=None)
  msg = str(info.value)
  assert '\n' not in msg and msg.startswith('folder: no usable sequence under')
  assert '1 groundtruth.txt missing (e.g. nogt)' in msg
  assert '2 with fewer than 20 frames or 5 visible frames' in msg and 'short' in msg
  with pytest.raises(InputError, match='no usable sequence'):  # the pack command: the same
    pack.main(['folder', '--root', str(tmp_path), '--output', str(tmp_path / 'packs')])
  assert not (tmp_path / 'packs').exists()


def test_unknown_names_and_missing_roots(tmp_path):
  cfg = get_config('tiny_256_ce')
  with pytest.raises(core.UnknownDatasetError, match=r"unknown training dataset 'foo'; valid: "):
    sources.make_source('foo', cfg.data)
  with pytest.raises(
    InputError,
    match=r"'got10k_train' \(got10k_train is .*evaluation only; for training use got10k_train_full\); valid: "
    r'got10k_train_full, got10k_vottrain',
  ):
    sources.make_source('got10k_train', cfg.data)
  with pytest.raises(core.UnknownDatasetError, match=r"unknown evaluation dataset 'coco'.*otb"):
    eval_sequences.load_dataset('coco', tmp_path)
  with pytest.raises(FileNotFoundError, match=r'set config\.data\.roots\.lasot=DIR'):
    sources.make_source('lasot', cfg.data)
  cfg.data.roots.got10k = str(tmp_path / 'nope')
  with pytest.raises(core.MissingRootError, match=r"config\.data\.roots\.got10k='.*nope' does not"):
    sources.make_source('got10k_val', cfg.data)
  cfg.data.train_datasets = ('got10k_val',)
  with pytest.raises(core.MissingRootError, match=r'roots\.got10k'):  # before anything is read
    registry.check_data_config(cfg.data)
  with pytest.raises(core.MissingRootError, match=r"lasot: --data-dir='.*nope' does not exist"):
    eval_sequences.load_dataset('lasot', tmp_path / 'nope')
  cfg.data.roots.synthetic = str(tmp_path)  # a named synthetic root must hold the dataset
  with pytest.raises(core.MissingRootError, match='holds no synthetic dataset'):
    sources.make_source('synthetic', cfg.data)


# ------------------------------------------------------------------------------ one reader, all uses


class ToyLayout(core.Layout):
  """``root/<seq>.txt`` holds the boxes (x y w h), ``root/<seq>/<k>.png`` the frames from 0."""

  name = 'toy'

  def sequence_names(self, root):
    return sorted(p.stem for p in root.glob('*.txt'))

  def read_sequence(self, root, name):
    gt_path = root / f'{name}.txt'
    gt = core.read_boxes(gt_path)
    names, present = core.numbered_frames(root / name, len(gt), 0)
    core.check_frame_count(name, len(names), gt, gt_path, allow_first_only=True)
    return core.Video(name, core.FramePaths(root / name, names), gt, present=present, dataset='toy')

  def stamp_files(self, root):
    return [root / f'{n}.txt' for n in self.sequence_names(root)]


@pytest.fixture
def toy(tmp_path):
  for s in range(2):
    (tmp_path / f'toy{s}').mkdir()
    for i in range(24):
      cv2.imwrite(str(tmp_path / f'toy{s}' / f'{i}.png'), _image(i))
    _write_gt(tmp_path / f'toy{s}.txt', _boxes(24), sep=' ')
  registry.register('toy', ToyLayout(), root_key='toy', train={}, eval={}, result_layout='lasot')
  yield tmp_path
  registry.unregister('toy')


def test_a_registered_layout_trains_packs_and_evaluates(toy, tmp_path, monkeypatch):
  monkeypatch.setenv('OSTRACK_JAX_INDEX_CACHE', str(tmp_path / 'index'))
  cfg = get_config('tiny_256_ce')
  with cfg.unlocked():
    cfg.data.roots.toy = str(toy)
  cfg.data.train_datasets, cfg.data.train_ratios = ('toy',), (1.0,)
  # Training: the source and the sampler's pairs.
  src = sources.make_source('toy', cfg.data)
  assert [s.name for s in src.sequences] == ['toy0', 'toy1'] and src.report.sequences_kept == 2
  smp = sampler_lib.make_sampler(cfg, sources=[src])
  assert smp(0)['search'].shape == (256, 256, 3)
  # Packing: the pack command reads it through the same registry entry.
  pack.main(['toy', '--root', str(toy), '--output', str(tmp_path / 'packs'), '--shard-mb', '1'])
  packed = PackedSource(tmp_path / 'packs' / 'toy')
  assert packed.frame(1, 5).data == src.frame(1, 5).data
  # Evaluation: the sequences, their result layout and the eval command's choices.
  seqs = eval_sequences.load_dataset('toy', toy)
  assert [s.name for s in seqs] == ['toy0', 'toy1'] and seqs[0].has_full_gt
  assert abs(_pixel(seqs[1].frames[11]) - (11 * 37) % 256) <= 3
  assert results.layout_for_dataset('toy') == 'lasot'
  assert 'toy' in registry.Names('eval') and 'toy' in registry.names('train')
  with pytest.raises(ValueError, match='already registered'):
    registry.register('toy', ToyLayout(), root_key='toy')


def test_layer_imports_no_jax():
  import subprocess

  code = (
    'import sys; import ostrack_jax.datasets.registry, ostrack_jax.data.sources, '
    'ostrack_jax.data.pack, ostrack_jax.data.sampler, ostrack_jax.tracking.eval_sequences; '
    "assert 'jax' not in sys.modules, 'jax imported'"
  )
  subprocess.run([sys.executable, '-c', code], check=True)


def test_synthetic_first_use_rule_in_one_place(tmp_path, monkeypatch, capsys):
  """ensure_synthetic_dataset is the one home of the rule training, evaluation and the registry
  follow: the default root is generated when missing, announced through ``log``; a complete
  one is reused silently; a named root without a dataset is an error, never generated."""
  from ostrack_jax.datasets import synthetic
  from ostrack_jax.tracking import evaluate

  made = []

  def fake_make(root, **kwargs):  # the generator itself is tested elsewhere; here only the rule
    made.append(root)
    root.mkdir(parents=True)
    (root / 'synthetic.json').write_text('{}')
    return root

  monkeypatch.setattr(synthetic, 'make_synthetic_dataset', fake_make)
  monkeypatch.setenv('OSTRACK_JAX_SYNTHETIC', str(tmp_path / 'default'))
  logs = []
  assert synthetic.ensure_synthetic_dataset(log=logs.append) == tmp_path / 'default'
  assert logs == [f'generating the synthetic dataset at {tmp_path / "default"} ...']
  assert synthetic.ensure_synthetic_dataset(str(tmp_path / 'default'), log=logs.append)
  assert synthetic.ensure_synthetic_dataset(log=logs.append) and len(logs) == 1 and len(made) == 1
  with pytest.raises(FileNotFoundError, match='no such folder'):
    synthetic.ensure_synthetic_dataset(str(tmp_path / 'named'), log=logs.append)
  assert len(logs) == 1 and not (tmp_path / 'named').exists()

  # Evaluation goes through it: its message is the rule's, printed once.
  monkeypatch.setenv('OSTRACK_JAX_SYNTHETIC', str(tmp_path / 'other'))
  capsys.readouterr()
  root = evaluate.resolve_data_dir('got10k_val', None, get_config('tiny_256_ce'))
  assert root == tmp_path / 'other' and made[-1] == root
  assert capsys.readouterr().out == f'generating the synthetic dataset at {root} ...\n'

  # Training (and packing, the preview) through the registry: the same rule, announced the same.
  monkeypatch.setenv('OSTRACK_JAX_SYNTHETIC', str(tmp_path / 'third'))
  entry = registry.get('synthetic', 'train')
  root = registry.resolve_root(entry, '', 'config.data.roots.synthetic')
  assert root == tmp_path / 'third' and made[-1] == root
  assert capsys.readouterr().out == f'generating the synthetic dataset at {root} ...\n'
  assert registry.resolve_root(entry, '', 'config.data.roots.synthetic') == root
  assert capsys.readouterr().out == '' and len(made) == 3
