"""A PNG grid of sampled training pairs with their boxes drawn, to check the data by eye.

  python -m ostrack_jax.data.preview --output pairs.png [--config tiny_256_ce] [--num 16]
      [--config.data.roots.got10k=/data/GOT-10k --config.data.train_datasets="('got10k_train_full',)"]

Each row is one pair: the template crop (box in green) and the search crop (box in green,
a red cross at the box centre). The
images are de-normalized; grey ones come from the 5% joint grayscale. Uses the same sampler
as training (``ostrack_jax.data.sampler``), so what you see is what the model gets.
"""

import sys
from typing import Dict, List, Optional

import cv2
import numpy as np

from ostrack_jax.data import sampler as sampler_lib
from ostrack_jax.geometry import crop as crop_lib


def denormalize(image: np.ndarray) -> np.ndarray:
  """(S, S, 3) normalized float -> uint8 RGB."""
  return np.clip(
    (image * crop_lib.IMAGENET_STD + crop_lib.IMAGENET_MEAN) * 255.0 + 0.5, 0, 255
  ).astype(np.uint8)


def draw_pair(sample: Dict[str, np.ndarray]) -> np.ndarray:
  """One row: template (upscaled to the search height) and search with their boxes."""
  search = np.ascontiguousarray(denormalize(sample['search']))
  template = np.ascontiguousarray(denormalize(sample['template']))
  s, t = search.shape[0], template.shape[0]
  for img, anno in ((search, sample['search_anno']), (template, sample['template_anno'])):
    side = img.shape[0]
    x, y, w, h = (np.asarray(anno, np.float64) * side).tolist()
    cv2.rectangle(
      img, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (0, 255, 0), 1
    )
    c = (int(round(x + w / 2)), int(round(y + h / 2)))
    cv2.drawMarker(img, c, (255, 0, 0), cv2.MARKER_CROSS, max(4, side // 32), 1)
  template = cv2.resize(template, (s, s), interpolation=cv2.INTER_NEAREST) if t != s else template
  gap = np.full((s, 4, 3), 255, np.uint8)
  return np.concatenate([template, gap, search], axis=1)


def preview_grid(
  sampler: sampler_lib.PairSampler, indices: List[int], columns: int = 2
) -> np.ndarray:
  """uint8 RGB grid of ``draw_pair`` tiles for the given global sample indices."""
  tiles = [draw_pair(sampler(i)) for i in indices]
  h, w = tiles[0].shape[:2]
  rows = []
  for r in range(0, len(tiles), columns):
    row = tiles[r : r + columns]
    row += [np.full((h, w, 3), 255, np.uint8)] * (columns - len(row))
    rows.append(
      np.concatenate(
        [np.pad(x, ((4, 4), (4, 4), (0, 0)), constant_values=255) for x in row], axis=1
      )
    )
  return np.concatenate(rows, axis=0)


def main(argv: Optional[List[str]] = None) -> None:
  """The preview command; bad input is one line and status 2 (``ostrack_jax.cli``)."""
  from ostrack_jax import cli
  from ostrack_jax.common import fileio
  from ostrack_jax.common.errors import InputError

  parser = cli.Parser(
    'python -m ostrack_jax.data.preview',
    'PNG grid of sampled training pairs.',
    config='tiny_256_ce',
  )
  parser.add_argument('--output', required=True, help='output PNG path')
  parser.add_argument('--num', type=cli.positive_int, default=16, help='pairs to draw')
  parser.add_argument(
    '--start', type=cli.nonnegative_int, default=0, help='first global sample index'
  )
  parser.add_argument('--val', action='store_true', help='validation processing')
  args = parser.parse(argv)
  config = args.config
  fileio.check_writable(args.output, f'--output {args.output}', is_file=True, create=False)
  sampler = sampler_lib.make_sampler(config, train=not args.val)
  for s in sampler.sources:
    print(s.report.summary())
  grid = preview_grid(sampler, list(range(args.start, args.start + args.num)))
  if not cv2.imwrite(args.output, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
    raise InputError(f'--output {args.output}: could not write a PNG there')
  print(f'wrote {args.output} ({args.num} pairs)')


if __name__ == '__main__':
  from ostrack_jax import cli

  sys.exit(cli.run(main, 'python -m ostrack_jax.data.preview'))
