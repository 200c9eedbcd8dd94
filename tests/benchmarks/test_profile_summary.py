"""benchmarks/profile_summary.py: device time by kind from a jax.profiler trace.

One real CPU trace of a tiny train-step-shaped program (named like the model: attention, a dense
matmul, a gather, elementwise work, a gradient and a conditional update), and synthetic GPU-shaped
event lists for what a CPU trace cannot show (device processes, the 'XLA Ops' line, nesting).
"""

import gzip
import importlib
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _import_summary():
  """benchmarks/profile_summary.py, imported with the repository on sys.path only while
  importing (as test_train_benchmarks does)."""
  saved = list(sys.path)
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  try:
    return importlib.import_module('benchmarks.profile_summary')
  finally:
    sys.path[:] = saved


profile_summary = _import_summary()


def _step(w, x, idx):
  """A train step in miniature: op names as the model's (OSTrack/.../attn/...), then AdamW-like
  work in the update branch of a lax.cond, as ostrack_jax.training.step."""

  def loss(w):
    with jax.named_scope('OSTrack'):
      with jax.named_scope('attn'):
        a = jax.nn.softmax(jnp.einsum('bqd,bkd->bqk', x, x), axis=-1) @ x
      h = jnp.tanh(a @ w) * 2.0 + 1.0
      g = jnp.take_along_axis(h, idx, axis=1)
    return jnp.mean(g**2)

  value, grad = jax.value_and_grad(loss)(w)
  new_w = jax.lax.cond(value > 0, lambda: w - 0.1 * jnp.sqrt(grad**2 + 1e-8), lambda: w)
  return value, new_w


@pytest.fixture(scope='module')
def cpu_trace(tmp_path_factory):
  folder = tmp_path_factory.mktemp('trace')
  rng = np.random.default_rng(0)
  args = (
    jnp.asarray(rng.standard_normal((32, 32)), jnp.float32),
    jnp.asarray(rng.standard_normal((2, 24, 32)), jnp.float32),
    jnp.asarray(rng.integers(0, 24, (2, 12, 1)), jnp.int32),
  )
  compiled = jax.jit(_step).lower(*args).compile()
  (folder / 'step.hlo.txt').write_text(compiled.as_text())
  jax.block_until_ready(compiled(*args))
  with jax.profiler.trace(str(folder)):
    for _ in range(3):
      jax.block_until_ready(compiled(*args))
  return folder


def test_cpu_trace_splits_by_kind_and_adds_up(cpu_trace, capsys):
  hlo = (cpu_trace / 'step.hlo.txt').read_text()
  summary = profile_summary.summarize(cpu_trace, [hlo])
  kinds = summary['kinds']
  assert set(kinds) == set(profile_summary.KINDS)
  for kind in ('attention', 'matmul/conv', 'gather/scatter (CE)', 'optimizer', 'norms/elementwise'):
    assert kinds[kind]['ops'] > 0 and kinds[kind]['ms'] > 0, kind
  assert sum(k['ms'] for k in kinds.values()) == pytest.approx(summary['total_ms'], rel=1e-12)
  # One executor thread: the ops do not overlap, so busy + idle is the span.
  assert summary['total_ms'] + summary['idle_ms'] == pytest.approx(summary['span_ms'], rel=1e-6)
  assert sum(ms for _, _, ms in summary['top']) == pytest.approx(summary['total_ms'], rel=1e-9)
  # Three runs of the same program: every op three times.
  assert sum(k['ops'] for k in kinds.values()) % 3 == 0
  # The command finds the HLO beside the trace and prints the table.
  assert profile_summary.main([str(cpu_trace), '--top', '3']) == 0
  out = capsys.readouterr().out
  assert 'step.hlo.txt' in out and '| gather/scatter (CE) |' in out and '**device total**' in out
  # Without the HLO the CPU's ynn_fusion names say nothing: no optimizer, the total unchanged.
  by_name = profile_summary.summarize(cpu_trace)
  assert by_name['kinds']['optimizer']['ops'] == 0
  assert by_name['total_ms'] == pytest.approx(summary['total_ms'], rel=1e-12)


def test_missing_trace_is_one_line(tmp_path, capsys):
  assert profile_summary.main([str(tmp_path / 'nope')]) == 2
  assert 'no such file or folder' in capsys.readouterr().err
  with pytest.raises(SystemExit, match='no \\*.trace.json.gz below it'):
    profile_summary.summarize(tmp_path)


def _write_trace(path, events):
  with gzip.open(path, 'wt') as f:
    json.dump({'traceEvents': events}, f)
  return path


def test_gpu_trace_counts_each_kernel_once(tmp_path):
  meta = [
    {'ph': 'M', 'pid': 1, 'name': 'process_name', 'args': {'name': '/host:CPU'}},
    {'ph': 'M', 'pid': 7, 'name': 'process_name', 'args': {'name': '/device:GPU:0'}},
    {'ph': 'M', 'pid': 7, 'tid': 1, 'name': 'thread_name', 'args': {'name': 'Stream #13'}},
    {'ph': 'M', 'pid': 7, 'tid': 2, 'name': 'thread_name', 'args': {'name': 'XLA Ops'}},
  ]

  def op(pid, tid, name, ts, dur):
    args = {'hlo_op': name, 'hlo_module': 'jit_step'}
    return {'ph': 'X', 'pid': pid, 'tid': tid, 'name': name, 'ts': ts, 'dur': dur, 'args': args}

  kernels = [
    ('cublas-gemm.1', 0, 40),
    ('cudnn-fmha.2', 50, 30),
    ('loop_add_fusion.3', 80, 10),
    ('gather.4', 100, 5),
    ('conditional.5', 110, 20),  # encloses the two below: not counted itself
    ('adam_update_fusion.6', 110, 8),
    ('input_reduce_fusion.7', 120, 10),
  ]
  events = meta + [op(7, 2, *k) for k in kernels]
  events += [op(7, 1, *k) for k in kernels]  # the stream repeats the XLA Ops line
  events += [op(1, 9, 'launch.1', 0, 500)]  # host work is not device time
  summary = profile_summary.summarize(_write_trace(tmp_path / 'gpu.trace.json.gz', events))
  ms = {k: round(v['ms'] * 1000) for k, v in summary['kinds'].items()}
  assert ms == {
    'attention': 30,
    'matmul/conv': 40,
    'gather/scatter (CE)': 5,
    'optimizer': 8,
    'norms/elementwise': 20,
    'other': 0,
  }
  assert summary['total_ms'] == pytest.approx(0.103)
  assert summary['span_ms'] == pytest.approx(0.130)
  assert summary['idle_ms'] == pytest.approx(0.027)  # 40-50, 90-100, 105-110, 118-120
  # Kernels without hlo_op arguments: the stream's events by their names.
  bare = [dict(e, args={}) if e.get('ph') == 'X' else e for e in events]
  bare = [e for e in bare if not (e.get('ph') == 'X' and e['tid'] == 2)]  # no XLA Ops line
  summary = profile_summary.summarize(_write_trace(tmp_path / 'bare.trace.json.gz', bare))
  assert {k: round(v['ms'] * 1000) for k, v in summary['kinds'].items()} == ms
