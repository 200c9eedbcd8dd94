#!/usr/bin/env python3
"""Training speed: samples/s, step time and peak memory of the jitted, data-parallel train step.

One full step as train.py runs it (forward in train mode with drop path and BatchNorm batch
statistics, losses, backward, torch-rule clipping, two-group AdamW; state donated), on random
images with fixed boxes, for OSTrack-256 with CE (keep 0.7, the final schedule value) and without
(keep 1.0), in float32 and bfloat16 mixed precision (``train.mixed_precision``: bfloat16 compute,
float32 parameters and optimiser). The batch is per device (the global batch is batch x devices).
With ``--ostrack-repo`` and ``--torch-python`` the ORIGINAL's training step (benchmarks/
torch_original.py ``train-step``) is timed in the same run, alternating with ours, and the ratio
ours / original is printed (see benchmarks/README.md for the reference venv).

  python benchmarks/train_speed.py --batch 2                               # CPU: the issue's case
  python benchmarks/train_speed.py --batch 2 --ostrack-repo ../OSTrack \
      --torch-python ../refvenv/bin/python --write
  python benchmarks/train_speed.py --batch 32 --mfu                        # GPU: also MFU

Peak memory: the device allocator's peak (GPU/TPU) or the process's peak RSS (CPU, includes
everything the process holds). MFU uses the model FLOPs of a training step from XLA's cost
analysis of the compiled step, divided by the step time and the device's peak bf16 FLOP/s
(``--peak-tflops``; defaults known for H100/H200 SXM: 989 TFLOP/s dense bf16).
"""

import argparse
import json
import pathlib
import resource
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import results_md  # pylint: disable=g-import-not-at-top,wrong-import-position

BEGIN, END = '<!-- train_speed:begin -->', '<!-- train_speed:end -->'
PEAK_BF16_TFLOPS = {'H100': 989.0, 'H200': 989.0, 'A100': 312.0}


def peak_memory_mb() -> float:
  import jax  # pylint: disable=g-import-not-at-top

  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_ours(
  preset: str,
  keep: float,
  mixed: bool,
  batch: int,
  repeats: int,
  warmup: int = 2,
  mfu: bool = False,
):
  import jax  # pylint: disable=g-import-not-at-top
  from ostrack_jax.configs import get_config  # pylint: disable=g-import-not-at-top
  from ostrack_jax.models.ostrack import build_model, init_variables  # pylint: disable=g-import-not-at-top
  from ostrack_jax.training import optim, state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top

  config = get_config(preset)
  config.train.mixed_precision = mixed
  model = build_model(state_lib.training_config(config))
  tx = optim.make_optimizer(config, steps_per_epoch=468)
  mesh = step_lib.make_mesh()
  global_batch = batch * jax.device_count()
  m = config.model
  rng = np.random.default_rng(0)
  host_batch = step_lib.add_heatmap(
    {
      'template': rng.standard_normal(
        (global_batch, m.template_size, m.template_size, 3), np.float32
      ),
      'search': rng.standard_normal((global_batch, m.search_size, m.search_size, 3), np.float32),
      'search_anno': np.tile(np.array([[0.3, 0.35, 0.3, 0.25]], np.float32), (global_batch, 1)),
    },
    m.search_size // m.patch_size,
  )
  state = jax.device_put(
    state_lib.create_train_state(init_variables(config, seed=0), tx, seed=0),
    step_lib.replicated(mesh),
  )
  train_step = step_lib.TrainStep(model, tx, config, mesh)
  sharded = step_lib.shard_batch(host_batch, mesh)
  flops = None
  if mfu:
    ratio = step_lib.canonical_keep_ratio(config, keep, {})
    cost = train_step._jitted.lower(state, sharded, ratio).compile().cost_analysis()  # pylint: disable=protected-access
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get('flops', 0.0)) if cost else None
  start = time.perf_counter()
  state, metrics = train_step(state, sharded, keep)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = train_step(state, sharded, keep)
  jax.block_until_ready(state)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    # As in train.py: the host batch is sharded (copied to the devices) every step.
    state, metrics = train_step(state, step_lib.shard_batch(host_batch, mesh), keep)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - start) * 1000)
  assert bool(jax.device_get(metrics['finite']))
  return {
    'median_ms': statistics.median(times),
    'min_ms': min(times),
    'compile_s': compile_s,
    'times_ms': times,
    'peak_mb': peak_memory_mb(),
    'flops': flops,
    'global_batch': global_batch,
  }


def time_original(args, batch: int, keep: float, repeats: int):
  from benchmarks import torch_original  # pylint: disable=g-import-not-at-top

  epoch = '300' if keep < 1 else '20'  # the original's schedule: 0.7 at 300, 1.0 at 20
  return torch_original.run_cli(
    python=args.torch_python,
    ostrack_repo=args.ostrack_repo,
    args=[
      'train-step',
      '--batch',
      str(batch),
      '--repeats',
      str(repeats),
      '--warmup',
      '2',
      '--epoch',
      epoch,
    ],
  )


