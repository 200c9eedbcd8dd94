#!/usr/bin/env python3
"""Tracker speed on the device-resident core: one sequence and lockstep batches.

For each preset (random weights: speed does not depend on them; candidate elimination keeps
fixed token counts), each device count D (``--devices``: the first D local devices, the B slots
spread over them as eval.py does, B / D per device; 1 = the plain one-device core) and each
batch size B (1 = one sequence; B > 1 = B sequences in lockstep, 'vmap' mode; B must be a
multiple of D, other pairs are skipped), frames/s of:

* model-only (B = 1 only): the bare jitted forward on device-resident crops;
* device-only: the tracking step (crop on the device, network, window, decode, map back, clip)
  called back to back on device-resident frames, waiting once at the end;
* tracker: the pipelined runner (``ostrack_jax.tracking.runner.Pipeline``) with the
  frames already decoded in memory (padding, upload, dispatch, lagged box copies included; the
  same thread pool as end-to-end pads and uploads);
* end-to-end: the same runner reading the JPEG files (decoding on ``--decode-threads``
  threads included), as eval.py runs;
* host-crop path (B = 1 only): the previous design, kept here as the baseline: crop and
  resize on the host with OpenCV (``ostrack_jax.geometry.crop.sample_target``), a jitted step on the
  crop, wait for the box, map back and clip on the host;
* programs: compilations of the core during the run.

Also: the dispatch cost of the step called with the weights as the nested variables dict vs as
the pre-flattened leaves the core uses, and (``--compile-mix``) the number of programs compiled
for a mix of common benchmark resolutions.

  python benchmarks/track_speed.py --sequence DIR [--presets ostrack_256_ce] [--batches 1 8]
      [--devices 1 8] [--frames 40] [--steps 12] [--decode-threads 8] [--one-core]
      [--compile-mix] [--write]

``DIR`` is a GOT-10k-style folder (JPEG frames + groundtruth.txt), e.g. one of the DAVIS
sequences (854x480); frames are reused cyclically when more are needed. ``--write`` replaces
this script's section of benchmarks/RESULTS.md.
"""

import argparse
import concurrent.futures
import os
import pathlib
import statistics
import sys
import time


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--sequence', required=True, help='GOT-10k-style sequence folder (JPEGs)')
  p.add_argument('--presets', nargs='+', default=['ostrack_256_ce'])
  p.add_argument(
    '--batches',
    nargs='+',
    type=int,
    default=[1, 8, 32, 128],
    help='1 = one sequence; B > 1 = B sequences in lockstep',
  )
  p.add_argument(
    '--devices', nargs='+', type=int, default=[1], help='device counts (B / D slots per device)'
  )
  p.add_argument('--frames', type=int, default=200, help='frames timed at B = 1')
  p.add_argument('--steps', type=int, default=20, help='lockstep steps timed at B > 1')
  p.add_argument('--decode-threads', type=int, default=min(16, len(os.sched_getaffinity(0))))
  p.add_argument('--dtype', default=None, help='override config.model.dtype')
  p.add_argument('--one-core', action='store_true', help='pin to one CPU core, one XLA thread')
  p.add_argument(
    '--compile-mix',
    action='store_true',
    help='count programs for a mix of benchmark resolutions (tiny preset)',
  )
  p.add_argument('--no-host-path', action='store_true', help='skip the host-crop baseline')
  p.add_argument('--no-dispatch', action='store_true', help='skip the dispatch-cost table')
  p.add_argument('--write', action='store_true', help='write the tables to RESULTS.md')
  return p.parse_args(argv)


ARGS = parse_args()
if ARGS.one_core:
  os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen=false'
    ' intra_op_parallelism_threads=1'
  )
  os.environ.setdefault('OMP_NUM_THREADS', '1')
  os.environ.setdefault('OPENCV_NUM_THREADS', '1')

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2
import jax
import jax.numpy as jnp
import numpy as np

if ARGS.one_core:
  cv2.setNumThreads(1)

