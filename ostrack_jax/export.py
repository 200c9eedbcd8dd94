"""Exported tracker: the per-frame device step as StableHLO (``jax.export``), no Flax needed.

``python -m ostrack_jax.export --checkpoint PATH --config CONFIG --out DIR`` serialises the
tracker's jitted per-frame step (:func:`ostrack_jax.tracking.tracker.make_track_step`: ImageNet
normalisation of the uint8 search crop, the network with candidate elimination, the Hann
window, the box decode at the windowed peak) for fixed input sizes (batch 1), once per compute
dtype (float32 and bfloat16). :func:`load_exported` turns the folder back into a tracker with
``initialize`` / ``track`` / ``state`` like :class:`~ostrack_jax.tracking.tracker.Tracker` --
it *is* that class, driven by the deserialised step -- without importing Flax or building the
model. The host side (crops with ``ostrack_jax.crop``, mapping the box back to the image and
clipping it, in float64 as the original) is the Tracker's own code, so an exported tracker
gives the live tracker's boxes.

The folder::

  manifest.json          format, preset and full config, input shapes, variants, platforms,
                         the weights' names/shapes in the order the step takes them
  weights.npz            the float32 variables ('params/...', 'batch_stats/...'), uncompressed
  step_float32.jax       jax.export serialisation (StableHLO + calling convention)
  step_bfloat16.jax      the same with bfloat16 matmul operands (float32 accumulation; float32 weights, cast on the fly)

Design choice: the weights are an *input* of the exported function, not constants baked into
it. One weights file then serves both dtype variants (baking would store ViT-B's 370 MB twice,
and ViT-L's 1.2 GB per variant approaches protobuf's 2 GB limit), XLA does not constant-fold
hundreds of megabytes at load time, and a fine-tuned checkpoint of the same preset can be
swapped in (``load_exported(dir, weights=...)``) without exporting again. The template crop
is an input as well: OSTrack is one-stream (template and search tokens attend to each other in
every block), so there are no template features to precompute; the template is normalised
once per sequence by :meth:`Tracker.initialize`.

The step's signature (all batch 1; T = template size, S = search size, F = S // patch)::

  step(variables, template (1, T, T, 3) float32 normalized, search (1, S, S, 3) uint8,
       window (F, F) float32, table (768,) float32)
    -> {'pred_boxes': (1, 4) cxcywh normalized to the search crop,
        'score_map': (1, F, F), 'response': (1, F, F) (windowed),
        'removed_indexes': [(1, n_i) int32 per CE layer]}

By default it is lowered for both 'cpu' and 'cuda', so an artifact exported on a laptop runs
on a GPU machine and vice versa.
"""

import argparse
import collections.abc
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

import numpy as np

FORMAT = 'ostrack_jax.exported_tracker'
FORMAT_VERSION = 1
DTYPES = ('float32', 'bfloat16')
DEFAULT_PLATFORMS = ('cpu', 'cuda')
WEIGHTS_FILE = 'weights.npz'
MANIFEST_FILE = 'manifest.json'


def step_file(dtype: str) -> str:
  return f'step_{dtype}.jax'


# ------------------------------------------------------------------------- weights


def _flatten(tree: Dict[str, Any], prefix: str = '') -> Dict[str, np.ndarray]:
  """Nested dict -> {'a/b/c': array}, keys in sorted order (jax's dict pytree order)."""
  flat = {}
  for key in sorted(tree):
    value = tree[key]
    name = f'{prefix}{key}'
    if isinstance(value, collections.abc.Mapping):
      flat.update(_flatten(value, name + '/'))
    else:
      flat[name] = np.asarray(value)
  return flat