def _run_isolated(args, preset, keep, mixed):
  """Times ours in a fresh process so that each row's peak memory is its own."""
  import subprocess  # pylint: disable=g-import-not-at-top

  cmd = [
    sys.executable,
    __file__,
    '--_one',
    json.dumps(
      {
        'preset': preset,
        'keep': keep,
        'mixed': mixed,
        'batch': args.batch,
        'repeats': args.repeats,
        'mfu': args.mfu,
      }
    ),
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise RuntimeError(proc.stderr[-3000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--preset', default='ostrack_256_ce')
  parser.add_argument(
    '--batch', type=int, default=2, help='per device (the original uses 32 per GPU)'
  )
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument(
    '--rounds', type=int, default=1, help='alternate ours/original this many times'
  )
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
  parser.add_argument(
    '--keeps',
    nargs='+',
    type=float,
    default=[0.7, 1.0],
    help='CE keep rates (0.7 = CE at its final rate, 1.0 = no CE)',
  )
  parser.add_argument('--mfu', action='store_true', help='model FLOPs utilisation (accelerators)')
  parser.add_argument('--peak-tflops', type=float, default=None)
  parser.add_argument('--ostrack-repo', default=None)
  parser.add_argument('--torch-python', default=None)
  parser.add_argument('--write', action='store_true', help='update benchmarks/RESULTS.md')
  parser.add_argument('--_one', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._one:  # pylint: disable=protected-access
    spec = json.loads(args._one)  # pylint: disable=protected-access
    print(
      json.dumps(
        time_ours(
          spec['preset'],
          spec['keep'],
          spec['mixed'],
          spec['batch'],
          spec['repeats'],
          mfu=spec['mfu'],
        )
      )
    )
    return 0

  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks.model_speed import hardware  # pylint: disable=g-import-not-at-top

  with_original = bool(args.ostrack_repo and args.torch_python)
  kind = jax.devices()[0].device_kind
  peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in kind), None)
  rows = []
  for keep in args.keeps:
    orig = []  # the original (float32) at this keep rate: the reference for both dtypes
    for dtype in args.dtypes:
      ours = []
      res = None
      for _ in range(args.rounds):
        if with_original and (dtype == 'float32' or 'float32' not in args.dtypes):
          orig += time_original(args, args.batch, keep, args.repeats)['times_ms']
        res = _run_isolated(args, args.preset, keep, dtype == 'bfloat16')
        ours += res['times_ms']
      row = {
        'preset': args.preset,
        'ce': keep < 1,
        'keep': keep,
        'dtype': dtype,
        'batch': res['global_batch'],
        'step_ms': statistics.median(ours),
        'peak_mb': res['peak_mb'],
        'compile_s': res['compile_s'],
      }
      row['samples_per_s'] = 1000 * row['batch'] / row['step_ms']
      if res['flops'] and peak:
        row['mfu'] = res['flops'] / (row['step_ms'] / 1000) / (peak * 1e12 * jax.device_count())
      if orig:
        row['original_ms'] = statistics.median(orig)
        row['ratio'] = row['step_ms'] / row['original_ms']
      rows.append(row)
      print(json.dumps(row), flush=True)

  table = render(rows, hardware())
  print('\n' + table)
  if args.write:
    shown = list(sys.argv[1:] if argv is None else argv)
    for flag, placeholder in (
      ('--ostrack-repo', '../OSTrack'),
      ('--torch-python', '../refvenv/bin/python'),
    ):
      if flag in shown:  # no paths of this machine in RESULTS.md
        shown[shown.index(flag) + 1] = placeholder
    write_section(table, ' '.join(shown))
  return 0


def render(rows, hardware_text: str) -> str:
  """The markdown table of the rows printed by main()."""
  lines = [
    f'Hardware: {hardware_text}.',
    '',
    '| preset | CE (keep) | dtype | global batch | step ms (median) | samples/s | peak memory MB | '
    'compile s | original ms (float32) | ours / original | MFU |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    orig = f'{r["original_ms"]:.0f} | {r["ratio"]:.2f}x' if 'original_ms' in r else '- | -'
    mfu = f'{100 * r["mfu"]:.1f}%' if 'mfu' in r else '-'
    lines.append(
      f'| {r["preset"]} | {"yes" if r["ce"] else "no"} ({r["keep"]}) | {r["dtype"]} | {r["batch"]} | '
      f'{r["step_ms"]:.0f} | {r["samples_per_s"]:.2f} | {r["peak_mb"]:.0f} | {r["compile_s"]:.0f} | '
      f'{orig} | {mfu} |'
    )
  return '\n'.join(lines)


def write_section(table: str, argv: str) -> None:
  results_md.write_section(
    BEGIN, END, 'Training step speed', 'benchmarks/train_speed.py', argv, table
  )


if __name__ == '__main__':
  sys.exit(main())
