#!/usr/bin/env python3
"""Device time by kind from a ``jax.profiler`` trace: where a training step's time goes.

  python benchmarks/profile_summary.py TRACE_DIR [--hlo step.hlo.txt ...] [--top 15]

``TRACE_DIR`` is the folder given to ``jax.profiler.trace`` (or any folder below it): the newest
``*.trace.json.gz`` under it is read. That file is the profiler's Chrome trace, plain gzipped JSON
(jax 0.10 writes it beside the ``*.xplane.pb`` protobuf, which would need TensorFlow's or
xprof's protos to read). Its XLA op events (those with an ``hlo_op`` argument) are the device's
work: on a GPU the kernels on the ``/device:GPU:N`` processes, on the CPU the thunks on the
executor's threads. Events that enclose other op events (a conditional, a while loop) are not
counted themselves, their contents are, so each microsecond is counted once.

Kinds, first match wins, from the compiled HLO (``--hlo``: the text of
``jax.jit(f).lower(...).compile().as_text()``, which ``benchmarks/train_speed.py --profile``
writes beside the trace and which is found there by default; an op is classified by its own
instruction and, for a fusion, every instruction inside it):

* attention: a fused attention custom call (cuDNN's fmha), or instructions of the model's ``attn``
  module other than its qkv / proj matmuls (the attention products, softmax, CE scores);
* matmul/conv: dot, convolution, a cuBLAS / cuDNN / Triton GEMM or convolution call;
* gather/scatter (CE): gather, scatter, sort, top-k (candidate elimination and its recovery);
* optimizer: the update branch of the train step's ``lax.cond`` and the global gradient norm
  (instructions outside the model's forward and backward: no ``jvp(`` in their op name);
* norms/elementwise: any other instruction of the model (LayerNorm, GELU, residual adds,
  BatchNorm, their gradients);
* other: the rest (losses, copies, ops without HLO).

Without the HLO, op names alone decide (the GPU's kernel names say gemm / fmha / gather; the CPU's
``ynn_fusion.N`` say nothing and land in 'other'). Printed: a Markdown table (ms, share of the
device time, op count), the span from the first to the last op, the time no op ran in it
(``idle``: the device waiting on the host, launches or transfers), and the ops that took longest.
"""

import argparse
import collections
import dataclasses
import gzip
import json
import pathlib
import re
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

KINDS = (
  'attention',
  'matmul/conv',
  'gather/scatter (CE)',
  'optimizer',
  'norms/elementwise',
  'other',
)

_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_OPCODE = re.compile(r'(?:^|[\s}\])])([a-z][a-z0-9\-]*)\(')
_CALLS = re.compile(r'\bcalls=%?([\w.\-]+)')
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Instruction:
  opcode: str
  op_name: str
  target: str  # custom_call_target, '' if none
  calls: Optional[str]  # the fused computation of a fusion


def parse_hlo(text: str) -> Tuple[str, Dict[str, Dict[str, Instruction]]]:
  """(module name, computation name -> instruction name -> Instruction) of an HLO text dump."""
  module = ''
  computations: Dict[str, Dict[str, Instruction]] = {}
  current: Optional[Dict[str, Instruction]] = None
  for line in text.splitlines():
    if line.startswith('HloModule '):
      module = line.split()[1].rstrip(',')
      continue
    if current is None:
      m = _COMPUTATION.match(line)
      if m:
        current = computations.setdefault(m.group(1), {})
      continue
    if line.startswith('}'):
      current = None
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    rest = m.group(2)
    opcode = _OPCODE.search(rest)
    calls, target, op_name = _CALLS.search(rest), _TARGET.search(rest), _OP_NAME.search(rest)
    current[m.group(1)] = Instruction(
      opcode=opcode.group(1) if opcode else '',
      op_name=op_name.group(1) if op_name else '',
      target=target.group(1) if target else '',
      calls=calls.group(1) if calls else None,
    )
  return module, computations


def _inside(
  instruction: Instruction, computations: Dict[str, Dict[str, Instruction]]
) -> List[Instruction]:
  """The instruction and, for a fusion, every instruction of its fused computation (nested)."""
  out, todo, seen = [instruction], [instruction.calls], set()
  while todo:
    name = todo.pop()
    if name is None or name in seen or name not in computations:
      continue
    seen.add(name)
    for inner in computations[name].values():
      out.append(inner)
      todo.append(inner.calls)
  return out


_MATMUL_OPS = {'dot', 'convolution', 'ragged-dot'}
_GATHER_OPS = {'gather', 'scatter', 'sort', 'dynamic-slice', 'dynamic-update-slice'}
_MATMUL_TARGET = re.compile(r'gemm|cublas|conv|matmul|triton', re.IGNORECASE)
_ATTENTION_TARGET = re.compile(r'fmha|flash|attention', re.IGNORECASE)


