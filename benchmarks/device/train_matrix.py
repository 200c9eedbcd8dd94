#!/usr/bin/env python3
"""Issue 14's training-speed measurements in one process, for one device call (train_run.sh).

Runs a fixed plan of items in priority order (OSTrack-256 CE at keep 0.7, bfloat16 mixed
precision unless named), each appended to ``OUT/train_matrix.jsonl`` as soon as it is done, and
re-renders ``OUT/train_matrix.md`` after every item, so a run cut short by its budget or a
timeout still leaves its tables. One process for all items: XLA's autotuning results are reused
between programs, and no item pays the start-up again. Per item memory is XLA's memory analysis
of the compiled program (arguments + outputs + temporaries - donated), the number that decides
whether a setting fits a GPU; the allocator's peak is the process's running peak.

Plan (``B`` = 128, ``b`` = 32; the tiny preset uses 4 and 1):

1. the train step, plain (today's bfloat16 path) at B, then each fast-path switch alone at B:
   ``bf16act``, ``fused_cudnn``, ``autodiff``. The switches that make the step >= 2% faster than
   plain are combined ("best"; plain if none wins) -- each change kept only if it wins;
2. best at B (when it combines two or more), plain and best at b and 64;
3. the inference forward (plain, best) at B: forward MFU;
4. remat (best + remat, plain + remat) at b: the memory per setting;
5. ``fused_xla`` at B, forward + backward alone (best, B: what the optimiser update costs),
   float32 plain at b;
6. the loss after ``--loss-steps`` steps (float32 plain, bfloat16 plain, bfloat16 best) at b,
   same start, same batches.

  python benchmarks/device/train_matrix.py --out DIR [--budget-s 260] [--tiny]
  python benchmarks/device/train_matrix.py --out DIR --render-only \\
      [--original FILE] [--data-speed FILE]    # tables from DIR/train_matrix.jsonl

``--original``: the output of ``torch_original.py train-step`` (its last line is JSON): the
original's step beside ours at the same batch. ``--data-speed``: the output of
``benchmarks/data_speed.py``: pairs/s per core, and the cores one GPU needs at our best rate.
"""

import argparse
import gc
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import train_speed

SWITCHES = ('bf16act', 'fused_cudnn', 'autodiff')
WIN = 0.98  # a switch is kept when the step takes < 98% of plain's time


def _join(*names):
  parts = [p for n in names for p in n.split('+') if p and p != 'plain']
  return '+'.join(dict.fromkeys(parts)) or 'plain'


class Matrix:
  """Runs items, records them, renders the tables."""

  def __init__(self, args):
    self.args = args
    self.out = pathlib.Path(args.out)
    self.out.mkdir(parents=True, exist_ok=True)
    self.jsonl = self.out / 'train_matrix.jsonl'
    self.deadline = time.time() + args.budget_s
    self.preset = 'tiny_256_ce' if args.tiny else args.preset
    self.big, self.small = (4, 1) if args.tiny else (128, 32)
    self.mid = 2 if args.tiny else 64
    self.repeats = 2 if args.tiny else args.repeats
    self._variables = None

  def variables(self):
    if self._variables is None:
      from ostrack_jax.models.ostrack import init_variables

      self._variables = init_variables(train_speed.make_config(self.preset, True), seed=0)
    return self._variables

  def done(self):
    if not self.jsonl.exists():
      return []
    return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

  def find(self, kind, variant, batch, dtype='bfloat16'):
    for r in self.done():
      if (r['kind'], r['variant'], r['batch'], r['dtype']) == (kind, variant, batch, dtype):
        return r
    return None

  def item(self, kind, variant, batch, dtype='bfloat16'):
    """Runs one item unless it was done or the budget is spent; returns its record."""
    old = self.find(kind, variant, batch, dtype)
    if old is not None:
      return old
    rec = {'kind': kind, 'variant': variant, 'batch': batch, 'dtype': dtype}
    if time.time() > self.deadline:
      rec['skipped'] = 'budget spent'
      print(f'skip {kind} {variant} b{batch} {dtype}: budget spent', flush=True)
      return rec
    config = train_speed.make_config(self.preset, dtype == 'bfloat16', variant)
    keep = self.args.keep
    start = time.time()
    try:
      if kind == 'train':
        res = train_speed.time_ours(config, keep, batch, self.repeats, variables=self.variables())
      elif kind == 'forward':
        res = train_speed.time_forward(
          config, keep, batch, self.repeats, variables=self.variables()
        )
      elif kind == 'grad':
        res = train_speed.time_grad(config, keep, batch, self.repeats, variables=self.variables())
      elif kind == 'loss':
        res = {
          'losses': train_speed.loss_run(
            config, keep, batch, self.args.loss_steps, variables=self.variables()
          )
        }
      else:
        raise ValueError(kind)
      rec.update(res)
      rec.pop('times_ms', None)
    except Exception as e:  # out of memory, no such kernel
      rec['error'] = f'{type(e).__name__}: {str(e)[:400]}'
    rec['wall_s'] = time.time() - start
    rec['peak_mb'] = train_speed.peak_memory_mb()
    gc.collect()
    with open(self.jsonl, 'a') as f:
      f.write(json.dumps(rec) + '\n')
    brief = rec.get('error') or (
      f'{rec["median_ms"]:.2f} ms' if 'median_ms' in rec else f'{len(rec.get("losses", []))} steps'
    )
    print(f'{kind} {variant} b{batch} {dtype}: {brief} ({rec["wall_s"]:.0f} s)', flush=True)
    render(self.out, self.preset, self.args.original, self.args.data_speed)
    return rec

  def run(self):
    big, small, mid = self.big, self.small, self.mid
    plain = self.item('train', 'plain', big)
    winners = []
    for switch in SWITCHES:
      r = self.item('train', switch, big)
      if 'median_ms' in r and 'median_ms' in plain and r['median_ms'] < WIN * plain['median_ms']:
        winners.append(switch)
    best = _join(*winners)
    with open(self.out / 'best.txt', 'w') as f:
      f.write(best + '\n')
    print(f'best: {best} (switches >= {100 * (1 - WIN):.0f}% faster than plain alone)', flush=True)
    if len(winners) > 1:
      self.item('train', best, big)
    for batch in (small, mid):
      self.item('train', 'plain', batch)
      if best != 'plain':
        self.item('train', best, batch)
    self.item('forward', 'plain', big)
    if best != 'plain':
      self.item('forward', best, big)
    self.item('train', _join(best, 'remat'), small)
    if best != 'plain':
      self.item('train', 'remat', small)
    self.item('train', 'fused_xla', big)
    self.item('grad', best, big)
    self.item('train', 'plain', small, 'float32')
    if self.args.loss_steps:
      self.item('loss', 'plain', small, 'float32')
      self.item('loss', 'plain', small)
      if best != 'plain':
        self.item('loss', best, small)


