"""Atomic file writes, and the check that a command can write where it is told to.

Atomic writes: readers see either the old file or the whole new one, never a part.

A temporary file is written in the destination's folder and renamed over it with
``os.replace`` (atomic on POSIX and Windows within one file system). The temporary file is
created private (mode 0600), so before the rename it gets the mode a newly created file gets,
``0o666 & ~umask`` (0644 with the usual umask 022): colleagues and upload scripts running as
other users can read models, results and reports. NumPy-free, JAX-free.

:func:`check_writable` is what every command runs on its output before any work (a bad output
is an ``InputError``: one line, exit status 2); :func:`describe_os_error` names an ``OSError``
for the one-line message of a write that fails later (a full disk, a lost permission).
"""

import contextlib
import errno
import os
import pathlib
import tempfile
from typing import Iterator, Optional

from ostrack_jax.common.errors import InputError

_FALLBACK_UMASK: Optional[int] = None


def umask() -> int:
  """The process's umask, read without changing it where possible.

  Linux reports it in ``/proc/self/status`` (read on every call: thread-safe and current);
  elsewhere it is read once by setting and restoring it.
  """
  global _FALLBACK_UMASK
  try:
    with open('/proc/self/status', encoding='ascii', errors='replace') as f:
      for line in f:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  if _FALLBACK_UMASK is None:
    _FALLBACK_UMASK = os.umask(0o022)
    os.umask(_FALLBACK_UMASK)
  return _FALLBACK_UMASK


def file_mode() -> int:
  """The mode ``open(path, 'w')`` gives a new file: ``0o666 & ~umask`` (0644 with umask 022)."""
  return 0o666 & ~umask()


def dir_mode() -> int:
  """The mode ``mkdir`` gives a new folder: ``0o777 & ~umask`` (0755 with umask 022)."""
  return 0o777 & ~umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside ``path``; on success it replaces ``path``, else is removed.

  The replacement gets :func:`file_mode` (not the temporary file's private 0600). An
  ``OSError`` that names no file or the temporary one (a write to a full disk) is raised again
  naming ``path``.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
  os.close(fd)
  try:
    yield pathlib.Path(tmp)
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.filename in (None, tmp) and e.errno is not None:
      raise OSError(e.errno, e.strerror, str(path)) from e
    raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (flushed to disk before the rename)."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Text version of :func:`atomic_write_bytes` (UTF-8)."""
  atomic_write_bytes(path, text.encode('utf-8'))


def describe_os_error(error: OSError) -> str:
  """``'<path>: <strerror> (<ENAME>)'``, e.g. ``'out/a.txt: No space left on device (ENOSPC)'``
  (the path is left out when the error has none)."""
  code = errno.errorcode.get(error.errno or 0)
  what = (error.strerror or str(error)) + (f' ({code})' if code else '')
  return f'{error.filename}: {what}' if error.filename else what


def check_writable(
  path: str | os.PathLike, name: str, *, is_file: bool = False, create: bool = True
) -> None:
  """Raises ``InputError`` unless a command can write ``path``: run it before any work.

  The folder that would be written (``path``, or with ``is_file`` the folder of ``path``) must
  be a writable folder, or, with ``create``, be creatable: its nearest existing ancestor is a
  writable folder. Writability is tried for real: a probe file is created there and removed
  (permissions, read-only mounts, ACLs and root all answer as they will for the real write).
  Nothing else is created: a missing folder stays missing until the command writes.

  Args:
    path: the folder a command writes into, or (``is_file``) the file it writes.
    name: what the user called it, for the message (e.g. ``'--output out/x'``).
    is_file: ``path`` is a file (an existing folder there is refused).
    create: the command creates missing folders; False: the folder must exist.
  """
  path = pathlib.Path(os.path.abspath(os.path.expanduser(path)))
  if is_file and path.is_dir():
    raise InputError(f'{name}: is a folder, not a file')
  folder = path.parent if is_file else path
  existing = folder
  while not existing.exists() and existing != existing.parent:
    if existing.is_symlink():  # a link to nowhere: mkdir would fail on it
      raise InputError(f'{name}: {existing} is a link to {os.readlink(existing)}, which is missing')
    existing = existing.parent
  if not existing.is_dir():
    where = '' if existing == path else f'{existing} '
    raise InputError(f'{name}: {where}is a file, not a folder')
  if existing != folder and not create:
    raise InputError(f'{name}: no such folder {folder}')
  try:
    fd, probe = tempfile.mkstemp(prefix='.write-probe-', dir=existing)
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    code = errno.errorcode.get(e.errno or 0, '')
    raise InputError(
      f'{name}: cannot write in {existing}: {e.strerror or e}' + (f' ({code})' if code else '')
    ) from None
