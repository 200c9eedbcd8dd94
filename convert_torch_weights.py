"""Converts PyTorch weights into an ostrack_jax model file (loads later without torch).

Released OSTrack checkpoint (all 242 keys accounted for, shapes checked against the preset):

  python convert_torch_weights.py --config configs/ostrack_256_ce.py \
      --checkpoint OSTrack_ep0300.pth.tar --output ostrack_256_ce.msgpack

timm / MAE ViT weights (backbone only; the 14x14 position grid is resized to the template and
search grids with PyTorch-exact bicubic; the head is freshly initialised):

  python convert_torch_weights.py --config configs/ostrack_256_ce.py \
      --checkpoint mae_pretrain_vit_base.pth --output mae_init_256.msgpack

Add ``--check`` to run one forward pass on random inputs after converting.
"""

import sys

from ostrack_jax import cli
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError


def main(argv=None) -> int:
  parser = cli.Parser('convert_torch_weights.py', __doc__, config=cli.REQUIRED)
  parser.add_argument(
    '--checkpoint', required=True, type=cli.existing_file, help='PyTorch .pth/.pth.tar file'
  )
  parser.add_argument('--output', required=True, help='output model file (.msgpack)')
  parser.add_argument('--seed', type=int, default=0, help='init seed of parts a ViT file lacks')
  parser.add_argument('--check', action='store_true', help='run a forward pass after converting')
  args = parser.parse(argv)
  config = args.config
  fileio.check_writable(args.output, f'--output {args.output}', is_file=True)

  from ostrack_jax.weights.convert import CheckpointError, load_torch_checkpoint
  from ostrack_jax.weights.model_file import save_variables

  try:
    variables, report = load_torch_checkpoint(
      args.checkpoint, config, seed=args.seed, return_report=True
    )
  except (CheckpointError, FileNotFoundError) as e:
    raise InputError(str(e)) from e
  print(report.summary())
  save_variables(args.output, variables, config)
  print(f'wrote {args.output} (preset {config.name})')
  if args.check:
    import numpy as np

    from ostrack_jax.models.ostrack import input_shapes, make_forward

    t_shape, s_shape = input_shapes(config)
    rng = np.random.default_rng(0)
    out = make_forward(config, variables)(
      rng.standard_normal(t_shape, dtype=np.float32), rng.standard_normal(s_shape, dtype=np.float32)
    )
    print('forward ok: pred_boxes', np.asarray(out['pred_boxes']).round(4).tolist())
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main, 'convert_torch_weights.py'))
