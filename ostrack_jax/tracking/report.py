"""The evaluation report: metrics read back from the result files, the tables, the plots, the
speed summary, and ``report/{summary.json, summary.txt, per_sequence.txt, *_plot.png}``.

Metrics are computed from the written files (never from the tracker's memory), so a report of a
resumed run reads like one of an uninterrupted run; only complete files count
(``ResultWriter.check``). GOT-10k AO / SR0.5 / SR0.75 as the official toolkit (pooled IoUs,
first frame out, cover > 0 only); AUC / OP50 / OP75 / P@20 / NP@0.2 as pytracking's analysis
(``ostrack_jax.tracking.metrics``). NumPy (and matplotlib for the plots) only.

The counts add up: every sequence of the run is in exactly one of the table (scored), the
sequences tracked without metrics (no ground truth after the first frame: a test split, scored
by its server, or a 1-frame sequence; each with its reason) and the failures (with theirs).
"""

import io
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ostrack_jax.common.fileio import atomic_write_bytes, atomic_write_text
from ostrack_jax.tracking import metrics

GOT10K_COLUMNS = ('AO', 'SR0.5', 'SR0.75')
OPE_COLUMNS = ('AUC', 'OP50', 'OP75', 'P@20', 'NP@0.2')
# The files of a report: REPORT_DIR inside the results folder holds REPORT_FILES (the plots only
# when asked for and something was scored); provenance.py finds them there to replace them.
REPORT_DIR = 'report'
SUMMARY_JSON, SUMMARY_TXT, PER_SEQUENCE_TXT = 'summary.json', 'summary.txt', 'per_sequence.txt'
PLOT_FILES = ('success_plot.png', 'precision_plot.png', 'norm_precision_plot.png')
REPORT_FILES = (SUMMARY_JSON, SUMMARY_TXT, PER_SEQUENCE_TXT) + PLOT_FILES


def summary_columns(layout: str) -> Tuple[str, ...]:
  """The summary metrics of results in ``layout``, in table order: GOT-10k's AO / SR (its
  layout only), then the one-pass metrics."""
  return (GOT10K_COLUMNS if layout == 'got10k' else ()) + OPE_COLUMNS


def compute_metrics(sequences, writer, layout: str, dataset: str) -> Dict[str, Any]:
  """Metrics of every finished sequence with full ground truth, read back from the files.

  Returns ``{'summary': {metric: value in %}, 'rows': [(name, row)], 'curves':
  metrics.Curves or None, 'frame_ious': [(M_i,) GOT-10k IoUs per row] (GOT-10k layout, else
  []), 'problems': {name: message}}``; ``curves`` and ``frame_ious`` have one entry per row,
  in its order. A sequence whose results or ground truth cannot be scored (NaN, malformed) is
  in ``problems``, never in the metrics.
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
  curves = metrics.ope_curves(errors) if errors else None
  summary = summarize(curves, got_ious, layout)
  return {
    'summary': summary,
    'rows': rows,
    'curves': curves,
    'frame_ious': got_ious,
    'problems': problems,
  }


def summarize(curves, frame_ious: Sequence, layout: str) -> Dict[str, float]:
  """The summary (in %) of the scored sequences: AO / SR0.5 / SR0.75 over the pooled GOT-10k
  IoUs (``frame_ious``, GOT-10k layout only), AUC / OP50 / OP75 / P@20 / NP@0.2 over the
  per-sequence ``curves`` (``metrics.Curves`` or None); empty when nothing was scored."""
  summary: Dict[str, float] = {}
  if layout == 'got10k' and len(frame_ious):
    summary.update({k: v * 100 for k, v in metrics.got10k_summary(frame_ious).items()})
  if curves is not None and len(curves.success):
    summary.update(metrics.ope_summary(curves))
  return summary


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
  return save_overlaid_plots([(label, curves)], report_dir)


def _figure(figsize):
  """A matplotlib figure and its axes, drawn by Agg into PNG bytes: no pyplot, so nothing
  global changes (a notebook keeps its backend)."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=figsize)
  return fig, fig.subplots()


def _plain(label: str) -> str:
  """A tracker name as legend text: '$' escaped (matplotlib would read it as mathtext)."""
  return str(label).replace('$', r'\$')


