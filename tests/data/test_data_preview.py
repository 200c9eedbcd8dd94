"""The preview command writes a PNG grid of sampled pairs."""

import cv2
import numpy as np

from ostrack_jax.data import preview, transforms as T
from ostrack_jax.datasets import synthetic


def test_denormalize_inverts_normalization():
  img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  np.testing.assert_array_equal(preview.denormalize(T.to_normalized_float(img)), img)


def test_preview_cli_writes_grid(tmp_path, monkeypatch):
  monkeypatch.setenv('OSTRACK_JAX_INDEX_CACHE', str(tmp_path / 'index'))
  root = synthetic.make_synthetic_dataset(
    tmp_path / 'syn', num_train=1, num_val=1, num_frames=20, frame_size=(96, 64), seed=0
  )
  out = tmp_path / 'pairs.png'
  preview.main(['--output', str(out), '--num', '3', f'--config.data.roots.synthetic={root}'])
  grid = cv2.imread(str(out))
  # 2 columns of (128 -> 256 template + 4 + 256 search) tiles with 4-px margins; 2 rows.
  assert grid.shape == (2 * (256 + 8), 2 * (256 + 4 + 256 + 8), 3)
  green = (grid[:, :, 1] == 255) & (grid[:, :, 0] == 0) & (grid[:, :, 2] == 0)  # BGR
  assert green.sum() > 100  # the boxes are drawn