# ----------------------------------------------------------------------------- tables


def read_original(path):
  """The original's train-step JSON (last JSON line of torch_original.py's output), or None."""
  if not path or not os.path.exists(path):
    return None
  for line in reversed(pathlib.Path(path).read_text().splitlines()):
    line = line.strip()
    if line.startswith('{'):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        return None
  return None


def read_data_speed(path):
  """{input: (pairs per CPU-second, wall pairs/s with the most workers, workers)} from
  data_speed.py's printed table, or {}."""
  if not path or not os.path.exists(path):
    return {}
  rows, workers = {}, None
  for line in pathlib.Path(path).read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if cells and cells[0] == 'input':
      worker_cols = [c for c in cells if 'worker' in c]
      workers = int(worker_cols[-1].split()[0]) if worker_cols else None
    elif cells and (cells[0].startswith('folder') or cells[0].startswith('pack')):
      try:
        rows[cells[0]] = (float(cells[1]), float(cells[-2]), workers)
      except (ValueError, IndexError):
        pass
  return rows


def render(out, preset, original_path=None, data_speed_path=None):
  """Writes OUT/train_matrix.md from OUT/train_matrix.jsonl (and the optional files)."""
  import jax

  from benchmarks.model_speed import hardware
  from ostrack_jax.configs import get_config

  out = pathlib.Path(out)
  recs = []
  if (out / 'train_matrix.jsonl').exists():
    recs = [json.loads(x) for x in (out / 'train_matrix.jsonl').read_text().splitlines() if x]
  kind = jax.devices()[0].device_kind
  peaks = {d: train_speed.device_info(d)[1:] for d in ('bfloat16', 'float32')}
  orig = read_original(original_path)
  lines = [
    f'Hardware: {hardware()}.',
    'MFU peak per device: '
    + '; '.join(f'{d}: {p:.0f} TFLOP/s ({n})' for d, (p, n) in peaks.items() if p)
    + ('' if any(p for p, _ in peaks.values()) else f'none known for {kind!r} (no MFU)')
    + '.',
    f'Preset {preset}, CE keep 0.7; model GFLOP per sample analytic (ostrack_jax/models/'
    'flops.py), XLA\'s own count in brackets; memory: XLA\'s analysis of the compiled program '
    '(allocator running peak in brackets).',
    '',
    '| what | variant | dtype | batch | ms | samples/s | MFU | model GFLOP / sample (XLA) | '
    'memory MB (running peak) | compile s |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in recs:
    if r['kind'] == 'loss':
      continue
    head = f'| {r["kind"]} | {r["variant"]} | {r["dtype"]} | {r["batch"]} |'
    if 'median_ms' not in r:
      lines.append(head + f' {(r.get("error") or r.get("skipped", ""))[:120]} |' + ' - |' * 5)
      continue
    peak = peaks[r['dtype']][0]
    mfu = '-'
    if peak:
      flops_per_s = r['model_flops'] / (r['median_ms'] / 1000)
      mfu = f'{100 * flops_per_s / (peak * 1e12 * jax.device_count()):.1f}%'
    gflop = r['model_flops'] / r['global_batch'] / 1e9
    xla = f' ({r["xla_flops"] / r["global_batch"] / 1e9:.1f})' if r.get('xla_flops') else ''
    mem = f'{r["xla_mb"]:.0f}' if r.get('xla_mb') else '-'
    lines.append(
      head + f' {r["median_ms"]:.2f} | {1000 * r["global_batch"] / r["median_ms"]:.0f} | {mfu} | '
      f'{gflop:.1f}{xla} | {mem} ({r["peak_mb"]:.0f}) | {r["compile_s"]:.0f} |'
    )
  train = [r for r in recs if r['kind'] == 'train' and 'median_ms' in r]
  best = max(train, key=lambda r: r['global_batch'] / r['median_ms'], default=None)
  if orig:
    ob = int(orig.get('batch', 0))
    lines += [
      '',
      f'The original PyTorch OSTrack, same device and run (torch_original.py train-step, '
      f'float32, its defaults): batch {ob}: {orig["median_ms"]:.1f} ms per step '
      f'({1000 * ob / orig["median_ms"]:.0f} samples/s)'
      + (
        f', peak allocated {orig["max_memory_allocated_mib"]:.0f} MiB'
        if 'max_memory_allocated_mib' in orig
        else ''
      )
      + f'; {orig.get("device_name", "")}.',
    ]
    same = [r for r in train if r['global_batch'] == ob and orig.get('preset') == preset]
    for r in same:
      lines.append(
        f'- ours {r["variant"]} {r["dtype"]} at batch {ob}: {r["median_ms"]:.1f} ms, '
        f'{orig["median_ms"] / r["median_ms"]:.2f}x the original\'s samples/s'
      )
  if best:
    from ostrack_jax.models.ostrack import abstract_variables

    c = get_config(preset)
    params = sum(x.size for x in jax.tree_util.tree_leaves(abstract_variables(c)['params']))
    samples = c.train.epochs * c.data.samples_per_epoch
    rate = 1000 * best['global_batch'] / best['median_ms']
    hours = samples / rate / 3600
    lines += [
      '',
      f'Projection: the full schedule ({c.train.epochs} epochs x {c.data.samples_per_epoch} = '
      f'{samples:,} samples) at the fastest row ({best["variant"]}, {best["dtype"]}, batch '
      f'{best["batch"]}: {rate:.0f} samples/s) = {samples:,} / {rate:.0f} / 3600 = {hours:.1f} h '
      f'on one device; {hours / 4:.1f} h on four at linear data-parallel scaling (an assumption: '
      f'the gradient all-reduce of {params / 1e6:.1f} M parameters per step is not measured '
      'here).',
    ]
    data = read_data_speed(data_speed_path)
    if data:
      lines += ['', 'Data pipeline on this host (benchmarks/data_speed.py):']
      for name, (per_core, wall, workers) in data.items():
        lines.append(
          f'- {name}: {per_core:.0f} pairs per core-second, {wall:.0f} pairs/s with {workers} '
          f'workers; feeding {rate:.0f} samples/s takes {rate / per_core:.1f} cores'
        )
  losses = [r for r in recs if r['kind'] == 'loss']
  if losses:
    ref = next((r for r in losses if r['dtype'] == 'float32' and 'losses' in r), None)
    lines += [
      '',
      '| loss run | dtype | batch | steps | loss, mean of the last 10 | vs float32 |',
      '|---|---|---|---|---|---|',
    ]
    for r in losses:
      if 'losses' not in r:
        lines.append(
          f'| {r["variant"]} | {r["dtype"]} | {r["batch"]} | - | '
          f'{(r.get("error") or r.get("skipped", ""))[:100]} | - |'
        )
        continue
      last = sum(r['losses'][-10:]) / len(r['losses'][-10:])
      diff = '-'
      if ref:
        diff = f'{last - sum(ref["losses"][-10:]) / len(ref["losses"][-10:]):+.4f}'
      lines.append(
        f'| {r["variant"]} | {r["dtype"]} | {r["batch"]} | {len(r["losses"])} | {last:.4f} | '
        f'{diff} |'
      )
  (out / 'train_matrix.md').write_text('\n'.join(lines) + '\n')
  return '\n'.join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument('--out', required=True)
  ap.add_argument('--preset', default='ostrack_256_ce')
  ap.add_argument('--tiny', action='store_true', help='tiny_256_ce, batches 1-4 (a CPU check)')
  ap.add_argument('--keep', type=float, default=0.7)
  ap.add_argument('--repeats', type=int, default=10)
  ap.add_argument('--loss-steps', type=int, default=100)
  ap.add_argument('--budget-s', type=float, default=260.0, help='no item starts after this')
  ap.add_argument('--original', default=None, help="torch_original.py train-step's output")
  ap.add_argument('--data-speed', default=None, help="data_speed.py's output")
  ap.add_argument('--render-only', action='store_true')
  args = ap.parse_args(argv)
  preset = 'tiny_256_ce' if args.tiny else args.preset
  if not args.render_only:
    Matrix(args).run()
  print(render(args.out, preset, args.original, args.data_speed))
  return 0


if __name__ == '__main__':
  sys.exit(main())
