#!/usr/bin/env python3
"""Our ONNX network file against the original's ``torch.onnx.export``, in onnxruntime on the CPU.

  python benchmarks/onnx_speed.py --ostrack-repo ../OSTrack --ref-python ../refvenv/bin/python

Exports our network (``python -m ostrack_jax.export --format onnx``'s file: ``--preset``,
seed-0 random weights; the timing does not depend on the values) and, in the reference virtual
environment (benchmarks/README.md: torch and timm 0.5.4), the original OSTrack network the
usual way: ``torch.onnx.export`` of its ``forward(template, search)`` with candidate
elimination kept (the preset's template mask, ``ce_keep_rate`` None: the configured ratios),
outputs ``score_map``, ``size_map``, ``offset_map``, ``pred_boxes``; ``--exporter`` picks the
legacy TorchScript exporter or the dynamo one. Both files are then run by this process's
onnxruntime (CPUExecutionProvider, all graph optimisations) on the same random inputs,
interleaved call by call (ours, the original's, ours, ...) so that load from other work on the
machine falls on both alike, once with one thread (``intra_op_num_threads = 1``) and once with
onnxruntime's default thread count. Reported per call: the medians of the process CPU time and
of the wall time, and their ratio ours / original; then the op table of both graphs (node count
per op type). Prints a markdown table; ``--write`` puts it into RESULTS.md.
"""

import argparse
import collections
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import results_md

BEGIN, END = '<!-- onnx_speed:begin -->', '<!-- onnx_speed:end -->'


