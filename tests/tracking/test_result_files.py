"""Result-file integrity (a sequence is finished only when its files are complete) and the
modes of the files the package writes (the user's umask, not mkstemp's private 0600).

Fast: NumPy and the file helpers only.
"""

import os
import stat
import zipfile

import numpy as np
import pytest

from ostrack_jax.common import fileio
from ostrack_jax.tracking import results

N = 5
BOXES = np.array([[10.0 + i, 20.5, 30.25, 40.0] for i in range(N)])
TIMES = [0.01 * (i + 1) for i in range(N)]


def _lines(text, keep):
  return ''.join(text.splitlines(True)[:keep])


# Each case: (id, which file, its damaged text (None: deleted), words the message must contain).
DAMAGE = [
  ('truncated', 'box', lambda t: _lines(t, 2), 'has 2 lines, the sequence has 5 frames'),
  ('one_line', 'box', lambda t: _lines(t, 1), 'has 1 line, the sequence has 5 frames'),
  ('extra_line', 'box', lambda t: t + '1.0,2.0,3.0,4.0\n', 'has 6 lines, the sequence has 5'),
  ('empty', 'box', lambda t: '', 'is empty'),
  ('blank', 'box', lambda t: '\n\n', 'is empty'),
  ('cut_mid_line', 'box', lambda t: t[:-8], 'line 5: expected 4 numbers'),
  ('cut_in_last_number', 'box', lambda t: t[:-3], 'line 5: no newline at its end'),
  ('non_numeric', 'box', lambda t: t.replace('20.5000', 'abc', 1), 'line 1: expected 4 numbers'),
  ('nan', 'box', lambda t: t.replace('20.5000', 'nan', 1), 'line 1: expected 4 numbers'),
  ('inf', 'box', lambda t: t.replace('30.2500', 'inf', 1), 'line 1: expected 4 numbers'),
  ('three_numbers', 'box', lambda t: t.replace(',40.0000', '', 1), 'line 1: expected 4'),
  ('binary', 'box', lambda t: b'\xff\xfe\x00', 'cannot read'),
  ('time_truncated', 'time', lambda t: _lines(t, 3), 'has 3 lines, the sequence has 5 frames'),
  ('time_extra', 'time', lambda t: t + '0.5\n', 'has 6 lines'),
  ('time_empty', 'time', lambda t: '', 'is empty'),
  (
    'time_non_numeric',
    'time',
    lambda t: t.replace('0.02000000', 'x', 1),
    'line 2: expected 1 number',
  ),
  ('time_nan', 'time', lambda t: t.replace('0.02000000', 'NaN', 1), 'line 2: expected 1'),
  ('time_missing', 'time', None, 'is missing'),
  ('time_cut_in_last_number', 'time', lambda t: t[:-2], 'line 5: no newline at its end'),
]


def _write(tmp_path, layout, name='seq-1'):
  writer = results.ResultWriter(tmp_path / layout, layout)
  writer.write(name, BOXES, TIMES)
  return writer, name


@pytest.mark.parametrize('layout', results.LAYOUTS)
def test_complete_results_are_done_in_every_layout(tmp_path, layout):
  writer, name = _write(tmp_path, layout)
  assert writer.check(name, N) is None
  assert writer.is_done(name, N) and writer.is_done(name)
  boxes, times = writer.read(name)
  np.testing.assert_array_equal(boxes, BOXES)
  np.testing.assert_allclose(times, TIMES)
  # Written by another tool: tab or space separated, a trailing blank line: still complete.
  box_path, _ = writer.paths(name)
  box_path.write_text(results.format_boxes(BOXES, sep='\t') + '\n')
  assert writer.check(name, N) is None
  assert not writer.has_files('other') and not writer.is_done('other', N)
  assert writer.check('other', N).endswith('is missing')


