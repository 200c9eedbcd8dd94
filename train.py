"""Trains OSTrack as the original does, data-parallel over every device (and host).

  python train.py --config configs/ostrack_256_ce.py --workdir workdirs/ostrack_256_ce \
      --config.data.roots.got10k=/datasets/GOT-10k --config.data.roots.lasot=/datasets/LaSOT \
      --config.train.pretrained=/weights/mae_pretrain_vit_base.pth [--resume] [--multihost]

Several machines: start the same command on each with ``--multihost`` (SLURM, Open MPI,
Kubernetes and Cloud TPU are detected), or with ``--multihost --coordinator HOST0:PORT
--num-processes N --process-id I``; every process feeds its own slice of each global batch and
the run directory must be on a filesystem all of them share.

With no arguments it trains the tiny preset (``configs/tiny_256_ce.py``) on the synthetic dataset
(generated on first use) on this machine's CPU for a few minutes, into ``workdirs/tiny_256_ce/``;
``python eval.py`` then evaluates the result on the synthetic validation sequences.

The run directory holds ``checkpoints/<step>/`` (orbax: model, optimiser, step, RNG, data
iterator; every ``train.checkpoint_every_steps`` and at the end, the last
``train.keep_checkpoints`` kept), ``metrics.jsonl``, ``tensorboard/``, ``config.json`` and, at
the end, ``model.msgpack`` (load it with ``ostrack_jax.load_checkpoint``, ``eval.py`` or
``Tracker.from_checkpoint``). A workdir with checkpoints is only continued with ``--resume``,
and only with the same config and device count (the batches then continue exactly).
"""

import os
import sys
import time

# ----------------------------------------------------------------------------------------------
# Command line and config. (Before JAX is imported: --multihost must run first.)
# ----------------------------------------------------------------------------------------------
from ostrack_jax import cli_utils
from ostrack_jax.training import loop

DEFAULTS = {'config': 'configs/tiny_256_ce.py'}


