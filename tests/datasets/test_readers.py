"""Benchmark readers (native layouts), result writers and bad-input messages."""

import pathlib
import zipfile

import cv2
import numpy as np
import pytest

from ostrack_jax.common import fileio
from ostrack_jax.datasets import got10k
from ostrack_jax.datasets.core import DatasetError, FrameError
from ostrack_jax.datasets.frames import read_frame, to_rgb
from ostrack_jax.tracking import eval_sequences, results


def _write_frames(
  folder: pathlib.Path, n: int, pattern: str = '{:08d}.jpg', start: int = 1, size=(24, 32)
):
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    img = np.full(size + (3,), (10 * i) % 256, np.uint8)
    cv2.imwrite(str(folder / pattern.format(start + i)), img)


def _boxes(n, sep=','):
  return ''.join(sep.join(str(v) for v in (1 + i, 2, 10, 8)) + '\n' for i in range(n))


# ------------------------------------------------------------------------------ GOT-10k


def _make_got10k(root: pathlib.Path):
  val = root / 'val'
  for name, n in (('GOT-10k_Val_000001', 3), ('GOT-10k_Val_000002', 2)):
    d = val / name
    _write_frames(d, n)
    (d / 'groundtruth.txt').write_text(_boxes(n))
    (d / 'absence.label').write_text('0\n' * (n - 1) + '1\n')
    (d / 'cover.label').write_text('8\n' * (n - 1) + '0\n')
    (d / 'meta_info.ini').write_text('[METAINFO]\nurl: x\nresolution: (32, 24)\n')
  (val / 'list.txt').write_text('GOT-10k_Val_000002\nGOT-10k_Val_000001\n')
  test = root / 'test' / 'GOT-10k_Test_000001'
  _write_frames(test, 4)
  (test / 'groundtruth.txt').write_text('1.5,2.5,10.0,8.0\n')
  (root / 'test' / 'list.txt').write_text('GOT-10k_Test_000001\n')


def test_got10k_val_and_test(tmp_path):
  _make_got10k(tmp_path)
  seqs = eval_sequences.load_dataset('got10k_val', tmp_path)
  assert [s.name for s in seqs] == ['GOT-10k_Val_000002', 'GOT-10k_Val_000001']  # list.txt
  s = seqs[1]
  assert len(s) == 3 and s.has_full_gt
  np.testing.assert_array_equal(s.gt_xywh[2], [3, 2, 10, 8])
  np.testing.assert_array_equal(s.cover, [8, 8, 0])
  np.testing.assert_array_equal(s.visible, [True, True, False])
  assert s.image_size == (32, 24)
  assert s.frames[0].endswith('00000001.jpg')
  # The split folder itself also works.
  assert len(eval_sequences.load_dataset('got10k_val', tmp_path / 'val')) == 2
  test = eval_sequences.load_dataset('got10k_test', tmp_path)
  assert len(test) == 1 and len(test[0]) == 4 and not test[0].has_full_gt
  np.testing.assert_array_equal(test[0].init_box, [1.5, 2.5, 10, 8])


def test_got10k_meta_without_section_header(tmp_path):
  d = tmp_path / 'seq'
  _write_frames(d, 2)
  (d / 'groundtruth.txt').write_text(_boxes(2))
  (d / 'meta_info.ini').write_text('resolution: (640, 480)\n')
  assert eval_sequences.check_trackable(got10k.read_sequence_folder(d)).image_size == (640, 480)


# ------------------------------------------------------------------------------ LaSOT


def test_lasot(tmp_path):
  for name in ('airplane-1', 'airplane-2'):
    d = tmp_path / 'airplane' / name
    _write_frames(d / 'img', 3)
    (d / 'groundtruth.txt').write_text(_boxes(3))
    (d / 'full_occlusion.txt').write_text('0,1,0')
    (d / 'out_of_view.txt').write_text('0,0,1')
  (tmp_path / 'testing_set.txt').write_text('airplane-2\n')
  seqs = eval_sequences.load_dataset('lasot', tmp_path)
  assert [s.name for s in seqs] == ['airplane-2']
  np.testing.assert_array_equal(seqs[0].visible, [True, False, False])
  (tmp_path / 'testing_set.txt').unlink()
  assert len(eval_sequences.load_dataset('lasot', tmp_path)) == 2


# ------------------------------------------------------------------------------ TrackingNet


