"""Training as a library call: ``train_and_evaluate(config, workdir)``.

What ``python train.py`` runs, and what the tests and the notebook call. Data-parallel over
every device of every process (one 'data' mesh axis; with several processes, call
``jax.distributed.initialize()`` first, as ``train.py --multihost`` does): each process feeds its
own slice of every global batch from grain workers; the state is replicated and donated.

The run directory holds ``checkpoints/<step>/`` (orbax: model, optimiser, step, RNG, data
iterator; every ``train.checkpoint_every_steps`` and at the end, the last
``train.keep_checkpoints`` kept), ``metrics.jsonl``, ``tensorboard/``, ``config.json`` and, at
the end, ``model.msgpack`` (load it with ``ostrack_jax.load_checkpoint``, ``eval.py`` or
``Tracker.from_checkpoint``). A workdir with checkpoints is only continued with
``resume=True``, and only with the same config and device count (the batches then continue
exactly). Bad input raises ``ostrack_jax.common.errors.InputError`` before the first step (what the
run had created in the workdir is removed again); a write that fails mid-run (a full disk, a lost
permission) raises ``ostrack_jax.common.errors.OutputError`` naming the file, the OS error and the
checkpoint kept; a loss that stays non-finite raises ``loop.NonFiniteError``.
"""

import dataclasses
import os
import shutil
from typing import Callable, Optional

import jax
import ml_collections
import numpy as np
import optax
import tqdm

from ostrack_jax import configs
from ostrack_jax.common import fileio
from ostrack_jax.common.errors import InputError, OutputError
from ostrack_jax.data import pipeline
from ostrack_jax.models import ostrack
from ostrack_jax.training import (
  checkpoint as ckpt_lib,
  loop,
  optim,
  state as state_lib,
  step as step_lib,
)
from ostrack_jax.weights import model_file


@dataclasses.dataclass
class TrainResult:
  """What a run did: the step reached, the schedule's total, the model file (None when the run
  stopped early at ``train.max_steps``: continue it with ``resume=True``)."""

  step: int
  total_steps: int
  model_path: Optional[str]


@dataclasses.dataclass
class _Run:
  """The sizes of a run on this mesh."""

  mesh: jax.sharding.Mesh
  global_batch: int
  local_batch: int
  steps_per_epoch: int
  total_steps: int
  stop_step: int
  is_main: bool
  workdir: str


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  resume: bool = False,
  progress: bool = True,
  log: Callable[[str], None] = lambda m: print(m, flush=True),
) -> TrainResult:
  """Trains ``config`` into ``workdir`` (validating every ``train.val_every_epochs``).

  Args:
    config: a full config (``ostrack_jax.configs``); checked first.
    workdir: the run directory (created). A run stopped by bad input before its first step
      removes what it created there; a write that fails mid-run (a full disk, a lost
      permission) raises ``OutputError`` saying which checkpoint is kept.
    resume: continue from the latest checkpoint in ``workdir`` (required when it has one; a
      workdir without one is refused).
    progress: a progress bar; else one log line per logged step.
    log: where the run's messages go (process 0 only).
  """
  configs.check_config(config, training=True)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise InputError(f'--workdir {workdir}: is a file, not a folder')
  if resume and not _holds_checkpoints(workdir):
    raise _no_run_to_resume(workdir)
  run = _run_sizes(config, workdir)
  log = log if run.is_main else (lambda m: None)
  start = _start(config, run, resume, log)
  try:
    if start.resumed_from is not None:
      log(
        f'resumed from {start.ckpt.directory}/{start.resumed_from} (step {int(start.state.step)})'
      )
    log(
      f'{config.name}: {jax.device_count()} device(s), global batch {run.global_batch}, '
      f'{run.steps_per_epoch} steps/epoch, {config.train.epochs} epochs ({run.total_steps} '
      f'steps), workdir {workdir}'
    )
    state, step = _train_loop(config, run, start, progress, log)
  except OSError as e:  # a full disk, a lost permission: in a checkpoint, the metrics, the logs
    raise _output_error(e, workdir, start.ckpt.latest_step(), 'training stopped') from e
  finally:
    start.train_iter.close()
    start.ckpt.close()
  if step < run.total_steps:
    log(f'stopped at step {step} of {run.total_steps} (train.max_steps); continue with --resume')
    return TrainResult(step, run.total_steps, None)
  return TrainResult(step, run.total_steps, _write_model(config, run, state, step, log))


@dataclasses.dataclass
class _Start:
  """What a run starts from: its checkpoints, data iterator, optimiser and first state (the
  checkpoint's when it resumes from step ``resumed_from``)."""

  ckpt: ckpt_lib.CheckpointManager
  train_iter: pipeline.DataIterator
  tx: optax.GradientTransformation
  state: state_lib.TrainState
  resumed_from: Optional[int]


