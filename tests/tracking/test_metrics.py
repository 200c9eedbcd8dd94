"""Benchmark metrics on hand-computed cases (official definitions; see metrics.py)."""

import numpy as np
import pytest

from ostrack_jax.tracking import metrics

# ------------------------------------------------------------------------------- GOT-10k


def test_iou_continuous_hand_values():
  a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
  b = np.array([[5, 5, 10, 10], [10, 0, 10, 10], [0, 0, 10, 5]], float)
  np.testing.assert_allclose(metrics.iou_continuous(a, b), [25 / 175, 0.0, 0.5], rtol=0, atol=1e-15)


def test_iou_continuous_bound_clips_like_the_toolkit():
  # The toolkit clips x to [0, W] and then w to [0, W - x] (it does not shorten w when x < 0).
  gt = np.array([[0, 0, 10, 10], [90, 0, 10, 10]], float)
  pred = np.array([[-5, 0, 10, 10], [95, 0, 10, 10]], float)
  np.testing.assert_allclose(metrics.iou_continuous(pred, gt), [5 / 15, 5 / 15])
  # (-5,0,10,10) -> (0,0,10,10): IoU 1; (95,0,10,10) -> (95,0,5,10): 50/100.
  np.testing.assert_allclose(metrics.iou_continuous(pred, gt, bound_wh=(100, 50)), [1.0, 0.5])


def test_got10k_first_frame_excluded_cover_filter_pooled_strict():
  gt = np.array([[0, 0, 10, 10]] * 4, float)
  pred_a = np.array(
    [
      [50, 50, 1, 1],  # frame 0: ignored although it is wrong
      [0, 0, 10, 10],  # IoU 1
      [0, 0, 10, 5],  # IoU 0.5 exactly: not a success at 0.5 (strict >)
      [40, 40, 5, 5],  # IoU 0 but cover 0: dropped
    ],
    float,
  )
  cover_a = np.array([8, 8, 8, 0])
  ious_a = metrics.got10k_frame_ious(pred_a, gt, cover_a)
  np.testing.assert_array_equal(ious_a, [1.0, 0.5])
  # A second sequence with a single IoU-0 frame: pooled AO = 1.5 / 3, not mean(0.75, 0).
  gt_b = np.array([[0, 0, 10, 10]] * 2, float)
  pred_b = np.array([[0, 0, 10, 10], [20, 20, 10, 10]], float)
  ious_b = metrics.got10k_frame_ious(pred_b, gt_b, None)
  s = metrics.got10k_summary([ious_a, ious_b])
  assert s['AO'] == pytest.approx(0.5)
  assert s['SR0.5'] == pytest.approx(1 / 3)
  assert s['SR0.75'] == pytest.approx(1 / 3)


def test_got10k_sr075_strict():
  gt = np.array([[0, 0, 4, 1]] * 2, float)
  pred = np.array([[0, 0, 4, 1], [0, 0, 3, 1]], float)  # IoU 3/4 exactly
  ious = metrics.got10k_frame_ious(pred, gt, np.array([1, 1]))
  assert ious[0] == 0.75
  s = metrics.got10k_summary([ious])
  assert s['SR0.75'] == 0.0 and s['SR0.5'] == 1.0


def test_got10k_length_mismatch_raises():
  with pytest.raises(ValueError, match='3 predicted boxes for 2'):
    metrics.got10k_frame_ious(np.zeros((3, 4)), np.ones((2, 4)))


# ------------------------------------------------------------------ one-pass (pytracking)


def test_inclusive_iou_hand_values():
  a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
  b = np.array([[5, 5, 10, 10], [10, 0, 10, 10]], float)
  # br = xy + wh - 1: [0,9] and [5,14] -> 5 pixels overlap per axis.
  np.testing.assert_allclose(metrics.iou_inclusive(a, b), [25 / 175, 0.0])


def _four_frame_sequence():
  gt = np.array(
    [
      [0, 0, 10, 10],
      [0, 0, 10, 10],
      [0, 0, 0, 10],  # invalid (w = 0)
      [0, 0, 10, 10],
    ],
    float,
  )
  pred = np.array(
    [
      [70, 70, 3, 3],  # replaced by the GT: IoU 1, error 0
      [0, 0, 10, 5],  # IoU 0.5; centres (4.5, 2) vs (4.5, 4.5): error 2.5, norm 0.25
      [0, 0, 10, 3],  # invalid frame: IoU -1, error inf, norm -1
      [30, 0, 0, 10],  # zero width: replaced by the previous box (0,0,10,3): IoU 0.3
    ],
    float,
  )
  return pred, gt


def test_ope_sequence_errors_hand_values():
  pred, gt = _four_frame_sequence()
  e = metrics.ope_sequence_errors(pred, gt)
  np.testing.assert_allclose(e.iou, [1.0, 0.5, -1.0, 0.3])
  # frame 3: pred (0,0,10,3) centre (4.5, 1), gt centre (4.5, 4.5): error 3.5, norm 0.35.
  np.testing.assert_allclose(e.center_error, [0.0, 2.5, np.inf, 3.5])
  np.testing.assert_allclose(e.norm_center_error, [0.0, 0.25, -1.0, 0.35])
  np.testing.assert_array_equal(e.valid, [True, True, False, True])