from benchmarks import results_md
from ostrack_jax.configs import get_config
from ostrack_jax.datasets import folder
from ostrack_jax.datasets.core import Video
from ostrack_jax.datasets.frames import read_frame
from ostrack_jax.geometry.crop import sample_target
from ostrack_jax.models.head import decode_box
from ostrack_jax.models.ostrack import build_model, cast_kernels, compute_dtype, init_variables
from ostrack_jax.tracking import device_step, eval_sequences, runner, tracking_core
from ostrack_jax.tracking.host import boxes_to_image, hann_window, normalization_table

COMMON_RESOLUTIONS = [
  (480, 854),
  (720, 1280),
  (1080, 1920),
  (360, 640),
  (360, 480),
  (480, 640),
  (540, 960),
  (720, 960),
  (405, 720),
  (576, 1024),
]


def median_ms(fn, repeats, warmup=3):
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append((time.perf_counter() - t0) * 1e3)
  return statistics.median(times)


def cycled(seq, n, name):
  """A sequence of ``n`` frames reusing ``seq``'s files cyclically."""
  paths = [seq.frames[i % len(seq)] for i in range(n)]
  return Video(name, paths, seq.gt_xywh[:1].copy())


def bare_forward_ms(config, variables, repeats):
  model = build_model(config)
  fwd = jax.jit(lambda v, t, x: model.apply(v, t, x, keep_ratio=None, train=False))
  m = config.model
  t = jnp.zeros((1, m.template_size, m.template_size, 3))
  x = jnp.zeros((1, m.search_size, m.search_size, 3))
  return median_ms(lambda: jax.block_until_ready(fwd(variables, t, x)), repeats)


def device_only_fps(core, frame, n_steps):
  """The core's step back to back on a device-resident batch; one wait at the end."""
  h, w = frame.shape[:2]
  b = core.batch_size
  padded = tracking_core.pad_to(frame, tracking_core.bucket_shape(h, w))
  batch = core.upload(np.repeat(padded[None], b, 0))
  hw = np.tile([h, w], (b, 1)).astype(np.int32)
  active = np.ones(b, bool)
  for i in range(b):
    core.initialize_slot(i, frame, np.array([w * 0.4, h * 0.4, w * 0.15, h * 0.2]))
  jax.block_until_ready(core.step(batch, hw, active)['boxes'])
  t0 = time.perf_counter()
  for _ in range(n_steps):
    out = core.step(batch, hw, active)
  jax.block_until_ready(out['boxes'])
  return n_steps * b / (time.perf_counter() - t0)


def runner_fps(core, sequences, executor, ahead, read=None):
  """Frames/s of the pipelined runner over ``sequences`` (wall time of the whole run)."""
  done = []
  t0 = time.perf_counter()
  runner.Pipeline(
    core,
    sequences,
    done.append,
    lambda e: (_ for _ in ()).throw(e),
    executor=executor,
    ahead=ahead,
    read=read,
  ).run()
  wall = time.perf_counter() - t0
  return sum(len(r.boxes) for r in done) / wall


def host_path_fps(config, variables, frames, init_box, n):
  """The previous tracker design: host crop, jitted step on the crop, host map-back."""
  model = build_model(config)
  table = jnp.asarray(normalization_table())
  f = config.model.search_size // config.model.patch_size
  window = jnp.asarray(hann_window(f))
  s_size = config.model.search_size
  factor = config.tracker.search_factor

  @jax.jit
  def step(v, template, crop_u8):
    search = device_step.normalize_uint8(crop_u8, table)
    out = model.apply(v, template, search, keep_ratio=None, train=False)
    resp = window[None] * out['score_map'][..., 0]
    return decode_box(resp[..., None], out['size_map'], out['offset_map'])

  t_crop = sample_target(
    frames[0], init_box, config.tracker.template_factor, config.model.template_size, with_mask=False
  ).image
  template = device_step.normalize_uint8(jnp.asarray(t_crop[None]), table)
  state = np.asarray(init_box, np.float64)
  times = []
  for i in range(n + 3):
    frame = frames[1 + i % (len(frames) - 1)]
    t0 = time.perf_counter()
    c = sample_target(frame, state, factor, s_size, with_mask=False)
    pred = np.asarray(step(variables, template, c.image[None]))
    state = boxes_to_image(
      pred, state[None], np.array([c.resize_factor]), np.array([frame.shape[:2]]), s_size
    )[0]
    times.append(time.perf_counter() - t0)
  return 1.0 / statistics.median(times[3:])