def _start(config: ml_collections.ConfigDict, run: _Run, resume: bool, log) -> _Start:
  """Everything before the first step. Until training starts, a user error removes what this
  run created in the workdir, and a failed write says that nothing was trained."""
  workdir = run.workdir
  created = [p for p in _run_files(workdir) if not os.path.exists(p)]
  train_iter = ckpt = None
  try:
    os.makedirs(workdir, exist_ok=True)
    ckpt = ckpt_lib.CheckpointManager(workdir, keep=config.train.keep_checkpoints)
    resumed_from = _checkpoint_to_resume(ckpt, config, resume, workdir)
    variables = initial_variables(config, log)
    tx = optim.make_optimizer(config, run.steps_per_epoch)
    train_iter = pipeline.make_train_iterator(
      config,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      batch_size=run.local_batch,
    )
    state = _initial_state(variables, tx, config, run, ckpt, train_iter, resumed_from)
    if run.is_main:
      fileio.atomic_write_text(os.path.join(workdir, 'config.json'), config.to_json(indent=2))
  except BaseException as e:
    if train_iter is not None:
      train_iter.close()
    if ckpt is not None:
      ckpt.close()
    if run.is_main:
      _remove_created(created)
    if isinstance(e, OSError):
      raise _output_error(e, workdir, None, 'nothing was trained') from e
    raise
  return _Start(ckpt, train_iter, tx, state, resumed_from)


def _checkpoint_to_resume(ckpt, config, resume: bool, workdir: str) -> Optional[int]:
  """The step to resume from (None for a new run), after checking that the workdir's
  checkpoints may be continued with this config on these devices."""
  latest = ckpt.latest_step()
  if latest is not None and not resume:
    raise InputError(
      f'{workdir} already holds checkpoints (latest step {latest}). Continue it with '
      '--resume, or choose a new --workdir.'
    )
  if not resume:
    return None
  if latest is None:  # step folders, none of them complete
    raise _no_run_to_resume(workdir)
  ckpt_lib.check_resume_config(
    ckpt.read_meta(latest), config, jax.device_count(), jax.process_count(), ckpt.directory
  )
  return latest


def _write_model(config, run: _Run, state, step: int, log) -> Optional[str]:
  """Writes ``model.msgpack`` (process 0; the others return None)."""
  if not run.is_main:
    return None
  try:
    path = model_file.save_variables(
      os.path.join(run.workdir, 'model.msgpack'), jax.device_get(state.variables()), config
    )
  except OSError as e:
    raise _output_error(e, run.workdir, step, 'the model file was not written') from e
  log(f'model written to {path}')
  return path


def _run_files(workdir: str):
  """What a run creates in ``workdir`` before its first step (removed again on a user error)."""
  return [
    workdir,
    os.path.join(workdir, ckpt_lib.CHECKPOINT_DIR),
    os.path.join(workdir, 'config.json'),
  ]


def _remove_created(created) -> None:
  """Removes the paths of ``_run_files`` that this run created (folders only while empty of
  anything but what the run wrote there)."""
  for path in reversed(created):
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
      os.unlink(path)


def _holds_checkpoints(workdir: str) -> bool:
  """Whether ``workdir`` holds a checkpoint step (orbax names step folders by the step)."""
  folder = os.path.join(workdir, ckpt_lib.CHECKPOINT_DIR)
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _no_run_to_resume(workdir: str) -> InputError:
  return InputError(
    f'--resume: {workdir} holds no run to continue (no checkpoint in '
    f'{os.path.join(workdir, ckpt_lib.CHECKPOINT_DIR)}); check --workdir, or start a new run '
    'without --resume'
  )


def _output_error(error: OSError, workdir: str, checkpoint_step, what: str) -> OutputError:
  """The one line of a write that failed: the path and OS error, what was kept, how to go on."""
  if checkpoint_step is None:
    kept = 'no checkpoint was written: run the same command again'
  else:
    kept = (
      f'the checkpoints up to step {checkpoint_step} in {workdir} are kept: continue with --resume'
    )
  return OutputError(f'{fileio.describe_os_error(error)}; {what}; {kept}')


def _run_sizes(config: ml_collections.ConfigDict, workdir: str) -> _Run:
  t = config.train
  mesh = step_lib.make_mesh()
  global_batch = t.batch_size * jax.device_count()
  step_lib.check_global_batch(global_batch, mesh)
  steps_per_epoch = optim.steps_per_epoch_for(config, global_batch)
  total_steps = steps_per_epoch * t.epochs
  return _Run(
    mesh=mesh,
    global_batch=global_batch,
    local_batch=t.batch_size * jax.local_device_count(),
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    stop_step=min(total_steps, t.max_steps) if t.max_steps > 0 else total_steps,
    is_main=jax.process_index() == 0,
    workdir=workdir,
  )


