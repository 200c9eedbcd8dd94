"""Benchmark evaluation as a library call: ``evaluate(config, checkpoint, dataset, data_dir)``.

What ``python eval.py`` runs, and what the tests and the notebook call. Reads the benchmark in
its native layout (``ostrack_jax.tracking.eval_sequences``), tracks the sequences not yet finished on
the device core (``runner.Pipeline``; ``batch_size`` > 1 tracks that many in lockstep),
writes the official result files (``results``), and the report (``report``).

* Provenance: the results folder records what produced it (``provenance.json``: the weights'
  content hash, the config's model and tracker sections, the dataset, split and data dir, the
  batching; see ``provenance``), written before the first result file. A run of another
  producer never reuses what is there: it stops with one line naming the difference
  (``InputError``) before tracking or writing anything, unless ``overwrite``, which first
  removes the old results (also when ``sequences`` is a subset); so does a folder with result
  files and no record (an older version, another tool). ``report/summary.json`` and the printed
  summary name the producer (checkpoint and weights hash, config, batching, precision).
* Resumable (same producer): a sequence is finished when its result files are complete (one line of finite
  numbers per frame, in the box file and the time file; files are written atomically); one cut
  short or corrupted is named and tracked again, and never reaches the metrics.
* A bad sequence (missing or corrupt frame, malformed ground truth, bad initial box) is reported
  and skipped, unless ``fail_fast``; ``EvalResult.failures`` names each. Every sequence is
  counted once: scored (the table), tracked but not scored (a test split's or a 1-frame
  sequence: no ground truth after the first frame; listed with that reason) or failed.
* Speed: tracker FPS (the loop's wall time without the waits for decoded frames: the
  original's number) and end-to-end FPS (including image decoding), never mixed.
* Every local device by default (``devices``: options many), several processes with
  jax.distributed (``eval.py --multihost``): ``distributed`` says who tracks what; process 0
  alone reads the folder's state and writes the report.

Bad input (a missing checkpoint, an unknown dataset, a missing root, a dataset without
sequences, a results folder of another producer) raises ``ostrack_jax.common.errors.InputError``
before any tracking.
"""

import concurrent.futures
import dataclasses
import os
import pathlib
import sys
import time
from typing import Dict, List, Optional, Sequence

import ml_collections

from ostrack_jax import configs
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError
from ostrack_jax.datasets import registry
from ostrack_jax.datasets.core import DatasetError
from ostrack_jax.datasets.frames import read_frame
from ostrack_jax.tracking import distributed, eval_sequences, provenance, report, results

OUTPUT_ROOT = 'workdirs'


@dataclasses.dataclass
class EvalResult:
  """The outcome: ``metrics`` (name -> value in %), ``failures`` (sequence -> message),
  ``payload`` (what ``report/summary.json`` holds), ``output`` (the results folder)."""

  metrics: Dict[str, float]
  failures: Dict[str, str]
  payload: Dict[str, object]
  output: pathlib.Path

  @property
  def ok(self) -> bool:
    return not self.failures


def default_output(config: ml_collections.ConfigDict, dataset: str) -> pathlib.Path:
  """``workdirs/<config name>/eval/<dataset>``."""
  return pathlib.Path(OUTPUT_ROOT) / config.name / 'eval' / dataset


def resolve_data_dir(dataset: str, data_dir: Optional[str], config) -> pathlib.Path:
  """``data_dir``, else (GOT-10k layouts only) the synthetic dataset train.py uses: a named
  ``config.data.roots.synthetic`` must hold one; the default root is generated if missing."""
  if data_dir:
    path = pathlib.Path(data_dir)
    if not path.is_dir():
      what = 'is a file, not a folder' if path.exists() else 'no such folder'
      raise InputError(f'--data-dir {data_dir}: {what}')
    return path
  if not dataset.startswith('got10k'):
    raise InputError(f'--data-dir is required for --dataset {dataset}')
  from ostrack_jax.datasets import synthetic

  named = config.data.roots.synthetic
  try:
    return synthetic.ensure_synthetic_dataset(named or None, log=print)
  except FileNotFoundError as e:
    if not named:
      raise
    raise InputError(str(e)) from e  # a named root without a dataset: never generated


def check_checkpoint(path: str) -> None:
  """Raises ``InputError`` unless ``path`` is a file (a folder gets its own message)."""
  if os.path.isdir(path):
    raise InputError(
      f'--checkpoint {path} is a directory, not a model file (give the .msgpack file '
      'train.py writes, or a PyTorch .pth file)'
    )
  if not os.path.isfile(path):
    raise InputError(f'--checkpoint {path}: no such file')


