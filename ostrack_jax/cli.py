"""The one command-line layer of every command.

train.py, eval.py, convert_torch_weights.py and ``python -m ostrack_jax.{export, demo,
data.pack, data.preview, data.make_synthetic}`` build their flags on :class:`Parser` and run their
``main`` through :func:`run`, so they all behave alike:

* flags are spelled ``--kebab-case`` (the 0.1.0 spellings ``--split_file``, ``--out``, ...
  are unknown flags, answered with the new spelling as the closest match);
* a config is chosen with ``--config`` (a preset name or a Python file with ``get_config()``,
  see ``ostrack_jax.configs``) and changed with ``--config.<section>.<field>=<value>`` (or
  ``--config.<section>.<field> <value>``);
* an unknown flag or config key is answered with the closest valid ones; values are checked
  before any work (flag types here, config fields by ``configs.check_config``);
* bad input ends with one line on stderr, ``<command>: <what is wrong>``, and exit status 2,
  never a traceback; a folder the user named is never created silently; each command checks
  that it can write its output (``fileio.check_writable``) before any work;
* a write that fails mid-run (a full disk, a lost permission) ends with one line naming the
  path, the OS error, what was kept and the command that continues, exit status 74.

ml_collections' ``config_flags`` was the first candidate: it needs absl's global flag registry
(one per process: awkward for the tests and the notebook, which call several commands in one
process), cannot take a preset by name, and answers a bad override with a traceback; this thin
layer over argparse gives the same ``--config.a.b=v`` syntax without those.
"""

import argparse
import difflib
import math
import os
import sys
from typing import Callable, List, Optional, Sequence

from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError, OutputError

__all__ = [
  'Parser',
  'run',
  'positive_int',
  'nonnegative_int',
  'positive_float',
  'existing_file',
  'existing_dir',
  'initialize_multihost',
]


# ------------------------------------------------------------------------------ value types
# argparse calls these on the flag's text; an ArgumentTypeError becomes
# "<command>: argument --flag: <message>".


def positive_int(text: str) -> int:
  """An integer >= 1."""
  value = _int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be an integer >= 1, got {text!r}')
  return value


def nonnegative_int(text: str) -> int:
  """An integer >= 0."""
  value = _int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f'must be an integer >= 0, got {text!r}')
  return value