def main(argv) -> int:
  args, overrides = loop.parse_args(argv, DEFAULTS)
  try:
    config = cli_utils.load_config(args.config)
    cli_utils.apply_overrides(config, overrides)
    cli_utils.check_config(config, training=True)
  except (ValueError, FileNotFoundError, KeyError) as e:
    print(f'train.py: {e}', file=sys.stderr)
    return 2
  workdir = args.workdir or os.path.join('workdirs', config.name)
  if config.train.pretrained and not os.path.isfile(config.train.pretrained):
    what = (
      'is a directory, not a checkpoint file'
      if os.path.isdir(config.train.pretrained)
      else 'no such file'
    )
    print(
      f'train.py: config.train.pretrained={config.train.pretrained!r}: {what} (give the '
      'MAE/timm ViT checkpoint, e.g. mae_pretrain_vit_base.pth, or an OSTrack checkpoint)',
      file=sys.stderr,
    )
    return 2

  import jax  # pylint: disable=g-import-not-at-top

  if args.multihost:
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top

  from ostrack_jax import checkpoint_io  # pylint: disable=g-import-not-at-top
  from ostrack_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from ostrack_jax.models import ostrack  # pylint: disable=g-import-not-at-top
  from ostrack_jax.training import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from ostrack_jax.training import optim, state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top

  is_main = jax.process_index() == 0
  t = config.train

  # --------------------------------------------------------------------------------------------
  # Mesh: every device of every process on one 'data' axis.
  # --------------------------------------------------------------------------------------------
  mesh = step_lib.make_mesh()
  num_devices, num_processes = jax.device_count(), jax.process_count()
  global_batch = t.batch_size * num_devices
  local_batch = t.batch_size * jax.local_device_count()
  step_lib.check_global_batch(global_batch, mesh)
  steps_per_epoch = optim.steps_per_epoch_for(config, global_batch)
  total_steps = steps_per_epoch * t.epochs
  stop_step = min(total_steps, t.max_steps) if t.max_steps > 0 else total_steps
  feat_size = config.model.search_size // config.model.patch_size

  # --------------------------------------------------------------------------------------------
  # Workdir and resume decision (explicit: never silently continue or overwrite a run).
  # --------------------------------------------------------------------------------------------
  os.makedirs(workdir, exist_ok=True)
  ckpt = ckpt_lib.CheckpointManager(workdir, keep=t.keep_checkpoints)
  latest = ckpt.latest_step()
  if latest is not None and not args.resume:
    print(
      f'train.py: {workdir} already holds checkpoints (latest step {latest}). Continue it '
      'with --resume, or choose a new --workdir.',
      file=sys.stderr,
    )
    return 2
  if args.resume and latest is not None:
    try:
      ckpt_lib.check_resume_config(
        ckpt.read_meta(latest), config, num_devices, num_processes, ckpt.directory
      )
    except ckpt_lib.ResumeConfigError as e:
      print(f'train.py: {e}', file=sys.stderr)
      return 2
  if is_main:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2))

  # --------------------------------------------------------------------------------------------
  # Model, initial weights and optimiser.
  # --------------------------------------------------------------------------------------------
  model = ostrack.build_model(state_lib.training_config(config))
  if t.pretrained:
    try:
      variables = checkpoint_io.load_checkpoint(t.pretrained, config)
    except (ValueError, OSError) as e:  # not a checkpoint, or one for another preset
      print(f'train.py: config.train.pretrained: {e}', file=sys.stderr)
      return 2
  else:
    variables = ostrack.init_variables(config, seed=t.seed)
  if t.score_prior:
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
      variables = state_lib.set_score_prior(variables, t.score_prior)
    elif is_main:
      print(f'train.score_prior ignored: the head comes trained from {t.pretrained}', flush=True)
  tx = optim.make_optimizer(config, steps_per_epoch)

  # --------------------------------------------------------------------------------------------
  # Input pipeline: this process's slice of every global batch (grain workers).
  # --------------------------------------------------------------------------------------------
  if 'synthetic' in tuple(config.data.train_datasets) + tuple(config.data.val_datasets):
    from ostrack_jax.data import synthetic  # pylint: disable=g-import-not-at-top

    root = config.data.roots.synthetic or str(synthetic.default_root())
    if is_main and not os.path.exists(os.path.join(root, 'synthetic.json')):
      print(f'generating the synthetic dataset at {root} ...', flush=True)
    synthetic.ensure_synthetic_dataset(config.data.roots.synthetic or None)
  train_iter = pipeline.make_train_iterator(
    config, process_index=jax.process_index(), process_count=num_processes, batch_size=local_batch
  )

  def val_batches():
    it = pipeline.make_train_iterator(
      config,
      process_index=jax.process_index(),
      process_count=num_processes,
      batch_size=local_batch,
      num_epochs=1,
      train=False,
      num_workers=0,
    )
    for _ in range(max(1, config.data.val_samples_per_epoch // global_batch)):
      yield next(it)

  # --------------------------------------------------------------------------------------------
  # Train state: fresh, or restored (model, optimiser, step, RNG, data iterator).
  # --------------------------------------------------------------------------------------------
  repl = step_lib.replicated(mesh)
  state = state_lib.create_train_state(variables, tx, seed=t.seed)
  if args.resume and latest is not None:
    abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state
    )
    try:
      state = ckpt.restore(abstract, train_iter, latest)
    except pipeline.ResumeMismatchError as e:
      print(f'train.py: {e}', file=sys.stderr)
      return 2
    print(f'resumed from {ckpt.directory}/{latest} (step {int(state.step)})', flush=True)
  state = jax.device_put(state, repl)
  start_step = int(state.step)
  meta = ckpt_lib.make_meta(config, num_devices, num_processes)

  # --------------------------------------------------------------------------------------------
  # Step functions: jitted, state replicated and donated, batch sharded on 'data'.
  # --------------------------------------------------------------------------------------------
  train_step = step_lib.TrainStep(model, tx, config, mesh)
  eval_step = step_lib.make_eval_step(ostrack.build_model(config), config, mesh)

  # --------------------------------------------------------------------------------------------
  # Train loop.
  # --------------------------------------------------------------------------------------------
  writer = loop.MetricWriter(
    workdir, enabled=is_main, resume_step=start_step if args.resume else None
  )
  monitor = loop.NonFiniteMonitor(
    t.max_bad_steps,
    initial_total=int(state.bad_steps),
    last_checkpoint=latest if args.resume else None,
  )
  bar = tqdm.tqdm(
    total=total_steps,
    initial=start_step,
    disable=not is_main or args.no_progress,
    dynamic_ncols=True,
    desc=config.name,
  )
  pending, window_start, window_steps = [], time.perf_counter(), 0
  step = start_step
  print(
    f'{config.name}: {num_devices} device(s), global batch {global_batch}, {steps_per_epoch} '
    f'steps/epoch, {t.epochs} epochs ({total_steps} steps), workdir {workdir}',
    flush=True,
  )
  try:
    while step < stop_step:
      epoch = optim.epoch_of_step(step, steps_per_epoch)
      keep = optim.keep_rate_for_epoch(config, epoch)
      batch = step_lib.add_heatmap(next(train_iter), feat_size)
      state, metrics = train_step(state, step_lib.shard_batch(batch, mesh), keep)
      step += 1
      pending.append((step, epoch, metrics))
      window_steps += 1
      end_of_epoch = step % steps_per_epoch == 0
      if step % t.log_every_steps == 0 or end_of_epoch or step == stop_step:
        fetched = [(s, e, jax.device_get(m)) for s, e, m in pending]
        pending = []
        for s, e, m in fetched:
          monitor.update(s, e, m)
        elapsed = time.perf_counter() - window_start
        values = loop.mean_metrics([m for _, _, m in fetched])
        values.update(
          epoch=epoch,
          keep_rate=keep,
          samples_per_s=window_steps * global_batch / elapsed,
          step_time_s=elapsed / window_steps,
          bad_steps=monitor.total,
          grad_norm=float(np.mean([float(m['grad_norm']) for _, _, m in fetched])),
          lr_head=optim.learning_rate_for_epoch(config, epoch, optim.HEAD),
          lr_backbone=optim.learning_rate_for_epoch(config, epoch, optim.BACKBONE),
        )
        writer.write(step, values)
        summary = (
          f"loss {values['Loss/total']:.3f} (giou {values['Loss/giou']:.3f} l1 "
          f"{values['Loss/l1']:.3f} loc {values['Loss/location']:.3f}) IoU {values['IoU']:.3f} "
          f"lr {values['lr_head']:.1e} keep {keep:.3f} {values['samples_per_s']:.1f} samples/s"
        )
        bar.set_postfix_str(summary, refresh=False)
        bar.update(window_steps)
        if args.no_progress and is_main:
          print(f'step {step}/{total_steps} epoch {epoch} {summary}', flush=True)
        window_start, window_steps = time.perf_counter(), 0
      if end_of_epoch and t.val_every_epochs and epoch % t.val_every_epochs == 0:
        val = [
          jax.device_get(
            eval_step(
              state.variables(),
              step_lib.shard_batch(step_lib.add_heatmap(b, feat_size), mesh),
              keep,
            )
          )
          for b in val_batches()
        ]
        val_values = {
          f'val/{k}': v for k, v in loop.mean_metrics([dict(m, finite=True) for m in val]).items()
        }
        writer.write(step, dict(val_values, epoch=epoch))
        bar.write(
          f'epoch {epoch} validation: ' + ' '.join(f'{k} {v:.4f}' for k, v in val_values.items())
        )
      if step % t.checkpoint_every_steps == 0 or step == stop_step:
        ckpt.save(step, state, train_iter, meta)
        monitor.last_checkpoint = step
  except loop.NonFiniteError as e:
    bar.close()
    print(f'train.py: {e}', file=sys.stderr)
    return 3
  finally:
    writer.close()
    train_iter.close()
  bar.close()

  # --------------------------------------------------------------------------------------------
  # Export: the final model as one msgpack file (eval.py / Tracker.from_checkpoint load it).
  # --------------------------------------------------------------------------------------------
  ckpt.close()
  if step < total_steps:
    if is_main:
      print(
        f'stopped at step {step} of {total_steps} (train.max_steps); continue with --resume',
        flush=True,
      )
    return 0
  if is_main:
    path = checkpoint_io.save_variables(
      os.path.join(workdir, 'model.msgpack'), jax.device_get(state.variables()), config
    )
    print(f'model written to {path}', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