@pytest.mark.parametrize('layout', results.LAYOUTS)
@pytest.mark.parametrize('case', DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_results_are_not_done_and_named(tmp_path, layout, case):
  _, which, damage, words = case
  writer, name = _write(tmp_path, layout)
  box_path, time_path = writer.paths(name)
  path = box_path if which == 'box' else time_path
  if damage is None:
    path.unlink()
  else:
    data = damage(path.read_text())
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
  problem = writer.check(name, N)
  if which == 'time' and layout == 'trackingnet' and damage is None:
    assert problem is None  # TrackingNet's official layout has no time file
    return
  assert problem is not None and str(path) in problem and words in problem, problem
  assert writer.has_files(name) and not writer.is_done(name, N)


def test_read_numbers_message_names_file_and_line(tmp_path):
  p = tmp_path / 'r.txt'
  p.write_text('1,2,3,4\n\n5,6,nan,8\n')
  with pytest.raises(
    results.ResultFileError, match=r"r\.txt line 3: expected 4 numbers .*'5,6,nan,8'"
  ):
    results.read_numbers(p, 4)
  p.write_text('1,2,3,4\n')
  with pytest.raises(ValueError, match='has 1 line, the sequence has 2 frames'):
    results.read_numbers(p, 4, num_lines=2)
  np.testing.assert_array_equal(results.read_numbers(p, 4), [[1, 2, 3, 4]])


# ------------------------------------------------------------------------------ file modes


@pytest.fixture
def umask():
  """Sets the process umask for one test (the value passed to the returned function)."""
  old = os.umask(0o022)
  os.umask(old)

  def set_umask(value):
    os.umask(value)

  yield set_umask
  os.umask(old)


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('mask, file_mode', [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, file_mode):
  umask(mask)
  assert fileio.umask() == mask
  assert fileio.file_mode() == file_mode and fileio.dir_mode() == 0o777 & ~mask
  fileio.atomic_write_text(tmp_path / 'a.txt', 'x\n')
  assert _mode(tmp_path / 'a.txt') == file_mode
  (tmp_path / 'a.txt').chmod(0o600)  # a replaced file gets the umask's mode, too
  fileio.atomic_write_bytes(tmp_path / 'a.txt', b'y')
  assert _mode(tmp_path / 'a.txt') == file_mode
  assert not list(tmp_path.glob('.*.tmp'))


def test_results_zip_and_model_file_are_0644_with_umask_022(tmp_path, umask):
  from ostrack_jax.configs import get_config
  from ostrack_jax.weights.model_file import save_variables

  umask(0o022)
  writer = results.ResultWriter(tmp_path / 'got', 'got10k')
  writer.write('a', BOXES, TIMES)
  box_path, time_path = writer.paths('a')
  zip_path = writer.make_zip(['a'])
  model = tmp_path / 'model.msgpack'
  save_variables(str(model), {'params': {'w': np.zeros(3, np.float32)}}, get_config('tiny_256_ce'))
  for path in (box_path, time_path, zip_path, model):
    assert _mode(path) == 0o644, path
  assert _mode(box_path.parent) == 0o755
  assert zipfile.ZipFile(zip_path).namelist() == ['a/a_001.txt', 'a/a_time.txt']


def test_overwrite_removes_only_result_files(tmp_path):
  """What eval.py --overwrite removes from a results folder of another producer: the result
  files of every layout, submission.zip and the report's files; never the user's other files
  (a notes.txt, a requirements.txt, a folder of their own, their file in report/)."""
  from ostrack_jax.tracking import provenance

  out = tmp_path / 'out'
  results.ResultWriter(out, 'lasot').write('pair', BOXES, TIMES)
  results.ResultWriter(out, 'got10k').write('seq', BOXES, TIMES)
  (out / 'lone.txt').write_text(results.format_boxes(BOXES))  # TrackingNet's layout, no times
  (out / 'submission.zip').write_bytes(b'PK')
  (out / 'report').mkdir()
  (out / 'report' / 'summary.json').write_text('{}')
  mine = ['notes.txt', 'requirements.txt', 'data/data_001.md', 'mine/x.txt', 'report/mine.txt']
  for name in mine:
    (out / name).parent.mkdir(exist_ok=True)
    (out / name).write_text('jax>=0.4\n')
  found = {p.relative_to(out).as_posix() for p in provenance.result_files(out)}
  assert found == {
    'pair.txt',
    'pair_time.txt',
    'seq/seq_001.txt',
    'seq/seq_time.txt',
    'lone.txt',
    'submission.zip',
    'report/summary.json',
  }
  provenance.remove_results(out)
  left = {p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file()}
  assert left == set(mine) and not (out / 'seq').exists()
