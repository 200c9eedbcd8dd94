"""ostrack_jax: OSTrack, the one-stream ViT visual object tracker, in JAX/Flax.

Public API (imported lazily: ``import ostrack_jax`` loads no JAX, parses no flags and reads
no files until a name is used):

* ``get_config(name)``: a preset ConfigDict (``ostrack_jax.configs.PRESETS``);
  ``load_config(spec)``: a preset by name or a config file.
* ``train_and_evaluate(config, workdir, resume=False)``: what ``train.py`` runs.
* ``evaluate(config, checkpoint, dataset, data_dir, ...)``: what ``eval.py`` runs.
* ``compare_trackers(dataset, data_dir, results_folders, ...)``: what ``python -m
  ostrack_jax.compare`` runs: several trackers' result folders in one table and one set of plots.
* ``build_model(config)``: the Flax (Linen) ``OSTrack`` module.
* ``init_variables(config, seed=0)``: freshly initialised variables.
* ``load_torch_checkpoint(path, config)``: Flax variables from a released OSTrack checkpoint
  or a timm/MAE ViT checkpoint (needs torch).
* ``save_variables(path, variables, config)`` / ``load_variables(path, config)``: our own
  torch-free checkpoint format.
* ``load_checkpoint(path, config)``: either of the above, chosen by the file.
* ``make_forward(config, variables)``: a jitted ``fn(template, search, keep_ratio=None)``.
* ``Tracker``: ``Tracker.from_checkpoint(path, config)``, ``initialize``, ``track``,
  ``track_async`` (one sequence; crop, network and box arithmetic in one jitted device step).
* ``BatchTracker``: ``BatchTracker(tracker, batch_size, batch_mode, devices=None)``: B sequences
  in lockstep on the same device core, optionally spread over several devices.
* ``load_exported(directory, dtype='float32')``: a Tracker running the exported (StableHLO)
  ``init`` / ``track`` written by ``python -m ostrack_jax.export``; needs no Flax.
* ``load_onnx(path, preset=None, providers=None)``: a tracker with the same API (initialize /
  track / state) running the ONNX network written by ``python -m ostrack_jax.export --format
  onnx`` on onnxruntime's execution providers, crops and decode on the host with NumPy and
  OpenCV (no JAX).
"""

import importlib

__version__ = '0.1.0'

_LAZY = {
  'get_config': 'ostrack_jax.configs',
  'PRESETS': 'ostrack_jax.configs',
  'load_config': 'ostrack_jax.configs',
  'train_and_evaluate': 'ostrack_jax.training.trainer',
  'evaluate': 'ostrack_jax.tracking.evaluate',
  'compare_trackers': 'ostrack_jax.tracking.compare',
  'build_model': 'ostrack_jax.models.ostrack',
  'init_variables': 'ostrack_jax.models.ostrack',
  'make_forward': 'ostrack_jax.models.ostrack',
  'load_torch_checkpoint': 'ostrack_jax.weights.convert',
  'save_variables': 'ostrack_jax.weights.model_file',
  'load_variables': 'ostrack_jax.weights.model_file',
  'load_checkpoint': 'ostrack_jax.weights.model_file',
  'Tracker': 'ostrack_jax.tracking.tracker',
  'BatchTracker': 'ostrack_jax.tracking.tracker',
  'load_exported': 'ostrack_jax.deploy.stablehlo',
  'load_onnx': 'ostrack_jax.deploy.onnx_tracker',
}

__all__ = sorted(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(list(globals()) + list(_LAZY))
