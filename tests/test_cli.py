"""The one command-line layer (ostrack_jax.cli) and every command's answer to bad input.

Each command is run on input that is wrong: it must exit with status 2 and one line on stderr
naming the flag, field or file, and no traceback. The commands run in this process, each as the
interpreter runs it (its script or ``-m`` module executed as ``__main__``, argv set, from the
repository root): a fresh interpreter each cost 0.3-0.5 s, for about 45 cases. Each command's
first case runs in a fresh interpreter (its whole stderr, import-time warnings included, is one
line), as does the case that needs one (``--multihost`` initialises JAX's distributed runtime,
which a process that already used JAX refuses) and train.py's own bad-input tests
(tests/training/test_train_resume.py).
"""

import importlib
import pathlib
import subprocess
import sys

import pytest

from command_util import run_command
from ostrack_jax import cli
from ostrack_jax.common.errors import InputError

REPO = pathlib.Path(__file__).resolve().parents[1]

# Behaviour only (no comparison with the original's outputs): compiled fast (tests/conftest.py).
pytestmark = pytest.mark.fast_compile


def _parser(**kw):
  p = cli.Parser('prog', config='tiny_256_ce', **kw)
  p.add_argument('--workdir')
  p.add_argument('--batch-size', type=cli.positive_int, default=1)
  return p


def test_overrides_both_forms_and_checked_config():
  args = _parser().parse(['--config.train.lr=1e-3', '--config.train.epochs', '5', '--workdir', 'w'])
  assert args.overrides == ['train.lr=1e-3', 'train.epochs=5'] and args.workdir == 'w'
  assert args.config.train.lr == 1e-3 and args.config.train.epochs == 5
  assert args.config_spec == 'tiny_256_ce' and args.config.name == 'tiny_256_ce'