def evaluate(
  config: ml_collections.ConfigDict,
  checkpoint: str,
  dataset: str = 'got10k_val',
  data_dir: Optional[str] = None,
  *,
  sequences: Optional[Sequence[str]] = None,
  split: Optional[str] = None,
  output: Optional[str] = None,
  batch_size: Optional[int] = None,
  batch_mode: str = 'map',
  devices: Optional[int] = None,
  decode_threads: Optional[int] = None,
  compilation_cache: Optional[str] = None,
  overwrite: bool = False,
  fail_fast: bool = False,
  plots: bool = True,
  progress: bool = True,
) -> EvalResult:
  """Evaluates the model of ``checkpoint`` on ``dataset`` and writes results and report.

  Args:
    config: the model's config (``ostrack_jax.configs``); checked first.
    checkpoint: our ``.msgpack`` model file or a PyTorch ``.pth``/``.pth.tar``.
    dataset: one of ``registry.names('eval')``.
    data_dir: the benchmark root in its native layout (None: the synthetic dataset).
    sequences / split: only these sequences / another split folder.
    output: the results folder (default ``workdirs/<config name>/eval/<dataset>``).
    batch_size / batch_mode: sequences tracked in lockstep on all devices together (None:
      one per device; rounded up to a multiple of the device count), 'map' (the default:
      bit-identical to batch 1 on one device) or 'vmap' (one batched forward per device,
      equal to batch 1 up to float rounding).
    devices: options many of this process's devices track (None: all; the first ``devices``).
    decode_threads: threads decoding frames ahead (default on an accelerator: 8 per device,
      at most one per CPU core beyond 8; 0 on CPU).
    compilation_cache: a folder for JAX's persistent compilation cache.
    overwrite: results of another producer (or unrecorded ones) in ``output`` are removed
      and the folder starts afresh; with the same producer, the selected sequences are
      tracked again. Without it such a folder is refused (``InputError``).
    fail_fast: raise at the first bad sequence (``DatasetError`` while reading,
      ``errors.SequenceFailure`` while tracking) instead of skipping it.
    plots / progress: the PNG plots; progress bars.
  """
  _check_request(config, checkpoint, dataset, output, sequences, batch_size, devices, batch_mode)
  root = resolve_data_dir(dataset, data_dir, config)
  seqs, load_errors, split = _read_sequences(
    dataset, root, bool(data_dir), sequences, split, fail_fast
  )
  failures: Dict[str, str] = dict(load_errors)
  procs = distributed.Processes.current()
  for _, msg in load_errors if procs.is_main else ():
    print(f'skipping {msg}', file=sys.stderr)
  out_dir = pathlib.Path(output) if output else default_output(config, dataset)
  local = distributed.local_devices(devices)  # a bad --devices is refused before the model
  options = _TrackOptions(
    batch_size, distributed.slots_for(batch_size, len(local)), local, batch_mode,
    decode_threads, compilation_cache, fail_fast, progress,
  )  # fmt: skip
  variables, weights = _load_model(config, checkpoint)
  record, header = _describe_producer(
    config, checkpoint, weights, dataset, split, root, options.slots // len(local), batch_mode,
    batch_size,
  )  # fmt: skip
  writer = results.ResultWriter(out_dir, results.layout_for_dataset(dataset))
  todo = _prepare_output(procs, writer, record, dataset, root, seqs, overwrite)
  mine = procs.mine(todo)
  runs = []
  per_device = [0] * len(local) if todo else []  # every process counts its devices
  if mine:
    runs, per_device = _track_or_report_interrupt(
      config, variables, checkpoint, mine, writer, failures, procs, options
    )
  part: Dict[str, object] = {'failures': failures, 'frames_per_device': per_device}
  part['speed'] = report.speed_summary(runs, writer, []) if runs else None
  shared = distributed.combine(procs.share('tracked', part))
  failures = shared['failures']
  if not procs.is_main:  # process 0 writes the report
    return EvalResult({}, failures, {}, out_dir)
  return _report(config.name, dataset, seqs, writer, runs, failures, header, plots, shared)


@dataclasses.dataclass(frozen=True)
class _TrackOptions:
  """How :func:`evaluate` tracks (its arguments of these names); ``slots``: lockstep slots
  (``batch_size`` rounded up, :func:`distributed.slots_for`) on ``devices`` (this process's)."""

  batch_size: Optional[int]
  slots: int
  devices: List
  batch_mode: str
  decode_threads: Optional[int]
  compilation_cache: Optional[str]
  fail_fast: bool
  progress: bool


