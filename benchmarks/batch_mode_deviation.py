#!/usr/bin/env python3
"""How far other eval.py runs' boxes and metrics are from a reference run (e.g. batch 1).

Reads finished eval.py results folders (the result files and ``report/summary.json``) and, for
each folder after the first, prints one row against the first (the reference): its metrics and
their differences (percentage points), the largest |difference| of any box coordinate (x, y, w
or h, image pixels) over the frames of each sequence, how many sequences differ at all, and the
speeds eval.py measured (tracker and end-to-end frames/s, from summary.json: those of the run
that tracked the sequences).

  python benchmarks/batch_mode_deviation.py workdirs/b1 workdirs/map4 workdirs/vmap8 \
      [--per-sequence] [--markdown]

The folders are compared on the sequences the reference scored (``per_sequence`` in its
summary.json); a sequence missing from another folder is an error. Nothing is tracked here:
run eval.py with ``--output`` per setting first (benchmarks/RESULTS.md, "Batch mode and
precision", has the commands).
"""

import argparse
import json
import pathlib
import sys
from typing import Dict, List

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ostrack_jax.tracking import report, results


class Run:
  """One results folder: its summary.json, its layout and its boxes per sequence."""

  def __init__(self, folder: str):
    self.folder = pathlib.Path(folder)
    summary_path = self.folder / 'report' / 'summary.json'
    try:
      self.summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as e:
      raise SystemExit(f'{summary_path}: cannot read an eval.py summary: {e}') from e
    self.layout = results.layout_for_dataset(self.summary['dataset'])
    self.writer = results.ResultWriter(self.folder, self.layout)

  def boxes(self, name: str) -> np.ndarray:
    """(N, 4) xywh boxes of sequence ``name``."""
    try:
      return self.writer.read(name)[0]
    except (OSError, ValueError) as e:
      raise SystemExit(f'{self.folder}: sequence {name!r}: {e}') from e

  def metric_names(self) -> List[str]:
    names = report.GOT10K_COLUMNS if self.layout == 'got10k' else ('AUC', 'P@20', 'NP@0.2')
    return [n for n in names if n in self.summary['metrics']]


def max_differences(reference: Run, other: Run) -> Dict[str, float]:
  """Sequence -> max |box coordinate difference| (px) over its frames (0.0: identical)."""
  out = {}
  for name in reference.summary['per_sequence']:
    a, b = reference.boxes(name), other.boxes(name)
    if a.shape != b.shape:
      raise SystemExit(f'{other.folder}: sequence {name!r}: {len(b)} boxes, reference {len(a)}')
    out[name] = float(np.abs(a - b).max())
  return out


def rows(runs: List[Run]):
  """The table (one row per run; the reference first) and the per-sequence differences."""
  reference = runs[0]
  names = reference.metric_names()
  table, per_sequence = [], {}
  for run in runs:
    diffs = max_differences(reference, run)
    per_sequence[str(run.folder)] = diffs
    metrics = run.summary['metrics']
    speed = run.summary.get('speed', {})
    row = {'run': run.folder.name}
    for n in names:
      row[n] = f'{metrics[n]:.2f}'
      row[f'Δ{n}'] = f'{metrics[n] - reference.summary["metrics"][n]:+.2f}'
    differing = [v for v in diffs.values() if v > 0]
    row['seq differ'] = f'{len(differing)}/{len(diffs)}'
    row['max Δbox px'] = f'{max(diffs.values()):.4f}'
    row['median Δbox px'] = f'{np.median(list(diffs.values())):.4f}'
    for key, label in (('tracker_fps', 'tracker fps'), ('end_to_end_fps', 'e2e fps')):
      row[label] = f'{speed[key]:.1f}' if speed.get(key) else '-'
    table.append(row)
  return table, per_sequence


def format_table(table: List[Dict[str, str]], markdown: bool) -> str:
  columns = list(table[0])
  if markdown:
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(r[c] for c in columns) + ' |' for r in table]
    return '\n'.join(lines)
  widths = [max(len(c), *(len(r[c]) for r in table)) for c in columns]
  lines = ['  '.join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
  lines += ['  '.join(r[c].rjust(w) for c, w in zip(columns, widths, strict=True)) for r in table]
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('reference', help='the reference results folder (e.g. batch 1)')
  p.add_argument('others', nargs='+', help='results folders compared with the reference')
  p.add_argument('--per-sequence', action='store_true', help='also each sequence\'s max Δbox')
  p.add_argument('--markdown', action='store_true', help='a Markdown table (for RESULTS.md)')
  args = p.parse_args(argv)
  runs = [Run(f) for f in [args.reference] + args.others]
  if not runs[0].summary['per_sequence']:
    raise SystemExit(f'{args.reference}: no scored sequences to compare')
  datasets = {r.summary['dataset'] for r in runs}
  if len(datasets) > 1:
    raise SystemExit(f'the folders hold results of different datasets: {sorted(datasets)}')
  table, per_sequence = rows(runs)
  print(format_table(table, args.markdown))
  if args.per_sequence:
    for folder, diffs in per_sequence.items():
      if folder == str(runs[0].folder):
        continue
      listed = ', '.join(f'{n} {v:.4f}' for n, v in diffs.items() if v > 0) or 'none differ'
      print(f'\n{folder}: max |Δbox| (px) per differing sequence: {listed}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