def export_original(ostrack_repo: str, preset: str, out: str, exporter: str) -> None:
  """Runs in the reference venv: the original network through ``torch.onnx.export``."""
  import torch

  from benchmarks import torch_original as orig

  model, _ = orig.build_original(ostrack_repo, preset)
  cfg = model.cfg
  mask = orig.template_mask(model.orig, cfg, 1)
  t, s = int(cfg.DATA.TEMPLATE.SIZE), int(cfg.DATA.SEARCH.SIZE)

  class Network(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.model = model

    def forward(self, template, search):
      out = self.model(template=template, search=search, ce_template_mask=mask)
      return out['score_map'], out['size_map'], out['offset_map'], out['pred_boxes']

  args = (torch.randn(1, 3, t, t), torch.randn(1, 3, s, s))
  with torch.no_grad():
    torch.onnx.export(
      Network().eval(),
      args,
      out,
      input_names=['template', 'search'],
      output_names=['score_map', 'size_map', 'offset_map', 'pred_boxes'],
      opset_version=17 if exporter == 'legacy' else 18,
      dynamo=exporter == 'dynamo',
    )


def op_table(path: str) -> collections.Counter:
  import onnx

  return collections.Counter(
    n.op_type for n in onnx.load(path, load_external_data=False).graph.node
  )


def session(path: str, threads: int):
  import onnxruntime as ort

  options = ort.SessionOptions()
  options.log_severity_level = 3
  if threads:
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
  return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def time_interleaved(runs, repeats: int, warmup: int = 3):
  """{name: (cpu times, wall times)} of ``repeats`` rounds, each round one call of every run."""
  for fn in runs.values():
    for _ in range(warmup):
      fn()
  times = {name: ([], []) for name in runs}
  for _ in range(repeats):
    for name, fn in runs.items():
      c0, w0 = time.process_time(), time.perf_counter()
      fn()
      times[name][0].append(time.process_time() - c0)
      times[name][1].append(time.perf_counter() - w0)
  return times


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--ostrack-repo', required=True, help='a checkout of botaoye/OSTrack')
  p.add_argument('--ref-python', required=True, help='the reference venv\'s python')
  p.add_argument('--preset', default='ostrack_256_ce')
  p.add_argument('--exporter', default='legacy', choices=('legacy', 'dynamo'))
  p.add_argument('--repeats', type=int, default=30)
  p.add_argument('--threads', default='1,0', help='intra-op threads per pass; 0 = default')
  p.add_argument('--workdir', default=None, help='keep the two .onnx files here')
  p.add_argument('--write', action='store_true', help='write the table into RESULTS.md')
  p.add_argument('--export-original', default=None, help=argparse.SUPPRESS)  # the venv's job
  args = p.parse_args(argv)
  if args.export_original:
    export_original(args.ostrack_repo, args.preset, args.export_original, args.exporter)
    return 0

  import onnxruntime as ort

  from ostrack_jax.configs import get_config
  from ostrack_jax.deploy import onnx_export, onnx_tracker
  from ostrack_jax.models.ostrack import init_variables

  work = args.workdir or tempfile.mkdtemp(prefix='onnx_speed-')
  os.makedirs(work, exist_ok=True)
  ours, theirs = os.path.join(work, 'ours.onnx'), os.path.join(work, 'original.onnx')
  if not os.path.isfile(theirs):
    subprocess.run(
      [args.ref_python, __file__, '--ostrack-repo', args.ostrack_repo, '--ref-python', '-',
       '--preset', args.preset, '--exporter', args.exporter, '--export-original', theirs],
      check=True,
      cwd=REPO,
    )  # fmt: skip
  config = get_config(args.preset)
  if not os.path.isfile(ours):
    onnx_export.export_onnx(config, init_variables(config, seed=0), ours)
  t, s = int(config.model.template_size), int(config.model.search_size)
  rng = np.random.default_rng(0)
  template = rng.normal(size=(1, t, t, 3)).astype(np.float32)
  search = rng.normal(size=(1, s, s, 3)).astype(np.float32)
  feeds = {
    'ours': {'template': template, 'search': search},
    'original': {
      'template': np.ascontiguousarray(template.transpose(0, 3, 1, 2)),
      'search': np.ascontiguousarray(search.transpose(0, 3, 1, 2)),
    },
  }
  rows = []
  for threads in [int(x) for x in args.threads.split(',')]:
    sessions = {'ours': session(ours, threads), 'original': session(theirs, threads)}
    runs = {k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()}
    times = time_interleaved(runs, args.repeats)
    med = {k: [1e3 * statistics.median(v) for v in times[k]] for k in times}
    rows.append(
      f'| {threads or "default"} | {med["ours"][0]:.1f} | {med["original"][0]:.1f} | '
      f'{med["ours"][0] / med["original"][0]:.3f}x | {med["ours"][1]:.1f} | '
      f'{med["original"][1]:.1f} | {med["ours"][1] / med["original"][1]:.3f}x |'
    )
    print(rows[-1], flush=True)
  # The host side of load_onnx's step (crop, normalisation, window, decode), for scale.
  tracker = onnx_tracker.load_onnx(ours)
  print(f'load_onnx runs on {tracker.provider}', flush=True)
  frame = rng.integers(0, 256, size=(480, 854, 3), dtype=np.uint8)
  tracker.initialize(frame, (400, 200, 60, 40))
  host = []
  for _ in range(10):
    tracker.state = (400, 200, 60, 40)
    tracker.track(frame)
    host.append(tracker.last_timing['preprocess'] + tracker.last_timing['postprocess'])
  ops = {'ours': op_table(ours), 'original': op_table(theirs)}
  names = sorted(set(ops['ours']) | set(ops['original']), key=lambda n: (-ops['ours'][n], n))
  table = '\n'.join(
    [
      f'Hardware: {results_md.cpu_model()}, {os.cpu_count()} cores; onnxruntime {ort.__version__} '
      f'(CPUExecutionProvider, ORT_ENABLE_ALL); preset {args.preset}, float32, batch 1; the '
      f'original exported with torch.onnx.export ({args.exporter}); {args.repeats} interleaved '
      'calls per file after 3 warm-up calls; medians per call.',
      '',
      '| threads | ours CPU ms | original CPU ms | CPU ratio | ours wall ms | original wall ms '
      '| wall ratio |',
      '|---|---|---|---|---|---|---|',
      *rows,
      '',
      f'load_onnx\'s host work per frame (crop of an 854x480 frame, normalisation, window, decode, '
      f'map back; load_onnx on {tracker.provider}): {1e3 * statistics.median(host):.1f} ms wall.',
      '',
      f'Op table: ours {sum(ops["ours"].values())} nodes of {len(ops["ours"])} types, the '
      f'original\'s {sum(ops["original"].values())} of {len(ops["original"])}.',
      '',
      '| op | ours | original |',
      '|---|---|---|',
      *[f'| {n} | {ops["ours"][n]} | {ops["original"][n]} |' for n in names],
    ]
  )
  print(table)
  if args.write:
    results_md.write_section(
      BEGIN,
      END,
      'Our ONNX network vs the original\'s torch.onnx.export in onnxruntime',
      'benchmarks/onnx_speed.py',
      ' '.join(argv if argv is not None else sys.argv[1:]),
      table,
    )
  return 0


if __name__ == '__main__':
  sys.exit(main())