def _check_request(config, checkpoint, dataset, output, sequences, batch_size, devices, batch_mode):
  """Raises ``InputError`` for a bad argument of :func:`evaluate`, before anything is read."""
  configs.check_config(config)
  if batch_size is not None and batch_size < 1:
    raise InputError(f'--batch-size must be >= 1, got {batch_size}')
  if devices is not None and devices < 1:
    raise InputError(f'--devices must be >= 1, got {devices}')
  if batch_mode not in ('vmap', 'map'):
    raise InputError(f"--batch-mode must be 'vmap' or 'map', got {batch_mode!r}")
  eval_sequences.check_dataset_name(dataset)
  check_checkpoint(checkpoint)
  if sequences is not None and not list(sequences):
    raise InputError('--sequences selects no sequence (None selects all)')
  fileio.check_writable(
    output or default_output(config, dataset),
    f'--output {output}' if output else 'the results folder',
  )


def _read_sequences(dataset, root, root_given: bool, sequences, split, fail_fast):
  """(the readable sequences, ``[(name, message)]`` of the others (none with ``fail_fast``:
  the first raises), the split scored); ``InputError`` when ``root`` holds none of them."""
  load_errors: List = []
  seqs = eval_sequences.load_dataset(
    dataset, root, sequences, split, errors=None if fail_fast else load_errors
  )
  entry = registry.get(dataset, 'eval')
  split = split or entry.options('eval').get('split')
  if not seqs and not load_errors:
    raise InputError(
      f'{"--data-dir" if root_given else "data dir"} {root}: no sequences of --dataset '
      f'{dataset} in it (the {entry.layout.name} layout{f", split {split}" if split else ""})'
    )
  return seqs, load_errors, split


def _load_model(config, checkpoint: str):
  """(the model's variables as host arrays, their ``weights_sha256``); ``InputError`` for a
  file that is not a model file, or one of another preset."""
  from ostrack_jax.weights import model_file

  try:
    variables = model_file.load_checkpoint(checkpoint, config)
  except (ValueError, OSError) as e:  # not a model file, or one for another preset
    raise InputError(str(e)) from e
  return variables, model_file.weights_sha256(variables)


def _describe_producer(
  config, checkpoint, weights, dataset, split, root, per_device_batch, batch_mode, batch_size
):
  """(the results folder's provenance record (:func:`provenance.record`), the report's header:
  the producer as ``report.write_report`` prints and saves it)."""
  record = provenance.record(
    provenance.producer(
      config, weights, dataset=dataset, split=split, data_dir=root,
      batch_size=per_device_batch, batch_mode=batch_mode,
    ),
    checkpoint=checkpoint,
    config_name=config.name,
  )  # fmt: skip
  header = {
    'config': config.name,
    'checkpoint': str(checkpoint),
    'weights_sha256': weights,
    'dataset': dataset,
    'split': split,
    'data_dir': str(root),
    'batching': record['producer']['batching'],
    'batch_mode': batch_mode,
    'batch_size': batch_size,
    'precision': config.model.dtype,
  }
  return record, header


def _prepare_output(procs, writer, record, dataset, root, seqs, overwrite: bool) -> List:
  """The sequences to track, agreed by every process: process 0 alone reads and prepares the
  results folder (:func:`provenance.prepare`: refused, resumed or replaced) and says what is
  left to track; the others wait for it (a barrier: process 0's record exists after it)."""
  refusal, todo = None, []
  if procs.is_main:
    try:
      if provenance.prepare(writer.out_dir, record, overwrite) == 'replaced':
        print(
          f'--overwrite: removed the earlier results in {writer.out_dir} (another producer, or '
          'unrecorded)'
        )
      todo = _unfinished(seqs, writer, overwrite)
    except InputError as e:
      refusal = str(e)
  todo = procs.agree(seqs, todo, refusal)
  if procs.is_main:
    print(
      f'{dataset}: {len(seqs)} sequences in {root}, {len(todo)} to track, '
      f'{len(seqs) - len(todo)} already done; results in {writer.out_dir}'
    )
  return todo


def _unfinished(seqs, writer, overwrite: bool) -> List:
  """The sequences to track: all with ``overwrite``, else those without complete results
  (damaged ones are named)."""
  todo = []
  for s in seqs:
    if not overwrite and writer.has_files(s.name):
      problem = writer.check(s.name, len(s))
      if problem is None:
        continue  # finished
      print(f'sequence {s.name!r}: {problem}: tracking it again', file=sys.stderr)
    todo.append(s)
  return todo


def _track_or_report_interrupt(
  config, variables, checkpoint, mine, writer, failures, procs, options: _TrackOptions
):
  """:func:`_track`; on Ctrl-C, says options many sequences are written (kept) and re-raises."""
  try:
    return _track(config, variables, checkpoint, mine, writer, failures, procs, options)
  except KeyboardInterrupt:
    tracked = sum(1 for s in mine if writer.is_done(s.name, len(s)))
    print(
      f'interrupted: results for {tracked} of the {len(mine)} sequences to track are written '
      '(kept); run the same command to continue',
      file=sys.stderr,
    )
    raise


