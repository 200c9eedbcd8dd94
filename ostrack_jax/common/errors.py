"""The error types a command turns into one line: a user's mistake, and an output that failed.

``InputError`` (a ``ValueError``) carries a one-line message naming the file, sequence, frame,
flag or config field and what is wrong with it. The commands (``ostrack_jax.cli.run``) print it
as ``<command>: <message>`` and exit with status 2, without a traceback; library callers catch
it like any ``ValueError``. ``OutputError`` is a write that failed mid-run (exit status 74).
``SequenceFailure`` is one sequence that could not be tracked (eval.py reports and skips it, or
stops with it under ``--fail-fast``, exit status 1).
Anything else that escapes is a bug and keeps its traceback.
"""


class InputError(ValueError):
  """Bad input from the user (a flag, a config field, a file): a one-line message."""


class OutputError(Exception):
  """Writing an output failed during the work (a full disk, a lost write permission).

  One line naming the path and the OS error, what was kept and the command that continues.
  The commands print it as ``<command>: <message>`` and exit with status 74 (``EX_IOERR``),
  without a traceback. The ``OSError`` is its ``__cause__``.
  """


class SequenceFailure(RuntimeError):
  """A sequence that could not be tracked; the message names the sequence, frame and problem."""

  def __init__(self, name: str, message: str):
    super().__init__(message)
    self.name = name