@pytest.mark.parametrize(
  'argv,message',
  [
    (['--config.train.lr'], 'config override --config.train.lr has no value'),
    (['--workdri', 'x'], 'unrecognized argument --workdri; did you mean --workdir?'),
    (['--lr=3'], 'did you mean --config.train.lr=...?'),
    (['--batch-size', '0'], "argument --batch-size: must be an integer >= 1, got '0'"),
    (['--batch-size', 'two'], "argument --batch-size: must be an integer, got 'two'"),
    (['--config.train.lrr=1'], "unknown config key 'train.lrr'; did you mean train.lr"),
    (['--config', 'tiny_265_ce'], "unknown preset 'tiny_265_ce'; did you mean tiny_256_ce?"),
    (['--config.train.batch_size=-3'], 'config.train.batch_size=-3: must be >= 1'),
    (['--work'], 'unrecognized argument --work'),  # no abbreviations: they are guesses
  ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    _parser(training=True).parse(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.startswith('prog: ') and err.count('\n') == 1, err
  assert message in err, err


def test_old_spelling_is_unknown_and_answered_with_the_new_one(capsys):
  with pytest.raises(SystemExit) as e:
    _parser().parse(['--batch_size=4'])
  assert e.value.code == 2
  assert (
    'unrecognized argument --batch_size=4; did you mean --batch-size' in capsys.readouterr().err
  )


@pytest.mark.parametrize(
  'module, argv, new',
  [
    ('ostrack_jax.data.pack', ['--split_file', 'x'], '--split-file'),
    ('ostrack_jax.data.pack', ['--shard_mb', '8'], '--shard-mb'),
    ('ostrack_jax.data.make_synthetic', ['--out', 'x'], '--output'),
    ('ostrack_jax.data.make_synthetic', ['--num_train', '3'], '--num-train'),
    ('ostrack_jax.data.preview', ['--out', 'x.png'], '--output'),
    ('ostrack_jax.export', ['--out', 'x'], '--output'),
  ],
)
def test_commands_answer_the_0_1_0_spellings_with_the_new_one(module, argv, new, capsys):
  """The spellings 0.1.0 still accepted are gone; each is an unknown flag, exit status 2,
  with the new spelling as the closest match (in-process: the parser fails before any work)."""
  main = importlib.import_module(module).main
  with pytest.raises(SystemExit) as e:
    main(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count('\n') == 1, err
  assert f'unrecognized argument {argv[0]}; did you mean {new}' in err, err


def test_run_turns_input_errors_into_status_2(capsys):
  def main(argv):
    raise InputError('config.x: wrong')

  assert cli.run(main, 'prog') == 2
  assert capsys.readouterr().err == 'prog: config.x: wrong\n'
  assert cli.run(lambda argv: None, 'prog') == 0

  def bug(argv):
    raise KeyError('a bug keeps its traceback')

  with pytest.raises(KeyError):
    cli.run(bug, 'prog')


def test_existing_paths_are_never_created(tmp_path):
  with pytest.raises(Exception, match='no such folder'):
    cli.existing_dir(str(tmp_path / 'nope'))
  assert not (tmp_path / 'nope').exists()
  with pytest.raises(Exception, match='is a directory, not a file'):
    cli.existing_file(str(tmp_path))


# The command's own interpreter: --multihost starts JAX's distributed runtime; and the first
# case of each command (below), so that each command's whole stderr in a fresh interpreter
# (import-time warnings and library noise included, which pytest would capture in-process) is
# checked once.
OWN_PROCESS = {'--multihost'}


CASES = [
  (['train.py', '--config.train.batch_size=0'], 'config.train.batch_size=0: must be >= 1'),
  (['train.py', '--config.train.lr=nan'], 'config.train.lr=nan: must be a finite number'),
  (['train.py', '--config.model.ce_keep_ratio=(0.7,1.5,0.7)'], 'every keep ratio must lie in'),
  (['train.py', '--config.data.roots.synthetic=/nonexistent/root'], 'no such folder'),
  (['train.py', '--config.train.pretrained=/'], 'is a directory, not a checkpoint file'),
  (['train.py', '--process-id', '0'], '--process-id only go with --multihost'),
  (
    ['train.py', '--multihost', '--num-processes', '2', '--process-id', '2'],
    '--process-id 2 not in [0, --num-processes 2)',
  ),
  (['train.py', '--config', 'nope.py'], '--config nope.py: no such file'),
  (['eval.py', '--batch-size', '0'], 'argument --batch-size: must be an integer >= 1'),
  (['eval.py', '--dataset', 'got10k_tset'], "invalid choice: 'got10k_tset'"),
  (['eval.py', '--checkpoint', 'nope.msgpack'], '--checkpoint nope.msgpack: no such file'),
  (['eval.py', '--checkpoint', '/'], '--checkpoint / is a directory'),
  (['eval.py', '--decode-threads', '-1'], 'argument --decode-threads: must be an integer >= 0'),
  (['eval.py', '--devices', '0'], 'argument --devices: must be an integer >= 1'),
  (['eval.py', '--coordinator', 'localhost:1'], '--coordinator only go with --multihost'),
  (
    ['eval.py', '--multihost', '--checkpoint', 'README.md'],  # no cluster found, no coordinator
    '--multihost: coordinator_address should be defined',
  ),
  (
    [
      'convert_torch_weights.py',
      '--checkpoint',
      'nope.pth',
      '--output',
      'x.msgpack',
      '--config',
      'ostrack_256_ce',
    ],
    'argument --checkpoint: nope.pth: no such file',
  ),
  (['convert_torch_weights.py', '--output', 'x'], 'the following arguments are required'),
  (['-m', 'ostrack_jax.export', '--checkpoint', 'nope', '--output', 'x'], 'nope: no such file'),
  (
    ['-m', 'ostrack_jax.demo', '--video', 'v', '--box', '1,2,3', '--checkpoint', 'c'],
    "argument --box: must be x,y,w,h (4 numbers), got '1,2,3'",
  ),
  (
    ['-m', 'ostrack_jax.data.pack', 'got10k_train', '--root', '.', '--output', 'x'],
    "unknown training dataset 'got10k_train' (got10k_train is a dataset for evaluation only",
  ),
  (
    ['-m', 'ostrack_jax.data.pack', 'folder', '--root', 'nope', '--output', 'x'],
    "folder: --root='nope' does not exist",
  ),
  (
    ['-m', 'ostrack_jax.data.make_synthetic', '--num-frames', '0'],
    'argument --num-frames: must be',
  ),
  (['-m', 'ostrack_jax.data.preview', '--output', 'x.png', '--num', '0'], 'argument --num: must'),
  (
    [
      '-m',
      'ostrack_jax.data.preview',
      '--output',
      'x.png',
      '--config.data.train_datasets=("foo",)',
    ],
    "unknown training dataset 'foo'; valid: got10k_train_full",
  ),
]


def _command(argv):
  return argv[1] if argv[0] == '-m' else argv[0]


FIRST_OF_EACH_COMMAND = [
  argv
  for i, (argv, _) in enumerate(CASES)
  if _command(argv) not in {_command(a) for a, _ in CASES[:i]}
]


@pytest.mark.parametrize('argv,message', CASES, ids=[' '.join(a) for a, _ in CASES])
def test_commands_answer_bad_input_in_one_line(argv, message, monkeypatch, capsys):
  if OWN_PROCESS & set(argv) or argv in FIRST_OF_EACH_COMMAND:
    out = subprocess.run(
      [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    status, err = out.returncode, out.stderr
  else:
    status, err = run_command(argv, monkeypatch, capsys)
  assert status == 2, (status, err[-2000:])
  assert 'Traceback' not in err and err.count('\n') == 1, err
  assert message in err, err


# Outputs a command cannot write, and user errors found before any work: one line, status 2,
# and nothing created. {tmp} is the test's folder, holding 'file' (a file), 'raises.py' (a
# config whose get_config() raises), 'packs/folder/pack.json' (a pack) and 'link' (a link to
# nothing). /sys takes no new
# file from any user, root included (CI runs the tests as root, for whom chmod'ed folders stay
# writable).
BEFORE_WORK = [
  (['train.py', '--workdir', '{tmp}/file/run'], '--workdir {tmp}/file/run: {tmp}/file is a file'),
  (['train.py', '--workdir', '/sys/ostrack_run'], '--workdir /sys/ostrack_run: cannot write in'),
  (
    ['train.py', '--workdir', '{tmp}/run', '--config', '{tmp}/raises.py'],
    "--config {tmp}/raises.py: get_config() raised KeyError: 'lr' (raises.py line 3)",
  ),
  (
    ['train.py', '--workdir', '{tmp}/run', '--config.model.search_size=100'],
    'config.model.search_size=100: must be a positive multiple of config.model.patch_size=16',
  ),
  (
    ['train.py', '--workdir', '{tmp}/run', '--config.train.max_steps=-5'],
    'config.train.max_steps=-5: must be an integer >= 0',
  ),
  (
    ['eval.py', '--checkpoint', '{tmp}/file', '--output', '{tmp}/file'],
    '--output {tmp}/file: is a file, not a folder',
  ),
  (
    ['eval.py', '--checkpoint', '{tmp}/file', '--output', '/sys/ostrack_eval'],
    '--output /sys/ostrack_eval: cannot write in /sys',
  ),
  (
    [
      'convert_torch_weights.py',
      '--config',
      'tiny_256_ce',
      '--checkpoint',
      '{tmp}/file',
      '--output',
      '{tmp}',
    ],
    '--output {tmp}: is a folder, not a file',
  ),
  (
    [
      'convert_torch_weights.py',
      '--config',
      'tiny_256_ce',
      '--checkpoint',
      '{tmp}/file',
      '--output',
      '/sys/x.msgpack',
    ],
    '--output /sys/x.msgpack: cannot write in /sys',
  ),
  (
    ['-m', 'ostrack_jax.export', '--checkpoint', '{tmp}/file', '--output', '{tmp}/file/exp'],
    '--output {tmp}/file/exp: {tmp}/file is a file, not a folder',
  ),
  (
    [
      *['-m', 'ostrack_jax.export', '--format', 'onnx'],
      *['--checkpoint', '{tmp}/file', '--output', '/sys/x.onnx'],
    ],
    '--output /sys/x.onnx: cannot write in /sys',
  ),
  (
    [
      *['-m', 'ostrack_jax.demo', '--video', '{tmp}', '--box', '1,1,5,5'],
      *['--checkpoint', '{tmp}/file', '--output', '{tmp}/none/x.mp4'],
    ],
    '--output {tmp}/none/x.mp4: no such folder {tmp}/none',
  ),
  (
    ['-m', 'ostrack_jax.data.pack', 'folder', '--root', '{tmp}', '--output', '{tmp}/packs'],
    'folder already holds a pack; pass --overwrite',
  ),
  (
    ['-m', 'ostrack_jax.data.pack', 'folder', '--root', '{tmp}', '--output', '/sys/packs'],
    '--output /sys/packs: cannot write in /sys',
  ),
  (
    ['-m', 'ostrack_jax.export', '--checkpoint', '{tmp}/file', '--output', '{tmp}/packs'],
    '--output {tmp}/packs: the folder exists and is not an exported tracker',
  ),
  (['eval.py', '--checkpoint', '{tmp}/file', '--output', '{tmp}/link'], '{tmp}/link is a link'),
  (['-m', 'ostrack_jax.data.preview', '--output', '/sys/x.png'], 'cannot write in /sys'),
  (
    [
      '-m',
      'ostrack_jax.data.make_synthetic',
      '--width',
      '5',
      '--height',
      '5',
      '--output',
      '{tmp}/s',
    ],
    '--width 5: frames must be at least 32 pixels',
  ),
  (['-m', 'ostrack_jax.data.make_synthetic', '--output', '/sys/syn'], 'cannot write in /sys'),
]


@pytest.mark.parametrize(
  'argv,message', BEFORE_WORK, ids=[' '.join(a).replace('{tmp}', 'TMP') for a, _ in BEFORE_WORK]
)
def test_commands_check_outputs_and_input_before_any_work(
  argv, message, tmp_path, monkeypatch, capsys
):
  """Before: a NotADirectoryError traceback for an --output that is a file, a read-only
  folder found after the model was loaded and compiled (eval.py), a FileExistsError traceback
  after indexing the whole dataset (pack), tracebacks for a raising config and for bad
  synthetic sizes, the workdir created for an invalid geometry, max_steps=-5 accepted, a
  folder that is not an export found after loading the model."""
  (tmp_path / 'file').write_text('x')
  (tmp_path / 'raises.py').write_text('def get_config():\n  fields = {}\n  return fields["lr"]\n')
  (tmp_path / 'packs' / 'folder').mkdir(parents=True)
  (tmp_path / 'packs' / 'folder' / 'pack.json').write_text('{}')
  (tmp_path / 'link').symlink_to(tmp_path / 'gone')
  before = sorted(tmp_path.rglob('*'))
  status, err = run_command([a.replace('{tmp}', str(tmp_path)) for a in argv], monkeypatch, capsys)
  assert status == 2, (status, err[-2000:])
  assert 'Traceback' not in err and err.count('\n') == 1, err
  assert message.replace('{tmp}', str(tmp_path)) in err, err
  assert sorted(tmp_path.rglob('*')) == before  # nothing created, not even an empty folder
