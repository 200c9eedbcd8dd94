#!/usr/bin/env python3
"""Forward speed of every preset: latency at batch 1, throughput at batch 32, f32 and bf16.

Prints a table (medians of repeated runs after compilation) and, with ``--write``, replaces the
model-speed section of benchmarks/RESULTS.md. With ``--ostrack-repo`` and ``--torch-python`` the
ORIGINAL PyTorch OSTrack is timed in the same run (alternating with ours) and the ratio
ours/original is reported; see benchmarks/README.md for setting that up.

  python benchmarks/model_speed.py                                  # all presets, all devices
  python benchmarks/model_speed.py --presets ostrack_256_ce ostrack_256 --batch-sizes 1 \
      --ostrack-repo /path/to/OSTrack --torch-python /path/to/refvenv/bin/python --write
  python benchmarks/model_speed.py --presets ostrack_256_ce --dtypes float32 --batch-sizes 1 --onnx

Environment knobs: XLA_FLAGS is passed through (e.g. to try XLA:CPU options).
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import results_md

BEGIN, END = '<!-- model_speed:begin -->', '<!-- model_speed:end -->'


def hardware() -> str:
  import jax

  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  return (
    f'{len(devices)} x {"/".join(kinds)} ({jax.default_backend()}), host CPU {results_md.cpu_model()}, '
    f'{os.cpu_count()} cores visible, jax {jax.__version__}'
  )


def time_ours(preset: str, dtype: str, batch: int, repeats: int, warmup: int = 2, keep_ratio=None):
  import jax

  from ostrack_jax.configs import get_config
  from ostrack_jax.models.ostrack import init_variables, input_shapes, make_forward

  config = get_config(preset)
  config.model.dtype = dtype
  fn = make_forward(config, init_variables(config, seed=0))
  t_shape, s_shape = input_shapes(config, batch)
  rng = np.random.default_rng(0)
  template = jax.device_put(rng.standard_normal(t_shape, dtype=np.float32))
  search = jax.device_put(rng.standard_normal(s_shape, dtype=np.float32))
  start = time.perf_counter()
  jax.block_until_ready(fn(template, search, keep_ratio=keep_ratio))
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(fn(template, search, keep_ratio=keep_ratio))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(template, search, keep_ratio=keep_ratio)['pred_boxes'])
    times.append((time.perf_counter() - start) * 1000)
  return {
    'median_ms': statistics.median(times),
    'min_ms': min(times),
    'compile_s': compile_s,
    'times_ms': times,
  }


def bf16_map_error(preset: str) -> float:
  """Max |score/size map difference| between bfloat16 and float32 on the same random inputs."""
  import jax

  from ostrack_jax.configs import get_config
  from ostrack_jax.models.ostrack import init_variables, input_shapes, make_forward

  config = get_config(preset)
  variables = init_variables(config, seed=0)
  t_shape, s_shape = input_shapes(config, 2)
  rng = np.random.default_rng(1)
  template, search = (
    rng.standard_normal(t_shape, dtype=np.float32),
    rng.standard_normal(s_shape, dtype=np.float32),
  )
  with jax.default_matmul_precision('highest'):
    ref = make_forward(config, variables)(template, search, keep_ratio=1.0)
  config.model.dtype = 'bfloat16'
  out = make_forward(config, variables)(template, search, keep_ratio=1.0)
  return max(
    float(np.abs(np.asarray(out[k]) - np.asarray(ref[k])).max()) for k in ('score_map', 'size_map')
  )


def time_original(args, preset: str, batch: int, repeats: int):
  from benchmarks import torch_original

  return torch_original.run_cli(
    python=args.torch_python,
    ostrack_repo=args.ostrack_repo,
    args=[
      'forward',
      '--preset',
      preset,
      '--batch',
      str(batch),
      '--repeats',
      str(repeats),
      '--warmup',
      '2',
    ],
  )


def time_onnx_step(preset: str, repeats: int, frame_hw=(480, 854)):
  """The tracker's per-frame step (crop + network + decode + map back, batch 1, float32) with
  ``load_onnx`` (the network file of ``python -m ostrack_jax.export --format onnx`` in
  onnxruntime, crop and decode on the host) and in JAX (the same step, jitted), both waited for
  on every call. Returns medians in ms and the provider that ran the network."""
  import tempfile

  import jax
  import onnxruntime as ort

  from ostrack_jax.configs import get_config
  from ostrack_jax.deploy import onnx_export, onnx_tracker
  from ostrack_jax.models.ostrack import init_variables
  from ostrack_jax.tracking import tracking_core

  config = get_config(preset)
  config.model.dtype = 'float32'
  variables = init_variables(config, seed=0)
  h, w = frame_hw
  frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
  box = np.array([w * 0.4, h * 0.4, w * 0.1, h * 0.15], np.float32)
  providers = [
    p
    for p in ('CUDAExecutionProvider', 'CPUExecutionProvider')
    if p in ort.get_available_providers()
  ]
  with tempfile.TemporaryDirectory() as tmp:
    path = onnx_export.export_onnx(config, variables, os.path.join(tmp, 'network.onnx'))
    tracker = onnx_tracker.load_onnx(path, providers=providers)
  print(f'load_onnx runs on {tracker.provider}', flush=True)
  tracker.initialize(frame, box)

  def run_onnx():
    tracker.state = box
    tracker.track(frame)

  core = tracking_core.TrackingCore(config, variables, 1, None, full_outputs=True)
  core.initialize_slot(0, frame, box)
  padded = jax.device_put(tracking_core.pad_to(frame, tracking_core.bucket_shape(h, w))[None])
  hw, active = np.array([[h, w]], np.int32), np.ones(1, bool)

  def run_jax():
    jax.block_until_ready(core.step(padded, hw, active)['boxes'])

  out = {}
  for name, fn in (('onnxruntime', run_onnx), ('jax', run_jax)):
    for _ in range(3):
      fn()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      times.append((time.perf_counter() - start) * 1e3)
    out[name] = statistics.median(times)
  out['providers'] = tracker.provider
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--presets',
    nargs='+',
    default=['ostrack_256_ce', 'ostrack_256', 'ostrack_384_ce', 'ostrack_384'],
  )
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
  parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 32])
  parser.add_argument('--repeats', type=int, default=15, help='timed runs at batch 1')
  parser.add_argument('--repeats-large', type=int, default=3, help='timed runs at batch > 1')
  parser.add_argument(
    '--rounds',
    type=int,
    default=1,
    help='alternate ours/original this many times (medians over all rounds)',
  )
  parser.add_argument('--ostrack-repo', default=None, help="checkout of the original (optional)")
  parser.add_argument('--torch-python', default=None, help='python of the reference venv')
  parser.add_argument('--original-batch-sizes', nargs='+', type=int, default=[1])
  parser.add_argument(
    '--onnx',
    action='store_true',
    help='also time the tracker step in onnxruntime beside the same step in JAX',
  )
  parser.add_argument('--write', action='store_true', help='update benchmarks/RESULTS.md')
  args = parser.parse_args(argv)
  with_original = bool(args.ostrack_repo and args.torch_python)

  rows = []
  for preset in args.presets:
    for batch in args.batch_sizes:
      for dtype in args.dtypes:
        repeats = args.repeats if batch == 1 else args.repeats_large
        ours_times, orig_times = [], []
        for _ in range(args.rounds):
          if with_original and dtype == 'float32' and batch in args.original_batch_sizes:
            orig_times += time_original(args, preset, batch, repeats)['times_ms']
          ours_times += time_ours(preset, dtype, batch, repeats)['times_ms']
        row = {
          'preset': preset,
          'dtype': dtype,
          'batch': batch,
          'ours_ms': statistics.median(ours_times),
        }
        if not orig_times:  # compare other dtypes with the original's float32 (it has no other)
          orig_times = next(
            (
              r['original_times']
              for r in rows
              if r['preset'] == preset and r['batch'] == batch and 'original_times' in r
            ),
            [],
          )
        if orig_times:
          row['original_times'] = orig_times
          row['original_ms'] = statistics.median(orig_times)
          row['ratio'] = row['ours_ms'] / row['original_ms']
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != 'original_times'}), flush=True)

  lines = [
    f'Hardware: {hardware()}.',
    '',
    '| preset | dtype | batch | ours: median ms / forward | ours: forwards/s | original ms (float32) | ours / original |',
    '|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    orig = f'{r["original_ms"]:.1f}' if 'original_ms' in r else '-'
    ratio = f'{r["ratio"]:.2f}x' if 'ratio' in r else '-'
    lines.append(
      f'| {r["preset"]} | {r["dtype"]} | {r["batch"]} | {r["ours_ms"]:.1f} | '
      f'{1000 * r["batch"] / r["ours_ms"]:.1f} | {orig} | {ratio} |'
    )
  by_key = {(r['preset'], r['dtype'], r['batch']): r['ours_ms'] for r in rows}
  ce_lines = []
  for size in ('256', '384'):
    for dtype in args.dtypes:
      for batch in args.batch_sizes:
        ce, no_ce = (
          by_key.get((f'ostrack_{size}_ce', dtype, batch)),
          by_key.get((f'ostrack_{size}', dtype, batch)),
        )
        if ce and no_ce:
          ce_lines.append(
            f'- OSTrack-{size} {dtype} batch {batch}: CE is {no_ce / ce:.2f}x faster than no CE '
            f'(MACs say {29.025 / 21.499 if size == "256" else 65.307 / 48.318:.2f}x)'
          )
  if 'bfloat16' in args.dtypes:
    for preset in args.presets[:1]:
      ce_lines.append(
        f'- {preset}: bfloat16 vs float32 max |score/size map difference| = {bf16_map_error(preset):.2e}'
      )
  onnx_lines = []
  if args.onnx:
    onnx_lines = [
      '',
      'Tracker step (crop 854x480 -> network -> box), batch 1, float32, waited for per call:',
      '',
      '| preset | onnxruntime ms (provider) | JAX ms | onnxruntime / JAX |',
      '|---|---|---|---|',
    ]
    for preset in args.presets:
      r = time_onnx_step(preset, args.repeats)
      print(json.dumps({'preset': preset, **r}), flush=True)
      onnx_lines.append(
        f'| {preset} | {r["onnxruntime"]:.1f} ({r["providers"]}) | {r["jax"]:.1f} | '
        f'{r["onnxruntime"] / r["jax"]:.2f}x |'
      )
  table = '\n'.join(lines + [''] + ce_lines + onnx_lines)
  print('\n' + table)
  if args.write:
    write_section(table, ' '.join(sys.argv[1:]))
  return 0


def write_section(table: str, argv: str) -> None:
  results_md.write_section(
    BEGIN, END, 'Model forward speed', 'benchmarks/model_speed.py', argv, table
  )


if __name__ == '__main__':
  sys.exit(main())