def classify_instructions(instructions: Sequence[Instruction], training: bool = True) -> str:
  """The kind (one of KINDS) of an op made of ``instructions`` (see the module docstring).

  ``training``: the op's program has a backward pass (instructions outside it and outside the
  model are then the optimizer's; in a forward-only program they are 'other').
  """
  names = [i.op_name for i in instructions]
  attn = [n for n in names if '/attn/' in n and '/attn/qkv/' not in n and '/attn/proj/' not in n]
  if any(_ATTENTION_TARGET.search(i.target) for i in instructions) or attn:
    return 'attention'
  if any(i.opcode in _MATMUL_OPS or _MATMUL_TARGET.search(i.target) for i in instructions):
    return 'matmul/conv'
  if any(
    i.opcode in _GATHER_OPS or re.search(r'topk|top_k', i.target + i.op_name, re.IGNORECASE)
    for i in instructions
  ):
    return 'gather/scatter (CE)'
  named = [n for n in names if n]
  if training and (
    any('/cond/branch' in n for n in named)
    or (named and all('jvp(' not in n and 'OSTrack' not in n for n in named))
  ):
    return 'optimizer'
  if any('OSTrack' in n for n in named):
    return 'norms/elementwise'
  return 'other'


def classify_name(name: str) -> str:
  """The kind of an op known by its name only (no HLO): GPU kernel and XLA op names."""
  low = name.lower()
  if _ATTENTION_TARGET.search(low):
    return 'attention'
  if re.search(r'gemm|dot|conv|cublas|matmul|cutlass|xmma', low):
    return 'matmul/conv'
  if re.search(r'gather|scatter|sort|topk|top_k', low):
    return 'gather/scatter (CE)'
  if re.search(r'adam|optax|optimizer', low):
    return 'optimizer'
  if re.search(r'norm|reduce|loop_|input_|elementwise|add|multiply|fusion', low) and not (
    low.startswith('ynn_fusion')
  ):
    return 'norms/elementwise'
  return 'other'


def find_trace(path: pathlib.Path) -> pathlib.Path:
  """The newest ``*.trace.json.gz`` at or below ``path``."""
  if path.is_file():
    return path
  found = sorted(path.rglob('*.trace.json.gz'), key=lambda p: p.stat().st_mtime)
  if not found:
    raise SystemExit(f'{path}: no *.trace.json.gz below it (the jax.profiler.trace folder?)')
  return found[-1]


@dataclasses.dataclass
class Op:
  name: str
  module: str
  thread: Tuple[int, int]
  start: float  # microseconds
  dur: float


def device_ops(events: Iterable[dict]) -> List[Op]:
  """The XLA op events that do device work, with the enclosing ones (conditionals) removed.

  On a machine with ``/device:`` processes (GPU, TPU) only those count; one of their threads
  named 'XLA Ops' is used alone when present (it repeats the streams' kernels per op). A trace
  whose device events carry no ``hlo_op`` gives the kernels on the device's 'Stream' threads
  (named by kernel, without a module: classified by name).
  """
  events = list(events)
  process = {
    e['pid']: e['args']['name']
    for e in events
    if e.get('ph') == 'M' and e['name'] == 'process_name'
  }
  thread = {
    (e['pid'], e.get('tid')): e['args']['name']
    for e in events
    if e.get('ph') == 'M' and e['name'] == 'thread_name'
  }
  ops = [
    Op(
      e['args']['hlo_op'],
      e['args'].get('hlo_module', ''),
      (e['pid'], e.get('tid')),
      e['ts'],
      e['dur'],
    )
    for e in events
    if e.get('ph') == 'X' and 'hlo_op' in e.get('args', {}) and 'dur' in e
  ]
  devices = {pid for pid, name in process.items() if name.startswith('/device:')}
  if devices and not devices & {op.thread[0] for op in ops}:
    streams = {t for t, name in thread.items() if t[0] in devices and name.startswith('Stream')}
    ops = [
      Op(e['name'], '', (e['pid'], e.get('tid')), e['ts'], e['dur'])
      for e in events
      if e.get('ph') == 'X' and 'dur' in e and (e['pid'], e.get('tid')) in streams
    ]
  elif devices & {op.thread[0] for op in ops}:
    ops = [op for op in ops if op.thread[0] in devices]
    xla_ops = {t for t, name in thread.items() if t[0] in devices and name == 'XLA Ops'}
    if xla_ops:
      ops = [
        op for op in ops if op.thread in xla_ops or op.thread[0] not in {t[0] for t in xla_ops}
      ]
  leaves = []
  by_thread = collections.defaultdict(list)
  for op in ops:
    by_thread[op.thread].append(op)
  for thread_ops in by_thread.values():
    thread_ops.sort(key=lambda o: (o.start, -o.dur))
    for i, op in enumerate(thread_ops):
      nxt = thread_ops[i + 1] if i + 1 < len(thread_ops) else None
      if nxt is None or nxt.start >= op.start + op.dur:  # nothing starts inside it
        leaves.append(op)
  return leaves


