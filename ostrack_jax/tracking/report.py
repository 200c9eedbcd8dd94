"""The evaluation report: metrics read back from the result files, the tables, the plots, the
speed summary, and ``report/{summary.json, summary.txt, per_sequence.txt, *_plot.png}``.

Metrics are computed from the written files (never from the tracker's memory), so a report of a
resumed run reads like one of an uninterrupted run; only complete files count
(``ResultWriter.check``). GOT-10k AO / SR0.5 / SR0.75 as the official toolkit (pooled IoUs,
first frame out, cover > 0 only); AUC / OP50 / OP75 / P@20 / NP@0.2 as pytracking's analysis
(``ostrack_jax.tracking.metrics``). NumPy (and matplotlib for the plots) only.
"""

import io
import json
import pathlib
from typing import Dict, List, Optional, Sequence

import numpy as np

from ostrack_jax.fileio import atomic_write_bytes, atomic_write_text
from ostrack_jax.tracking import metrics

GOT10K_COLUMNS = ('AO', 'SR0.5', 'SR0.75')
OPE_COLUMNS = ('AUC', 'OP50', 'OP75', 'P@20', 'NP@0.2')


def compute_metrics(sequences, writer, layout: str, dataset: str) -> Dict[str, object]:
  """Metrics of every finished sequence with full ground truth, read back from the files.

  Returns ``{'summary': {metric: value in %}, 'rows': [(name, row)], 'curves':
  metrics.OpeCurves or None, 'problems': {name: message}}``; a sequence whose results or
  ground truth cannot be scored (NaN, malformed) is in ``problems``, never in the metrics.
  """
  got_ious, errors, rows, problems = [], [], [], {}
  for seq in sequences:
    if not seq.has_full_gt or not writer.is_done(seq.name, len(seq)):
      continue
    try:
      row = sequence_metrics(seq, writer, layout, dataset, got_ious, errors)
    except ValueError as e:  # NaN or malformed results / ground truth
      problems[seq.name] = f'sequence {seq.name!r}: no metrics: {e}'
      continue
    rows.append((seq.name, row))
  summary: Dict[str, float] = {}
  if layout == 'got10k' and got_ious:
    summary.update({k: v * 100 for k, v in metrics.got10k_summary(got_ious).items()})
  curves = metrics.ope_curves(errors) if errors else None
  if curves is not None:
    summary.update(metrics.ope_summary(curves))
  return {'summary': summary, 'rows': rows, 'curves': curves, 'problems': problems}


def sequence_metrics(seq, writer, layout, dataset, got_ious, errors) -> Dict[str, float]:
  """One sequence's row; appends to ``got_ious`` / ``errors`` only when everything parsed."""
  seq.check_ground_truth()  # a NaN box: the file and line, no metrics
  boxes, _ = writer.read(seq.name)
  row = {}
  ious = None
  if layout == 'got10k':
    cover = seq.cover
    if cover is None and seq.visible is not None:
      cover = seq.visible.astype(np.int64)
    ious = metrics.got10k_frame_ious(boxes, seq.gt_xywh, cover, seq.image_size)
    row['AO'] = float(np.mean(ious) * 100) if len(ious) else float('nan')
  e = metrics.ope_sequence_errors(
    boxes, seq.gt_xywh, seq.visible, dataset='lasot' if dataset == 'lasot' else ''
  )
  row.update(metrics.ope_summary(metrics.ope_curves([e])))
  row['frames'] = len(seq)
  if ious is not None:
    got_ious.append(ious)
  errors.append(e)
  return row