def _line_style(i: int) -> Dict[str, str]:
  """The colour and dash of the i-th tracker: 10 colours, then the same dashed, dash-dotted."""
  return {'color': f'C{i % 10}', 'linestyle': ('-', '--', '-.', ':')[(i // 10) % 4]}


def _save_figure(fig, path: pathlib.Path, **options) -> pathlib.Path:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=100, **options)
  atomic_write_bytes(path, buf.getvalue())
  return path


def save_overlaid_plots(
  entries: Sequence, report_dir: pathlib.Path, title_suffix: str = ''
) -> List[pathlib.Path]:
  """The success, precision and normalized precision plots with one curve per entry.

  ``entries``: ``(label, metrics.Curves)`` pairs; entry i keeps colour i in every plot. Each
  legend lists the curves by that plot's number, best first, as the toolkits draw them:
  AUC (success), P@20 (precision), NP@0.2 (normalized precision). Written atomically to
  ``report_dir/{success,precision,norm_precision}_plot.png`` (:data:`PLOT_FILES`); returns the
  paths.
  """
  specs = [
    (metrics.SUCCESS_THRESHOLDS, 'success', None, 'AUC', 'Overlap threshold', 'Success rate',
     'Success plot', 'lower left'),
    (metrics.PRECISION_THRESHOLDS, 'precision', metrics.PRECISION_AT, 'P@20',
     'Location error threshold (px)', 'Precision', 'Precision plot', 'lower right'),
    (metrics.NORM_PRECISION_THRESHOLDS, 'norm_precision', metrics.NORM_PRECISION_AT, 'NP@0.2',
     'Normalized location error threshold', 'Normalized precision', 'Normalized precision plot',
     'lower right'),
  ]  # fmt: skip
  out = []
  for name, (x, field, at, metric, xlabel, ylabel, title, where) in zip(
    PLOT_FILES, specs, strict=True
  ):
    lines = []
    for i, (label, curves) in enumerate(entries):
      y = getattr(curves, field).mean(0)
      score = y.mean() if at is None else y[at]
      lines.append((-score, i, label, y))
    fig, ax = _figure((5, 4) if len(entries) < 4 else (6, 5))
    for neg_score, i, label, y in sorted(lines, key=lambda t: t[:2]):
      legend = f'{_plain(label)} [{metric} {-neg_score * 100:.1f}]'
      ax.plot(x, y, linewidth=2, label=legend, **_line_style(i))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title + title_suffix, xlim=(x[0], x[-1]))
    ax.set(ylim=(0, 1))
    ax.grid(True, alpha=0.3)
    ax.legend(loc=where, fontsize='medium' if len(entries) < 6 else 'small')
    fig.tight_layout()
    out.append(_save_figure(fig, report_dir / name))
  return out


def save_got10k_success_plot(
  entries: Sequence, path: pathlib.Path, title: str = 'Success plots on GOT-10k'
) -> pathlib.Path:
  """The GOT-10k toolkit's success plot: one curve per entry ``(label, frame IoUs per
  sequence)``, the fraction of the pooled IoUs > t over 101 thresholds, the legend
  ``label: [AO]`` (AO as a fraction, 3 decimals) sorted by AO, outside on the right; entry i
  keeps colour i. Written atomically to ``path``."""
  lines = []
  for i, (label, frame_ious) in enumerate(entries):
    ao = metrics.got10k_summary(frame_ious)['AO']
    lines.append((-ao, i, label, metrics.got10k_success_curve(frame_ious)))
  fig, ax = _figure((6, 4))
  for neg_ao, i, label, y in sorted(lines, key=lambda t: t[:2]):
    ax.plot(metrics.GOT10K_SUCCESS_THRESHOLDS, y, label=f'{_plain(label)}: [{-neg_ao:.3f}]',
            **_line_style(i))  # fmt: skip
  ax.set(xlabel='Overlap threshold', ylabel='Success rate', xlim=(0, 1), ylim=(0, 1))
  ax.set(title=title)
  ax.grid(True)
  legend = ax.legend(loc='center left', bbox_to_anchor=(1, 0.5), fontsize='small')
  fig.tight_layout()
  return _save_figure(fig, path, bbox_extra_artists=(legend,), bbox_inches='tight')


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


def unscored_reason(seq) -> str:
  """Why a finished sequence without full ground truth has no metrics (``has_full_gt``
  False)."""
  if len(seq) == 1:
    return 'one frame: nothing to score after the initial box'
  return 'ground truth of the first frame only (a test split: scored by its server)'


def describe_batching(value: str) -> str:
  """Words for a ``provenance.batching`` value: ``'exact'`` or ``'vmap x<B>'``."""
  if value == 'exact':
    return 'exact (batch 1 or map)'
  mode, size = value.split(' x')
  return f'{mode}, batch size {size} (boxes differ slightly from batch 1)'


def format_producer(header: Dict[str, object]) -> str:
  """One line: checkpoint and weights hash, config, batching and precision of the results."""
  return (
    f'producer: {header["checkpoint"]} (weights sha256 {str(header["weights_sha256"])[:12]}), '
    f'config {header["config"]}, batching {describe_batching(header["batching"])}, '
    f'precision {header["precision"]}'
  )


def _names(names: Sequence[str], most: int = 10) -> str:
  shown = ', '.join(names[:most])
  return shown + (f' ... and {len(names) - most} more' if len(names) > most else '')


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
) -> dict:
  """Scores the finished sequences and writes ``out_dir/report/``.

  ``failures`` (sequence -> message; also the sequences that could not be read, which are
  not in ``sequences``) is completed in place with the sequences whose results are missing,
  unusable or cannot be scored. ``header`` names the producer (``checkpoint``,
  ``weights_sha256``, ``config``, ``batching``, ``precision``; printed first) and goes into the
  JSON as it is. Returns the payload of ``summary.json`` (``header``, the counts, the metrics,
  the speed, the failures, the sequences without metrics, the per-sequence rows) with the
  printed text under ``'text'`` (not saved in the JSON).

  ``placement``: where this run tracked (``devices``, ``processes``, ``frames_per_device``;
  saved and printed in one line); ``speed``: the speed figures when they do not come from
  ``runs`` alone (several processes), else :func:`speed_summary` of ``runs``.
  """
  report_dir = out_dir / REPORT_DIR
  report_dir.mkdir(parents=True, exist_ok=True)
  finished = _finished(sequences, writer, failures)
  # A failure of this run wins over older complete files (--overwrite of the same producer).
  result = compute_metrics(
    [s for s in sequences if s.name not in failures], writer, layout, dataset
  )
  failures.update(result['problems'])
  not_scored = {
    s.name: unscored_reason(s)
    for s in sequences
    if s.name in finished and s.name not in failures and not s.has_full_gt
  }
  total = len(sequences) + len(set(failures) - {s.name for s in sequences})
  counts = (
    f'{dataset}: {total} sequence{"s" * (total != 1)}: {len(result["rows"])} scored, '
    f'{len(not_scored)} tracked without metrics, {len(failures)} failed'
  )
  text = []
  if result['rows']:
    text.append(_per_sequence_table(result['rows'], layout))
    atomic_write_text(report_dir / PER_SEQUENCE_TXT, text[-1] + '\n')
  text.append(format_producer(header) + '\n' + counts)  # beside the metrics table
  speed = speed or speed_summary(runs, writer, sequences)
  if result['summary']:
    text.append(_summary_table(label, dataset, layout, result))
  text.append(format_speed(speed))
  if placement is not None:
    text[-1] += '\n' + format_placement(placement)
  text += _notes(not_scored, failures)
  report = '\n\n'.join(text)
  atomic_write_text(report_dir / SUMMARY_TXT, report + '\n')
  payload = dict(header)
  payload.update(
    sequences_total=total,
    sequences_finished=len(finished),
    sequences_scored=len(result['rows']),
    sequences_without_metrics=len(not_scored),
    sequences_failed=len(failures),
    metrics=result['summary'],
    speed=speed,
    **(placement or {}),
    failures=failures,
    without_metrics=not_scored,
    per_sequence={n: r for n, r in result['rows']},
  )
  atomic_write_text(report_dir / SUMMARY_JSON, json.dumps(payload, indent=1) + '\n')
  if result['curves'] is not None and plots:
    save_plots(result['curves'], report_dir, label)
  return dict(payload, text=report, finished=finished)


