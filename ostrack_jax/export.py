"""``python -m ostrack_jax.export``: the command over the deploy room (:mod:`ostrack_jax.deploy`).

``python -m ostrack_jax.export --checkpoint PATH --config CONFIG --output DIR`` writes the exported
tracker, the tracker's ``init`` and ``track`` as StableHLO with its weights, into a folder
(:func:`ostrack_jax.deploy.stablehlo.export_tracker`; ``ostrack_jax.load_exported`` runs it);
with ``--format onnx`` the network alone as one ONNX file with static shapes
(:func:`ostrack_jax.deploy.onnx_export.export_onnx`; ``ostrack_jax.load_onnx`` runs it).
"""

import os
import sys

from ostrack_jax import cli
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError
from ostrack_jax.deploy import onnx_export, stablehlo


def parse_args(argv=None):
  p = cli.Parser(
    'python -m ostrack_jax.export',
    'Serialise the tracker\'s device functions (template init and per-frame '
    'track, StableHLO via jax.export, any frame size) with its weights into a '
    'folder that ostrack_jax.load_exported runs without building the Flax '
    'model; or, with --format onnx, the network as an ONNX file with static shapes for '
    'onnxruntime / TensorRT (ostrack_jax.load_onnx).',
    config='ostrack_256_ce',
  )
  p.add_argument(
    '--checkpoint',
    required=True,
    type=cli.existing_file,
    help='our model file (.msgpack) or a PyTorch OSTrack checkpoint (.pth/.pth.tar)',
  )
  p.add_argument(
    '--output',
    required=True,
    help='output folder: new, empty, or a previous export (replaced); with '
    '--format onnx the .onnx file to write',
  )
  p.add_argument(
    '--format',
    default='stablehlo',
    choices=('stablehlo', 'onnx'),
    help='stablehlo (default): the jax.export folder that load_exported runs (needs '
    'JAX); onnx: one self-contained float32 ONNX file of the network (template and search '
    'crops in, maps and box out; static shapes) that ostrack_jax.load_onnx runs with '
    'onnxruntime, cutting the crops and decoding on the host',
  )
  p.add_argument(
    '--opset',
    type=cli.positive_int,
    default=onnx_export.DEFAULT_OPSET,
    help=f'ONNX opset for --format onnx ({onnx_export.MIN_OPSET} to {onnx_export.MAX_OPSET}; '
    'default: %(default)s)',
  )
  p.add_argument(
    '--precision',
    default='fp32',
    choices=onnx_export.PRECISIONS,
    help='--format onnx: fp32 (default), or fp16 (every tensor inside the graph float16, '
    'inputs and outputs float32)',
  )
  p.add_argument(
    '--dtypes',
    default=','.join(stablehlo.DTYPES),
    help='comma-separated compute dtypes to export (default: %(default)s)',
  )
  p.add_argument(
    '--platforms',
    default=','.join(stablehlo.DEFAULT_PLATFORMS),
    help='comma-separated platforms to lower for: cpu, cuda, tpu, rocm, or '
    '"default" for this machine\'s (default: %(default)s)',
  )
  return p.parse(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  fileio.check_writable(args.output, f'--output {args.output}', is_file=args.format == 'onnx')
  if args.format != 'onnx':  # before loading the model
    try:
      stablehlo.check_output_folder(args.output)
    except FileExistsError as e:
      raise InputError(str(e)) from None
  from ostrack_jax.weights.model_file import load_checkpoint

  config = args.config
  dtypes = [d.strip() for d in args.dtypes.split(',') if d.strip()]
  platforms = (
    None
    if args.platforms == 'default'
    else [p.strip() for p in args.platforms.split(',') if p.strip()]
  )
  try:
    variables = load_checkpoint(args.checkpoint, config)
    if args.format == 'onnx':
      onnx_export.export_onnx(
        config, variables, args.output, opset=args.opset, precision=args.precision
      )
    else:
      stablehlo.export_tracker(config, variables, args.output, dtypes=dtypes, platforms=platforms)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    raise InputError(str(e)) from e
  if args.format == 'onnx':
    precision = {'fp32': 'float32', 'fp16': 'float16 inside'}[args.precision]
    print(
      f'exported {config.name} (ONNX opset {args.opset}, {precision}, network with static '
      f'shapes) to {args.output}: {os.path.getsize(args.output) / 1e6:.2f} MB'
    )
    return 0
  manifest = stablehlo.read_manifest(args.output)
  sizes = {
    name: os.path.getsize(os.path.join(args.output, name))
    for name in sorted(os.listdir(args.output))
  }
  print(
    f'exported {config.name} ({", ".join(manifest["variants"])}; platforms '
    f'{", ".join(manifest["platforms"])}; any frame size) to {args.output}:'
  )
  for name, size in sizes.items():
    print(f'  {name:24s} {size / 1e6:9.2f} MB')
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main, 'python -m ostrack_jax.export'))
