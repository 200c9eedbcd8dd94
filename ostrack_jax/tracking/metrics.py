"""Tracking benchmark metrics, computed exactly as the official tools do.

NumPy only. All boxes are ``xywh`` in image pixels, float64, one row per frame.

Two families, with two different IoU conventions:

* GOT-10k (the official ``got10k`` toolkit's ``report()``, which the test server follows):
  continuous coordinates (``x2 = x + w``), both boxes first clipped to the image bound from
  ``meta_info.ini``; the first frame is excluded; only frames with ``cover > 0`` count; the
  IoUs of all sequences are pooled (frame-weighted) before averaging:
  ``AO = mean(iou)``, ``SR_t = mean(iou > t)`` (strict), t in {0.5, 0.75}.
  See :func:`got10k_frame_ious` and :func:`got10k_summary`.
* One-pass evaluation as in pytracking's ``extract_results`` (used by OSTrack's analysis, and
  mirroring the LaSOT toolkit): the first prediction is replaced by the ground truth;
  pixel-inclusive IoU (``x2 = x + w - 1``, intersection ``+ 1``); invalid frames (GT w or h
  <= 0, or not visible) get IoU -1 and centre error +inf and count against the tracker, as
  the denominator is the full sequence length; success over 21 thresholds 0:0.05:1 with a
  strict ``>``, AUC = mean of the 21 points; precision over 0..50 px with ``<=``, reported
  at 20 px; normalized precision over 0:0.01:0.5, reported at 0.2. Sequences are weighted
  equally. See :func:`ope_sequence_errors`, :func:`ope_curves` and :func:`ope_summary`.
"""

import dataclasses
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

# pytracking's thresholds: success 0:0.05:1 (21 values; torch.arange's vectorised kernel makes
# 0.65 and 0.75 one ulp larger there, which changes nothing unless an IoU falls in that ulp),
# precision 0..50 px, normalized precision arange(51) / 100 (bit-identical to pytracking's).
SUCCESS_THRESHOLDS = np.arange(21, dtype=np.float64) * 0.05
PRECISION_THRESHOLDS = np.arange(0, 51, 1, dtype=np.float64)  # 51 values, pixels
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0  # 51 values
PRECISION_AT = 20  # index of 20 px
NORM_PRECISION_AT = 20  # index of 0.20


# ------------------------------------------------------------------------------- GOT-10k


def iou_continuous(
  pred_xywh: np.ndarray, gt_xywh: np.ndarray, bound_wh: Optional[Tuple[float, float]] = None
) -> np.ndarray:
  """IoU in continuous coordinates, as ``got10k.utils.metrics.rect_iou``.

  Args:
    pred_xywh, gt_xywh: (N, 4) boxes, image pixels.
    bound_wh: optional image (width, height); both boxes are first clipped to it: x to
      [0, W], then w to [0, W - x] (likewise y, h).
  Returns:
    (N,) IoU in [0, 1] (union + float eps in the denominator, as the toolkit).
  """
  a = np.array(pred_xywh, dtype=np.float64).reshape(-1, 4)
  b = np.array(gt_xywh, dtype=np.float64).reshape(-1, 4)
  if a.shape != b.shape:
    raise ValueError(f'box arrays differ in shape: {a.shape} vs {b.shape}')
  if bound_wh is not None:
    bw, bh = float(bound_wh[0]), float(bound_wh[1])
    for r in (a, b):
      r[:, 0] = np.clip(r[:, 0], 0, bw)
      r[:, 1] = np.clip(r[:, 1], 0, bh)
      r[:, 2] = np.clip(r[:, 2], 0, bw - r[:, 0])
      r[:, 3] = np.clip(r[:, 3], 0, bh - r[:, 1])
  x1 = np.maximum(a[:, 0], b[:, 0])
  y1 = np.maximum(a[:, 1], b[:, 1])
  x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
  y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
  inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
  union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
  return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def got10k_frame_ious(
  pred_xywh: np.ndarray,
  gt_xywh: np.ndarray,
  cover: Optional[np.ndarray] = None,
  bound_wh: Optional[Tuple[float, float]] = None,
) -> np.ndarray:
  """The IoUs one sequence contributes to GOT-10k's pooled AO / SR.

  Args:
    pred_xywh: (N, 4) predictions, row 0 the init box (it is ignored).
    gt_xywh: (N, 4) ground truth.
    cover: (N,) GOT-10k ``cover.label`` (0 = not visible ... 8 = fully visible); frames with
      cover 0 are dropped. None keeps every frame (a dataset without visibility labels).
    bound_wh: image (width, height) from ``meta_info.ini`` ``resolution``, or None.
  Returns:
    (M,) IoUs of frames 1.. with cover > 0.
  """
  pred = np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4)
  gt = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
  if len(pred) != len(gt):
    raise ValueError(f'{len(pred)} predicted boxes for {len(gt)} ground-truth boxes')
  ious = iou_continuous(pred[1:], gt[1:], bound_wh)
  if cover is not None:
    cover = np.asarray(cover).reshape(-1)
    if len(cover) != len(gt):
      raise ValueError(f'{len(cover)} cover labels for {len(gt)} ground-truth boxes')
    ious = ious[cover[1:] > 0]
  return ious