def save_plots(curves, report_dir: pathlib.Path, label: str) -> List[pathlib.Path]:
  """Success, precision and normalized precision plots (mean over sequences) as PNG files."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  success = curves.success.mean(0)
  precision = curves.precision.mean(0)
  norm_precision = curves.norm_precision.mean(0)
  specs = [
    ('success_plot.png', metrics.SUCCESS_THRESHOLDS, success, 'Overlap threshold',
     'Success rate', f'{label} [AUC {success.mean() * 100:.1f}]', 'Success plot'),
    ('precision_plot.png', metrics.PRECISION_THRESHOLDS, precision,
     'Location error threshold (px)', 'Precision',
     f'{label} [P@20 {precision[metrics.PRECISION_AT] * 100:.1f}]', 'Precision plot'),
    ('norm_precision_plot.png', metrics.NORM_PRECISION_THRESHOLDS, norm_precision,
     'Normalized location error threshold', 'Normalized precision',
     f'{label} [NP@0.2 {norm_precision[metrics.NORM_PRECISION_AT] * 100:.1f}]',
     'Normalized precision plot'),
  ]  # fmt: skip
  out = []
  for name, x, y, xlabel, ylabel, legend, title in specs:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(x, y, linewidth=2, label=legend)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(x[0], x[-1]), ylim=(0, 1))
    ax.grid(True, alpha=0.3)
    ax.legend(loc='lower left' if 'Success' in title else 'lower right')
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    atomic_write_bytes(report_dir / name, buf.getvalue())
    out.append(report_dir / name)
  return out


def speed_summary(runs, writer, sequences) -> Dict[str, Optional[float]]:
  """Tracker and end-to-end frames/s of this run (or tracker frames/s from the time files).

  Tracking is pipelined (the device works while the host decodes and dispatches), so the
  device time of one frame is not observed here: ``benchmarks/track_speed.py`` measures
  device-only throughput.
  """
  if runs:
    frames = sum(len(r.boxes) for r in runs)
    track = sum(float(r.times.sum()) for r in runs)
    e2e = track + sum(float(r.decode_times.sum()) for r in runs)
    return {
      'source': 'this run',
      'frames': frames,
      'tracker_fps': frames / track if track > 0 else None,
      'end_to_end_fps': frames / e2e if e2e > 0 else None,
    }
  total_t, total_n = 0.0, 0
  for s in sequences:
    if writer.is_done(s.name, len(s)):
      _, t = writer.read(s.name)
      if t is not None:
        total_t += float(t.sum())
        total_n += len(t)
  return {
    'source': 'time files',
    'frames': total_n,
    'tracker_fps': total_n / total_t if total_t > 0 else None,
    'end_to_end_fps': None,
  }


def format_speed(speed) -> str:
  """One line: tracker and end-to-end frames/s ('-' where unknown)."""

  def f(v):
    return f'{v:8.1f}' if v else '       -'

  return (
    f'speed ({speed["source"]}, {speed["frames"]} frames): '
    f'tracker {f(speed["tracker_fps"])} fps '
    f'| end-to-end (with decoding) {f(speed["end_to_end_fps"])} fps'
  )


def format_placement(placement) -> str:
  """One line: where this run tracked (devices, processes, frames per device)."""
  if not placement['devices']:
    return f'nothing tracked in this run ({placement["processes"]} process(es))'
  return (
    f'tracked on {placement["devices"]} device(s) in {placement["processes"]} process(es); '
    f'frames per device: {", ".join(map(str, placement["frames_per_device"])) or "-"}'
  )


def write_report(
  out_dir: pathlib.Path,
  *,
  label: str,
  dataset: str,
  layout: str,
  sequences: Sequence,
  writer,
  runs: Sequence,
  failures: Dict[str, str],
  header: Dict[str, object],
  plots: bool = True,
  placement: Optional[Dict[str, object]] = None,
  speed: Optional[Dict[str, object]] = None,
) -> Dict[str, object]:
  """Scores the finished sequences and writes ``out_dir/report/``.

  ``placement``: where this run tracked (``devices``, ``processes``, ``frames_per_device``;
  saved and printed in one line); ``speed``: the speed figures when they do not come from
  ``runs`` alone (several processes), else :func:`speed_summary` of ``runs``.

  ``failures`` (sequence -> message) is completed in place with the sequences whose results
  are unusable or cannot be scored. Returns the payload of ``summary.json`` (``header``, the
  metrics, the speed, the failures, the per-sequence rows) with the printed text under
  ``'text'`` (not saved in the JSON).
  """
  report_dir = out_dir / 'report'
  report_dir.mkdir(parents=True, exist_ok=True)
  # Only complete result files count; a damaged one (e.g. a sequence that failed again after
  # its old files were found cut short) is reported, never read.
  finished = []
  for s in sequences:
    problem = writer.check(s.name, len(s))
    if problem is None:
      finished.append(s.name)
    elif writer.has_files(s.name) and s.name not in failures:
      failures[s.name] = f'sequence {s.name!r}: unusable results: {problem}'
  result = compute_metrics(sequences, writer, layout, dataset)
  summary = result['summary']
  failures.update(result['problems'])
  text = []
  if result['rows']:
    columns = (['AO'] if layout == 'got10k' else []) + list(OPE_COLUMNS) + ['frames']
    text.append(metrics.format_table(result['rows'], columns, title='sequence'))
    atomic_write_text(report_dir / 'per_sequence.txt', text[-1] + '\n')
  speed = speed or speed_summary(runs, writer, sequences)
  if summary:
    columns = (list(GOT10K_COLUMNS) if layout == 'got10k' else []) + list(OPE_COLUMNS)
    text.append(
      metrics.format_table(
        [(label, summary)],
        [c for c in columns if c in summary],
        title=f'{dataset} ({len(result["rows"])} seq)',
      )
    )
  text.append(format_speed(speed))
  if placement is not None:
    text[-1] += '\n' + format_placement(placement)
  if failures:
    text.append(
      f'{len(failures)} sequence(s) failed:\n' + '\n'.join(f'  {m}' for m in failures.values())
    )
  report = '\n\n'.join(text)
  atomic_write_text(report_dir / 'summary.txt', report + '\n')
  payload = dict(header)
  payload.update(
    sequences_finished=len(finished),
    sequences_total=len(sequences),
    metrics=summary,
    speed=speed,
    **(placement or {}),
    failures=failures,
    per_sequence={n: r for n, r in result['rows']},
  )
  atomic_write_text(report_dir / 'summary.json', json.dumps(payload, indent=1) + '\n')
  if result['curves'] is not None and plots:
    save_plots(result['curves'], report_dir, label)
  return dict(payload, text=report, finished=finished)