def dispatch_table(core, frame):
  """Host time of one step dispatch (no wait) with the weights as a nested dict vs leaves."""
  h, w = frame.shape[:2]
  padded = jax.device_put(tracking_core.pad_to(frame, tracking_core.bucket_shape(h, w))[None])
  hw = np.array([[h, w]], np.int32)
  active = np.ones(1, bool)
  fns = core.fns
  by_dict = jax.jit(fns.track)
  state = core.state
  jax.block_until_ready(by_dict(core.variables, core.consts, state, padded, hw, active))
  leaves = core._leaves
  treedef = jax.tree_util.tree_structure(core.variables)
  by_leaves = jax.jit(lambda lv, *a: fns.track(jax.tree_util.tree_unflatten(treedef, lv), *a))
  jax.block_until_ready(by_leaves(leaves, core.consts, state, padded, hw, active))
  rows = []
  for name, fn, v in (
    ('nested variables dict', by_dict, core.variables),
    ('pre-flattened leaves (the core)', by_leaves, leaves),
  ):
    times = []
    for _ in range(30):
      t0 = time.perf_counter()
      out = fn(v, core.consts, state, padded, hw, active)
      times.append((time.perf_counter() - t0) * 1e3)
      jax.block_until_ready(out)
    rows.append((name, statistics.median(times)))
  n_leaves = len(leaves)
  lines = [
    f'Dispatch of one step (host ms, no wait; {n_leaves} weight arrays)',
    f'| {"weights passed as":<34} | {"ms":>7} |',
    f'|{"-" * 36}|{"-" * 9}|',
  ]
  lines += [f'| {n:<34} | {ms:7.3f} |' for n, ms in rows]
  return '\n'.join(lines)


def compile_mix():
  config = get_config('tiny_256_ce')
  core = tracking_core.TrackingCore(config, init_variables(config), 1, None, full_outputs=False)
  for h, w in COMMON_RESOLUTIONS:
    frame = np.zeros((h, w, 3), np.uint8)
    core.initialize_slot(0, frame, np.array([w / 3, h / 3, w / 5, h / 5]))
    core.step(
      tracking_core.pad_to(frame, tracking_core.bucket_shape(h, w))[None],
      np.array([[h, w]]),
      np.ones(1, bool),
    )
  buckets = sorted({tracking_core.bucket_shape(h, w) for h, w in COMMON_RESOLUTIONS})
  res = ', '.join(f'{w}x{h}' for h, w in COMMON_RESOLUTIONS)
  return (
    f'Resolutions {res}: {len(COMMON_RESOLUTIONS)} sizes -> '
    f'{core._track._cache_size()} step programs, '
    f'{core._init._cache_size()} template programs; buckets (HxW) '
    + ', '.join(f'{h}x{w}' for h, w in buckets)
  )


def hardware():
  cpu = results_md.cpu_model()
  devices = ', '.join(sorted({d.device_kind for d in jax.devices()}))
  cores = len(os.sched_getaffinity(0))
  pinned = ' (pinned, 1 XLA thread)' if ARGS.one_core else ''
  return f'{cpu}, {cores} core(s) usable{pinned}; JAX {jax.__version__} on {devices}'


def fps(v):
  return f'{v:9.1f}' if v else '        -'


