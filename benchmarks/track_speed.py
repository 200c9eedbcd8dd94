#!/usr/bin/env python3
"""Tracker speed: the cost around the forward, and frames/s per preset (batch 1 and batched).

Two tables:

1. Overhead around the forward at the sequence's resolution (854x480 for DAVIS sequences),
   per frame, median: host crop + resize (``sample_target``), the device-side normalise +
   Hann window + decode (jitted alone on a (1, S, S, 3) crop), host map-back + clip, and the
   dispatch/transfer cost of the device step (``Tracker`` step minus the bare forward on
   device-resident inputs). Target: the sum under 5 ms per frame on one CPU core
   (``--one-core`` pins the process to one core and XLA to one thread).
2. Frames/s per preset: model-only (bare jitted forward, device-resident inputs), step (the
   tracker's jitted step: crop upload, normalise, forward, window, decode, box download),
   tracker (crop + step + post, what the original reports), end-to-end (plus JPEG decoding),
   at batch 1 and in lockstep at ``--batch`` (vmap mode; per-frame = step time / batch), and
   "host ms": the median per-frame host time around the step measured inside the tracking
   loop (track time minus step time).

Weights are random (speed does not depend on them; candidate elimination keeps fixed counts).

  python benchmarks/track_speed.py --sequence DIR [--presets tiny_256_ce ostrack_256_ce] \
      [--frames 20] [--batch 8] [--one-core] [--write]

``DIR`` is a GOT-10k-style folder (frames + groundtruth.txt), e.g. one of the DAVIS sequences
the developers were given; without it a synthetic 854x480 sequence is generated. ``--write``
appends the tables with the hardware to benchmarks/RESULTS.md.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time


def _pin_one_core():
  os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_cpu_multi_thread_eigen=false'
                             ' intra_op_parallelism_threads=1')
  os.environ.setdefault('OMP_NUM_THREADS', '1')
  os.environ.setdefault('OPENCV_NUM_THREADS', '1')


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--sequence', default=None, help='GOT-10k-style sequence folder')
  p.add_argument('--presets', nargs='+',
                 default=['tiny_256_ce', 'ostrack_256_ce', 'ostrack_256', 'ostrack_384_ce'])
  p.add_argument('--frames', type=int, default=20, help='timed frames per measurement')
  p.add_argument('--batch', type=int, default=4, help='lockstep batch size (0 = skip)')
  p.add_argument('--repeats', type=int, default=200, help='repeats of the overhead timings')
  p.add_argument('--one-core', action='store_true', help='pin to one CPU core, one XLA thread')
  p.add_argument('--write', action='store_true', help='append to benchmarks/RESULTS.md')
  return p.parse_args(argv)


ARGS = parse_args()
if ARGS.one_core:
  _pin_one_core()

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import results_md  # pylint: disable=g-import-not-at-top,wrong-import-position

import cv2  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

if ARGS.one_core:
  cv2.setNumThreads(1)

from ostrack_jax.configs import get_config  # pylint: disable=wrong-import-position
from ostrack_jax.crop import sample_target  # pylint: disable=wrong-import-position
from ostrack_jax.models.head import decode_box  # pylint: disable=wrong-import-position
from ostrack_jax.models.ostrack import abstract_variables, build_model  # pylint: disable=wrong-import-position
from ostrack_jax.tracking import datasets  # pylint: disable=wrong-import-position
from ostrack_jax.tracking import tracker as tracker_lib  # pylint: disable=wrong-import-position


def median_ms(fn, repeats, warmup=2):
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def random_variables(config, seed=0):
  rng = np.random.default_rng(seed)
  shapes = abstract_variables(config)

  def fill(path, s):
    name = str(path[-1].key) if hasattr(path[-1], 'key') else ''
    if 'batch_stats' in str(path[0]):
      return jnp.ones(s.shape, s.dtype) if name == 'var' else jnp.zeros(s.shape, s.dtype)
    return jnp.asarray((rng.standard_normal(s.shape) * 0.02).astype(s.dtype))
  return jax.tree_util.tree_map_with_path(fill, shapes)


def load_sequence(path):
  if path:
    return datasets.load_folder_sequence(path)
  from ostrack_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  root = synthetic.make_synthetic_dataset(tempfile.mkdtemp(prefix='track_speed_'), num_train=0,
                                          num_val=1, num_frames=60, frame_size=(854, 480))
  return datasets.load_got10k(root, 'val')[0]


def overhead_table(seq, frames, repeats):
  """Per-frame cost of everything around the forward (tiny_256_ce geometry: 256 / 16)."""
  config = get_config('ostrack_256_ce')
  s, f = config.model.search_size, config.model.search_size // config.model.patch_size
  box = seq.init_box
  frame = frames[1]
  rows = []
  crop = sample_target(frame, box, config.tracker.search_factor, s, with_mask=False)
  rows.append(('crop + resize (host, sample_target)', median_ms(
      lambda: sample_target(frame, box, config.tracker.search_factor, s, with_mask=False),
      repeats)))
  table = jnp.asarray(tracker_lib.normalization_table())
  window = jnp.asarray(tracker_lib.hann_window(f))
  score = jnp.asarray(np.random.default_rng(0).random((1, f, f, 1), np.float32))
  size = jnp.asarray(np.random.default_rng(1).random((1, f, f, 2), np.float32))
  offset = jnp.asarray(np.random.default_rng(2).random((1, f, f, 2), np.float32))

  @jax.jit
  def around(search_u8, score, size, offset):
    x = tracker_lib.normalize_uint8(search_u8, table)
    resp = window[None, :, :, None] * score
    return x.sum(), decode_box(resp, size, offset)

  crop_batch = crop.image[None]
  rows.append(('normalise + window + decode (device, jitted, incl. transfer)', median_ms(
      lambda: jax.block_until_ready(around(crop_batch, score, size, offset)), repeats)))
  pred = np.array([[0.5, 0.5, 0.2, 0.2]], np.float32)
  rows.append(('map back + clip (host)', median_ms(
      lambda: tracker_lib.boxes_to_image(pred, box[None], np.array([crop.resize_factor]),
                                         np.array([frame.shape[:2]]), s), repeats)))
  rows.append(('to_rgb check (host)', median_ms(lambda: datasets.to_rgb(frame), repeats)))
  h, w = frame.shape[:2]
  whole = np.array([0.0, 0.0, w, h])
  worst = ('crop + resize when the box is the whole frame (worst case, not in total)',
           median_ms(lambda: sample_target(frame, whole, config.tracker.search_factor, s,
                                           with_mask=False), max(10, repeats // 10)))
  return rows, worst


def preset_table(seq, frames, presets, n_frames, batch):
  rows = []
  for name in presets:
    print(f'{name}: compiling ...', flush=True)
    config = get_config(name)
    variables = random_variables(config)
    tracker = tracker_lib.Tracker(config, variables)
    tracker.warmup()
    model = build_model(config)
    fwd = jax.jit(lambda v, t, x: model.apply(v, t, x, keep_ratio=None, train=False))
    t_shape = (1, config.model.template_size, config.model.template_size, 3)
    x_shape = (1, config.model.search_size, config.model.search_size, 3)
    t_in, x_in = jnp.zeros(t_shape), jnp.zeros(x_shape)
    jax.block_until_ready(fwd(variables, t_in, x_in))
    model_ms = median_ms(lambda: jax.block_until_ready(fwd(variables, t_in, x_in)), n_frames)
    # tracker and end-to-end at batch 1 on the real frames
    tracker.initialize(frames[0], seq.init_box)
    track_ms, e2e_ms, step_ms = [], [], []
    for i in range(1, n_frames + 1):
      k = 1 + (i - 1) % (len(frames) - 1)
      t0 = time.perf_counter()
      frame = datasets.read_frame(seq.frames[k], seq.name, k)
      t1 = time.perf_counter()
      tracker.track(frame)
      t2 = time.perf_counter()
      track_ms.append((t2 - t1) * 1e3)
      e2e_ms.append((t2 - t0) * 1e3)
      step_ms.append(tracker.last_timing['model'] * 1e3)
    around = [t - m for t, m in zip(track_ms, step_ms)]
    row = {'preset': name, 'model_ms': model_ms, 'step_ms': statistics.median(step_ms),
           'track_ms': statistics.median(track_ms), 'e2e_ms': statistics.median(e2e_ms),
           'around_ms': statistics.median(around)}
    if batch > 1:
      bt = tracker_lib.BatchTracker(tracker, batch, 'vmap')
      bt.warmup()
      for j in range(batch):
        bt.initialize(j, frames[0], seq.init_box)
      b_track, b_e2e = [], []
      steps = max(2, n_frames // batch)
      for i in range(1, steps + 1):
        k = 1 + (i - 1) % (len(frames) - 1)
        t0 = time.perf_counter()
        batch_frames = [datasets.read_frame(seq.frames[k], seq.name, k) for _ in range(batch)]
        t1 = time.perf_counter()
        bt.track(batch_frames)
        t2 = time.perf_counter()
        b_track.append((t2 - t1) * 1e3 / batch)
        b_e2e.append((t2 - t0) * 1e3 / batch)
      row['batch_track_ms'] = statistics.median(b_track)
      row['batch_e2e_ms'] = statistics.median(b_e2e)
    rows.append(row)
    print(format_presets([row], batch, header=False), flush=True)
  return rows


def format_overhead(rows_worst, resolution):
  rows, worst = rows_worst
  lines = [f'Overhead around the forward, {resolution}, median ms per frame',
           f'| {"part":<62} | {"ms":>7} |', f'|{"-" * 64}|{"-" * 9}|']
  for name, ms in rows:
    lines.append(f'| {name:<62} | {ms:7.3f} |')
  total = sum(ms for _, ms in rows)
  lines.append(f'| {"total (target < 5 ms on one core)":<62} | {total:7.3f} |')
  lines.append(f'({worst[0]}: {worst[1]:.2f} ms)')
  return '\n'.join(lines)


def format_presets(rows, batch, header=True):
  def fps(ms):
    return f'{1e3 / ms:9.1f}' if ms else '        -'
  lines = []
  if header:
    lines += [
        'Frames/s (median per-frame time), random weights',
        f'| {"preset":<16} | {"model-only":>10} | {"step":>9} | {"tracker":>9} | '
        f'{"end-to-end":>10} | {"tracker B=" + str(batch):>12} | {"e2e B=" + str(batch):>9} | '
        f'{"host ms":>7} |',
        f'|{"-" * 18}|{"-" * 12}|{"-" * 11}|{"-" * 11}|{"-" * 12}|{"-" * 14}|{"-" * 11}|'
        f'{"-" * 9}|']
  for r in rows:
    lines.append(f'| {r["preset"]:<16} | {fps(r["model_ms"]):>10} | {fps(r["step_ms"])} | '
                 f'{fps(r["track_ms"])} | {fps(r["e2e_ms"]):>10} | '
                 f'{fps(r.get("batch_track_ms")):>12} | {fps(r.get("batch_e2e_ms"))} | '
                 f'{r["around_ms"]:7.2f} |')
  return '\n'.join(lines)


def hardware():
  cpu = results_md.cpu_model()
  devices = ', '.join(sorted({d.device_kind for d in jax.devices()}))
  cores = len(os.sched_getaffinity(0))
  return (f'{cpu}, {cores} core(s) usable{" (pinned, 1 XLA thread)" if ARGS.one_core else ""}; '
          f'JAX {jax.__version__} on {devices}')


def main():
  seq = load_sequence(ARGS.sequence)
  n_load = min(len(seq), ARGS.frames + 1)
  frames = [datasets.read_frame(seq.frames[i], seq.name, i) for i in range(n_load)]
  h, w = frames[0].shape[:2]
  print(f'sequence {seq.name} ({len(seq)} frames, {w}x{h}); {hardware()}', flush=True)
  overhead = overhead_table(seq, frames, ARGS.repeats)
  text_over = format_overhead(overhead, f'{w}x{h}')
  print(text_over, flush=True)
  rows = preset_table(seq, frames, ARGS.presets, ARGS.frames, ARGS.batch)
  text_presets = format_presets(rows, ARGS.batch)
  print(text_presets)
  if ARGS.write:
    with open(REPO / 'benchmarks' / 'RESULTS.md', 'a') as f:
      f.write(f'\n## Tracker speed (benchmarks/track_speed.py)\n\n'
              f'`python benchmarks/track_speed.py {" ".join(sys.argv[1:])}` on sequence '
              f'`{seq.name}` ({w}x{h}). Hardware: {hardware()}.\n\n```\n{text_over}\n\n'
              f'{text_presets}\n```\n')


if __name__ == '__main__':
  main()
