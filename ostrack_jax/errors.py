"""The one error type for a user's mistake.

``InputError`` (a ``ValueError``) carries a one-line message naming the file, sequence, frame,
flag or config field and what is wrong with it. The commands (``ostrack_jax.cli.run``) print it
as ``<command>: <message>`` and exit with status 2, without a traceback; library callers catch
it like any ``ValueError``. Anything else that escapes is a bug and keeps its traceback.
"""


class InputError(ValueError):
  """Bad input from the user (a flag, a config field, a file): a one-line message."""
