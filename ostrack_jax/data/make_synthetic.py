"""``python -m ostrack_jax.data.make_synthetic``: writes the synthetic tracking dataset.

  python -m ostrack_jax.data.make_synthetic --output DIR [--num-train 60 --num-val 20 --seed 0]

The generator is :mod:`ostrack_jax.datasets.synthetic` (GOT-10k layout; the default run makes it
on first use, so this command is for a dataset of another size or place).
"""

import sys

from ostrack_jax import cli
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError
from ostrack_jax.datasets import synthetic


def main(argv=None) -> None:
  """The generator's command; bad input is one line and status 2 (``ostrack_jax.cli``)."""
  parser = cli.Parser(
    'python -m ostrack_jax.data.make_synthetic',
    'Writes the synthetic tracking dataset (GOT-10k layout).',
  )
  parser.add_argument(
    '--output',
    default=None,
    help=f'output root (default: $OSTRACK_JAX_SYNTHETIC or {synthetic.default_root()})',
  )
  parser.add_argument('--num-train', type=cli.nonnegative_int, default=synthetic.DEFAULT_NUM_TRAIN)
  parser.add_argument('--num-val', type=cli.nonnegative_int, default=synthetic.DEFAULT_NUM_VAL)
  parser.add_argument('--num-frames', type=cli.positive_int, default=synthetic.DEFAULT_NUM_FRAMES)
  parser.add_argument('--width', type=cli.positive_int, default=synthetic.DEFAULT_FRAME_SIZE[0])
  parser.add_argument('--height', type=cli.positive_int, default=synthetic.DEFAULT_FRAME_SIZE[1])
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--overwrite', action='store_true', help='replace an existing dataset')
  args = parser.parse(argv)
  if args.num_train + args.num_val < 1:
    parser.fail(
      f'--num-train {args.num_train} --num-val {args.num_val}: need at least one sequence'
    )
  for flag, value in (('--width', args.width), ('--height', args.height)):
    if value < synthetic.MIN_FRAME_SIZE:
      parser.fail(f'{flag} {value}: frames must be at least {synthetic.MIN_FRAME_SIZE} pixels')
  root = args.output or synthetic.default_root()
  fileio.check_writable(root, f'--output {root}')
  try:
    root = synthetic.make_synthetic_dataset(
      root,
      num_train=args.num_train,
      num_val=args.num_val,
      num_frames=args.num_frames,
      frame_size=(args.width, args.height),
      seed=args.seed,
      overwrite=args.overwrite,
    )
  except FileExistsError as e:  # another dataset there (checked before writing anything)
    raise InputError(str(e)) from None
  print(
    f'synthetic dataset: {root} ({args.num_train} train, {args.num_val} val sequences '
    f'of {args.num_frames} frames)'
  )


if __name__ == '__main__':
  sys.exit(cli.run(main, 'python -m ostrack_jax.data.make_synthetic'))
