"""The synthetic dataset's command, ``python -m ostrack_jax.data.synthetic --output DIR``; the
generator lives in :mod:`ostrack_jax.datasets.synthetic` (re-exported here), beside the other
dataset layouts."""

import sys

from ostrack_jax.common import cli, fileio
from ostrack_jax.datasets.synthetic import (  # noqa: F401  (re-exported)
  DEFAULT_FRAME_SIZE,
  DEFAULT_NUM_FRAMES,
  DEFAULT_NUM_TRAIN,
  DEFAULT_NUM_VAL,
  FORMAT_VERSION,
  MIN_FRAME_SIZE,
  check_named_root,
  default_root,
  ensure_synthetic_dataset,
  make_synthetic_dataset,
)


def main(argv=None) -> None:
  """The generator's command; bad input is one line and status 2 (``ostrack_jax.common.cli``)."""
  parser = cli.Parser(
    'python -m ostrack_jax.data.synthetic',
    'Writes the synthetic tracking dataset (GOT-10k layout).',
  )
  parser.add_argument(
    '--output',
    default=None,
    help=f'output root (default: $OSTRACK_JAX_SYNTHETIC or {default_root()})',
  )
  parser.add_argument('--num-train', type=cli.nonnegative_int, default=DEFAULT_NUM_TRAIN)
  parser.add_argument('--num-val', type=cli.nonnegative_int, default=DEFAULT_NUM_VAL)
  parser.add_argument('--num-frames', type=cli.positive_int, default=DEFAULT_NUM_FRAMES)
  parser.add_argument('--width', type=cli.positive_int, default=DEFAULT_FRAME_SIZE[0])
  parser.add_argument('--height', type=cli.positive_int, default=DEFAULT_FRAME_SIZE[1])
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--overwrite', action='store_true', help='replace an existing dataset')
  args = parser.parse(argv)
  if args.num_train + args.num_val < 1:
    parser.fail(
      f'--num-train {args.num_train} --num-val {args.num_val}: need at least one sequence'
    )
  for flag, value in (('--width', args.width), ('--height', args.height)):
    if value < MIN_FRAME_SIZE:
      parser.fail(f'{flag} {value}: frames must be at least {MIN_FRAME_SIZE} pixels')
  root = args.output or default_root()
  fileio.check_writable(root, f'--output {root}')
  try:
    root = make_synthetic_dataset(
      root,
      num_train=args.num_train,
      num_val=args.num_val,
      num_frames=args.num_frames,
      frame_size=(args.width, args.height),
      seed=args.seed,
      overwrite=args.overwrite,
    )
  except FileExistsError as e:  # another dataset there (checked before writing anything)
    raise cli.InputError(str(e)) from None
  print(
    f'synthetic dataset: {root} ({args.num_train} train, {args.num_val} val sequences '
    f'of {args.num_frames} frames)'
  )


if __name__ == '__main__':
  sys.exit(cli.run(main, 'python -m ostrack_jax.data.synthetic'))