def _busy(intervals: List[Tuple[float, float]]) -> float:
  """Total length of the union of (start, end) intervals."""
  total, end = 0.0, float('-inf')
  for s, e in sorted(intervals):
    if e > end:
      total += e - max(s, end)
      end = e
  return total


def summarize(trace_path: pathlib.Path, hlo_texts: Sequence[str] = ()) -> dict:
  """Device time by kind of one trace.

  Returns a dict: ``kinds`` (kind -> {'ms', 'ops'} for every kind of KINDS), ``total_ms`` (their
  sum), ``span_ms`` (first op start to last op end), ``idle_ms`` (the span's time no op ran),
  ``top`` (list of (op name, kind, ms), longest first), ``trace`` (the file read).
  """
  trace_path = find_trace(pathlib.Path(trace_path))
  with gzip.open(trace_path, 'rt') as f:
    events = json.load(f)['traceEvents']
  modules = dict(parse_hlo(text) for text in hlo_texts)
  training = {
    name: any('transpose(jvp(' in i.op_name for comp in comps.values() for i in comp.values())
    for name, comps in modules.items()
  }
  ops = device_ops(events)

  def kind_of(op: Op) -> str:
    module = op.module if op.module in modules else None
    if module is None and len(modules) == 1 and not op.module:
      module = next(iter(modules))
    if module is not None:
      computations = modules[module]
      for comp in computations.values():
        if op.name in comp:
          return classify_instructions(_inside(comp[op.name], computations), training[module])
    return classify_name(op.name)

  kinds = {k: {'ms': 0.0, 'ops': 0} for k in KINDS}
  per_op = collections.defaultdict(float)
  cache: Dict[Tuple[str, str], str] = {}
  for op in ops:
    key = (op.module, op.name)
    if key not in cache:
      cache[key] = kind_of(op)
    kinds[cache[key]]['ms'] += op.dur / 1000
    kinds[cache[key]]['ops'] += 1
    per_op[key] += op.dur / 1000
  span = (max(o.start + o.dur for o in ops) - min(o.start for o in ops)) / 1000 if ops else 0.0
  busy = _busy([(o.start, o.start + o.dur) for o in ops]) / 1000
  top = sorted(
    ((name, cache[m, name], ms) for (m, name), ms in per_op.items()), key=lambda t: -t[2]
  )
  return {
    'kinds': kinds,
    'total_ms': sum(k['ms'] for k in kinds.values()),
    'span_ms': span,
    'idle_ms': max(span - busy, 0.0),
    'top': top,
    'trace': str(trace_path),
  }


def format_table(summary: dict, top: int = 15) -> str:
  total = summary['total_ms'] or 1.0
  lines = ['| kind | ms | share | ops |', '|---|---:|---:|---:|']
  for kind in KINDS:
    k = summary['kinds'][kind]
    lines.append(f'| {kind} | {k["ms"]:.3f} | {100 * k["ms"] / total:.1f}% | {k["ops"]} |')
  n_ops = sum(k['ops'] for k in summary['kinds'].values())
  lines.append(f'| **device total** | {summary["total_ms"]:.3f} | 100% | {n_ops} |')
  span = summary['span_ms'] or 1.0
  lines += [
    '',
    f'span {summary["span_ms"]:.3f} ms (first op to last), idle {summary["idle_ms"]:.3f} ms'
    f' ({100 * summary["idle_ms"] / span:.1f}%: no op running, e.g. waiting on the host)',
  ]
  if top:
    lines += ['', '| op | kind | ms |', '|---|---|---:|']
    lines += [f'| {name} | {kind} | {ms:.3f} |' for name, kind, ms in summary['top'][:top]]
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('trace', type=pathlib.Path, help='jax.profiler.trace folder or trace file')
  parser.add_argument(
    '--hlo',
    type=pathlib.Path,
    nargs='*',
    default=None,
    help='compiled HLO text files (default: every *.hlo.txt in the trace folder)',
  )
  parser.add_argument('--top', type=int, default=15, help='longest ops listed (0: none)')
  args = parser.parse_args(argv)
  if not args.trace.exists():
    print(f'{args.trace}: no such file or folder', file=sys.stderr)
    return 2
  hlo = args.hlo
  if hlo is None:
    hlo = sorted(args.trace.glob('*.hlo.txt')) if args.trace.is_dir() else []
  for path in hlo:
    if not path.is_file():
      print(f'{path}: no such HLO file', file=sys.stderr)
      return 2
  summary = summarize(args.trace, [p.read_text() for p in hlo])
  if not summary['top']:
    print(f'{summary["trace"]}: no device op events in this trace', file=sys.stderr)
    return 1
  print(f'trace: {summary["trace"]}; HLO: {", ".join(str(p) for p in hlo) or "none (names only)"}')
  print(format_table(summary, args.top))
  return 0


if __name__ == '__main__':
  sys.exit(main())
