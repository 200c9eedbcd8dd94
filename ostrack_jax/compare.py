"""Compares trackers on one benchmark: one table and one set of plots over their result folders.

  python -m ostrack_jax.compare --dataset lasot --data-dir /data/LaSOT \
      --results OSTrack-256=workdirs/ostrack_256_ce/eval/lasot MixFormer=raw/mixformer_lasot \
      --output reports/lasot [--attributes LaSOT_Evaluation_Toolkit/annos/att] [--require-all]

Each results folder is one tracker's raw results in the benchmark's official layout (eval.py's
output, or another tracker's published results; a bare FOLDER is named after itself). Every
tracker is scored on the sequences all of them have complete results for; the others are listed
per tracker with the reason (--require-all: an error instead). Prints the table (sorted by AO
for GOT-10k, AUC otherwise) and writes table.txt, table.json and the plots to --output. The
work is ostrack_jax.tracking.compare.compare_trackers (ostrack_jax.compare_trackers).
"""

import sys

from ostrack_jax import cli


def parse_flags(argv=None):
  from ostrack_jax.datasets import registry

  p = cli.Parser('python -m ostrack_jax.compare', __doc__)
  p.add_argument('--dataset', required=True, choices=registry.Names('eval'), help='the benchmark')
  p.add_argument('--data-dir', required=True, help='benchmark root in its native layout')
  p.add_argument(
    '--results',
    required=True,
    nargs='+',
    metavar='[NAME=]FOLDER',
    help='result folders in the official layout, one per tracker',
  )
  p.add_argument('--output', required=True, help='report folder (made if needed)')
  p.add_argument(
    '--split', help='another split folder (GOT-10k val/train; TrackingNet TRAIN_0, ...)'
  )
  p.add_argument('--sequences', nargs='+', help='only these sequences')
  p.add_argument(
    '--require-all',
    action='store_true',
    help='a sequence missing or damaged in any folder is an error (default: left out, listed)',
  )
  p.add_argument(
    '--attributes',
    help='per-sequence attribute labels: a table file (header "sequence,ATTR,...", then a '
    "line per sequence) or the LaSOT toolkit's annos/att folder; adds a table and plots per "
    'attribute',
  )
  p.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
  return p.parse(argv)


def main(argv=None) -> int:
  args = parse_flags(argv)
  from ostrack_jax.tracking import compare

  comparison = compare.compare_trackers(
    args.dataset,
    args.data_dir,
    args.results,
    output=args.output,
    sequences=args.sequences,
    split=args.split,
    require_all=args.require_all,
    attributes=args.attributes,
    plots=not args.no_plots,
  )
  print(comparison.text)
  print(f'\nreport: {comparison.output}')
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main, 'python -m ostrack_jax.compare'))
