#!/usr/bin/env python3
"""Training speed: samples/s, step time, model FLOPs utilisation and memory of the train step.

One full step as train.py runs it (forward in train mode with drop path and BatchNorm batch
statistics, losses, backward, torch-rule clipping, two-group AdamW; state donated), on random
images with fixed boxes, for OSTrack-256 with CE (keep 0.7, the final schedule value) and without
(keep 1.0), in float32 and bfloat16 mixed precision (``train.mixed_precision``: bfloat16 compute,
float32 parameters and optimiser). The batch is per device (the global batch is batch x devices).
With ``--ostrack-repo`` and ``--torch-python`` the ORIGINAL's training step (benchmarks/
torch_original.py ``train-step``) is timed in the same run, alternating with ours, and the ratio
ours / original is printed (see benchmarks/README.md for the reference venv).

  python benchmarks/train_speed.py --batch 2                               # CPU: the issue's case
  python benchmarks/train_speed.py --batch 2 --ostrack-repo ../OSTrack \\
      --torch-python ../refvenv/bin/python --write
  python benchmarks/train_speed.py --batches 32 64 128 --dtypes bfloat16 --keeps 0.7 \\
      --variants plain bf16act fused_cudnn bf16act+fused_cudnn --forward     # GPU: fast paths

``--variants``: fast-path settings of ``config.model`` (see VARIANTS; join names with '+'),
each timed in its own process (so that each row's peak memory is its own), batches ascending.
``--forward`` also times the inference forward at each batch (its own MFU).
``--profile DIR`` traces 3 more steps of each training row with ``jax.profiler`` (after its
timing, so the times are unaffected) into ``DIR/<variant>_<dtype>_keep<k>_b<batch>/`` with the
compiled step's HLO; ``benchmarks/profile_summary.py`` turns each into time by kind.
``--loss-steps N`` instead trains N steps per variant from the same initialisation on the same
random batches and prints each variant's loss against float32's (the numerics of the fast paths).

Accounting (ostrack_jax/models/flops.py): MFU = model FLOPs per step / step time / the devices'
dense peak. Model FLOPs are counted analytically (matrix products only, 2 per MAC, CE token
counts as the model has them; training = 3 x forward less the patch embedding's input
gradient); the peak is the device's bfloat16 tensor-core peak for bfloat16 rows and its TF32
peak for float32 rows (what XLA uses for float32 matmuls on a GPU by default), from the table in
flops.py by device name (``--peak-tflops`` overrides) and printed with the table. XLA's own FLOP
count of the compiled step (``xla GFLOP``) is printed beside it: on a GPU it misses the cuBLAS
and cuDNN calls, so it is not the basis of the MFU.

Memory: ``peak MB`` is the device allocator's peak (GPU/TPU: ``peak_bytes_in_use``) or the
process's peak RSS (CPU, includes everything the process holds); ``XLA MB`` is XLA's memory
analysis of the compiled step (arguments + outputs + temporaries - aliased/donated). Time to
train the full schedule (``config.train.epochs x config.data.samples_per_epoch`` samples, 18 M
for OSTrack-256) is projected from the best row: hours on one device, and on four assuming
linear data-parallel scaling.
"""

import argparse
import gc
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import results_md

BEGIN, END = '<!-- train_speed:begin -->', '<!-- train_speed:end -->'

# Fast-path settings (config.model fields), one switch each; combine with '+'.
VARIANTS = {
  'plain': {},
  'bf16act': {'bf16_activations': True},
  'fused_xla': {'attention_impl': 'xla'},
  'fused_cudnn': {'attention_impl': 'cudnn'},
  # With fused_xla / fused_cudnn only (cuDNN refused CE's 153 tokens): the token count padded
  # with masked keys to a multiple of 8 / 64, e.g. 'fused_cudnn+pad64'.
  'pad8': {'attention_pad_to': 8},
  'pad64': {'attention_pad_to': 64},
  'autodiff': {'matmul_backward': 'autodiff'},
  'remat': {'remat': 'block'},
  'remat_dots': {'remat': 'block_save_dots'},
}


def variant_fields(name: str) -> dict:
  fields = {}
  for part in name.split('+'):
    if part not in VARIANTS:
      raise SystemExit(f'unknown variant {part!r}; known: {", ".join(VARIANTS)} (join with +)')
    fields.update(VARIANTS[part])
  return fields