def _unflatten(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  tree: Dict[str, Any] = {}
  for name, value in flat.items():
    *parents, leaf = name.split('/')
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


# ------------------------------------------------------------------------- export


def export_tracker(config, variables: Dict[str, Any], out_dir: str,
                   dtypes: Sequence[str] = DTYPES,
                   platforms: Optional[Sequence[str]] = DEFAULT_PLATFORMS) -> str:
  """Serialises the tracker's per-frame step for ``config`` into ``out_dir`` (atomically).

  Args:
    config: the preset (``config.model.dtype`` is overridden per variant).
    variables: {'params', 'batch_stats'} float32 Flax variables of that preset.
    out_dir: the folder to write (new, empty, or a previous export, which is replaced).
    dtypes: compute dtypes to export, a subset of ('float32', 'bfloat16').
    platforms: platforms to lower for ('cpu', 'cuda', 'tpu', 'rocm'); None = the default
      backend of this machine.
  Returns:
    ``out_dir``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from ostrack_jax.tracking import tracker as tracker_lib  # pylint: disable=g-import-not-at-top

  bad = [d for d in dtypes if d not in DTYPES]
  if bad or not dtypes:
    raise ValueError(f'--dtypes: expected a non-empty subset of {DTYPES}, got {list(dtypes)}')
  if (os.path.isdir(out_dir) and os.listdir(out_dir)
      and not os.path.isfile(os.path.join(out_dir, MANIFEST_FILE))):
    raise FileExistsError(f'--out {out_dir}: the folder exists and is not an exported tracker; '
                          'give a new or empty folder (an exported tracker is replaced)')
  variables = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  flat = {k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
          for k, v in _flatten(jax.device_get(variables)).items()}
  variables = _unflatten(flat)
  m = config.model
  t, s = int(m.template_size), int(m.search_size)
  f = s // int(m.patch_size)
  args = (
      jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables),
      jax.ShapeDtypeStruct((1, t, t, 3), np.float32),
      jax.ShapeDtypeStruct((1, s, s, 3), np.uint8),
      jax.ShapeDtypeStruct((f, f), np.float32),
      jax.ShapeDtypeStruct(tracker_lib.normalization_table().shape, np.float32),
  )
  blobs = {}
  for dtype in dtypes:
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
      variant.model.dtype = dtype
    step = tracker_lib.make_track_step(variant)
    # float32 is the exact variant: its matmuls are lowered at full precision (no TF32 on
    # GPUs), as the equivalence tests run the live model. bfloat16 is the fast one.
    precision = 'highest' if dtype == 'float32' else 'default'
    with jax.default_matmul_precision(precision):
      exported = jax.export.export(step, platforms=tuple(platforms) if platforms else None)(*args)
    blobs[dtype] = (exported.serialize(), exported.platforms)

  manifest = {
      'format': FORMAT,
      'format_version': FORMAT_VERSION,
      'preset': config.name,
      'config': json.loads(config.to_json()),
      'template_shape': [1, t, t, 3],
      'search_shape': [1, s, s, 3],
      'feat_size': f,
      'variants': {d: step_file(d) for d in blobs},
      'platforms': list(next(iter(blobs.values()))[1]),
      'jax_version': jax.__version__,
      'weights': [[k, list(v.shape), str(v.dtype)] for k, v in flat.items()],
  }
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix='.tmp-export-')
  try:
    np.savez(os.path.join(tmp, WEIGHTS_FILE), **flat)
    for dtype, (blob, _) in blobs.items():
      with open(os.path.join(tmp, step_file(dtype)), 'wb') as fh:
        fh.write(blob)
    with open(os.path.join(tmp, MANIFEST_FILE), 'w') as fh:
      json.dump(manifest, fh, indent=1)
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


# ------------------------------------------------------------------------- load


def read_manifest(directory: str) -> Dict[str, Any]:
  """The manifest of an exported tracker folder; ValueError/FileNotFoundError naming the problem."""
  path = os.path.join(directory, MANIFEST_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{directory}: not an exported tracker (no {MANIFEST_FILE}); make one '
                            f'with python -m ostrack_jax.export')
  with open(path) as fh:
    manifest = json.load(fh)
  if manifest.get('format') != FORMAT:
    raise ValueError(f'{path}: not an exported tracker manifest (format {manifest.get("format")!r})')
  if manifest.get('format_version') != FORMAT_VERSION:
    raise ValueError(f'{path}: format version {manifest.get("format_version")} is not supported '
                     f'(this ostrack_jax reads version {FORMAT_VERSION})')
  return manifest


def load_weights(path: str, manifest: Dict[str, Any]) -> Dict[str, Any]:
  """The variables of an exported tracker, checked against its manifest (names and shapes)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such weights file')
  with np.load(path, allow_pickle=False) as data:
    flat = {k: data[k] for k in data.files}
  expected = {name: tuple(shape) for name, shape, _ in manifest['weights']}
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  wrong = [f'{k}: {flat[k].shape} vs {expected[k]}' for k in expected
           if k in flat and tuple(flat[k].shape) != expected[k]]
  if missing or extra or wrong:
    raise ValueError(f'{path} does not fit the exported step (preset {manifest["preset"]!r}): '
                     f'missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}')
  return _unflatten({k: flat[k] for k, _, _ in manifest['weights']})


def load_exported(directory: str, dtype: str = 'float32', weights: Optional[str] = None):
  """A tracker running the exported step of ``directory`` (no Flax model is built).

  Args:
    directory: a folder written by :func:`export_tracker` / ``python -m ostrack_jax.export``.
    dtype: which variant to run, 'float32' or 'bfloat16'.
    weights: another weights .npz of the same preset (default: the folder's own).
  Returns:
    A :class:`ostrack_jax.tracking.tracker.Tracker`: ``initialize(frame, box_xywh)``,
    ``track(frame) -> box_xywh`` (RGB uint8 frames, xywh image pixels), ``state``,
    ``last_score_map`` / ``last_response`` (F, F), ``last_removed_indexes``, ``last_timing``.
    Its ``exported`` attribute is the deserialised ``jax.export.Exported``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from ostrack_jax.tracking import tracker as tracker_lib  # pylint: disable=g-import-not-at-top

  manifest = read_manifest(directory)
  if dtype not in manifest['variants']:
    raise ValueError(f'{directory}: no {dtype!r} variant (exported: {sorted(manifest["variants"])})')
  platform = jax.default_backend()
  usable = {'gpu': ('cuda', 'rocm')}.get(platform, (platform,))
  if not set(usable) & set(manifest['platforms']):
    raise ValueError(f'{directory} was exported for {manifest["platforms"]}, not for this '
                     f'machine\'s {platform!r}: export again with --platforms {platform}')
  with open(os.path.join(directory, manifest['variants'][dtype]), 'rb') as fh:
    exported = jax.export.deserialize(bytearray(fh.read()))
  variables = load_weights(weights or os.path.join(directory, WEIGHTS_FILE), manifest)
  config = ml_collections.ConfigDict(manifest['config'])
  config.model.dtype = dtype
  tracker = tracker_lib.Tracker(config, variables, step=jax.jit(exported.call))
  tracker.exported = exported
  tracker.manifest = manifest
  return tracker


# ------------------------------------------------------------------------- command line


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      prog='python -m ostrack_jax.export',
      description='Serialise the tracker\'s per-frame step (StableHLO via jax.export) with its '
                  'weights into a folder that ostrack_jax.export.load_exported runs without '
                  'building the Flax model.')
  p.add_argument('--checkpoint', required=True,
                 help='our model file (.msgpack) or a PyTorch OSTrack checkpoint (.pth/.pth.tar)')
  p.add_argument('--config', default='configs/ostrack_256_ce.py',
                 help='preset file or name (default: %(default)s)')
  p.add_argument('--out', required=True,
                 help='output folder: new, empty, or a previous export (replaced)')
  p.add_argument('--dtypes', default=','.join(DTYPES),
                 help='comma-separated compute dtypes to export (default: %(default)s)')
  p.add_argument('--platforms', default=','.join(DEFAULT_PLATFORMS),
                 help='comma-separated platforms to lower for: cpu, cuda, tpu, rocm, or '
                      '"default" for this machine\'s (default: %(default)s)')
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  from ostrack_jax.checkpoint_io import load_checkpoint  # pylint: disable=g-import-not-at-top
  from ostrack_jax.cli_utils import load_config  # pylint: disable=g-import-not-at-top
  dtypes = [d.strip() for d in args.dtypes.split(',') if d.strip()]
  platforms = None if args.platforms == 'default' else [
      p.strip() for p in args.platforms.split(',') if p.strip()]
  try:
    config = load_config(args.config)
    variables = load_checkpoint(args.checkpoint, config)
    export_tracker(config, variables, args.out, dtypes=dtypes, platforms=platforms)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f'python -m ostrack_jax.export: {e}', file=sys.stderr)
    return 2
  manifest = read_manifest(args.out)
  sizes = {name: os.path.getsize(os.path.join(args.out, name)) for name in sorted(os.listdir(args.out))}
  print(f'exported {config.name} ({", ".join(manifest["variants"])}; platforms '
        f'{", ".join(manifest["platforms"])}) to {args.out}:')
  for name, size in sizes.items():
    print(f'  {name:24s} {size / 1e6:9.2f} MB')
  return 0


if __name__ == '__main__':
  sys.exit(main())