def _track(config, variables, checkpoint, todo, writer, failures, procs, options: _TrackOptions):
  """Tracks ``todo`` pipelined on ``options.devices`` in ``options.slots`` lockstep slots with the
  model's ``variables``; writes each finished sequence's files and adds the failed ones to
  ``failures``. Returns the runs (``runner.SequenceRun``) and the frames tracked per device."""
  from tqdm import tqdm

  from ostrack_jax.tracking import runner

  batch_size, slots, devices = options.batch_size, options.slots, options.devices
  t_load = time.perf_counter()
  core = _compiled_core(config, variables, options, todo[0])
  where = f'process {procs.index} of {procs.count}: ' if procs.count > 1 else ''
  rounded = f' (--batch-size {batch_size} rounded up)' if batch_size not in (None, slots) else ''
  print(
    f'{where}loaded {checkpoint} ({config.name}) and compiled in '
    f'{time.perf_counter() - t_load:.1f} s; {len(todo)} sequence(s), {slots} slot(s){rounded} '
    f'on {len(devices)} device(s)'
  )
  bar = tqdm(
    total=sum(len(s) for s in todo), unit='frame', disable=not options.progress, desc='frames'
  )
  seq_bar = tqdm(total=len(todo), unit='seq', disable=not options.progress, desc='sequences')
  runs = []

  def done(run):
    writer.write(run.name, run.boxes, run.times)
    runs.append(run)
    seq_bar.update(1)

  def failed(err):
    failures[err.name] = str(err)
    tqdm.write(f'skipping {err}', file=sys.stderr)
    seq_bar.update(1)
    if options.fail_fast:
      raise err

  decode_threads = _decode_threads(options.decode_threads, len(devices))
  executor = concurrent.futures.ThreadPoolExecutor(decode_threads) if decode_threads > 0 else None
  t_track = time.perf_counter()
  try:
    runner.Pipeline(
      core,
      todo,
      done,
      failed,
      on_frames=bar.update,
      executor=executor,
      ahead=max(2, 2 * decode_threads // slots) if executor else 0,
      on_warning=lambda m: tqdm.write(f'warning: {m}', file=sys.stderr),
    ).run()
  finally:
    if executor is not None:
      executor.shutdown(wait=False, cancel_futures=True)
    bar.close()
    seq_bar.close()
  wall = time.perf_counter() - t_track
  print(
    f'{where}tracked {sum(len(r.boxes) for r in runs)} frames in {wall:.1f} s; '
    f'{core.compilations()} program(s) compiled'
  )
  per_device = [0] * len(devices)
  for run in runs:
    per_device[core.slot_device(run.slot)] += len(run.boxes)
  return runs, per_device


def _compiled_core(config, variables, options: _TrackOptions, first):
  """The device core (``TrackingCore``) for ``options``, compiled for the size of the first frame
  of sequence ``first``, so that the timings exclude compilation (an unreadable frame is
  reported when its sequence is tracked)."""
  import jax

  from ostrack_jax.tracking.tracking_core import TrackingCore

  if options.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(options.compilation_cache))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  core = TrackingCore(
    config,
    variables,
    options.slots,
    options.batch_mode if options.slots > 1 else None,
    full_outputs=False,
    devices=options.devices
    if len(options.devices) > 1
    else None,  # one: JAX's default device, as always
  )
  try:
    core.warmup(read_frame(first.frames[0]).shape[:2])
  except DatasetError:
    pass  # reported with its sequence when tracked
  return core


def _decode_threads(decode_threads: Optional[int], num_devices: int) -> int:
  """``decode_threads``, else 0 on CPU and 8 per device on an accelerator (at most one per CPU
  core beyond 8)."""
  if decode_threads is not None:
    return decode_threads
  import jax

  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  per_devices = max(8, min(8 * num_devices, cores or 8))  # 8 for one device, as always
  return 0 if jax.default_backend() == 'cpu' else per_devices


def _report(label, dataset, seqs, writer, runs, failures, header, plots, shared) -> EvalResult:
  """Writes and prints the report (process 0), and the submission archive of a test split
  whose sequences are all finished."""
  payload = report.write_report(
    writer.out_dir,
    label=label,
    dataset=dataset,
    layout=writer.layout,
    sequences=seqs,
    writer=writer,
    runs=runs,
    failures=failures,
    header=header,
    plots=plots,
    placement=shared['placement'],
    speed=shared['speed'],
  )
  print('\n' + payload.pop('text'))
  finished = payload.pop('finished')
  if dataset in ('got10k_test', 'trackingnet') and finished:
    if len(finished) == len(seqs):
      print(f'submission archive: {writer.make_zip(finished)}')
    else:
      print(f'no submission archive: {len(seqs) - len(finished)} sequence(s) unfinished')
  return EvalResult(payload['metrics'], failures, payload, writer.out_dir)