def initial_variables(config: ml_collections.ConfigDict, log=print):
  """The model's starting variables: ``train.pretrained`` (a timm/MAE ViT or an OSTrack
  checkpoint) or a fresh initialisation, with the score prior set on a fresh head."""
  t = config.train
  if t.pretrained:
    try:
      variables = model_file.load_checkpoint(t.pretrained, config)
    except (ValueError, OSError) as e:  # not a checkpoint, or one for another preset
      raise InputError(f'config.train.pretrained: {e}') from e
  else:
    variables = ostrack.init_variables(config, seed=t.seed)
  if not t.score_prior:
    return variables
  # Only a freshly initialised head gets the prior: from scratch, or next to a ViT backbone
  # checkpoint (the converter initialises the head with seed 0); a trained one is kept.
  fresh_head = not t.pretrained or jax.tree_util.tree_all(
    jax.tree_util.tree_map(
      np.array_equal,
      variables['params']['box_head'],
      ostrack.init_variables(config, seed=0)['params']['box_head'],
    )
  )
  if fresh_head:
    return state_lib.set_score_prior(variables, t.score_prior)
  log(f'train.score_prior ignored: the head comes trained from {t.pretrained}')
  return variables


def _initial_state(variables, tx, config, run: _Run, ckpt, train_iter, resume_step):
  """A fresh train state, or the one of checkpoint ``resume_step`` (with the data iterator's
  position), replicated over the mesh."""
  state = state_lib.create_train_state(variables, tx, seed=config.train.seed)
  repl = step_lib.replicated(run.mesh)
  if resume_step is not None:
    abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state
    )
    try:
      state = ckpt.restore(abstract, train_iter, resume_step)
    except pipeline.ResumeMismatchError as e:
      raise InputError(str(e)) from e
  return jax.device_put(state, repl)


def _train_loop(config, run: _Run, start: _Start, progress: bool, log):
  """Steps from ``start.state.step`` to ``run.stop_step``: logging, validation, checkpoints.
  Returns (state, step)."""
  t = config.train
  state, tx, ckpt, train_iter = start.state, start.tx, start.ckpt, start.train_iter
  last_checkpoint = start.resumed_from
  model = ostrack.build_model(state_lib.training_config(config))
  train_step = step_lib.TrainStep(model, tx, config, run.mesh)
  start_step = int(state.step)
  resumed = last_checkpoint is not None
  writer = loop.MetricWriter(
    run.workdir, enabled=run.is_main, resume_step=start_step if resumed else None
  )
  monitor = loop.NonFiniteMonitor(
    t.max_bad_steps, initial_total=int(state.bad_steps), last_checkpoint=last_checkpoint
  )
  bar = tqdm.tqdm(
    total=run.total_steps,
    initial=start_step,
    disable=not run.is_main or not progress,
    dynamic_ncols=True,
    desc=config.name,
  )
  validate = _validator(config, run)
  logger = loop.StepLogger(config, run.global_batch, writer, monitor, bar, progress, log)
  meta = ckpt_lib.make_meta(config, jax.device_count(), jax.process_count())
  step = start_step
  with loop.InterruptWatch() as interrupts:
    try:
      while step < run.stop_step:
        epoch = optim.epoch_of_step(step, run.steps_per_epoch)
        keep = optim.keep_rate_for_epoch(config, epoch)
        state, metrics = train_step(state, step_lib.shard_batch(next(train_iter), run.mesh), keep)
        step += 1
        interrupts.check()
        end_of_epoch = step % run.steps_per_epoch == 0
        logger.add(step, epoch, keep, metrics)
        if step % t.log_every_steps == 0 or end_of_epoch or step == run.stop_step:
          logger.flush()
        if end_of_epoch and t.val_every_epochs and epoch % t.val_every_epochs == 0:
          values = validate(state, keep)
          writer.write(step, dict(values, epoch=epoch))
          bar.write(
            f'epoch {epoch} validation: ' + ' '.join(f'{k} {v:.4f}' for k, v in values.items())
          )
        if step % t.checkpoint_every_steps == 0 or step == run.stop_step:
          ckpt.save(step, state, train_iter, meta)
          monitor.last_checkpoint = step
    except KeyboardInterrupt:
      last = monitor.last_checkpoint
      log(
        f'interrupted at step {step} of {run.total_steps}; '
        + (
          f'the last checkpoint is step {last}: continue with --resume'
          if last is not None
          else 'no checkpoint was written yet'
        )
      )
      raise
    finally:
      writer.close()
      bar.close()
  return state, step


def _validator(config, run: _Run):
  """``validate(state, keep) -> {'val/<metric>': mean}`` over ``data.val_samples_per_epoch``
  validation pairs (deterministic processing, one pass)."""
  eval_step = step_lib.make_eval_step(ostrack.build_model(config), config, run.mesh)

  def validate(state, keep):
    it = pipeline.make_train_iterator(
      config,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      batch_size=run.local_batch,
      num_epochs=1,
      train=False,
      num_workers=0,
    )
    try:
      per_batch = []
      for _ in range(max(1, config.data.val_samples_per_epoch // run.global_batch)):
        metrics = eval_step(state.variables(), step_lib.shard_batch(next(it), run.mesh), keep)
        per_batch.append(dict(jax.device_get(metrics), finite=True))
    finally:
      it.close()
    return {f'val/{k}': v for k, v in loop.mean_metrics(per_batch).items()}

  return validate