def _finished(sequences: Sequence, writer, failures: Dict[str, str]) -> List[str]:
  """The names of the sequences whose result files are complete; the others that have no
  failure yet get one in ``failures`` (damaged files, or none).

  Only complete result files count; a damaged one (e.g. a sequence that failed again after its
  old files were found cut short) is reported, never read.
  """
  finished = []
  for s in sequences:
    problem = writer.check(s.name, len(s))
    if problem is None:
      finished.append(s.name)
    elif s.name in failures:
      continue
    elif writer.has_files(s.name):
      failures[s.name] = f'sequence {s.name!r}: unusable results: {problem}'
    else:  # never the case after a full run; counted all the same
      failures[s.name] = f'sequence {s.name!r}: no results'
  return finished


def _per_sequence_table(rows, layout: str) -> str:
  """The per-sequence table (``per_sequence.txt``): a row per scored sequence."""
  columns = (['AO'] if layout == 'got10k' else []) + list(OPE_COLUMNS) + ['frames']
  return metrics.format_table(rows, columns, title='sequence')


def _summary_table(label: str, dataset: str, layout: str, result) -> str:
  """The summary table: one row, ``label``, with the metrics of :func:`compute_metrics`'s
  ``result``."""
  summary = result['summary']
  return metrics.format_table(
    [(label, summary)],
    [c for c in summary_columns(layout) if c in summary],
    title=f'{dataset} ({len(result["rows"])} seq)',
  )


def _notes(not_scored: Dict[str, str], failures: Dict[str, str]) -> List[str]:
  """The paragraphs after the tables: the sequences tracked without metrics (one per reason)
  and the failures."""
  notes = []
  for reason in dict.fromkeys(not_scored.values()):
    names = [n for n, r in not_scored.items() if r == reason]
    notes.append(f'{len(names)} sequence(s) tracked without metrics ({reason}): {_names(names)}')
  if failures:
    notes.append(
      f'{len(failures)} sequence(s) failed:\n' + '\n'.join(f'  {m}' for m in failures.values())
    )
  return notes