def got10k_summary(frame_ious: Iterable[np.ndarray]) -> Dict[str, float]:
  """AO, SR0.5, SR0.75 (fractions in [0, 1]) over the pooled IoUs of all sequences."""
  pooled = np.concatenate(
    [np.asarray(x, dtype=np.float64).reshape(-1) for x in frame_ious] or [np.zeros(0)]
  )
  if pooled.size == 0:
    return {'AO': float('nan'), 'SR0.5': float('nan'), 'SR0.75': float('nan')}
  return {
    'AO': float(np.mean(pooled)),
    'SR0.5': float(np.mean(pooled > 0.5)),
    'SR0.75': float(np.mean(pooled > 0.75)),
  }


GOT10K_SUCCESS_THRESHOLDS = np.linspace(0, 1, 101)  # the toolkit's success curve


def got10k_success_curve(frame_ious: Iterable[np.ndarray]) -> np.ndarray:
  """(101,) GOT-10k success curve: the fraction of the pooled IoUs > t for t in
  :data:`GOT10K_SUCCESS_THRESHOLDS` (strict, as the toolkit's ``_evaluate``); its mean
  approximates AO."""
  pooled = np.concatenate(
    [np.asarray(x, dtype=np.float64).reshape(-1) for x in frame_ious] or [np.zeros(0)]
  )
  if pooled.size == 0:
    return np.full(len(GOT10K_SUCCESS_THRESHOLDS), np.nan)
  return np.mean(pooled[:, None] > GOT10K_SUCCESS_THRESHOLDS[None, :], axis=0)


# ------------------------------------------------------------------ one-pass (pytracking)


def iou_inclusive(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
  """IoU with the inclusive-pixel convention of pytracking (``br = xy + wh - 1``)."""
  a = np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4)
  b = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
  tl = np.maximum(a[:, :2], b[:, :2])
  br = np.minimum(a[:, :2] + a[:, 2:] - 1.0, b[:, :2] + b[:, 2:] - 1.0)
  inter = np.prod(np.clip(br - tl + 1.0, 0, None), axis=1)
  union = np.prod(a[:, 2:], axis=1) + np.prod(b[:, 2:], axis=1) - inter
  with np.errstate(invalid='ignore', divide='ignore'):
    return inter / union


def _center_error(pred: np.ndarray, gt: np.ndarray, normalized: bool) -> np.ndarray:
  pc = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
  gc = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
  with np.errstate(invalid='ignore', divide='ignore'):  # zero-size GT: invalid, overwritten
    if normalized:
      pc = pc / gt[:, 2:]
      gc = gc / gt[:, 2:]
    return np.sqrt(np.sum((pc - gc) ** 2, axis=1))


@dataclasses.dataclass
class SequenceErrors:
  """Per-frame errors of one sequence (one-pass evaluation).

  iou: (N,) inclusive-pixel IoU, -1 on invalid frames.
  center_error: (N,) pixels, +inf on invalid frames.
  norm_center_error: (N,) -1 on invalid frames (a success, as in pytracking), +inf on LaSOT's
    not-visible frames.
  valid: (N,) bool.
  """

  iou: np.ndarray
  center_error: np.ndarray
  norm_center_error: np.ndarray
  valid: np.ndarray


