"""Shared by the tests that run train.py: the small OSTrack they train (a few seconds a step on
a CPU), the command line of a train.py process, the environment of any command a test starts,
and the losses it logged. Each test adds its own training flags after
SMALL_MODEL's."""

import json
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent

SMALL_MODEL = [
  '--config',
  'configs/tiny_256_ce.py',
  '--config.model.template_size=64',
  '--config.model.search_size=128',
  '--config.model.depth=3',
  '--config.model.ce_loc=(1,)',
  '--config.model.ce_keep_ratio=(0.7,)',
  '--config.model.embed_dim=32',
  '--config.model.num_heads=2',
  '--config.model.mlp_dim=64',
  '--config.model.head_channels=16',
]

# The training flags of test_train_resume's train.py runs (what each flag is for: there), run on
# TRAIN_DEVICES simulated devices. A test that runs train.py with these flags (and any epoch
# count: the steps' programs do not depend on it) loads those runs' two compiled steps
# (keep 1.0, then 0.7) from the test run's compilation cache instead of compiling its own.
TRAIN_FLAGS = [
  'model.ce_template_range=ALL',
  'model.drop_path_rate=0.1',
  'train.mixed_precision=True',
  'train.batch_size=1',
  'train.epochs=3',
  'data.samples_per_epoch=16',
  'train.ce_start_epoch=2',
  'train.ce_warm_epoch=1',
  'train.log_every_steps=1',
  'train.checkpoint_every_steps=2',
  'train.keep_checkpoints=2',
  'train.val_every_epochs=0',
]
TRAIN_DEVICES = 8  # as the pytest process (tests/conftest.py)


def small_config(*overrides: str):
  """SMALL_MODEL as a config object (tiny_256_ce with SMALL_MODEL's overrides), then
  ``overrides`` ('a.b=value', as after --config.), for the tests that train in-process."""
  from ostrack_jax.configs import apply_overrides, get_config

  small = [a[len('--config.') :] for a in SMALL_MODEL if a.startswith('--config.')]
  return apply_overrides(get_config('tiny_256_ce'), small + list(overrides))


def random_batch(batch: int, seed: int = 0):
  """A random training batch for SMALL_MODEL's sizes (64 px template, 128 px search, NHWC
  float32), with search boxes as normalised cxcywh and the score heatmap of the 8x8 grid."""
  import numpy as np

  from ostrack_jax.data import transforms

  rng = np.random.default_rng(seed)
  b = {
    'template': rng.normal(size=(batch, 64, 64, 3)).astype(np.float32),
    'search': rng.normal(size=(batch, 128, 128, 3)).astype(np.float32),
    'search_anno': np.concatenate(
      [rng.uniform(0.2, 0.5, (batch, 2)), rng.uniform(0.1, 0.4, (batch, 2))], 1
    ).astype(np.float32),
  }
  return dict(b, heatmap=transforms.gaussian_heatmap(b['search_anno'], 8))


def make_synthetic_root(folder: pathlib.Path) -> pathlib.Path:
  """The tiny synthetic training set of the train.py tests (3 training sequences of 20 frames,
  160x120) in ``folder``."""
  from ostrack_jax.datasets import synthetic

  synthetic.make_synthetic_dataset(
    folder, num_train=3, num_val=1, num_frames=20, frame_size=(160, 120), seed=0
  )
  return folder


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a process the tests start: this process's flags (tests/conftest.py), with
  ``devices`` simulated CPU devices instead of its 8."""
  flags = [
    f
    for f in os.environ.get('XLA_FLAGS', '').split()
    if not f.startswith('--xla_force_host_platform_device_count')
  ]
  return ' '.join([*flags, f'--xla_force_host_platform_device_count={devices}'])


def command_env(devices: int, older_emitters: bool = False) -> dict:
  """The environment of a train.py / eval.py process that a test starts: ``devices`` simulated
  CPU devices, this repository's package importable. ``older_emitters``: in a fast_compile test (tests/conftest.py), the
  process compiles with XLA's older CPU emitters too, as the test process does; only for
  processes whose programs no in-process run loads from the compilation cache (the option's
  two routes, XLA_FLAGS here and a compiler option there, give different cache keys)."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = xla_flags(devices)
  if older_emitters and env.get('JAX_DISABLE_MOST_OPTIMIZATIONS') == '1':
    env['XLA_FLAGS'] += ' --xla_cpu_use_fusion_emitters=false'
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
  return env


def train_command(workdir, root, flags, *extra) -> list:
  """The argv of ``python train.py`` into ``workdir`` with ``flags`` on the synthetic set at
  ``root``, then ``extra``."""
  return [
    sys.executable,
    str(REPO / 'train.py'),
    '--workdir',
    str(workdir),
    *flags,
    f'--config.data.roots.synthetic={root}',
    *extra,
  ]


def logged_losses(workdir) -> list:
  """(step, total, giou, location, keep rate) of every training step in the run's
  metrics.jsonl."""
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [
    (r['step'], r['Loss/total'], r['Loss/giou'], r['Loss/location'], r['keep_rate'])
    for r in map(json.loads, lines)
    if 'Loss/total' in r
  ]
