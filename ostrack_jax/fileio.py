"""Atomic file writes: readers see either the old file or the whole new one, never a part.

A temporary file is written in the destination's folder and renamed over it with
``os.replace`` (atomic on POSIX and Windows within one file system). The temporary file is
created private (mode 0600), so before the rename it gets the mode a newly created file gets,
``0o666 & ~umask`` (0644 with the usual umask 022): colleagues and upload scripts running as
other users can read models, results and reports. NumPy-free, JAX-free.
"""

import contextlib
import os
import pathlib
import tempfile
from typing import Iterator, Optional

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
def atomic_path(path: os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside ``path``; on success it replaces ``path``, else is removed.

  The replacement gets :func:`file_mode` (not the temporary file's private 0600).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
  os.close(fd)
  try:
    yield pathlib.Path(tmp)
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_bytes(path: os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (flushed to disk before the rename)."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def atomic_write_text(path: os.PathLike, text: str) -> None:
  """Text version of :func:`atomic_write_bytes` (UTF-8)."""
  atomic_write_bytes(path, text.encode('utf-8'))
