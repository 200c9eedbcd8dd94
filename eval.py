"""Evaluates an OSTrack model on a tracking benchmark and writes the official result files.

  python eval.py --config configs/ostrack_256_ce.py --checkpoint model.msgpack \
      --dataset got10k_test --data-dir /datasets/GOT-10k [--sequences A B] [--output DIR] \
      [--batch-size 8] [--config.tracker.search_factor=4.5]

With no arguments it evaluates the default training run (`python train.py`, which writes
workdirs/tiny_256_ce/model.msgpack) on the validation split of the synthetic dataset. Outputs
under --output (default workdirs/<config name>/eval/<dataset>): the raw results in the official
layout, submission.zip for GOT-10k test and TrackingNet, and report/ (summary.json, summary.txt,
per_sequence.txt, plots). The folder records its producer (provenance.json: the weights'
hash, the model and tracker config, dataset, split, data dir, batching): a run of another
producer is refused (exit status 2, one line naming the difference) unless --overwrite, which
removes the old results first. The run is resumable (same producer); bad sequences are reported
and skipped (exit status 1) unless --fail-fast. It tracks on every local device (--devices N:
the first N) and, with --multihost (as train.py), on several machines writing into one shared
--output folder. The work is ostrack_jax.tracking.evaluate.evaluate.
"""

import os
import sys

from ostrack_jax import cli
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError, OutputError, SequenceFailure

DEFAULT_CHECKPOINT = 'workdirs/tiny_256_ce/model.msgpack'


def parse_flags(argv=None):
  from ostrack_jax.datasets import registry

  p = cli.Parser('eval.py', __doc__, config='tiny_256_ce')
  p.add_argument('--checkpoint', default=DEFAULT_CHECKPOINT, help='.msgpack or PyTorch .pth')
  p.add_argument('--dataset', default='got10k_val', choices=registry.Names('eval'))
  p.add_argument('--data-dir', help='benchmark root in its native layout (default: synthetic)')
  p.add_argument(
    '--split', help='another split folder (GOT-10k val/test/train; TrackingNet TEST, TRAIN_0, ...)'
  )
  p.add_argument('--sequences', nargs='+', help='only these sequences')
  p.add_argument('--output', help='results folder (default: workdirs/<config name>/eval/<dataset>)')
  p.add_argument(
    '--batch-size',
    type=cli.positive_int,
    help='sequences in lockstep, all devices together (default: one per device; rounded up to '
    'a multiple of the device count)',
  )
  p.add_argument(
    '--devices',
    type=cli.positive_int,
    help="track on this process's first N devices (default: all of them)",
  )
  p.add_argument(
    '--batch-mode',
    default='map',
    choices=('map', 'vmap'),
    help="lockstep: 'map' (default) bit-identical to batch 1, so metrics do not depend on "
    "--batch-size; 'vmap' one batched forward per device (faster on an accelerator, boxes "
    'equal to batch 1 up to float rounding: benchmarks/RESULTS.md)',
  )
  p.add_argument(
    '--compilation-cache',
    default=os.environ.get('OSTRACK_JAX_COMPILATION_CACHE'),
    help='folder for JAX\'s persistent compilation cache (default: $OSTRACK_JAX_COMPILATION_CACHE)',
  )
  p.add_argument(
    '--decode-threads',
    type=cli.nonnegative_int,
    help='threads decoding frames ahead (default 8 per accelerator, at most one per CPU core '
    'beyond 8; 0 on CPU)',
  )
  p.add_argument(
    '--overwrite',
    action='store_true',
    help='replace the results of another producer (or unrecorded ones) in the output folder; '
    'with the same producer, track the selected sequences again',
  )
  p.add_argument('--fail-fast', action='store_true', help='stop at the first bad sequence')
  p.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
  p.add_argument('--no-progress', action='store_true', help='no progress bars')
  p.add_multihost_arguments()
  return p.parse(argv)


def main(argv=None) -> int:
  args = parse_flags(argv)
  if args.checkpoint == DEFAULT_CHECKPOINT and not os.path.exists(args.checkpoint):
    raise InputError(f'--checkpoint {args.checkpoint}: no such file (run `python train.py` first)')
  cli.initialize_multihost(args)
  # evaluate checks its input and output before importing JAX (runner imports it).
  from ostrack_jax.tracking import evaluate

  names = 'sequences split output batch_size batch_mode devices decode_threads compilation_cache'
  options = {k: getattr(args, k) for k in names.split() + ['overwrite', 'fail_fast']}
  try:
    result = evaluate.evaluate(
      args.config, args.checkpoint, args.dataset, args.data_dir, plots=not args.no_plots,
      progress=not args.no_progress, **options,
    )  # fmt: skip
  except OSError as e:  # a full disk, a lost permission (the output was checked at the start)
    raise OutputError(
      f'{fileio.describe_os_error(e)}; the results of the sequences finished before are kept '
      '(each written whole): run the same command to continue'
    ) from e
  except SequenceFailure as e:  # --fail-fast
    print(f'eval.py: {e}', file=sys.stderr)
    return 1
  return 0 if result.ok else 1


if __name__ == '__main__':
  sys.exit(cli.run(main, 'eval.py'))
