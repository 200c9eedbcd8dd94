"""Evaluates an OSTrack model on a tracking benchmark and writes the official result files.

  python eval.py --config configs/ostrack_256_ce.py --checkpoint model.msgpack \
      --dataset got10k_test --data-dir /datasets/GOT-10k [--sequences A B] [--output DIR] \
      [--batch-size 8] [--config.tracker.search_factor=4.5]

With no arguments it evaluates the default training run (``python train.py``, which writes
``workdirs/tiny_256_ce/model.msgpack``) on the validation split of the synthetic dataset
(``config.data.roots.synthetic``, else ``ostrack_jax.data.synthetic.default_root()``, i.e.
``$OSTRACK_JAX_SYNTHETIC`` or ``~/.cache/ostrack_jax/synthetic``, generated on first use as
train.py does).

Outputs under ``--output`` (default ``workdirs/<config name>/eval/<dataset>``):

* the raw results in the official layout (GOT-10k ``<seq>/<seq>_001.txt`` + ``_time.txt``;
  TrackingNet ``<seq>.txt``; LaSOT / OTB / folder ``<seq>.txt`` + ``<seq>_time.txt``), floats;
* ``submission.zip`` for the GOT-10k test split and TrackingNet (upload as is);
* ``report/``: ``summary.json``, ``per_sequence.txt``, ``summary.txt``, ``success_plot.png``,
  ``precision_plot.png`` (where ground truth exists).

The run is resumable: finished sequences are skipped, so a killed run loses at most the
sequences in flight. A sequence is finished when its result files are complete (one line of
finite numbers per frame, in the box file and the time file; files are written atomically);
one cut short or corrupted is named and tracked again, and never reaches the metrics. A bad
sequence (missing or corrupt frame, malformed ground truth, bad initial box) is reported and
skipped unless ``--fail-fast``; the exit status is 1 when any sequence failed.

Metrics: GOT-10k AO / SR0.5 / SR0.75 as the official toolkit (pooled IoUs, first frame out,
cover > 0 only, strict >); AUC / OP50 / OP75 / P@20 / NP@0.2 as pytracking's analysis (see
``ostrack_jax/tracking/metrics.py``). Tracking is pipelined on the device
(``ostrack_jax.tracking.runner``); speed is reported as tracker FPS (the loop's wall time
without the waits for decoded frames: the original's number) and end-to-end FPS (including
image decoding), never mixed.
"""

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Dict, List, Optional

import numpy as np

# Defaults: the output of the default `python train.py` run, on the synthetic validation set.
DEFAULT_CONFIG = 'configs/tiny_256_ce.py'
DEFAULT_CHECKPOINT = 'workdirs/tiny_256_ce/model.msgpack'
DEFAULT_DATASET = 'got10k_val'
DEFAULT_DATA_DIR = None  # None = the synthetic dataset (ostrack_jax.data.synthetic)
DEFAULT_OUTPUT_ROOT = 'workdirs'