def main():
  if max(ARGS.devices) > jax.local_device_count():
    sys.exit(f'--devices {max(ARGS.devices)}: this machine has {jax.local_device_count()}')
  seq = eval_sequences.check_trackable(folder.read_sequence_folder(pathlib.Path(ARGS.sequence)))
  frames = [read_frame(seq.frames[i], seq.name, i) for i in range(len(seq))]
  h, w = frames[0].shape[:2]
  print(f'sequence {seq.name} ({len(seq)} frames, {w}x{h}); {hardware()}', flush=True)
  cache = {p: f for p, f in zip(seq.frames, frames, strict=True)}

  def from_memory(s, i):
    return cache[s.frames[i]]

  executor = (
    concurrent.futures.ThreadPoolExecutor(ARGS.decode_threads) if ARGS.decode_threads > 0 else None
  )
  header = (
    f'| {"preset":<15} | {"devices":>7} | {"B":>4} | {"model-only":>10} | {"device-only":>11} | '
    f'{"tracker":>9} | {"end-to-end":>10} | {"host-crop":>9} | {"programs":>8} |'
  )
  lines = [
    'Frames/s (B > 1: all B sequences together, on all D devices), random weights',
    header,
    '|' + '|'.join('-' * len(c) for c in header.split('|')[1:-1]) + '|',
  ]
  print('\n'.join(lines), flush=True)
  dispatch = None
  try:
    for name in ARGS.presets:
      config = get_config(name)
      if ARGS.dtype:
        config.model.dtype = ARGS.dtype
      variables = init_variables(config)
      for d, b in [(d, b) for d in ARGS.devices for b in ARGS.batches if b % d == 0]:
        devices = jax.local_devices()[:d] if d > 1 else None
        core = tracking_core.TrackingCore(
          config, variables, b, None if b == 1 else 'vmap', full_outputs=False, devices=devices
        )
        core.warmup((h, w))
        if b == 1:
          n = ARGS.frames
          cast = jax.device_put(cast_kernels(variables, compute_dtype(config)))
          model_fps = 1e3 / bare_forward_ms(config, cast, max(20, n // 4))
          dev = device_only_fps(core, frames[1], n)
          seqs = [cycled(seq, n + 1, 'mem')]
          host = (
            None
            if ARGS.no_host_path
            else host_path_fps(config, cast, frames, seq.init_box, min(n, 60))
          )
          if dispatch is None and not ARGS.no_dispatch:
            dispatch = dispatch_table(core, frames[1])
        else:
          n = ARGS.steps
          model_fps, host = None, None
          dev = device_only_fps(core, frames[1], n)
          seqs = [cycled(seq, n + 1, f'mem{i}') for i in range(b)]
        ahead = max(2, 2 * ARGS.decode_threads // b) if executor else 0
        runner_fps(
          core, [cycled(seq, 4, f'warm{i}') for i in range(b)], executor, ahead, from_memory
        )  # warms the runner's path for this B
        trk = runner_fps(core, seqs, executor, ahead, from_memory)
        e2e = runner_fps(core, seqs, executor, ahead)
        row = (
          f'| {name:<15} | {d:>7} | {b:>4} | {fps(model_fps):>10} | {fps(dev):>11} | {fps(trk)} | '
          f'{fps(e2e):>10} | {fps(host)} | {core.compilations():>8} |'
        )
        lines.append(row)
        print(row, flush=True)
  finally:
    if executor is not None:
      executor.shutdown(cancel_futures=True)
  text = '\n'.join(lines)
  if dispatch:
    print(dispatch)
    text += '\n\n' + dispatch
  if ARGS.compile_mix:
    mix = compile_mix()
    print(mix)
    text += '\n\n' + mix
  if ARGS.write:
    table = (
      f'Sequence `{seq.name}` ({w}x{h}, {len(seq)} JPEG frames reused cyclically), '
      f'decode threads {ARGS.decode_threads}. Hardware: {hardware()}.\n\n```\n{text}\n```'
    )
    results_md.write_section(
      '<!-- track_speed:begin -->',
      '<!-- track_speed:end -->',
      'Tracker speed',
      'benchmarks/track_speed.py',
      ' '.join(sys.argv[1:]),
      table,
    )


if __name__ == '__main__':
  main()
