"""Trains OSTrack as the original does, data-parallel over every device (and host).

  python train.py --config configs/ostrack_256_ce.py --workdir workdirs/ostrack_256_ce \
      --config.data.roots.got10k=/datasets/GOT-10k --config.data.roots.lasot=/datasets/LaSOT \
      --config.train.pretrained=/weights/mae_pretrain_vit_base.pth [--resume] [--multihost]

With no arguments it trains the tiny preset (configs/tiny_256_ce.py) on the synthetic dataset
(generated on first use) on this machine for a few minutes, into workdirs/tiny_256_ce/;
`python eval.py` then evaluates the result. Several machines: start the same command on each
with --multihost (SLURM, Open MPI, Kubernetes and Cloud TPU are detected), or with --multihost
--coordinator HOST0:PORT --num-processes N --process-id I; the workdir must be on a filesystem
all of them share. The work is ostrack_jax.training.trainer.train_and_evaluate; the run
directory's layout is described there.
"""

import os
import sys

from ostrack_jax import cli
from ostrack_jax.common import fileio


def parse_flags(argv=None):
  p = cli.Parser('train.py', __doc__, config='tiny_256_ce', training=True)
  p.add_argument('--workdir', help='run directory (default: workdirs/<config name>)')
  p.add_argument(
    '--resume', action='store_true', help='continue the latest checkpoint in --workdir'
  )
  p.add_argument('--no-progress', action='store_true', help='log lines instead of a progress bar')
  p.add_multihost_arguments()
  return p.parse(argv)


def main(argv=None) -> int:
  args = parse_flags(argv)
  workdir = args.workdir or os.path.join('workdirs', args.config.name)
  fileio.check_writable(workdir, f'--workdir {workdir}')
  cli.initialize_multihost(args)
  from ostrack_jax.training import loop, trainer

  try:
    trainer.train_and_evaluate(
      args.config, workdir, resume=args.resume, progress=not args.no_progress
    )
  except loop.NonFiniteError as e:
    print(f'train.py: {e}', file=sys.stderr)
    return 3
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main, 'train.py'))
