"""A synthetic tracking dataset in GOT-10k layout: textured objects over textured backgrounds.

It is the built-in default data of ``python train.py`` and ``python eval.py`` (no downloads) and
feeds the tests. Each sequence shows one target (a textured rectangle or ellipse with saturated
colours) that moves smoothly, changes scale and aspect, and is sometimes partly or fully hidden
by an occluding bar, over a muted textured background with a few static distractor shapes.

Layout written under ``out_dir`` (the GOT-10k layout: :mod:`ostrack_jax.datasets.got10k` reads
it; the registry names its splits ``synthetic`` / ``synthetic_val`` for training)::

  out_dir/
    train/list.txt                 one sequence name per line
    train/SYN_Train_000001/
      00000001.jpg ...             frames, 1-based, 8 digits (JPEG, frame_size = (W, H))
      groundtruth.txt              one "x,y,w,h" line per frame (floats, pixels, xywh)
      absence.label                one 0/1 per frame (1 = target not visible at all)
      cover.label                  one 0..8 per frame (visible fraction in eighths, ceil)
      meta_info.ini                GOT-10k style [METAINFO] section
    val/list.txt, val/SYN_Val_000001/ ...   the same for the validation split
    synthetic.json                 the generator arguments (written last: marks completion)

Code API::

  from ostrack_jax.datasets import synthetic
  root = synthetic.make_synthetic_dataset(out_dir, num_train=60, num_val=20,
                                          num_frames=50, frame_size=(320, 240), seed=0)
  root = synthetic.ensure_synthetic_dataset()  # default location, generated once

The default location is ``$OSTRACK_JAX_SYNTHETIC`` if set, else ``~/.cache/ostrack_jax/synthetic``
(:func:`default_root`). Output is a pure function of the arguments (per-sequence RNG streams
derived from ``seed``), and the default size takes a few seconds to write.

Command line (:mod:`ostrack_jax.data.make_synthetic`)::

  python -m ostrack_jax.data.make_synthetic --output DIR [--num-train 60 --num-val 20 --seed 0]
"""

import json
import math
import os
import pathlib
import shutil
import tempfile
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

DEFAULT_NUM_TRAIN = 60
DEFAULT_NUM_VAL = 20
DEFAULT_NUM_FRAMES = 50
DEFAULT_FRAME_SIZE = (320, 240)  # (W, H)
MIN_FRAME_SIZE = 32  # pixels, each side
FORMAT_VERSION = 1
_MARKER = 'synthetic.json'