def positive_float(text: str) -> float:
  """A finite number > 0."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(f'must be a finite number > 0, got {text!r}')
  return value


def existing_file(text: str) -> str:
  """The path of an existing file (a folder is refused with its own message)."""
  if os.path.isdir(text):
    raise argparse.ArgumentTypeError(f'{text} is a directory, not a file')
  if not os.path.isfile(text):
    raise argparse.ArgumentTypeError(f'{text}: no such file')
  return text


def existing_dir(text: str) -> str:
  """The path of an existing folder (never created here)."""
  if not os.path.isdir(text):
    what = 'is a file, not a folder' if os.path.exists(text) else 'no such folder'
    raise argparse.ArgumentTypeError(f'{text}: {what}')
  return text


def _int(text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'must be an integer, got {text!r}') from None


# ------------------------------------------------------------------------------ the parser

REQUIRED = '<required>'  # Parser(config=REQUIRED): the user must give --config


class Parser(argparse.ArgumentParser):
  """``argparse.ArgumentParser`` with the project's conventions (see the module docstring).

  Args:
    prog: the command as the user types it ('train.py', 'python -m ostrack_jax.data.pack').
    description: the first paragraph of the command's help.
    config: the default ``--config`` (a preset name or file), ``cli.REQUIRED`` for a
      ``--config`` the user must give, None = the command takes no config. With a config, ``parse`` returns it loaded, overridden and checked as
      ``args.config`` (a locked ``ml_collections.ConfigDict``); ``args.config_spec`` keeps
      the text given.
    training: check the config's training fields too (``configs.check_config``).
  """

  def __init__(
    self,
    prog: str,
    description: str = '',
    *,
    config: Optional[str] = None,
    training: bool = False,
    epilog: Optional[str] = None,
  ):
    if config is not None:
      epilog = (epilog + '\n\n' if epilog else '') + (
        'Config overrides: --config.<section>.<field>=<value>, e.g. --config.train.lr=1e-4 '
        '(fields and their meaning: ostrack_jax/configs/base.py).'
      )
    super().__init__(
      prog=prog,
      description=description,
      epilog=epilog,
      formatter_class=argparse.RawDescriptionHelpFormatter,
      allow_abbrev=False,  # an abbreviated flag is a guess
    )
    self._config_default = config
    self._training = training
    self._multihost = False
    if config is not None:
      self.add_argument(
        '--config',
        required=config is REQUIRED,
        default=None if config is REQUIRED else config,
        help='preset name or config file (configs/<name>.py, or your own file with a '
        'get_config())' + ('' if config is REQUIRED else ' (default: %(default)s)'),
      )

  def add_multihost_arguments(self) -> None:
    """``--multihost`` and ``--coordinator`` / ``--num-processes`` / ``--process-id``: one
    process per machine with jax.distributed (train.py, eval.py); see
    :func:`initialize_multihost`. ``parse`` checks that they go together."""
    self._multihost = True
    g = self.add_argument_group('several processes (one per host)')
    g.add_argument(
      '--multihost',
      action='store_true',
      help='call jax.distributed.initialize() first; on SLURM, Open MPI, Kubernetes or Cloud '
      'TPU the coordinator and process ids are detected, elsewhere give the three flags below',
    )
    g.add_argument('--coordinator', metavar='HOST:PORT', help='address of process 0')
    g.add_argument('--num-processes', type=positive_int, help='how many processes')
    g.add_argument('--process-id', type=nonnegative_int, help='this process: 0 .. N-1')

  def _check_multihost(self, args: argparse.Namespace) -> None:
    manual = {'--coordinator': args.coordinator, '--num-processes': args.num_processes}
    manual['--process-id'] = args.process_id
    if not args.multihost and any(v is not None for v in manual.values()):
      given = ', '.join(k for k, v in manual.items() if v is not None)
      self.error(f'{given} only go with --multihost')
    if None not in (args.process_id, args.num_processes) and args.process_id >= args.num_processes:
      self.error(f'--process-id {args.process_id} not in [0, --num-processes {args.num_processes})')

  # argparse's own errors (unknown flag, bad value, missing argument): one line, exit 2.
  def error(self, message: str):
    self.exit(2, f'{self.prog}: {message} (see {self.prog} --help)\n')

  def fail(self, message: str):
    """Bad input found after parsing: ``<prog>: <message>`` on stderr, exit status 2."""
    self.exit(2, f'{self.prog}: {message}\n')

  def _unknown(self, item: str):
    flag = item.split('=', 1)[0]
    known = [s for s in self._option_string_actions if s.startswith('--') and s != '--help']
    close = difflib.get_close_matches(flag, known, n=3)
    if self._config_default is not None:  # '--lr' -> '--config.train.lr'
      close += self._close_config_keys(flag.lstrip('-'))
    hint = f'; did you mean {", ".join(dict.fromkeys(close))}?' if close else ''
    self.error(f'unrecognized argument {item}{hint}')

  def _close_config_keys(self, name: str) -> List[str]:
    from ostrack_jax import configs

    try:
      default = 'ostrack_256_ce' if self._config_default is REQUIRED else self._config_default
      keys = list(configs.config_keys(configs.load_config(default)))
    except InputError:
      return []
    leaves = {}
    for key in keys:
      leaves.setdefault(key.rsplit('.', 1)[-1], key)
    return [f'--config.{leaves[c]}=...' for c in difflib.get_close_matches(name, leaves, n=2)]

  def _check_flags_known(self, argv: List[str]) -> None:
    """An unknown ``--flag`` is answered (with the closest valid ones) before argparse's own
    checks, so that a misspelled required flag is not reported as a missing one."""
    for item in argv:
      if item == '--':
        return
      flag = item.split('=', 1)[0]
      if not flag.startswith('--') or flag in self._option_string_actions:
        continue
      if not (self._config_default is not None and flag.startswith('--config.')):
        self._unknown(item)

  def parse(self, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses ``argv`` (default ``sys.argv[1:]``); exits with status 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    self._check_flags_known(argv)
    args, rest = self.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
      item = rest[i]
      if self._config_default is not None and item.startswith('--config.'):
        if '=' in item:
          overrides.append(item[len('--config.') :])
        elif i + 1 < len(rest) and not rest[i + 1].startswith('--'):
          overrides.append(item[len('--config.') :] + '=' + rest[i + 1])
          i += 1
        else:
          self.error(f'config override {item} has no value (use {item}=VALUE)')
      else:
        self._unknown(item)
      i += 1
    if self._multihost:
      self._check_multihost(args)
    if self._config_default is not None:
      from ostrack_jax import configs

      args.config_spec, args.overrides = args.config, overrides
      try:
        args.config = configs.load_config(args.config_spec)
        configs.apply_overrides(args.config, overrides)
        configs.check_config(args.config, training=self._training)
      except InputError as e:
        self.fail(str(e))
    return args


# ------------------------------------------------------------------------------ running


def initialize_multihost(args: argparse.Namespace) -> None:
  """``jax.distributed.initialize`` when ``--multihost`` was given (before any other JAX use).

  A cluster manager that is not found and no ``--coordinator`` (or the three flags given
  partly) is an :class:`InputError` naming the flags to give.
  """
  if not args.multihost:
    return
  import jax

  try:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  except ValueError as e:  # nothing detected and not given: which flag is missing
    raise InputError(
      f'--multihost: {e} (no SLURM, Open MPI, Kubernetes or Cloud TPU environment found; '
      'give --coordinator HOST:PORT --num-processes N --process-id I)'
    ) from e


EXIT_OUTPUT_ERROR = 74  # EX_IOERR (sysexits.h): an output could not be written mid-run


def run(main: Callable[[Optional[Sequence[str]]], Optional[int]], prog: str, argv=None) -> int:
  """Runs ``main(argv)`` and turns the user's mistakes into ``<prog>: <message>``, status 2.

  Returns the exit status: ``main``'s return value (None = 0), 2 for an ``InputError``, 74
  (``EX_IOERR``) for an ``OutputError`` (a write that failed mid-run, with what was kept and
  how to continue) or any other ``OSError`` (a fault of the machine: one line naming the path
  and the error; every output is written whole, so nothing half-written is left), 130 for
  Ctrl-C. Other exceptions are bugs and keep their traceback.
  """
  try:
    return int(main(argv) or 0)
  except InputError as e:
    print(f'{prog}: {e}', file=sys.stderr)
    return 2
  except OutputError as e:
    print(f'{prog}: {e}', file=sys.stderr)
    return EXIT_OUTPUT_ERROR
  except OSError as e:
    print(
      f'{prog}: {fileio.describe_os_error(e)}; the output was not written: run the command '
      'again once this is fixed',
      file=sys.stderr,
    )
    return EXIT_OUTPUT_ERROR
  except KeyboardInterrupt:
    print(f'{prog}: interrupted', file=sys.stderr)
    return 130