def parse_args(argv=None) -> argparse.Namespace:
  from ostrack_jax.tracking.datasets import DATASETS  # pylint: disable=g-import-not-at-top

  p = argparse.ArgumentParser(
    description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    '--config',
    default=DEFAULT_CONFIG,
    help='preset file (configs/<name>.py) or preset name (default: %(default)s)',
  )
  p.add_argument(
    '--checkpoint',
    default=DEFAULT_CHECKPOINT,
    help='our .msgpack checkpoint or a PyTorch .pth/.pth.tar (default: %(default)s)',
  )
  p.add_argument('--dataset', default=DEFAULT_DATASET, choices=DATASETS)
  p.add_argument(
    '--data-dir',
    default=DEFAULT_DATA_DIR,
    help='benchmark root in its native layout (default: the synthetic dataset)',
  )
  p.add_argument(
    '--split',
    default=None,
    help='override the split folder (GOT-10k: val/test/train; TrackingNet: TEST, TRAIN_0, ...)',
  )
  p.add_argument('--sequences', nargs='+', default=None, help='only these sequences')
  p.add_argument(
    '--output', default=None, help='results folder (default: workdirs/<config name>/eval/<dataset>)'
  )
  p.add_argument(
    '--batch-size',
    type=int,
    default=1,
    help='track this many sequences in lockstep in one jitted call (default 1)',
  )
  p.add_argument(
    '--batch-mode',
    default='vmap',
    choices=('vmap', 'map'),
    help="lockstep mode: 'vmap' = one batched forward (fastest), 'map' = "
    'bit-identical to --batch-size 1',
  )
  p.add_argument(
    '--compilation-cache',
    default=os.environ.get('OSTRACK_JAX_COMPILATION_CACHE'),
    help='folder for JAX\'s persistent compilation cache, so that a later run skips '
    'compiling the programs of frame sizes it has seen (default: '
    '$OSTRACK_JAX_COMPILATION_CACHE, else none)',
  )
  p.add_argument(
    '--decode-threads',
    type=int,
    default=None,
    help='threads decoding frames ahead of the tracker (0 = decode inline; '
    'default 8 on an accelerator, 0 on CPU where they would compete with '
    'the model for the cores)',
  )
  p.add_argument('--overwrite', action='store_true', help='re-run finished sequences')
  p.add_argument(
    '--fail-fast', action='store_true', help='stop at the first bad sequence instead of skipping it'
  )
  p.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
  p.add_argument('--no-progress', action='store_true', help='no progress bars')
  args, rest = p.parse_known_args(argv)
  bad = [r for r in rest if not r.startswith('--config.')]
  if bad:
    p.error(f'unrecognized arguments: {" ".join(bad)}')
  # --config.tracker.search_factor=4.5 style overrides (e.g. to try another search factor)
  args.overrides = [r[2:] for r in rest]
  return args


def _default_output(config, dataset: str) -> pathlib.Path:
  return pathlib.Path(DEFAULT_OUTPUT_ROOT) / config.name / 'eval' / dataset


def _data_dir(args, config) -> pathlib.Path:
  """--data-dir, else the synthetic dataset train.py uses (the default one generated if missing)."""
  if args.data_dir:
    return pathlib.Path(args.data_dir)
  if not args.dataset.startswith('got10k'):
    raise SystemExit(f'--data-dir is required for --dataset {args.dataset}')
  from ostrack_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  if config.data.roots.synthetic:  # a named root must hold a dataset: never generated
    return synthetic.check_named_root(config.data.roots.synthetic)
  root = synthetic.default_root()
  if not (root / 'synthetic.json').exists():
    print(f'generating the synthetic dataset at {root} ...')
  return synthetic.ensure_synthetic_dataset()


# ------------------------------------------------------------------------------ metrics


def compute_metrics(sequences, writer, layout: str, dataset: str) -> Dict[str, object]:
  """Metrics of every finished sequence with full ground truth, read back from the files."""
  from ostrack_jax.tracking import metrics  # pylint: disable=g-import-not-at-top

  got_ious, errors, rows, problems = [], [], [], {}
  for seq in sequences:
    if not seq.has_full_gt or not writer.is_done(seq.name, len(seq)):
      continue
    try:
      row = _sequence_metrics(seq, writer, layout, dataset, got_ious, errors)
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


