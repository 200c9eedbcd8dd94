"""Losses and the Gaussian target against the original's values (tests/fixtures/losses, computed by
the original OSTrack actor on the tiny fixture model's outputs at keep ratio 0.7) and worked
examples of the Gaussian radius and heatmap computed by hand."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ostrack_jax.data import transforms
from ostrack_jax.training import losses

# Jitted, as the train step runs them: one program per call shape (op by op, every operation of
# a hand-computed example was a program of its own).
focal_loss = jax.jit(losses.focal_loss)
box_losses = jax.jit(losses.box_losses)


@pytest.fixture(scope='module')
def loss_fixture(fixtures_dir):
  data = np.load(fixtures_dir / 'losses' / 'tiny256_loss.npz')
  forward = np.load(fixtures_dir / 'tiny256' / 'forward_keep0.7.npz')
  summary = json.loads((fixtures_dir / 'losses' / 'loss_summary.json').read_text())['tiny256']
  return data, forward, summary


def test_heatmap_matches_original_bit_for_bit(loss_fixture):
  data, _, _ = loss_fixture
  heatmap = transforms.gaussian_heatmap(data['search_anno'][-1], 16)
  assert heatmap.shape == (2, 16, 16, 1) and heatmap.dtype == np.float32
  np.testing.assert_array_equal(heatmap[..., 0], data['gt_heatmap'])


def test_losses_match_original(loss_fixture):
  data, forward, summary = loss_fixture
  anno = data['search_anno'][-1]
  outputs = {
    'pred_boxes': jnp.asarray(forward['pred_boxes'][:, 0]),
    'score_map': jnp.asarray(forward['score_map'].transpose(0, 2, 3, 1)),
  }  # NCHW -> NHWC
  with jax.default_matmul_precision('highest'):
    total, metrics = jax.jit(losses.ostrack_loss)(
      outputs, jnp.asarray(anno), jnp.asarray(transforms.gaussian_heatmap(anno, 16))
    )
  # float32 sums over 512 cells in a different order: 1e-6 relative.
  for name in ('Loss/total', 'Loss/giou', 'Loss/l1', 'Loss/location', 'IoU'):
    np.testing.assert_allclose(float(metrics[name]), summary[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(float(metrics[name]), float(data[name.replace('/', '_')]), rtol=1e-6)
  np.testing.assert_allclose(float(total), float(data['loss_total']), rtol=1e-6)
  assert float(data['giou_weight']) == 2.0 and float(data['l1_weight']) == 5.0


@pytest.mark.parametrize('size, raw, radius', [(0.25, 1.093, 1), (0.1, None, 0), (0.9, None, 3)])
def test_radius_worked_examples(size, raw, radius):
  cells = size * 16
  if raw is not None:
    assert abs(float(transforms.gaussian_radius(cells, cells)) - raw) < 5e-4
  assert int(transforms.heatmap_radius(cells, cells)) == radius
  # The bug version divides every root by 2; the min is r3 for these square boxes:
  # r3 = (b3 + sqrt(b3^2 - 4 a3 c3)) / 2, a3 = 2.8, b3 = -1.4 * 2s, c3 = -0.3 s^2.
  s = cells
  r3 = (-2.8 * s + math.sqrt((2.8 * s) ** 2 + 4 * 2.8 * 0.3 * s * s)) / 2
  assert abs(float(transforms.gaussian_radius(s, s)) - r3) < 1e-4 * max(1, r3)


def test_centred_heatmaps_worked_examples():
  anno = np.array(
    [
      [0.375, 0.375, 0.25, 0.25],  # w = h = 0.25 centred at 0.5: r = 1
      [0.45, 0.45, 0.1, 0.1],  # r = 0: a single 1
      [0.05, 0.05, 0.9, 0.9],
    ],  # r = 3: 7x7 support
    np.float32,
  )
  heatmap = transforms.gaussian_heatmap(anno, 16)[..., 0]
  for b, r in enumerate((1, 0, 3)):
    assert heatmap[b, 8, 8] == 1.0 and np.sum(heatmap[b] == 1.0) == 1
    ys, xs = np.nonzero(heatmap[b])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8 - r, 8 + r, 8 - r, 8 + r)
  # sigma = 3/6 = 0.5: the 4-neighbours are exp(-1 / (2 * 0.25)) = e^-2, diagonals e^-4.
  np.testing.assert_allclose(heatmap[0, 7, 8], np.exp(-2.0), rtol=1e-7)
  np.testing.assert_allclose(heatmap[0, 7, 7], np.exp(-4.0), rtol=1e-7)


def test_heatmap_centre_rounds_half_to_even_and_clips_at_border():
  # centre x = 0.5 * 16 + ... : box_f centre 2.5 -> 2 (half to even), 3.5 -> 4.
  anno = np.array([[2.5 / 16 - 0.05, 3.5 / 16 - 0.05, 0.1, 0.1]], np.float32)
  cx = np.float32(anno[0, 0] * 16) + np.float32(anno[0, 2] * 16) / np.float32(2)
  heatmap = transforms.gaussian_heatmap(anno, 16)[0, ..., 0]
  (ys, xs) = np.nonzero(heatmap == 1.0)
  assert xs[0] == int(np.round(cx)) and ys.size == 1
  # Centre at cell (0, 0) with r = 1: the window is clipped to rows/cols 0..1.
  corner = transforms.gaussian_heatmap(np.array([[-0.125, -0.125, 0.25, 0.25]], np.float32), 16)[
    0, ..., 0
  ]
  ys, xs = np.nonzero(corner)
  assert corner[0, 0] == 1.0 and ys.max() == 1 and xs.max() == 1 and ys.size == 4
  np.testing.assert_allclose(corner[1, 1], np.exp(-4.0), rtol=1e-7)


def test_focal_loss_hand_computed():
  score = np.full((1, 2, 2, 1), 0.5, np.float32)
  score[0, 0, 0, 0] = 0.8
  gt = np.zeros((1, 2, 2, 1), np.float32)
  gt[0, 0, 0, 0] = 1.0
  gt[0, 0, 1, 0] = 0.5
  pos = math.log(0.8) * 0.2**2
  neg = math.log(0.5) * 0.25 * (0.5**4) + 2 * math.log(0.5) * 0.25
  np.testing.assert_allclose(
    float(focal_loss(jnp.asarray(score), jnp.asarray(gt))), -(pos + neg), rtol=1e-6
  )
  # No positive: -neg, not divided.
  gt[0, 0, 0, 0] = 0.0
  neg0 = math.log(0.2) * 0.64 + math.log(0.5) * 0.25 * (0.5**4) + 2 * math.log(0.5) * 0.25
  np.testing.assert_allclose(
    float(focal_loss(jnp.asarray(score), jnp.asarray(gt))), -neg0, rtol=1e-6
  )


def test_box_losses_hand_computed_and_gt_clamped():
  pred = jnp.array([[0.5, 0.5, 0.2, 0.2]])  # xyxy 0.4..0.6
  gt = jnp.array([[0.5, 0.4, 0.7, 0.2]])  # xyxy 0.5,0.4,1.2,0.6 -> clamped x2 = 1.0
  giou, l1, iou = box_losses(pred, gt)
  inter, union, enclosing = 0.1 * 0.2, 0.04 + 0.5 * 0.2 - 0.1 * 0.2, 0.6 * 0.2
  np.testing.assert_allclose(float(iou), inter / union, rtol=1e-5)
  np.testing.assert_allclose(
    float(giou), 1 - (inter / union - (enclosing - union) / enclosing), rtol=1e-5
  )
  np.testing.assert_allclose(float(l1), (0.1 + 0.0 + 0.4 + 0.0) / 4, rtol=1e-5)


def test_nan_prediction_zeroes_giou_and_iou_like_the_original():
  pred = jnp.array([[jnp.nan, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
  gt = jnp.array([[0.4, 0.4, 0.2, 0.2], [0.4, 0.4, 0.2, 0.2]])
  giou, l1, iou = box_losses(pred, gt)
  assert float(giou) == 0.0 and float(iou) == 0.0 and np.isnan(float(l1))
