"""Frame files: the cheap integrity check (no decoding) and the one decoder of every reader.

NumPy and OpenCV only (grain workers import this without JAX). Frames come out as (H, W, 3)
uint8 RGB, as the original's (OpenCV decodes BGR, converted once here).
"""

import os
from typing import Optional, Union

import numpy as np

from ostrack_jax.datasets.core import FrameError

JPEG_TAIL_BYTES = 256  # the end-of-image marker may be followed by this much padding
_HEAD_BYTES = 16


def image_problem(head: bytes, tail: bytes, size: int) -> Optional[str]:
  """What is wrong with an image file from its first bytes, last bytes and size, or None.

  A cheap integrity check that decodes nothing: a JPEG must end with its end-of-image marker
  (FF D9, among the last :data:`JPEG_TAIL_BYTES` bytes: encoders may pad), a PNG with its
  IEND chunk, a WebP or BMP must be as long as its header says. libjpeg decodes a cut JPEG
  into grey rows with only a warning; this is what names it. Other formats pass (the decoder
  decides).
  """
  if size == 0:
    return 'an empty file'
  if head[:2] == b'\xff\xd8':
    return None if b'\xff\xd9' in tail else 'a truncated JPEG (no end-of-image marker)'
  if head[:8] == b'\x89PNG\r\n\x1a\n':
    return None if b'IEND' in tail else 'a truncated PNG (no IEND chunk)'
  if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
    need = int.from_bytes(head[4:8], 'little') + 8
    return None if size >= need else f'a truncated WebP ({size} of {need} bytes)'
  if head[:2] == b'BM' and len(head) >= 6:
    need = int.from_bytes(head[2:6], 'little')
    return None if size >= need else f'a truncated BMP ({size} of {need} bytes)'
  return None


def check_image_bytes(data: bytes) -> Optional[str]:
  """:func:`image_problem` of an image already in memory (nearly free)."""
  return image_problem(data[:_HEAD_BYTES], data[-JPEG_TAIL_BYTES:], len(data))


def check_image_file(path: Union[str, os.PathLike]) -> Optional[str]:
  """:func:`image_problem` of a file, reading only its first and last bytes.

  A missing or unreadable file gives 'missing' / 'unreadable (...)'.
  """
  try:
    fd = os.open(path, os.O_RDONLY)
  except FileNotFoundError:
    return 'missing'
  except OSError as e:
    return f'unreadable ({e.strerror})'
  try:
    size = os.fstat(fd).st_size
    if size <= _HEAD_BYTES + JPEG_TAIL_BYTES:
      data = os.pread(fd, size, 0)
      return image_problem(data[:_HEAD_BYTES], data[-JPEG_TAIL_BYTES:], size)
    head = os.pread(fd, _HEAD_BYTES, 0)
    tail = os.pread(fd, JPEG_TAIL_BYTES, size - JPEG_TAIL_BYTES)
    return image_problem(head, tail, size)
  except OSError as e:
    return f'unreadable ({e.strerror})'
  finally:
    os.close(fd)


def read_frame(path: str, sequence: str = '', index: Optional[int] = None) -> np.ndarray:
  """Decodes a frame as (H, W, 3) uint8 RGB, as the original (OpenCV, BGR -> RGB).

  Grayscale frames are replicated to 3 channels and RGBA frames lose their alpha (OpenCV's
  IMREAD_COLOR does both). Missing, undecodable and truncated files (:func:`image_problem`)
  raise :class:`FrameError` naming the sequence, the frame index and the path.
  """
  import cv2

  where = f'sequence {sequence!r} frame {index}' if sequence else f'frame {index}'
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError as e:
    raise FrameError(f'{where}: file {path} is missing', reason='frame missing') from e
  except OSError as e:
    raise FrameError(f'{where}: cannot read {path}: {e}', reason='unreadable frame') from e
  problem = check_image_bytes(data)
  if problem:
    raise FrameError(f'{where}: {path} is {problem}', reason='truncated or corrupt frame')
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None or image.size == 0:
    raise FrameError(
      f'{where}: cannot decode {path} (corrupt or not an image)', reason='undecodable frame'
    )
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_rgb(frame: np.ndarray) -> np.ndarray:
  """Any (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 array as (H, W, 3) RGB."""
  frame = np.asarray(frame)
  if frame.dtype != np.uint8:
    raise ValueError(f'frames must be uint8, got {frame.dtype}')
  if frame.ndim == 2:
    return np.repeat(frame[:, :, None], 3, axis=2)
  if frame.ndim == 3 and frame.shape[2] == 1:
    return np.repeat(frame, 3, axis=2)
  if frame.ndim == 3 and frame.shape[2] == 4:
    return np.ascontiguousarray(frame[:, :, :3])
  if frame.ndim == 3 and frame.shape[2] == 3:
    return frame
  raise ValueError(
    f'expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) frame, got {frame.shape}'
  )