def test_trackingnet(tmp_path):
  _write_frames(tmp_path / 'TEST' / 'frames' / 'abc_1', 12, pattern='{}.jpg', start=0)
  (tmp_path / 'TEST' / 'anno').mkdir(parents=True)
  (tmp_path / 'TEST' / 'anno' / 'abc_1.txt').write_text('1,2,3,4\n')
  seqs = eval_sequences.load_dataset('trackingnet', tmp_path)
  assert len(seqs) == 1 and len(seqs[0]) == 12
  # numeric order, not lexicographic (10.jpg after 9.jpg)
  assert [pathlib.Path(f).name for f in seqs[0].frames[8:11]] == ['8.jpg', '9.jpg', '10.jpg']


# ------------------------------------------------------------------------------ OTB


def test_otb_separators_and_multiple_targets(tmp_path):
  d = tmp_path / 'Jogging'
  _write_frames(d / 'img', 3, pattern='{:04d}.jpg')
  (d / 'groundtruth_rect.1.txt').write_text(_boxes(3, sep='\t'))
  (d / 'groundtruth_rect.2.txt').write_text(_boxes(3, sep=' '))
  d = tmp_path / 'Basketball'
  _write_frames(d / 'img', 2, pattern='{:04d}.jpg')
  (d / 'groundtruth_rect.txt').write_text(_boxes(2, sep=','))
  seqs = eval_sequences.load_dataset('otb', tmp_path)
  assert [s.name for s in seqs] == ['Basketball', 'Jogging_1', 'Jogging_2']
  np.testing.assert_array_equal(seqs[2].gt_xywh[1], [2, 2, 10, 8])


def test_otb_partial_annotations(tmp_path):
  d = tmp_path / 'David'  # annotated on frames 300..770 of 770
  (d / 'img').mkdir(parents=True)
  for i in range(1, 771):
    (d / 'img' / f'{i:04d}.jpg').touch()  # the reader lists frames, it does not decode them
  (d / 'groundtruth_rect.txt').write_text(_boxes(471))
  d = tmp_path / 'Tiger1'  # the first 5 frames and boxes are skipped
  _write_frames(d / 'img', 8, pattern='{:04d}.jpg', size=(4, 4))
  (d / 'groundtruth_rect.txt').write_text(_boxes(8))
  david, tiger = eval_sequences.load_dataset('otb', tmp_path)
  assert len(david) == 471 and david.frames[0].endswith('0300.jpg')
  assert len(tiger) == 3 and tiger.frames[0].endswith('0006.jpg')
  np.testing.assert_array_equal(tiger.gt_xywh[0], [6, 2, 10, 8])


# ------------------------------------------------------------------------------ folder


def test_folder_single_and_many(tmp_path):
  d = tmp_path / 'mine' / 'clip'
  _write_frames(d, 3, pattern='frame_{:03d}.png')
  (d / 'groundtruth.txt').write_text('1 2 10 8\n')  # first box only
  (d / 'absence.label').write_text('0\n0\n1\n')  # ignored without full GT
  seqs = eval_sequences.load_dataset('folder', tmp_path / 'mine')
  assert len(seqs) == 1 and len(seqs[0]) == 3 and seqs[0].visible is None
  single = eval_sequences.load_dataset('folder', d)
  assert single[0].name == 'clip'


# ------------------------------------------------------------------------------ bad input


def test_empty_and_malformed_groundtruth_name_file_and_line(tmp_path):
  d = tmp_path / 'seq_a'
  _write_frames(d, 2)
  (d / 'groundtruth.txt').write_text('')
  with pytest.raises(DatasetError, match=r"'seq_a'.*groundtruth.txt: no boxes \(empty file\)"):
    eval_sequences.check_trackable(got10k.read_sequence_folder(d))
  (d / 'groundtruth.txt').write_text('1,2,3,4\n1,2,3\n')
  with pytest.raises(DatasetError, match=r"'seq_a'.*line 2: expected 4 numbers"):
    eval_sequences.check_trackable(got10k.read_sequence_folder(d))
  (d / 'groundtruth.txt').write_text('1,2,3,4\n1,2,x,4\n')
  with pytest.raises(DatasetError, match=r'line 2: not a number'):
    eval_sequences.check_trackable(got10k.read_sequence_folder(d))


def test_missing_frame_and_count_mismatch(tmp_path):
  d = tmp_path / 'seq_b'
  _write_frames(d, 4)
  (d / '00000003.jpg').unlink()
  (d / 'groundtruth.txt').write_text(_boxes(4))
  with pytest.raises(DatasetError, match=r"'seq_b'.*frame 00000003.jpg is missing"):
    eval_sequences.check_trackable(got10k.read_sequence_folder(d))
  d = tmp_path / 'seq_c'
  _write_frames(d, 3)
  (d / 'groundtruth.txt').write_text(_boxes(2))
  with pytest.raises(DatasetError, match=r"'seq_c': 3 frames but 2 boxes"):
    eval_sequences.check_trackable(got10k.read_sequence_folder(d))


