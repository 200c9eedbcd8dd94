"""Shared by the tests that run a command's bad-input path in the pytest process
(tests/test_cli.py, tests/training/test_train_resume.py): the command as the interpreter runs it,
without a fresh interpreter's start-up."""

import pathlib
import runpy
import sys
import warnings

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_command(argv, monkeypatch, capsys):
  """``python *argv`` in this process: (exit status, stderr). A command that ends without
  sys.exit (it did not stop) fails the test; one that raises keeps its traceback."""
  monkeypatch.chdir(REPO)
  capsys.readouterr()
  if argv[0] == '-m':
    monkeypatch.setattr(sys, 'argv', [argv[1], *argv[2:]])
    with pytest.raises(SystemExit) as e, warnings.catch_warnings():
      # runpy's note that the module was imported before (by an earlier case or test).
      warnings.filterwarnings('ignore', '.* found in sys.modules', RuntimeWarning)
      runpy.run_module(argv[1], run_name='__main__', alter_sys=True)
  else:
    monkeypatch.setattr(sys, 'argv', list(argv))
    with pytest.raises(SystemExit) as e:
      runpy.run_path(argv[0], run_name='__main__')
  return e.value.code, capsys.readouterr().err
