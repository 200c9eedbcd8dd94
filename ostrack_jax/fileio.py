"""Atomic file writes: readers see either the old file or the whole new one, never a part.

A temporary file is written in the destination's folder and renamed over it with
``os.replace`` (atomic on POSIX and Windows within one file system). NumPy-free, JAX-free.
"""

import contextlib
import os
import pathlib
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside ``path``; on success it replaces ``path``, else is removed."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
  os.close(fd)
  try:
    yield pathlib.Path(tmp)
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