def peak_memory_mb() -> float:
  import jax

  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    return stats['peak_bytes_in_use'] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _xla_memory_mb(compiled):
  try:
    m = compiled.memory_analysis()
    total = (
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      + m.temp_size_in_bytes
      - m.alias_size_in_bytes
    )
    return total / 2**20
  except Exception:
    return None


def _xla_flops(compiled):
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get('flops', 0.0)) if cost else None
  except Exception:
    return None


def make_config(preset: str, mixed: bool, variant: str = 'plain'):
  from ostrack_jax.configs import get_config

  config = get_config(preset)
  config.train.mixed_precision = mixed
  for k, v in variant_fields(variant).items():
    config.model[k] = v
  return config


def random_batch(config, global_batch: int, seed: int = 0, random_boxes: bool = False):
  from ostrack_jax.data import transforms

  m = config.model
  rng = np.random.default_rng(seed)
  if random_boxes:
    xy = rng.uniform(0.25, 0.45, (global_batch, 2))
    anno = np.concatenate([xy, rng.uniform(0.1, 0.3, (global_batch, 2))], 1).astype(np.float32)
  else:
    anno = np.tile(np.array([[0.3, 0.35, 0.3, 0.25]], np.float32), (global_batch, 1))
  return {
    'template': rng.standard_normal(
      (global_batch, m.template_size, m.template_size, 3), np.float32
    ),
    'search': rng.standard_normal((global_batch, m.search_size, m.search_size, 3), np.float32),
    'search_anno': anno,
    'heatmap': transforms.gaussian_heatmap(anno, m.search_size // m.patch_size),
  }


def _setup(config, batch: int, variables=None):
  import jax

  from ostrack_jax.models.ostrack import build_model, init_variables
  from ostrack_jax.training import optim, state as state_lib, step as step_lib

  model = build_model(state_lib.training_config(config))
  tx = optim.make_optimizer(config, steps_per_epoch=468)
  mesh = step_lib.make_mesh()
  if variables is None:
    variables = init_variables(config, seed=0)
  state = jax.device_put(
    state_lib.create_train_state(variables, tx, seed=0), step_lib.replicated(mesh)
  )
  train_step = step_lib.TrainStep(model, tx, config, mesh)
  return model, mesh, state, train_step, batch * jax.device_count()


def time_ours(
  config,
  keep: float,
  batch: int,
  repeats: int,
  warmup: int = 2,
  variables=None,
  profile_dir=None,
  profile_steps: int = 3,
):
  """One training-step row: compiled ahead of time (so that XLA's cost and memory analyses of
  the very program timed come for free), then timed as train.py runs it. ``variables``: the
  initial weights (default: seed-0 ``init_variables``). ``profile_dir``: after the timing,
  ``profile_steps`` more steps under ``jax.profiler.trace`` into that folder, with the compiled
  step's HLO text beside the trace as ``step.hlo.txt`` (benchmarks/profile_summary.py reads
  both)."""
  import jax

  from ostrack_jax.models import flops
  from ostrack_jax.training import step as step_lib

  _, mesh, state, train_step, global_batch = _setup(config, batch, variables)
  host_batch = random_batch(config, global_batch)
  sharded = step_lib.shard_batch(host_batch, mesh)
  ratio = step_lib.canonical_keep_ratio(config, keep, {})
  start = time.perf_counter()
  compiled = train_step._jitted.lower(state, sharded, ratio).compile()
  state, metrics = compiled(state, sharded)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = compiled(state, sharded)
  jax.block_until_ready(state)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    # As in train.py: the host batch is sharded (copied to the devices) every step.
    state, metrics = compiled(state, step_lib.shard_batch(host_batch, mesh))
    jax.block_until_ready(state)
    times.append((time.perf_counter() - start) * 1000)
  assert bool(jax.device_get(metrics['finite']))
  profile_error = None
  if profile_dir:
    try:  # a profiler that cannot start (no CUPTI) costs the trace, not the timed row
      pathlib.Path(profile_dir).mkdir(parents=True, exist_ok=True)
      (pathlib.Path(profile_dir) / 'step.hlo.txt').write_text(compiled.as_text())
      with jax.profiler.trace(str(profile_dir)):
        for _ in range(profile_steps):
          state, metrics = compiled(state, step_lib.shard_batch(host_batch, mesh))
        jax.block_until_ready(state)
    except Exception as e:  # any failure: the row keeps its timing
      profile_error = f'{type(e).__name__}: {str(e)[:300]}'
      print(f'profile: {profile_error}', file=sys.stderr, flush=True)
  xla = _xla_flops(compiled)
  return {
    'median_ms': statistics.median(times),
    'min_ms': min(times),
    'compile_s': compile_s,
    'times_ms': times,
    'peak_mb': peak_memory_mb(),
    'xla_mb': _xla_memory_mb(compiled),
    'model_flops': global_batch * flops.count_macs(config, keep).train_flops,
    'xla_flops': xla,
    'global_batch': global_batch,
    **({'profile_error': profile_error} if profile_error else {}),
  }


def _time_calls(call, warmup: int, repeats: int):
  """(median ms of ``repeats`` waited calls, seconds of the first call: compile + one run) of a
  call without state to thread, after ``warmup`` more calls."""
  import jax

  start = time.perf_counter()
  jax.block_until_ready(call())
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(call())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append((time.perf_counter() - start) * 1000)
  return statistics.median(times), compile_s


def time_forward(config, keep: float, batch: int, repeats: int, warmup: int = 2, variables=None):
  """The inference forward (kernels cast to the compute dtype, eval mode) at ``batch``."""
  import jax

  from ostrack_jax.models import flops
  from ostrack_jax.models.ostrack import init_variables, input_shapes, make_forward
  from ostrack_jax.training import state as state_lib

  config = state_lib.training_config(config)  # bfloat16 model dtype under mixed precision
  fn = make_forward(config, init_variables(config, seed=0) if variables is None else variables)
  t_shape, s_shape = input_shapes(config, batch)
  rng = np.random.default_rng(0)
  template = jax.device_put(rng.standard_normal(t_shape, dtype=np.float32))
  search = jax.device_put(rng.standard_normal(s_shape, dtype=np.float32))
  median_ms, compile_s = _time_calls(
    lambda: fn(template, search, keep_ratio=keep)['pred_boxes'], warmup, repeats
  )
  return {
    'median_ms': median_ms,
    'compile_s': compile_s,
    'model_flops': batch * flops.count_macs(config, keep).forward_flops,
    'global_batch': batch,
  }


def time_grad(config, keep: float, batch: int, repeats: int, warmup: int = 2, variables=None):
  """Forward + backward only: the loss and its gradients as the train step computes them (train
  mode, drop path, batch statistics), without clipping, the optimiser and the finite-step
  guard; the full step's time minus this one is theirs."""
  import jax

  from ostrack_jax.models import flops
  from ostrack_jax.models.ostrack import build_model, init_variables
  from ostrack_jax.training import state as state_lib, step as step_lib

  model = build_model(state_lib.training_config(config))
  variables = jax.device_put(init_variables(config, seed=0) if variables is None else variables)
  host = random_batch(config, batch)
  data = {k: jax.device_put(host[k]) for k in step_lib.BATCH_KEYS}
  ratio = step_lib.canonical_keep_ratio(config, keep, {})
  loss = step_lib.training_loss(model, config.train)

  @jax.jit
  def grad(params, batch_stats, data):
    def total(params):
      args = (data['template'], data['search'], data, ratio, jax.random.PRNGKey(0))
      return loss(params, batch_stats, *args)[0]

    return jax.value_and_grad(total)(params)

  median_ms, compile_s = _time_calls(
    lambda: grad(variables['params'], variables['batch_stats'], data), warmup, repeats
  )
  return {
    'median_ms': median_ms,
    'compile_s': compile_s,
    'model_flops': batch * flops.count_macs(config, keep).train_flops,
    'global_batch': batch,
  }


def loss_run(config, keep: float, batch: int, steps: int, seed: int = 0, variables=None):
  """Trains ``steps`` steps from seed-0 weights on seeded random batches (random boxes, 8
  distinct batches cycled); returns the loss of every step."""
  import jax

  from ostrack_jax.training import step as step_lib

  _, mesh, state, train_step, global_batch = _setup(config, batch, variables)
  batches = [
    step_lib.shard_batch(random_batch(config, global_batch, seed + i, random_boxes=True), mesh)
    for i in range(8)
  ]
  curve = []
  for i in range(steps):
    state, metrics = train_step(state, batches[i % len(batches)], keep)
    curve.append(metrics['Loss/total'])
  return [float(x) for x in jax.device_get(curve)]


def time_original(args, batch: int, keep: float, repeats: int):
  from benchmarks import torch_original

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
    ]
    + (['--device', args.original_device] if args.original_device else []),
  )


