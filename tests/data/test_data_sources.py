"""Sources in each native layout (made here in tmp dirs), the index report and bad input."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from ostrack_jax.data import index, sampler as sampler_lib, sources, transforms as T
from ostrack_jax.datasets import core, synthetic

W, H = 64, 48


def _frame(i: int) -> np.ndarray:
  """A small frame whose top-left pixel encodes i (to check which file was read)."""
  img = np.full((H, W, 3), 90, np.uint8)
  img[:8, :8] = (i * 37) % 256
  return img


def _write_jpg(path: pathlib.Path, img: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])


def _boxes(n: int) -> np.ndarray:
  t = np.arange(n, dtype=np.float64)
  return np.stack([10 + t % 7, 8 + t % 5, 20 + 0 * t, 16 + 0 * t], axis=1)


def _write_lines(path, rows, sep=','):
  path.write_text(''.join(sep.join(f'{v:g}' for v in np.atleast_1d(r)) + '\n' for r in rows))


def make_got10k(root: pathlib.Path, n_seqs=2, n_frames=24, split='train'):
  names = []
  for s in range(n_seqs):
    name = f'GOT-10k_Train_{s + 1:06d}'
    d = root / split / name
    for i in range(n_frames):
      _write_jpg(d / f'{i + 1:08d}.jpg', _frame(i))
    _write_lines(d / 'groundtruth.txt', _boxes(n_frames))
    _write_lines(d / 'absence.label', np.zeros(n_frames, int))
    _write_lines(d / 'cover.label', np.full(n_frames, 8))
    names.append(name)
  (root / split / 'list.txt').write_text('\n'.join(names) + '\n')
  return root


def make_lasot(root: pathlib.Path, n_frames=24):
  for cls, k in (('airplane', 1), ('airplane', 2), ('bear', 1)):
    d = root / cls / f'{cls}-{k}'
    for i in range(n_frames):
      _write_jpg(d / 'img' / f'{i + 1:08d}.jpg', _frame(i))
    _write_lines(d / 'groundtruth.txt', _boxes(n_frames))
    occl = np.zeros(n_frames, int)
    occl[3] = 1
    (d / 'full_occlusion.txt').write_text(','.join(map(str, occl)))
    oov = np.zeros(n_frames, int)
    oov[5] = 1
    (d / 'out_of_view.txt').write_text(','.join(map(str, oov)))
  (root / 'testing_set.txt').write_text('airplane-2\n')
  return root


def make_trackingnet(root: pathlib.Path, n_frames=24):
  for chunk in (0, 1):
    name = f'vid_{chunk}'
    for i in range(n_frames):
      _write_jpg(root / f'TRAIN_{chunk}' / 'frames' / name / f'{i}.jpg', _frame(i))
    (root / f'TRAIN_{chunk}' / 'anno').mkdir(parents=True)
    _write_lines(root / f'TRAIN_{chunk}' / 'anno' / f'{name}.txt', _boxes(n_frames))
  return root


def make_coco(root: pathlib.Path):
  images, anns = [], []
  for i in range(3):
    _write_jpg(root / 'train2017' / f'{i:012d}.jpg', _frame(i))
    images.append(dict(id=i + 1, file_name=f'{i:012d}.jpg', width=W, height=H))
    anns.append(dict(id=100 + i, image_id=i + 1, bbox=[10, 8, 20, 16], iscrowd=0))
  anns.append(dict(id=200, image_id=1, bbox=[1, 1, 30, 30], iscrowd=1))
  anns.append(dict(id=201, image_id=2, bbox=[5, 5, 0, 10], iscrowd=0))  # zero width
  (root / 'annotations').mkdir(parents=True)
  (root / 'annotations' / 'instances_train2017.json').write_text(
    json.dumps(dict(images=images, annotations=anns))
  )
  return root


def make_folder(root: pathlib.Path, n_frames=24):
  d = root / 'my_clip'
  for i in range(n_frames):
    _write_jpg(d / f'frame_{i}.jpg', _frame(i))  # natural sort: frame_2 before frame_10
  _write_lines(d / 'groundtruth.txt', _boxes(n_frames), sep=' ')
  return root


def _first_pixel(frame: T.Frame) -> int:
  return int(T.decode(frame)[2, 2, 0])


def test_got10k_layout(tmp_path):
  src = sources.open_source('got10k_train_full', make_got10k(tmp_path), cache_dir=None)
  assert len(src) == 2 and src.report.sequences_kept == 2
  seq = src.sequences[1]
  np.testing.assert_allclose(seq.boxes, _boxes(24))
  assert seq.visible.all() and seq.image_size == (W, H)
  assert abs(_first_pixel(src.frame(1, 5)) - (5 * 37) % 256) <= 3


def test_got10k_split_file_by_index_and_name(tmp_path):
  root = make_got10k(tmp_path, n_seqs=3)
  (tmp_path / 'split.txt').write_text('2\n0\n')
  src = sources.open_source(
    'got10k_train_full', root, split_file=str(tmp_path / 'split.txt'), cache_dir=None
  )
  assert [s.name for s in src.sequences] == ['GOT-10k_Train_000003', 'GOT-10k_Train_000001']
  (tmp_path / 'split2.txt').write_text('GOT-10k_Train_000002\n')
  src = sources.open_source(
    'got10k_train_full', root, split_file=str(tmp_path / 'split2.txt'), cache_dir=None
  )
  assert [s.name for s in src.sequences] == ['GOT-10k_Train_000002']


def test_lasot_layout(tmp_path):
  src = sources.open_source('lasot', make_lasot(tmp_path), cache_dir=None)
  assert [s.name for s in src.sequences] == ['airplane-1', 'bear-1']  # airplane-2 is a test seq
  vis = src.sequences[0].visible
  assert not vis[3] and not vis[5] and vis.sum() == 22
  hidden = 'target labelled not visible (absent, occluded or out of view)'
  assert src.report.invisible_frames[hidden] == 4  # 2 sequences x (1 occluded + 1 out of view)
  assert abs(_first_pixel(src.frame(0, 7)) - (7 * 37) % 256) <= 3
  assert src.frame_key(0, 0) == 'airplane/airplane-1/img/00000001.jpg'


def test_trackingnet_layout(tmp_path):
  src = sources.open_source(
    'trackingnet', make_trackingnet(tmp_path), cache_dir=None, chunks=[0, 1]
  )
  assert len(src) == 2
  assert src.frame_key(1, 0) == 'TRAIN_1/frames/vid_1/0.jpg'  # 0-based frame files
  assert abs(_first_pixel(src.frame(1, 9)) - (9 * 37) % 256) <= 3


def test_coco_layout(tmp_path):
  src = sources.open_source('coco', make_coco(tmp_path), cache_dir=None)
  assert not src.is_video
  assert len(src) == 3  # crowd and zero-width annotations skipped and reported
  assert src.report.skipped['crowd annotation'] == 1
  assert src.report.skipped['no visible frame'] == 1
  assert src.report.invisible_frames['zero-size or NaN box'] == 1
  assert src.sequences[2].image_size == (W, H)


def test_folder_layout_natural_order(tmp_path):
  src = sources.open_source('folder', make_folder(tmp_path), cache_dir=None)
  seq = src.sequences[0]
  assert seq.frame_names[:3] == ['frame_0.jpg', 'frame_1.jpg', 'frame_2.jpg']
  assert seq.frame_names[10] == 'frame_10.jpg'
  assert abs(_first_pixel(src.frame(0, 10)) - (10 * 37) % 256) <= 3


def test_synthetic_is_got10k_layout_and_deterministic(tmp_path):
  a = synthetic.make_synthetic_dataset(
    tmp_path / 'a', num_train=2, num_val=1, num_frames=20, frame_size=(96, 64), seed=3
  )
  b = synthetic.make_synthetic_dataset(
    tmp_path / 'b', num_train=2, num_val=1, num_frames=20, frame_size=(96, 64), seed=3
  )
  for rel in (
    'train/SYN_Train_000002/00000013.jpg',
    'train/SYN_Train_000002/groundtruth.txt',
    'val/SYN_Val_000001/cover.label',
    'val/SYN_Val_000001/absence.label',
  ):
    assert (a / rel).read_bytes() == (b / rel).read_bytes()
  assert (a / 'train/SYN_Train_000001/meta_info.ini').read_text().startswith('[METAINFO]')
  src = sources.open_source('got10k_train_full', a, cache_dir=None)
  val = sources.open_source('got10k_val', a, cache_dir=None)
  assert len(src) == 2 and len(val) == 1
  for seq in list(src.sequences) + list(val.sequences):
    assert len(seq.boxes) == 20
    x, y, w, h = seq.boxes.T
    assert np.all(x >= 0) and np.all(y >= 0) and np.all(x + w <= 96 + 1e-3)
    assert np.all(y + h <= 64 + 1e-3)
  # Same arguments again: kept; other arguments: refused unless overwrite.
  assert (
    synthetic.make_synthetic_dataset(
      tmp_path / 'a', num_train=2, num_val=1, num_frames=20, frame_size=(96, 64), seed=3
    )
    == a
  )
  with pytest.raises(FileExistsError, match='overwrite'):
    synthetic.make_synthetic_dataset(
      tmp_path / 'a', num_train=2, num_val=1, num_frames=20, frame_size=(96, 64), seed=4
    )


def test_bad_input_is_reported_and_skipped(tmp_path):
  root = make_got10k(tmp_path, n_seqs=6, n_frames=24)
  split = root / 'train'
  names = (split / 'list.txt').read_text().split()
  # 1: a missing frame (frame 4), a truncated frame (6) and one that does not decode (9).
  (split / names[0] / '00000004.jpg').unlink()
  (split / names[0] / '00000006.jpg').write_bytes(b'\xff\xd8\xff not a jpeg')
  (split / names[0] / '00000009.jpg').write_bytes(b'\xff\xd8\xff not a jpeg either\xff\xd9')
  # 2: annotation file shorter than the frames.
  lines = (split / names[1] / 'groundtruth.txt').read_text().splitlines()
  (split / names[1] / 'groundtruth.txt').write_text('\n'.join(lines[:20]) + '\n')
  # 3: zero-size and NaN boxes.
  boxes = _boxes(24)
  boxes[2, 2] = 0
  boxes[7] = np.nan
  _write_lines(split / names[2] / 'groundtruth.txt', boxes)
  # 4: no visible frame at all.
  _write_lines(split / names[3] / 'absence.label', np.ones(24, int))
  # 5: groundtruth missing.
  (split / names[4] / 'groundtruth.txt').unlink()
  src = sources.open_source('got10k_train_full', root, cache_dir=None)
  rep = src.report
  assert rep.sequences_found == 6 and rep.sequences_kept == 3
  assert rep.skipped['annotation has fewer lines than frames'] == 1
  assert rep.skipped['no visible frame'] == 1
  assert rep.skipped['groundtruth.txt missing'] == 1
  assert rep.invisible_frames['image file missing'] == 1
  assert rep.invisible_frames['zero-size or NaN box'] == 2
  assert rep.invisible_frames['image file truncated or corrupt'] == 1  # found by its end
  summary = rep.summary()
  assert 'fewer lines than frames' in summary and names[1] in summary
  assert '00000006.jpg (a truncated JPEG (no end-of-image marker))' in summary
  by_name = {s.name: s for s in src.sequences}
  assert not by_name[names[0]].visible[3]  # missing frame never sampled
  assert not by_name[names[0]].visible[5]  # truncated frame never sampled
  assert not by_name[names[2]].visible[2] and not by_name[names[2]].visible[7]
  # Sampling never crashes: the frame that does not decode makes its pairs invalid and they
  # are redrawn.
  tp = T.AugmentParams(32, 2.0, 0.0, 0.0)
  sp = T.AugmentParams(64, 4.0, 3.0, 0.25)
  smp = sampler_lib.PairSampler([src], [1.0], tp, sp, seed=0)
  for k in range(120):
    out = smp(k)
    assert np.all(np.isfinite(out['search'])) and np.all(np.isfinite(out['search_anno']))
  assert any('cannot decode' in reason for reason in smp.failures)


def test_empty_and_missing_roots(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(core.DatasetError, match='no usable sequence'):
    sources.open_source('folder', tmp_path / 'empty', cache_dir=None)
  with pytest.raises(core.DatasetError, match="--root='.*nope' does not exist"):
    sources.open_source('got10k_train_full', tmp_path / 'nope', cache_dir=None)
  (tmp_path / 'g' / 'train').mkdir(parents=True)
  (tmp_path / 'g' / 'train' / 'list.txt').write_text('')
  with pytest.raises(core.DatasetError, match='empty dataset folder'):
    sources.open_source('got10k_train_full', tmp_path / 'g', cache_dir=None)


def test_index_cache_roundtrip_and_invalidation(tmp_path):
  root = make_got10k(tmp_path / 'data', n_seqs=2)
  cache = tmp_path / 'cache'
  a = sources.open_source('got10k_train_full', root, cache_dir=cache)
  assert len([p for p in cache.iterdir() if (p / 'meta.json').exists()]) == 1
  b = sources.open_source('got10k_train_full', root, cache_dir=cache)  # from the cache
  for sa, sb in zip(a.sequences, b.sequences, strict=True):
    np.testing.assert_array_equal(sa.boxes, sb.boxes)
    np.testing.assert_array_equal(sa.visible, sb.visible)
    assert sa.frame_names == sb.frame_names and sa.image_size == sb.image_size
  assert b.report.summary() == a.report.summary()
  # The cached table is memory-mapped and pickles as its folder name (grain workers map it).
  import pickle

  blob = pickle.dumps(b)
  assert len(blob) < 4000
  c = pickle.loads(blob)
  np.testing.assert_array_equal(c.sequences.boxes, a.sequences.boxes)
  assert c.frame_key(1, 3) == a.frame_key(1, 3)
  # Editing an annotation file invalidates the cache.
  gt = root / 'train' / 'GOT-10k_Train_000001' / 'groundtruth.txt'
  boxes = _boxes(24)
  boxes[0] = [1, 2, 3, 4]
  _write_lines(gt, boxes)
  c = sources.open_source('got10k_train_full', root, cache_dir=cache)
  np.testing.assert_allclose(c.sequences[0].boxes[0], [1, 2, 3, 4])


def test_vot_subsets_need_split_file():
  from ostrack_jax.configs import get_config

  cfg = get_config('ostrack_256_ce')
  cfg.data.roots.got10k = '.'
  with pytest.raises(core.DatasetError, match='split_files.got10k_vottrain'):
    sources.make_source('got10k_vottrain', cfg.data)


def test_sequence_table_is_compact_and_pickles(tmp_path):
  import pickle

  seqs = [
    index.TableRow(
      str(i),
      'train2017',
      [f'{i:012d}.jpg'],
      np.array([[1.0, 2, 3, 4]]),
      np.ones(1, bool),
      (640, 480),
    )
    for i in range(20000)
  ]
  src = index.Source('coco', str(tmp_path), seqs, index.IndexReport('coco'), is_video=False)
  blob = pickle.dumps(src)
  assert len(blob) < 2_000_000  # < 100 bytes per COCO-like pseudo-sequence (87 measured)
  back = pickle.loads(blob)
  assert back.frame_key(12345, 0) == 'train2017/000000012345.jpg'
  assert back.sequences.image_size(7) == (640, 480)
  seq = back.sequences[19999]
  assert seq.name == '19999' and list(seq.frame_names) == ['000000019999.jpg']
  np.testing.assert_array_equal(seq.boxes, [[1, 2, 3, 4]])