def test_ope_curves_and_summary_hand_values():
  pred, gt = _four_frame_sequence()
  c = metrics.ope_curves([metrics.ope_sequence_errors(pred, gt)])
  # IoU 1 beats 20 thresholds (not 1.0), 0.5 beats 0..0.45 (10), 0.3 beats 0..0.25 (6).
  assert c.success.shape == (1, 21)
  assert c.success[0].sum() * 4 == pytest.approx(20 + 10 + 6)
  s = metrics.ope_summary(c)
  assert s['AUC'] == pytest.approx(36 / 4 / 21 * 100)
  assert s['OP50'] == pytest.approx(25.0)  # only IoU 1 is > 0.5
  assert s['OP75'] == pytest.approx(25.0)
  # errors 0, 2.5, inf, 3.5: three <= 20 px; the invalid frame counts against (denominator 4).
  assert s['P@20'] == pytest.approx(75.0)
  # normalized 0, 0.25, -1 (success!), 0.35: two <= 0.2.
  assert s['NP@0.2'] == pytest.approx(50.0)
  assert c.precision[0, 2] == pytest.approx(0.25)  # only error 0 <= 2 px
  assert c.precision[0, 3] == pytest.approx(0.5)  # 0 and 2.5 <= 3 px
  assert c.precision[0, 4] == pytest.approx(0.75)  # and 3.5 <= 4 px


def test_precision_threshold_inclusive_and_success_strict():
  gt = np.array([[0, 0, 10, 10]] * 2, float)
  pred = np.array([[0, 0, 10, 10], [3, 0, 10, 10]], float)  # centre error exactly 3 px
  e = metrics.ope_sequence_errors(pred, gt)
  assert e.center_error[1] == 3.0
  c = metrics.ope_curves([e])
  assert c.precision[0, 3] == 1.0 and c.precision[0, 2] == 0.5
  # IoU 70/130 = 0.538..: above 0.5 but not above 0.55.
  assert c.success[0, 10] == 1.0 and c.success[0, 11] == 0.5


def test_ope_lasot_invisible_frames_fail_normalized_precision():
  gt = np.array([[0, 0, 10, 10]] * 3, float)
  pred = gt.copy()
  visible = np.array([True, True, False])
  e_other = metrics.ope_sequence_errors(pred, gt, visible)
  e_lasot = metrics.ope_sequence_errors(pred, gt, visible, dataset='lasot')
  assert e_other.norm_center_error[2] == -1.0  # pytracking: a success
  assert e_lasot.norm_center_error[2] == np.inf  # LaSOT: a failure
  assert e_lasot.iou[2] == -1.0
  s = metrics.ope_summary(metrics.ope_curves([e_lasot]))
  assert s['NP@0.2'] == pytest.approx(200 / 3)
  assert s['AUC'] == pytest.approx(2 / 3 * 20 / 21 * 100)


def test_ope_lengths_and_bad_predictions():
  gt = np.array([[0, 0, 10, 10]] * 3, float)
  with pytest.raises(ValueError):
    metrics.ope_sequence_errors(gt[:2], gt, dataset='lasot')
  e = metrics.ope_sequence_errors(gt[:2], gt)  # padded with zero boxes
  assert len(e.iou) == 3 and e.iou[2] == 0.0
  e = metrics.ope_sequence_errors(np.concatenate([gt, gt]), gt)  # truncated
  assert len(e.iou) == 3
  bad = gt.copy()
  bad[1, 2] = -1
  with pytest.raises(ValueError, match='negative'):
    metrics.ope_sequence_errors(bad, gt)
  nan_gt = gt.copy()
  nan_gt[1] = np.nan
  with pytest.raises(ValueError, match='NaN'):
    metrics.ope_sequence_errors(gt, nan_gt)


def test_ope_sequences_weighted_equally():
  gt1 = np.array([[0, 0, 10, 10]] * 2, float)
  gt2 = np.array([[0, 0, 10, 10]] * 4, float)
  far = np.array([100, 100, 10, 10], float)
  e1 = metrics.ope_sequence_errors(gt1, gt1)  # all IoU 1
  e2 = metrics.ope_sequence_errors(np.stack([gt2[0]] + [far] * 3), gt2)  # 1 of 4 frames
  s = metrics.ope_summary(metrics.ope_curves([e1, e2]))
  assert s['OP50'] == pytest.approx((100 + 25) / 2)


def test_thresholds_match_pytracking():
  assert len(metrics.SUCCESS_THRESHOLDS) == 21
  assert metrics.SUCCESS_THRESHOLDS[-1] == pytest.approx(1.0)
  assert metrics.PRECISION_THRESHOLDS[metrics.PRECISION_AT] == 20
  assert metrics.NORM_PRECISION_THRESHOLDS[metrics.NORM_PRECISION_AT] == pytest.approx(0.2)
  assert len(metrics.NORM_PRECISION_THRESHOLDS) == 51