def run_one(spec: dict) -> list:
  """The rows of one (variant, dtype, keep) in this process: batches ascending, each a training
  step row (and a forward row with ``forward``), stopping at ``deadline`` (time.time())."""
  rows = []
  config = make_config(spec['preset'], spec['mixed'], spec['variant'])
  for batch in sorted(spec['batches']):
    if spec.get('deadline') and time.time() > spec['deadline']:
      rows.append({'batch': batch, 'skipped': 'deadline'})
      continue
    try:
      if spec.get('loss_steps'):
        rows.append(
          {'batch': batch, 'losses': loss_run(config, spec['keep'], batch, spec['loss_steps'])}
        )
        continue
      profile_dir = None
      if spec.get('profile'):
        dtype = 'bfloat16' if spec['mixed'] else 'float32'
        name = f'{spec["variant"]}_{dtype}_keep{spec["keep"]}_b{batch}'
        profile_dir = pathlib.Path(spec['profile']) / name
      res = time_ours(config, spec['keep'], batch, spec['repeats'], profile_dir=profile_dir)
      res['batch'] = batch
      rows.append(res)
      if spec.get('forward'):
        gc.collect()
        fwd = time_forward(config, spec['keep'], batch, spec['repeats'])
        rows[-1]['forward'] = fwd
    except Exception as e:  # out of memory, an unsupported kernel
      rows.append({'batch': batch, 'error': f'{type(e).__name__}: {str(e)[:300]}'})
      print(rows[-1]['error'], file=sys.stderr, flush=True)
    gc.collect()
  return rows