def _sequence_metrics(seq, writer, layout, dataset, got_ious, errors):
  """Per-sequence row; appends to ``got_ious`` / ``errors`` only when everything parsed."""
  from ostrack_jax.tracking import metrics  # pylint: disable=g-import-not-at-top

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
  """Success and precision plots (mean over sequences) as PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ostrack_jax.tracking import metrics  # pylint: disable=g-import-not-at-top
  from ostrack_jax.fileio import atomic_write_bytes  # pylint: disable=g-import-not-at-top

  out = []
  success = curves.success.mean(0)
  precision = curves.precision.mean(0)
  norm_precision = curves.norm_precision.mean(0)
  specs = [
    (
      'success_plot.png',
      metrics.SUCCESS_THRESHOLDS,
      success,
      'Overlap threshold',
      'Success rate',
      f'{label} [AUC {success.mean() * 100:.1f}]',
      'Success plot',
    ),
    (
      'precision_plot.png',
      metrics.PRECISION_THRESHOLDS,
      precision,
      'Location error threshold (px)',
      'Precision',
      f'{label} [P@20 {precision[metrics.PRECISION_AT] * 100:.1f}]',
      'Precision plot',
    ),
    (
      'norm_precision_plot.png',
      metrics.NORM_PRECISION_THRESHOLDS,
      norm_precision,
      'Normalized location error threshold',
      'Normalized precision',
      f'{label} [NP@0.2 {norm_precision[metrics.NORM_PRECISION_AT] * 100:.1f}]',
      'Normalized precision plot',
    ),
  ]
  import io  # pylint: disable=g-import-not-at-top

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


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
  args = parse_args(argv)
  from ostrack_jax.cli_utils import apply_overrides, check_config, load_config  # pylint: disable=g-import-not-at-top
  from ostrack_jax.tracking import datasets, results, runner  # pylint: disable=g-import-not-at-top
  from ostrack_jax.tracking import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from ostrack_jax.tracking.tracker import TrackingCore  # pylint: disable=g-import-not-at-top

  try:
    config = load_config(args.config)
    apply_overrides(config, args.overrides)
    check_config(config)
  except (ValueError, FileNotFoundError, KeyError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if os.path.isdir(args.checkpoint):
    print(
      f'error: --checkpoint {args.checkpoint} is a directory, not a model file (give the '
      '.msgpack file train.py writes, or a PyTorch .pth file)',
      file=sys.stderr,
    )
    return 2
  if not os.path.isfile(args.checkpoint):
    hint = (
      ' (run `python train.py` first, or pass --checkpoint)'
      if args.checkpoint == DEFAULT_CHECKPOINT
      else ''
    )
    print(f'error: --checkpoint {args.checkpoint}: no such file{hint}', file=sys.stderr)
    return 2
  if args.batch_size < 1:
    print(f'error: --batch-size must be >= 1, got {args.batch_size}', file=sys.stderr)
    return 2
  try:
    data_dir = _data_dir(args, config)
  except FileNotFoundError as e:  # a named synthetic root without a dataset
    print(f'error: {e}', file=sys.stderr)
    return 2
  load_errors: List = []
  try:
    sequences = datasets.load_dataset(
      args.dataset,
      data_dir,
      args.sequences,
      args.split,
      errors=None if args.fail_fast else load_errors,
    )
  except datasets.DatasetError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  failures: Dict[str, str] = dict(load_errors)
  for name, msg in load_errors:
    print(f'skipping {msg}', file=sys.stderr)

  layout = results.layout_for_dataset(args.dataset)
  out_dir = pathlib.Path(args.output) if args.output else _default_output(config, args.dataset)
  writer = results.ResultWriter(out_dir, layout)
  todo = []
  for s in sequences:
    if not args.overwrite and writer.has_files(s.name):
      problem = writer.check(s.name, len(s))
      if problem is None:
        continue  # finished
      print(f'sequence {s.name!r}: {problem}: tracking it again', file=sys.stderr)
    todo.append(s)
  print(
    f'{args.dataset}: {len(sequences)} sequences in {data_dir}, {len(todo)} to track, '
    f'{len(sequences) - len(todo)} already done; results in {out_dir}'
  )

  runs: List = []
  if todo:
    t_load = time.perf_counter()
    if args.compilation_cache:
      import jax  # pylint: disable=g-import-not-at-top

      jax.config.update('jax_compilation_cache_dir', os.path.expanduser(args.compilation_cache))
      jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
    from ostrack_jax.checkpoint_io import load_checkpoint  # pylint: disable=g-import-not-at-top

    try:
      variables = load_checkpoint(args.checkpoint, config)
    except (ValueError, OSError) as e:  # not a model file, or one for another preset
      print(f'error: {e}', file=sys.stderr)
      return 2
    core = TrackingCore(
      config,
      variables,
      args.batch_size,
      args.batch_mode if args.batch_size > 1 else None,
      full_outputs=False,
    )
    try:  # compile for the first frame's size, so that the timings exclude it
      core.warmup(datasets.read_frame(todo[0].frames[0]).shape[:2])
    except datasets.DatasetError:
      pass  # reported with its sequence when tracked
    print(
      f'loaded {args.checkpoint} ({config.name}) and compiled in '
      f'{time.perf_counter() - t_load:.1f} s'
    )
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top

    bar = tqdm(
      total=sum(len(s) for s in todo),
      unit='frame',
      disable=args.no_progress,
      desc='frames',
      dynamic_ncols=True,
    )
    seq_bar = tqdm(
      total=len(todo), unit='seq', disable=args.no_progress, desc='sequences', dynamic_ncols=True
    )

    def done(run):
      writer.write(run.name, run.boxes, run.times)
      runs.append(run)
      seq_bar.update(1)

    def failed(err):
      failures[err.name] = str(err)
      tqdm.write(f'skipping {err}', file=sys.stderr)
      seq_bar.update(1)
      if args.fail_fast:
        raise err

    import concurrent.futures  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top

    if args.decode_threads is None:
      args.decode_threads = 0 if jax.default_backend() == 'cpu' else 8
    executor = (
      concurrent.futures.ThreadPoolExecutor(args.decode_threads)
      if args.decode_threads > 0
      else None
    )
    ahead = max(2, 2 * args.decode_threads // args.batch_size) if executor else 0
    t_track = time.perf_counter()
    try:
      runner.track_pipelined(
        core,
        todo,
        done,
        failed,
        on_frames=bar.update,
        executor=executor,
        ahead=ahead,
        on_warning=lambda m: tqdm.write(f'warning: {m}', file=sys.stderr),
      )
    except runner.SequenceFailure as e:
      bar.close()
      seq_bar.close()
      print(f'error: {e}', file=sys.stderr)
      return 1
    finally:
      if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)
    wall = time.perf_counter() - t_track
    bar.close()
    seq_bar.close()
    print(
      f'tracked {sum(len(r.boxes) for r in runs)} frames in {wall:.1f} s; '
      f'{core.compilations()} program(s) compiled'
    )

  # ---------------------------------------------------------------- report
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
  result = compute_metrics(sequences, writer, layout, args.dataset)
  summary = result['summary']
  failures.update(result['problems'])
  columns = (['AO'] if layout == 'got10k' else []) + [
    'AUC',
    'OP50',
    'OP75',
    'P@20',
    'NP@0.2',
    'frames',
  ]
  text = []
  if result['rows']:
    text.append(metrics_lib.format_table(result['rows'], columns, title='sequence'))
    results.atomic_write_text(report_dir / 'per_sequence.txt', text[-1] + '\n')
  speed = speed_summary(runs, writer, sequences)
  summary_cols = (['AO', 'SR0.5', 'SR0.75'] if layout == 'got10k' else []) + [
    'AUC',
    'OP50',
    'OP75',
    'P@20',
    'NP@0.2',
  ]
  if summary:
    text.append(
      metrics_lib.format_table(
        [(config.name, summary)],
        [c for c in summary_cols if c in summary],
        title=f'{args.dataset} ({len(result["rows"])} seq)',
      )
    )
  text.append(format_speed(speed))
  if failures:
    text.append(
      f'{len(failures)} sequence(s) failed:\n' + '\n'.join(f'  {m}' for m in failures.values())
    )
  report = '\n\n'.join(text)
  print('\n' + report)
  results.atomic_write_text(report_dir / 'summary.txt', report + '\n')
  payload = {
    'config': config.name,
    'checkpoint': str(args.checkpoint),
    'dataset': args.dataset,
    'data_dir': str(data_dir),
    'sequences_finished': len(finished),
    'sequences_total': len(sequences),
    'metrics': summary,
    'speed': speed,
    'failures': failures,
    'per_sequence': {n: r for n, r in result['rows']},
  }
  results.atomic_write_text(report_dir / 'summary.json', json.dumps(payload, indent=1) + '\n')
  if result['curves'] is not None and not args.no_plots:
    save_plots(result['curves'], report_dir, config.name)
  if args.dataset in ('got10k_test', 'trackingnet') and finished:
    if len(finished) == len(sequences):
      z = writer.make_zip(finished)
      print(f'submission archive: {z}')
    else:
      print(f'no submission archive: {len(sequences) - len(finished)} sequence(s) unfinished')
  return 1 if failures else 0


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
  def f(v):
    return f'{v:8.1f}' if v else '       -'

  return (
    f'speed ({speed["source"]}, {speed["frames"]} frames): '
    f'tracker {f(speed["tracker_fps"])} fps '
    f'| end-to-end (with decoding) {f(speed["end_to_end_fps"])} fps'
  )


if __name__ == '__main__':
  sys.exit(main())