def default_root() -> pathlib.Path:
  """Where the built-in synthetic dataset lives: $OSTRACK_JAX_SYNTHETIC or ~/.cache/..."""
  env = os.environ.get('OSTRACK_JAX_SYNTHETIC')
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path('~/.cache/ostrack_jax/synthetic').expanduser()


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 3):
  """(h, w, channels) float32 smooth noise in [0, 1]: random cells upsampled bicubically."""
  small = rng.random((cells, max(2, cells * w // h), channels)).astype(np.float32)
  out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
  if out.ndim == 2:
    out = out[:, :, None]
  return np.clip(out, 0.0, 1.0)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
  """(h, w, 3) uint8 muted textured background with a few static distractor shapes."""
  base = rng.uniform(60, 190, size=3).astype(np.float32)
  tex = _smooth_noise(rng, h, w, int(rng.integers(4, 12))) - 0.5
  fine = _smooth_noise(rng, h, w, int(rng.integers(20, 40))) - 0.5
  img = base + 70.0 * tex + 25.0 * fine
  img = np.clip(img, 0, 255).astype(np.uint8)
  for _ in range(int(rng.integers(2, 6))):  # static clutter, low saturation
    color = tuple(int(c) for c in rng.uniform(40, 220, size=3))
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    axes = (int(rng.integers(6, 30)), int(rng.integers(6, 30)))
    if rng.random() < 0.5:
      cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    else:
      cv2.rectangle(img, (cx - axes[0], cy - axes[1]), (cx + axes[0], cy + axes[1]), color, -1)
  return img


def _object_texture(rng: np.random.Generator, size: int = 96) -> Tuple[np.ndarray, np.ndarray]:
  """A distinctive (size, size, 3) uint8 texture and its (size, size) float32 shape mask."""
  colors = rng.uniform(0, 255, size=(3, 3))
  colors[:, int(rng.integers(0, 3))] = rng.uniform(200, 255, size=3)  # saturate one channel
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  kind = int(rng.integers(0, 3))
  if kind == 0:  # stripes at a random angle
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(0.15, 0.35)
    t = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    sel = np.floor(t).astype(np.int64) % 2
  elif kind == 1:  # checkerboard
    n = int(rng.integers(2, 5))
    sel = (np.floor(xx * n).astype(np.int64) + np.floor(yy * n).astype(np.int64)) % 2
  else:  # concentric rings
    r = np.hypot(xx - 0.5, yy - 0.5) / rng.uniform(0.08, 0.16)
    sel = np.floor(r).astype(np.int64) % 2
  tex = colors[sel]
  tex += 30.0 * (_smooth_noise(rng, size, size, 6) - 0.5)
  # A dark border makes the extent unambiguous.
  border = max(2, size // 24)
  tex[:border], tex[-border:], tex[:, :border], tex[:, -border:] = 20, 20, 20, 20
  mask = np.ones((size, size), np.float32)
  if rng.random() < 0.4:  # ellipse instead of rectangle
    mask = ((((xx - 0.5) / 0.5) ** 2 + ((yy - 0.5) / 0.5) ** 2) <= 1.0).astype(np.float32)
  return np.clip(tex, 0, 255).astype(np.uint8), mask


def _render_sequence(rng: np.random.Generator, num_frames: int, w: int, h: int):
  """Yields (frame uint8 HxWx3 RGB, box xywh float, absent int, cover int) per frame."""
  bg = _background(rng, w, h)
  tex, shape = _object_texture(rng)
  base_side = rng.uniform(0.15, 0.3) * min(w, h) * 1.4
  aspect = math.exp(rng.uniform(-0.4, 0.4))
  cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
  speed = rng.uniform(1.0, 4.0)
  heading = rng.uniform(0, 2 * math.pi)
  vx, vy = speed * math.cos(heading), speed * math.sin(heading)
  scale_freq, scale_phase = rng.uniform(0.02, 0.08), rng.uniform(0, 2 * math.pi)
  scale_amp = rng.uniform(0.1, 0.3)
  aspect_amp = rng.uniform(0.0, 0.15)
  # Occluder: a bar crossing the frame during one window of the sequence (or none).
  occ = None
  if rng.random() < 0.6:
    occ_w = rng.uniform(0.08, 0.25) * w
    t0 = int(rng.integers(0, max(1, num_frames - 10)))
    occ_color = _smooth_noise(rng, h, int(math.ceil(occ_w)) + 2, 3)
    occ_color = np.asarray(bg.mean(axis=(0, 1)), np.float32) * 0.6 + 80 * occ_color
    occ = (occ_w, t0, rng.uniform(4.0, 8.0), np.clip(occ_color, 0, 255).astype(np.uint8))
  for t in range(num_frames):
    # Motion: constant velocity with a little random steering, bouncing off the borders.
    vx += rng.normal(0, 0.3)
    vy += rng.normal(0, 0.3)
    sp = math.hypot(vx, vy)
    if sp > 4.0:
      vx, vy = vx * 4.0 / sp, vy * 4.0 / sp
    s = base_side * (1.0 + scale_amp * math.sin(scale_freq * t * 2 * math.pi + scale_phase))
    a = aspect * math.exp(aspect_amp * math.sin(0.05 * t))
    bw, bh = max(8.0, s * math.sqrt(a)), max(8.0, s / math.sqrt(a))
    cx, cy = cx + vx, cy + vy
    if cx - bw / 2 < 0 or cx + bw / 2 > w:
      vx = -vx
      cx = min(max(cx, bw / 2), w - bw / 2)
    if cy - bh / 2 < 0 or cy + bh / 2 > h:
      vy = -vy
      cy = min(max(cy, bh / 2), h - bh / 2)
    x1, y1 = cx - bw / 2, cy - bh / 2
    frame = bg.copy()
    # Paste the object: integer footprint covering the float box.
    ix1, iy1 = int(math.floor(x1)), int(math.floor(y1))
    ix2, iy2 = min(w, int(math.ceil(x1 + bw))), min(h, int(math.ceil(y1 + bh)))
    ow, oh = ix2 - ix1, iy2 - iy1
    obj = cv2.resize(tex, (ow, oh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.resize(shape, (ow, oh), interpolation=cv2.INTER_LINEAR)[:, :, None]
    region = frame[iy1:iy2, ix1:ix2].astype(np.float32)
    frame[iy1:iy2, ix1:ix2] = (alpha * obj + (1 - alpha) * region).astype(np.uint8)
    obj_pixels = np.zeros((h, w), bool)
    obj_pixels[iy1:iy2, ix1:ix2] = alpha[:, :, 0] > 0.5
    total = max(1, int(obj_pixels.sum()))
    visible = total
    if occ is not None:
      occ_w, t0, occ_speed, occ_img = occ
      ox1 = -occ_w + (t - t0) * occ_speed * w / 100.0
      if -occ_w < ox1 < w:
        a1, a2 = int(max(0, round(ox1))), int(min(w, round(ox1 + occ_w)))
        if a2 > a1:
          frame[:, a1:a2] = occ_img[:, : a2 - a1]
          visible = int(obj_pixels[:, :a1].sum() + obj_pixels[:, a2:].sum())
    frac = visible / total
    cover = int(math.ceil(frac * 8 - 1e-9)) if visible > 0 else 0
    absent = int(visible == 0)
    yield frame, (x1, y1, bw, bh), absent, cover


def _write_sequence(
  seq_dir: pathlib.Path,
  rng: np.random.Generator,
  num_frames: int,
  frame_size: Tuple[int, int],
  jpeg_quality: int,
) -> None:
  seq_dir.mkdir(parents=True)
  w, h = frame_size
  boxes, absences, covers = [], [], []
  for i, (frame, box, absent, cover) in enumerate(_render_sequence(rng, num_frames, w, h)):
    ok, buf = cv2.imencode(
      '.jpg', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    )
    if not ok:
      raise RuntimeError(f'JPEG encoding failed for {seq_dir}')
    (seq_dir / f'{i + 1:08d}.jpg').write_bytes(buf.tobytes())
    boxes.append(box)
    absences.append(absent)
    covers.append(cover)
  (seq_dir / 'groundtruth.txt').write_text(
    ''.join(f'{x:.4f},{y:.4f},{bw:.4f},{bh:.4f}\n' for x, y, bw, bh in boxes)
  )
  (seq_dir / 'absence.label').write_text(''.join(f'{a}\n' for a in absences))
  (seq_dir / 'cover.label').write_text(''.join(f'{c}\n' for c in covers))
  (seq_dir / 'meta_info.ini').write_text(
    '[METAINFO]\nurl: synthetic\nbegin: 00:00:00\nend: 00:00:00\nanno_fps: 10Hz\n'
    'object_class: textured shape\nmotion_class: translation\nmajor_class: synthetic\n'
    'root_class: object\nmotion_adverb: smoothly\n'
    f'resolution: ({w}, {h})\n'
  )


def make_synthetic_dataset(
  out_dir,
  num_train: int = DEFAULT_NUM_TRAIN,
  num_val: int = DEFAULT_NUM_VAL,
  num_frames: int = DEFAULT_NUM_FRAMES,
  frame_size: Tuple[int, int] = DEFAULT_FRAME_SIZE,
  seed: int = 0,
  jpeg_quality: int = 90,
  overwrite: bool = False,
) -> pathlib.Path:
  """Writes GOT-10k-layout ``train`` and ``val`` splits of synthetic sequences.

  Args:
    out_dir: dataset root to create (``out_dir/train``, ``out_dir/val``).
    num_train, num_val: number of sequences per split (>= 0; at least one in total).
    num_frames: frames per sequence (>= 1; the training sampler needs >= 20).
    frame_size: (W, H) of the frames in pixels.
    seed: all content is a pure function of the arguments; train sequence i uses the RNG
      stream (seed, 0, i), val sequence i uses (seed, 1, i).
    jpeg_quality: OpenCV JPEG quality.
    overwrite: replace an existing dataset; otherwise an existing complete dataset written
      with the same arguments is kept and one with other arguments is an error.

  Returns:
    The dataset root as a ``pathlib.Path``. The split directories are assembled in a temporary
    folder and moved into place, and ``synthetic.json`` (the arguments) is written last, so an
    interrupted run never leaves a dataset that looks complete.
  """
  out = pathlib.Path(out_dir).expanduser()
  w, h = (int(v) for v in frame_size)
  if num_train < 0 or num_val < 0 or num_train + num_val < 1:
    raise ValueError(f'need at least one sequence, got num_train={num_train}, num_val={num_val}')
  if num_frames < 1 or min(w, h) < MIN_FRAME_SIZE:
    raise ValueError(
      f'bad num_frames={num_frames} or frame_size={frame_size} '
      f'(min {MIN_FRAME_SIZE}x{MIN_FRAME_SIZE})'
    )
  params = dict(
    version=FORMAT_VERSION,
    num_train=num_train,
    num_val=num_val,
    num_frames=num_frames,
    frame_size=[w, h],
    seed=seed,
    jpeg_quality=jpeg_quality,
  )
  marker = out / _MARKER
  if marker.exists() and not overwrite:
    existing = json.loads(marker.read_text())
    if existing == params:
      return out
    raise FileExistsError(
      f'{out} holds a synthetic dataset made with {existing}, not {params};'
      ' pass overwrite=True (--overwrite) or another --output'
    )
  out.mkdir(parents=True, exist_ok=True)
  if marker.exists():
    marker.unlink()
  with tempfile.TemporaryDirectory(dir=out, prefix='.tmp-') as tmp:
    tmp = pathlib.Path(tmp)
    for split, prefix, count, stream in (
      ('train', 'SYN_Train', num_train, 0),
      ('val', 'SYN_Val', num_val, 1),
    ):
      names = []
      for i in range(count):
        name = f'{prefix}_{i + 1:06d}'
        rng = np.random.default_rng([seed, stream, i])
        _write_sequence(tmp / split / name, rng, num_frames, (w, h), jpeg_quality)
        names.append(name)
      (tmp / split).mkdir(exist_ok=True)
      (tmp / split / 'list.txt').write_text(''.join(n + '\n' for n in names))
    for split in ('train', 'val'):
      if (out / split).exists():
        shutil.rmtree(out / split)
      os.replace(tmp / split, out / split)
  tmp_marker = out / (_MARKER + '.tmp')
  tmp_marker.write_text(json.dumps(params))
  os.replace(tmp_marker, marker)
  return out


def check_named_root(root: str, field: str = 'config.data.roots.synthetic') -> pathlib.Path:
  """``root``, a folder the user named, if it holds a complete synthetic dataset; else
  FileNotFoundError naming ``field`` and what is wrong.

  Only the default root is generated on first use: a mistyped path must not fill a disk.
  """
  path = pathlib.Path(root).expanduser()
  if (path / _MARKER).exists():
    return path
  what = 'no such folder' if not path.exists() else f'holds no synthetic dataset (no {_MARKER})'
  raise FileNotFoundError(
    f'{field}={str(root)!r}: {what}; make one with `python -m ostrack_jax.data.make_synthetic '
    f'--output {root}`, or leave {field} empty for the default one (generated on first use)'
  )


def ensure_synthetic_dataset(
  root: Optional[str] = None, log: Optional[Callable[[str], None]] = None, **kwargs
) -> pathlib.Path:
  """The synthetic dataset at ``root`` (default :func:`default_root`, generated if missing).

  The rule of first use, the one place that applies it (training, evaluation and the dataset
  registry call this): without kwargs, a complete synthetic dataset already at ``root`` is
  used whatever arguments made it (for example a smaller one written by ``python -m
  ostrack_jax.data.make_synthetic --output DIR --num-train 10``); a missing one is generated with
  the defaults at the default root, while a named ``root`` without one raises
  FileNotFoundError (:func:`check_named_root`). ``kwargs`` go to
  :func:`make_synthetic_dataset`, which then (re)generates it. ``log``, if given, is told
  ``generating the synthetic dataset at <root> ...`` before a generation starts.
  """
  if root and not kwargs:
    return check_named_root(root)
  root = pathlib.Path(root).expanduser() if root else default_root()
  if not kwargs and (root / _MARKER).exists():
    return root
  if log is not None:
    log(f'generating the synthetic dataset at {root} ...')
  return make_synthetic_dataset(root, **kwargs)