def _run_isolated(spec: dict) -> list:
  """run_one in a fresh process so that each variant's peak memory is its own."""
  proc = subprocess.run(
    [sys.executable, __file__, '--_one', json.dumps(spec)],
    capture_output=True,
    text=True,
    check=False,
  )
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    return [{'batch': b, 'error': f'process failed: {proc.stderr[-600:]}'} for b in spec['batches']]
  return json.loads(lines[-1])


def device_info(dtype: str, override=None):
  """(device kind, peak TFLOP/s per device or None, the peak's name)."""
  import jax

  from ostrack_jax.models import flops

  kind = jax.devices()[0].device_kind
  if override:
    return kind, override, '--peak-tflops'
  peak, name = flops.device_peak_tflops(kind, dtype)
  return kind, peak, (f'{name} {"bf16" if dtype == "bfloat16" else "tf32"} dense' if name else None)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--preset', default='ostrack_256_ce')
  parser.add_argument(
    '--batch', type=int, default=2, help='per device (the original uses 32 per GPU)'
  )
  parser.add_argument('--batches', type=int, nargs='+', default=None, help='several batch sizes')
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
  parser.add_argument('--variants', nargs='+', default=['plain'], help='see VARIANTS')
  parser.add_argument('--forward', action='store_true', help='also time the inference forward')
  parser.add_argument('--loss-steps', type=int, default=0, help='loss drift of the variants')
  parser.add_argument('--mfu', action='store_true', help=argparse.SUPPRESS)  # always on now
  parser.add_argument('--peak-tflops', type=float, default=None)
  parser.add_argument('--ostrack-repo', default=None)
  parser.add_argument('--torch-python', default=None)
  parser.add_argument('--original-device', default=None, help='cpu or cuda for the original')
  parser.add_argument('--original-batch', type=int, default=None, help='default: --batch')
  parser.add_argument('--jsonl', default=None, help='also append every row to this file')
  parser.add_argument(
    '--profile',
    default=None,
    help='after each training row, 3 more steps under jax.profiler.trace into'
    ' PROFILE/<variant>_<dtype>_keep<k>_b<batch>/ with the step HLO (benchmarks/profile_summary.py)',
  )
  parser.add_argument(
    '--budget-s', type=float, default=None, help='skip what would start after this many seconds'
  )
  parser.add_argument('--write', action='store_true', help='update benchmarks/RESULTS.md')
  parser.add_argument('--_one', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._one:
    print(json.dumps(run_one(json.loads(args._one))))
    return 0
  for v in args.variants:
    variant_fields(v)
  deadline = time.time() + args.budget_s if args.budget_s else None
  batches = args.batches or [args.batch]

  if args.loss_steps:
    return loss_main(args, batches, deadline)

  import jax

  from benchmarks.model_speed import hardware

  with_original = bool(args.ostrack_repo and args.torch_python)
  rows = []
  peaks = {}
  for keep in args.keeps:
    orig = []  # the original (float32) at this keep rate: the reference for every row
    pairs = [(dtype, variant) for dtype in args.dtypes for variant in args.variants]
    for pair_index, (dtype, variant) in enumerate(pairs):
      kind, peak, peak_name = device_info(dtype, args.peak_tflops)
      peaks[dtype] = (peak, peak_name)
      spec = {
        'preset': args.preset,
        'keep': keep,
        'mixed': dtype == 'bfloat16',
        'variant': variant,
        'batches': batches,
        'repeats': args.repeats,
        'forward': args.forward,
        'deadline': deadline,
        'profile': str(pathlib.Path(args.profile).resolve()) if args.profile else None,
      }
      per_batch = {}
      for _ in range(args.rounds):
        if with_original and pair_index == 0:  # alternating with our first setting
          orig += time_original(args, args.original_batch or batches[0], keep, args.repeats)[
            'times_ms'
          ]
        for res in _run_isolated(spec):
          per_batch.setdefault(res['batch'], []).append(res)
      for batch, results in sorted(per_batch.items()):
        row = make_row(args.preset, variant, keep, dtype, batch, results, peak, orig, kind)
        if row.get('batch') != (args.original_batch or batches[0]) * jax.device_count():
          row.pop('ratio', None)  # the original ran at another batch: compare samples/s
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.jsonl:
          with open(args.jsonl, 'a') as f:
            f.write(json.dumps(row) + '\n')

  table = render(rows, hardware(), peaks, args.original_batch or batches[0])
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


def make_row(preset, variant, keep, dtype, batch, results, peak, orig, kind):
  row = {'preset': preset, 'variant': variant, 'ce': keep < 1, 'keep': keep, 'dtype': dtype}
  row['device'] = kind
  good = [r for r in results if 'median_ms' in r]
  if not good:
    row.update(batch=batch, error=next((r.get('error') or r.get('skipped') for r in results), ''))
    return row
  times = [t for r in good for t in r['times_ms']]
  res = good[-1]
  row.update(
    batch=res['global_batch'],
    step_ms=statistics.median(times),
    peak_mb=res['peak_mb'],
    xla_mb=res['xla_mb'],
    compile_s=res['compile_s'],
    model_gflop=res['model_flops'] / res['global_batch'] / 1e9,
    xla_gflop=(res['xla_flops'] / res['global_batch'] / 1e9) if res['xla_flops'] else None,
  )
  row['samples_per_s'] = 1000 * row['batch'] / row['step_ms']
  if 'profile_error' in res:
    row['profile_error'] = res['profile_error']
  devices = max(1, res['global_batch'] // batch)
  if peak:
    row['mfu'] = res['model_flops'] / (row['step_ms'] / 1000) / (peak * 1e12 * devices)
  if 'forward' in res:
    fwd = res['forward']
    row['forward_ms'] = fwd['median_ms']
    if peak:
      row['forward_mfu'] = fwd['model_flops'] / (fwd['median_ms'] / 1000) / (peak * 1e12)
  if orig:
    row['original_ms'] = statistics.median(orig)
    row['ratio'] = row['step_ms'] / row['original_ms']
  return row


def projection(rows, config_samples: int) -> str:
  """Hours for the full schedule from the fastest row (1 device; 4 assuming linear scaling)."""
  done = [r for r in rows if 'samples_per_s' in r]
  if not done:
    return ''
  best = max(done, key=lambda r: r['samples_per_s'])
  hours = config_samples / best['samples_per_s'] / 3600
  return (
    f'Full schedule ({config_samples:,} samples) at the fastest row '
    f'({best["variant"]}, {best["dtype"]}, batch {best["batch"]}: {best["samples_per_s"]:.0f} '
    f'samples/s): {hours:.1f} h on one device, {hours / 4:.1f} h on four (linear '
    'data-parallel scaling assumed).'
  )


def render(rows, hardware_text: str, peaks=None, original_batch=None) -> str:
  """The markdown table of the rows printed by main()."""
  from ostrack_jax.configs import get_config

  peak_text = '; '.join(
    f'{dtype}: {p:.0f} TFLOP/s ({name})' for dtype, (p, name) in (peaks or {}).items() if p
  )
  lines = [
    f'Hardware: {hardware_text}.',
    f'MFU peak per device: {peak_text or "none known for this device (no MFU)"}.',
    '',
    '| preset | variant | CE (keep) | dtype | global batch | step ms (median) | samples/s | MFU | '
    'model GFLOP / sample (xla) | peak memory MB (XLA) | compile s | forward ms (MFU) | '
    f'original ms (float32, batch {original_batch}) | ours / original |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    head = (
      f'| {r["preset"]} | {r["variant"]} | {"yes" if r["ce"] else "no"} ({r["keep"]}) | '
      f'{r["dtype"]} | {r["batch"]} |'
    )
    if 'step_ms' not in r:
      lines.append(head + f' {r.get("error", "")[:80]} |' + ' - |' * 8)
      continue
    orig = f'{r["original_ms"]:.1f} | ' if 'original_ms' in r else '- | '
    orig += f'{r["ratio"]:.2f}x' if 'ratio' in r else '-'
    mfu = f'{100 * r["mfu"]:.1f}%' if 'mfu' in r else '-'
    xla = f' ({r["xla_gflop"]:.1f})' if r.get('xla_gflop') else ''
    xla_mb = f' ({r["xla_mb"]:.0f})' if r.get('xla_mb') else ''
    fwd = '-'
    if 'forward_ms' in r:
      fwd = f'{r["forward_ms"]:.1f}' + (
        f' ({100 * r["forward_mfu"]:.1f}%)' if 'forward_mfu' in r else ''
      )
    lines.append(
      head + f' {r["step_ms"]:.1f} | {r["samples_per_s"]:.1f} | {mfu} | '
      f'{r["model_gflop"]:.1f}{xla} | {r["peak_mb"]:.0f}{xla_mb} | {r["compile_s"]:.0f} | {fwd} | '
      f'{orig} |'
    )
  presets = {r['preset'] for r in rows}
  if len(presets) == 1:
    c = get_config(presets.pop())
    lines += ['', projection(rows, c.train.epochs * c.data.samples_per_epoch)]
  return '\n'.join(lines)


def loss_main(args, batches, deadline) -> int:
  """--loss-steps: every variant x dtype trained from the same start on the same batches."""
  rows = []
  for dtype in args.dtypes:
    for variant in args.variants:
      spec = {
        'preset': args.preset,
        'keep': args.keeps[0],
        'mixed': dtype == 'bfloat16',
        'variant': variant,
        'batches': batches[:1],
        'loss_steps': args.loss_steps,
        'deadline': deadline,
      }
      res = _run_isolated(spec)[0]
      row = {'variant': variant, 'dtype': dtype, 'batch': batches[0], **res}
      rows.append(row)
      if args.jsonl:
        with open(args.jsonl, 'a') as f:
          f.write(json.dumps(dict(row, kind='loss')) + '\n')
  ref = next((r for r in rows if 'losses' in r and r['dtype'] == 'float32'), None)
  n = args.loss_steps
  print(
    f'\nLoss after {n} steps ({args.preset}, batch {batches[0]}, keep {args.keeps[0]}, seeded '
    'random batches; mean of the last 10 steps):\n'
  )
  print('| variant | dtype | loss, first step | loss, last 10 | vs float32 plain |')
  print('|---|---|---|---|---|')
  for r in rows:
    if 'losses' not in r:
      print(f'| {r["variant"]} | {r["dtype"]} | {r.get("error", r.get("skipped", ""))} | - | - |')
      continue
    last = float(np.mean(r['losses'][-10:]))
    diff = '-'
    if ref is not None:
      diff = f'{last - float(np.mean(ref["losses"][-10:])):+.4f}'
    print(f'| {r["variant"]} | {r["dtype"]} | {r["losses"][0]:.4f} | {last:.4f} | {diff} |')
  return 0


def write_section(table: str, argv: str) -> None:
  results_md.write_section(
    BEGIN, END, 'Training step speed', 'benchmarks/train_speed.py', argv, table
  )


if __name__ == '__main__':
  sys.exit(main())