def test_read_frame_corrupt_gray_rgba_missing(tmp_path):
  bad = tmp_path / 'bad.jpg'
  bad.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')  # no end-of-image marker
  with pytest.raises(
    FrameError,
    match=r"sequence 's' frame 7: .*bad.jpg is a truncated "
    r'JPEG',
  ):
    read_frame(str(bad), 's', 7)
  bad.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg\xff\xd9')
  with pytest.raises(FrameError, match=r"sequence 's' frame 7: cannot decode"):
    read_frame(str(bad), 's', 7)
  bad.write_bytes(b'not an image at all')
  with pytest.raises(FrameError, match=r"sequence 's' frame 7: cannot decode"):
    read_frame(str(bad), 's', 7)
  with pytest.raises(FrameError, match=r'frame 3: file .* is missing'):
    read_frame(str(tmp_path / 'nope.jpg'), 's', 3)
  gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
  cv2.imwrite(str(tmp_path / 'g.png'), gray)
  out = read_frame(str(tmp_path / 'g.png'))
  assert out.shape == (3, 4, 3)
  np.testing.assert_array_equal(out[..., 0], gray)
  rgba = np.zeros((3, 4, 4), np.uint8)
  rgba[..., 0] = 200  # blue in OpenCV's BGRA order
  rgba[..., 3] = 7
  cv2.imwrite(str(tmp_path / 'a.png'), rgba)
  out = read_frame(str(tmp_path / 'a.png'))
  assert out.shape == (3, 4, 3) and (out[..., 2] == 200).all() and (out[..., 0] == 0).all()
  assert to_rgb(gray).shape == (3, 4, 3)
  assert to_rgb(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 3)
  with pytest.raises(ValueError, match='uint8'):
    to_rgb(np.zeros((3, 4, 3), np.float32))


# ------------------------------------------------------------------------------ results


def test_result_layouts_atomic_and_zip(tmp_path):
  boxes = np.array([[1.25, 2.5, 10.125, 8.0], [3.0, 4.0, 5.0, 6.0]])
  w = results.ResultWriter(tmp_path / 'got', 'got10k')
  assert not w.is_done('GOT-10k_Test_000001')
  w.write('GOT-10k_Test_000001', boxes, [0.5, 0.25])
  d = tmp_path / 'got' / 'GOT-10k_Test_000001'
  assert (d / 'GOT-10k_Test_000001_001.txt').read_text() == (
    '1.2500,2.5000,10.1250,8.0000\n3.0000,4.0000,5.0000,6.0000\n'
  )
  assert (d / 'GOT-10k_Test_000001_time.txt').read_text() == '0.50000000\n0.25000000\n'
  assert w.is_done('GOT-10k_Test_000001')
  assert not list(d.glob('*.tmp'))
  got_boxes, times = w.read('GOT-10k_Test_000001')
  np.testing.assert_array_equal(got_boxes, boxes)
  np.testing.assert_array_equal(times, [0.5, 0.25])
  z = w.make_zip(['GOT-10k_Test_000001'])
  assert sorted(zipfile.ZipFile(z).namelist()) == [
    'GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt',
    'GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt',
  ]
  assert (d / 'GOT-10k_Test_000001_001.txt').exists()  # raw results kept

  tn = results.ResultWriter(tmp_path / 'tn', 'trackingnet')
  tn.write('abc', boxes, [0.1, 0.1])
  assert (tmp_path / 'tn' / 'abc.txt').is_file()
  assert zipfile.ZipFile(tn.make_zip(['abc'])).namelist() == ['abc.txt']

  la = results.ResultWriter(tmp_path / 'la', 'lasot')
  la.write('airplane-1', boxes, [0.1, 0.1])
  assert (tmp_path / 'la' / 'airplane-1.txt').is_file()
  with pytest.raises(ValueError, match='2 boxes but 1 frame times'):
    la.write('x', boxes, [0.1])
  assert results.layout_for_dataset('got10k_val') == 'got10k'


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
  p = tmp_path / 'a.txt'
  fileio.atomic_write_text(p, 'old\n')

  def boom(*args, **kwargs):
    raise OSError('disk full')

  monkeypatch.setattr(fileio.os, 'replace', boom)
  with pytest.raises(OSError):
    fileio.atomic_write_text(p, 'new\n')
  assert p.read_text() == 'old\n'
  assert [q.name for q in tmp_path.iterdir()] == ['a.txt']