def ope_sequence_errors(
  pred_xywh: np.ndarray,
  gt_xywh: np.ndarray,
  visible: Optional[np.ndarray] = None,
  dataset: str = '',
) -> SequenceErrors:
  """Per-frame IoU and centre errors of one sequence, as pytracking's ``calc_seq_err_robust``.

  Args:
    pred_xywh: (M, 4) predictions (row 0 = init box; it is replaced by the GT).
    gt_xywh: (N, 4) ground truth; NaN rows are an error.
    visible: optional (N,) bool target visibility (LaSOT: not full_occlusion and not
      out_of_view); invisible frames are invalid.
    dataset: 'lasot' applies LaSOT's length rule (longer predictions truncated, shorter ones
      an error) and forces +inf centre errors on invisible frames; other datasets truncate or
      pad with zero boxes.
  Raises:
    ValueError on NaN or negative-size predictions, NaN ground truth, or (LaSOT) too few
    predictions.
  """
  pred = np.array(pred_xywh, dtype=np.float64).reshape(-1, 4)
  gt = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
  if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
    raise ValueError('predictions contain NaN or a negative width/height')
  if np.isnan(gt).any():
    raise ValueError('ground truth contains NaN')
  # Zero-size predictions repeat the previous frame's box.
  for i in range(1, len(pred)):
    if (pred[i, 2:] == 0).any():
      pred[i] = pred[i - 1]
  if len(pred) != len(gt):
    if len(pred) > len(gt):
      pred = pred[: len(gt)]
    elif dataset == 'lasot':
      raise ValueError(f'{len(pred)} predicted boxes for {len(gt)} ground-truth boxes')
    else:
      pred = np.concatenate([pred, np.zeros((len(gt) - len(pred), 4))], axis=0)
  pred[0] = gt[0]
  valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
  if visible is not None:
    visible = np.asarray(visible, dtype=bool).reshape(-1)
    if len(visible) != len(gt):
      raise ValueError(f'{len(visible)} visibility flags for {len(gt)} ground-truth boxes')
    valid &= visible
  center = _center_error(pred, gt, normalized=False)
  norm_center = _center_error(pred, gt, normalized=True)
  iou = iou_inclusive(pred, gt)
  center[~valid] = np.inf
  norm_center[~valid] = -1.0
  iou[~valid] = -1.0
  if dataset == 'lasot' and visible is not None:
    center[~visible] = np.inf
    norm_center[~visible] = np.inf
  if np.isnan(iou).any():
    raise ValueError('IoU is NaN (degenerate boxes)')
  return SequenceErrors(iou, center, norm_center, valid)


@dataclasses.dataclass
class Curves:
  """Per-sequence curves (fractions in [0, 1]), one row per sequence."""

  success: np.ndarray  # (S, 21) over SUCCESS_THRESHOLDS, IoU > t
  precision: np.ndarray  # (S, 51) over PRECISION_THRESHOLDS, error <= t
  norm_precision: np.ndarray  # (S, 51) over NORM_PRECISION_THRESHOLDS, error <= t


def ope_curves(errors: Sequence[SequenceErrors]) -> Curves:
  """Success / precision curves of each sequence, denominators = full sequence length."""
  succ, prec, nprec = [], [], []
  for e in errors:
    n = len(e.iou)
    succ.append((e.iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / n)
    prec.append((e.center_error[:, None] <= PRECISION_THRESHOLDS[None]).sum(0) / n)
    nprec.append((e.norm_center_error[:, None] <= NORM_PRECISION_THRESHOLDS[None]).sum(0) / n)
  return Curves(
    np.array(succ).reshape(-1, 21), np.array(prec).reshape(-1, 51), np.array(nprec).reshape(-1, 51)
  )


def ope_summary(curves: Curves) -> Dict[str, float]:
  """AUC, OP50, OP75, P@20px, NP@0.2 as percentages, sequences weighted equally."""
  if len(curves.success) == 0:
    return {k: float('nan') for k in ('AUC', 'OP50', 'OP75', 'P@20', 'NP@0.2')}
  success = curves.success.mean(0)
  return {
    'AUC': float(success.mean() * 100),
    'OP50': float(success[10] * 100),
    'OP75': float(success[15] * 100),
    'P@20': float(curves.precision.mean(0)[PRECISION_AT] * 100),
    'NP@0.2': float(curves.norm_precision.mean(0)[NORM_PRECISION_AT] * 100),
  }


def format_table(
  rows: List[Tuple[str, Dict[str, float]]], columns: Sequence[str], title: str = ''
) -> str:
  """A plain-text table: first column the row name, then ``columns`` with 2 decimals."""
  names = [r[0] for r in rows]
  width = max([len(n) for n in names] + [len(title), 8])
  head = f'{title:<{width}}' + ''.join(f'{c:>10}' for c in columns)
  lines = [head, '-' * len(head)]
  for name, vals in rows:
    cells = ''.join(
      f'{vals[c]:>10.2f}' if isinstance(vals.get(c), float) else f'{str(vals.get(c, "")):>10}'
      for c in columns
    )
    lines.append(f'{name:<{width}}' + cells)
  return '\n'.join(lines)
