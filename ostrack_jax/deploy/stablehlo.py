"""The exported tracker: the device-resident tracker as StableHLO (``jax.export``), no Flax needed.

:func:`export_tracker` (``python -m ostrack_jax.export``) serialises the two pure functions of
the tracker's device core (:func:`ostrack_jax.tracking.tracker.make_tracking_fns`, batch 1, full
outputs):

* ``init``: cuts the template crop around the initial box in the (padded) frame, on the device,
  and normalises it into the tracker state;
* ``track``: per frame, cuts the search crop around the state (the original's arithmetic,
  pixel-exact with OpenCV), normalises it, runs the network with candidate elimination, the
  Hann window and the box decode, maps the box back to the image and clips it.

once per compute dtype (float32 with full-precision matmuls, bfloat16). The frame's padded
height and width are *symbolic* (shape polymorphism, ``jax.export.symbolic_shape('hb, wb')``):
one artifact serves every frame size (the tracker pads frames to a bucket shape, see
:func:`~ostrack_jax.tracking.tracker.bucket_shape`, and compiles one program per bucket at run
time, as the live tracker does). :func:`load_exported` turns the folder back into a
:class:`~ostrack_jax.tracking.tracker.Tracker` -- that very class, driven by the deserialised
functions -- with ``initialize`` / ``track`` / ``track_async`` / ``state`` / ``last_*``,
without importing Flax or building the model, and it gives the live tracker's boxes.

The folder::

  manifest.json          format (version 2), preset and full config, input shapes, variants,
                         platforms, the weights' names/shapes in the order the functions take them
  weights.npz            the float32 variables ('params/...', 'batch_stats/...'), uncompressed
  init.jax               jax.export serialisation of ``init`` (no network: shared by the variants)
  track_float32.jax      ``track`` with float32 matmuls at 'highest' precision (no TF32)
  track_bfloat16.jax     ``track`` with bfloat16 matmul operands (float32 accumulation); its
                         kernels are inputs in bfloat16 (cast once by the loader)

Design choice: the weights are an *input* of the exported function, not constants baked into
it. One weights file then serves both dtype variants (baking would store ViT-B's 370 MB twice,
and ViT-L's 1.2 GB per variant approaches protobuf's 2 GB limit), XLA does not constant-fold
hundreds of megabytes at load time, and a fine-tuned checkpoint of the same preset can be
swapped in (``load_exported(dir, weights=...)``) without exporting again. The template is part
of the state: OSTrack is one-stream (template and search tokens attend to each other in every
block), so there are no template features to precompute.

The signatures (T = template size, S = search size, F = S // patch, ``hb``/``wb`` symbolic)::

  init(consts, templates (1, T, T, 3) f32, boxes (1, 4) f32, frame (hb, wb, 3) uint8,
       hw (2,) int32, box (4,) f32 xywh, slot () int32)
    -> ((templates, boxes), template crop (T, T, 3) uint8)
  track(variables, consts, templates, boxes, frames (1, hb, wb, 3) uint8, hw (1, 2) int32,
        active (1,) bool)
    -> ((templates, boxes), {'boxes': (1, 4) xywh image pixels, 'pred_boxes', 'score_map',
        'response' (1, F, F), 'removed_indexes' [(1, n_i) int32 per CE layer],
        'search_crop' (1, S, S, 3) uint8, 'crop_box_xyxy' (1, 4) int32, 'resize_factor' (1,)})

with ``consts = {'table': (768,) f32, 'window': (F, F) f32}``
(:func:`~ostrack_jax.tracking.tracker.constants`). The state travels as a plain
``(templates, boxes)`` tuple (no custom pytree node to register when deserialising).

By default both are lowered for 'cpu' and 'cuda', so an artifact exported on a laptop runs on
a GPU machine and vice versa. This module imports NumPy only at the top: JAX and the tracker
are imported by the functions that need them (the loader never imports Flax or the model).
"""

import collections.abc
import functools
import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ostrack_jax.common import fileio

if TYPE_CHECKING:  # the tracker modules import JAX and Flax: only for the annotations
  from ostrack_jax.tracking import device_step, tracker as tracker_lib

FORMAT = 'ostrack_jax.exported_tracker'
FORMAT_VERSION = 2
DTYPES = ('float32', 'bfloat16')
DEFAULT_PLATFORMS = ('cpu', 'cuda')
WEIGHTS_FILE = 'weights.npz'
MANIFEST_FILE = 'manifest.json'
INIT_FILE = 'init.jax'
FRAME_DIMS = 'hb, wb'  # the symbolic padded frame height and width


def track_file(dtype: str) -> str:
  return f'track_{dtype}.jax'


# ------------------------------------------------------------------------- weights


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> Dict[str, np.ndarray]:
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


def _float32_weights(variables: Dict[str, Any]) -> Dict[str, np.ndarray]:
  """The 'params' and 'batch_stats' of ``variables`` as host arrays by flat name
  ('params/a/b', jax's pytree order), the floating ones in float32 (what weights.npz holds)."""
  import jax

  kept = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  return {
    k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
    for k, v in _flatten(jax.device_get(kept)).items()
  }


# ------------------------------------------------------------------------- export


def check_output_folder(out_dir: str) -> None:
  """FileExistsError unless ``out_dir`` is new, empty or an exported tracker (then replaced)."""
  if (
    os.path.isdir(out_dir)
    and os.listdir(out_dir)
    and not os.path.isfile(os.path.join(out_dir, MANIFEST_FILE))
  ):
    raise FileExistsError(
      f'--output {out_dir}: the folder exists and is not an exported tracker; '
      'give a new or empty folder (an exported tracker is replaced)'
    )


def _state_fns(fns):
  """``fns`` with the state as a plain (templates, boxes) tuple (what is serialised)."""
  from ostrack_jax.tracking.device_step import TrackState

  def init(consts, templates, boxes, frame, hw, box, slot):
    state, crop = fns.init(consts, TrackState(templates, boxes), frame, hw, box, slot)
    return (state.templates, state.boxes), crop

  def track(variables, consts, templates, boxes, frames, hw, active):
    state, out = fns.track(variables, consts, TrackState(templates, boxes), frames, hw, active)
    return (state.templates, state.boxes), out

  return init, track


def _abstract(x):
  """The shape and dtype of array ``x`` (a ``jax.ShapeDtypeStruct``)."""
  import jax

  return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)


class _Inputs(NamedTuple):
  """The abstract inputs both functions share, ``hb`` and ``wb`` the symbolic frame size."""

  consts: Dict[str, Any]
  templates: Any
  boxes: Any
  hb: Any
  wb: Any


def _abstract_inputs(config) -> _Inputs:
  import jax

  from ostrack_jax.tracking import device_step

  t = int(config.model.template_size)
  hb, wb = jax.export.symbolic_shape(FRAME_DIMS)
  return _Inputs(
    consts=jax.tree_util.tree_map(_abstract, device_step.constants(config)),
    templates=jax.ShapeDtypeStruct((1, t, t, 3), np.float32),
    boxes=jax.ShapeDtypeStruct((1, 4), np.float32),
    hb=hb,
    wb=wb,
  )


def _export_init(init, inputs: _Inputs, platforms: Optional[Tuple[str, ...]]):
  """``init`` (no network: one program serves every variant) as a ``jax.export.Exported``."""
  import jax

  return jax.export.export(jax.jit(init), platforms=platforms)(
    inputs.consts,
    inputs.templates,
    inputs.boxes,
    jax.ShapeDtypeStruct((inputs.hb, inputs.wb, 3), np.uint8),
    jax.ShapeDtypeStruct((2,), np.int32),
    jax.ShapeDtypeStruct((4,), np.float32),
    jax.ShapeDtypeStruct((), np.int32),
  )


def _export_track(track, weights, inputs: _Inputs, dtype: str, platforms):
  """``track`` of the ``dtype`` variant, ``weights`` its abstract variables (kernels in the
  compute dtype), as a ``jax.export.Exported``.

  float32 is the exact variant: its matmuls are lowered at full precision (no TF32 on GPUs), as
  the equivalence tests run the live model. bfloat16 is the fast one.
  """
  import jax

  precision = 'highest' if dtype == 'float32' else 'default'
  with jax.default_matmul_precision(precision):
    return jax.export.export(jax.jit(track), platforms=platforms)(
      weights,
      inputs.consts,
      inputs.templates,
      inputs.boxes,
      jax.ShapeDtypeStruct((1, inputs.hb, inputs.wb, 3), np.uint8),
      jax.ShapeDtypeStruct((1, 2), np.int32),
      jax.ShapeDtypeStruct((1,), np.bool_),
    )


def _serialize(
  config, variables: Dict[str, Any], dtypes: Sequence[str], platforms
) -> Tuple[Dict[str, bytes], List[str]]:
  """({file name: serialised function}, the platforms they were lowered for): ``init`` once,
  ``track`` per compute dtype (``config.model.dtype`` overridden per variant)."""
  import jax

  from ostrack_jax.models.ostrack import cast_kernels, compute_dtype
  from ostrack_jax.tracking import device_step

  inputs = _abstract_inputs(config)
  blobs: Dict[str, bytes] = {}
  for dtype in dtypes:
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
      variant.model.dtype = dtype
    init, track = _state_fns(device_step.make_tracking_fns(variant, None, full_outputs=True))
    if not blobs:
      exported = _export_init(init, inputs, platforms)
      blobs[INIT_FILE] = exported.serialize()
      lowered_for = list(exported.platforms)
    # The kernels are inputs in the compute dtype (the live tracker casts them once, too).
    weights = jax.tree_util.tree_map(_abstract, cast_kernels(variables, compute_dtype(variant)))
    blobs[track_file(dtype)] = _export_track(track, weights, inputs, dtype, platforms).serialize()
  return blobs, lowered_for


def _manifest(
  config, dtypes: Sequence[str], platforms: List[str], flat: Dict[str, np.ndarray]
) -> Dict[str, Any]:
  import jax

  m = config.model
  t, s = int(m.template_size), int(m.search_size)
  return {
    'format': FORMAT,
    'format_version': FORMAT_VERSION,
    'preset': config.name,
    'config': json.loads(config.to_json()),
    'template_shape': [1, t, t, 3],
    'search_shape': [1, s, s, 3],
    'frame_shape': [1, 'hb', 'wb', 3],
    'feat_size': s // int(m.patch_size),
    'variants': {d: {'init': INIT_FILE, 'track': track_file(d)} for d in dtypes},
    'platforms': platforms,
    'jax_version': jax.__version__,
    'weights': [[k, list(v.shape), str(v.dtype)] for k, v in flat.items()],
  }


def _write_folder(
  out_dir: str, flat: Dict[str, np.ndarray], blobs: Dict[str, bytes], manifest: Dict[str, Any]
) -> None:
  """Writes the folder beside ``out_dir`` and renames it over ``out_dir`` (atomically)."""
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix='.tmp-export-')
  try:
    os.chmod(tmp, fileio.dir_mode())  # mkdtemp's folder is private (0700); files follow the umask
    # numpy's stub gives savez a keyword ``allow_pickle: bool`` that mypy cannot rule out of a
    # **dict of arrays.
    np.savez(os.path.join(tmp, WEIGHTS_FILE), **flat)  # type: ignore[arg-type]
    for name, blob in blobs.items():
      with open(os.path.join(tmp, name), 'wb') as fh:
        fh.write(blob)
    with open(os.path.join(tmp, MANIFEST_FILE), 'w') as fh:
      json.dump(manifest, fh, indent=1)
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def export_tracker(
  config,
  variables: Dict[str, Any],
  out_dir: str,
  dtypes: Sequence[str] = DTYPES,
  platforms: Optional[Sequence[str]] = DEFAULT_PLATFORMS,
) -> str:
  """Serialises the tracker's ``init`` and ``track`` for ``config`` into ``out_dir`` (atomically).

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
  bad = [d for d in dtypes if d not in DTYPES]
  if bad or not dtypes:
    raise ValueError(f'--dtypes: expected a non-empty subset of {DTYPES}, got {list(dtypes)}')
  check_output_folder(out_dir)
  flat = _float32_weights(variables)
  platforms = tuple(platforms) if platforms else None
  blobs, lowered_for = _serialize(config, _unflatten(flat), dtypes, platforms)
  _write_folder(out_dir, flat, blobs, _manifest(config, dtypes, lowered_for, flat))
  return out_dir


# ------------------------------------------------------------------------- load


def read_manifest(directory: str) -> Dict[str, Any]:
  """The manifest of an exported tracker folder; ValueError/FileNotFoundError naming the problem."""
  path = os.path.join(directory, MANIFEST_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{directory}: not an exported tracker (no {MANIFEST_FILE}); make one '
      f'with python -m ostrack_jax.export'
    )
  with open(path) as fh:
    manifest = json.load(fh)
  if manifest.get('format') != FORMAT:
    raise ValueError(
      f'{path}: not an exported tracker manifest (format {manifest.get("format")!r})'
    )
  version = manifest.get('format_version')
  if version != FORMAT_VERSION:
    raise ValueError(
      f'{directory}: exported tracker format version {version}, this ostrack_jax '
      f'reads version {FORMAT_VERSION}: export it again with '
      'python -m ostrack_jax.export'
    )
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
  wrong = [
    f'{k}: {flat[k].shape} vs {expected[k]}'
    for k in expected
    if k in flat and tuple(flat[k].shape) != expected[k]
  ]
  if missing or extra or wrong:
    raise ValueError(
      f'{path} does not fit the exported step (preset {manifest["preset"]!r}): '
      f'missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}'
    )
  return _unflatten({k: flat[k] for k, _, _ in manifest['weights']})


def _check_runnable(directory: str, manifest: Dict[str, Any], dtype: str) -> None:
  """ValueError unless the folder has the ``dtype`` variant, lowered for this machine."""
  import jax

  if dtype not in manifest['variants']:
    raise ValueError(
      f'{directory}: no {dtype!r} variant (exported: {sorted(manifest["variants"])})'
    )
  platform = jax.default_backend()
  usable = {'gpu': ('cuda', 'rocm')}.get(platform, (platform,))
  if not set(usable) & set(manifest['platforms']):
    raise ValueError(
      f'{directory} was exported for {manifest["platforms"]}, not for this '
      f'machine\'s {platform!r}: export again with --platforms {platform}'
    )


def _read(directory: str, name: str) -> bytes:
  with open(os.path.join(directory, name), 'rb') as fh:
    return fh.read()


@functools.lru_cache(maxsize=4)
def _exported_fns(
  init_blob: bytes, track_blob: bytes
) -> Tuple[Any, Any, 'device_step.TrackingFns']:
  """(exported init, exported track, their :class:`TrackingFns`) of the serialised functions:
  the same files (by content) give the same functions, so trackers loaded from one folder share
  their jitted programs (:func:`ostrack_jax.tracking.tracking_core.shared_programs`)."""
  import jax

  from ostrack_jax.tracking import device_step

  exported_init = jax.export.deserialize(bytearray(init_blob))
  exported_track = jax.export.deserialize(bytearray(track_blob))

  def init(consts, state, frame, hw, box, slot):
    (templates, boxes), crop = exported_init.call(
      consts, state.templates, state.boxes, frame, hw, box, slot
    )
    return device_step.TrackState(templates, boxes), crop

  def track(variables, consts, state, frames, hw, active):
    (templates, boxes), out = exported_track.call(
      variables, consts, state.templates, state.boxes, frames, hw, active
    )
    return device_step.TrackState(templates, boxes), out

  return exported_init, exported_track, device_step.TrackingFns(init, track)


def load_exported(
  directory: str, dtype: str = 'float32', weights: Optional[str] = None
) -> 'tracker_lib.Tracker':
  """A tracker running the exported ``init`` and ``track`` of ``directory`` (no Flax model).

  Args:
    directory: a folder written by :func:`export_tracker` / ``python -m ostrack_jax.export``.
    dtype: which variant to run, 'float32' or 'bfloat16'.
    weights: another weights .npz of the same preset (default: the folder's own).
  Returns:
    A :class:`ostrack_jax.tracking.tracker.Tracker` with the exported functions as its device
    core: ``initialize(frame, box_xywh)``, ``track(frame) -> box_xywh`` (RGB uint8 frames of
    any size, xywh image pixels), ``track_async``, ``state``, ``last_score_map`` /
    ``last_response`` (F, F), ``last_removed_indexes``, ``last_search_crop``,
    ``last_timing``. Trackers loaded from the same files (also with other ``weights``) share
    their compiled programs. Its ``exported`` attribute is the deserialised ``jax.export.Exported`` of
    ``track`` (``exported_init`` that of ``init``), ``manifest`` the folder's manifest.
  """
  import jax
  import ml_collections

  from ostrack_jax.tracking import tracker as tracker_lib

  manifest = read_manifest(directory)
  _check_runnable(directory, manifest, dtype)
  files = manifest['variants'][dtype]
  exported_init, exported_track, fns = _exported_fns(
    _read(directory, files['init']), _read(directory, files['track'])
  )
  variables = load_weights(weights or os.path.join(directory, WEIGHTS_FILE), manifest)
  # The weights in the dtypes the exported track takes (bfloat16 kernels for that variant).
  leaves, treedef = jax.tree_util.tree_flatten(variables)
  avals = exported_track.in_avals[: len(leaves)]
  variables = jax.tree_util.tree_unflatten(
    treedef, [np.asarray(x).astype(a.dtype) for x, a in zip(leaves, avals, strict=True)]
  )
  config = ml_collections.ConfigDict(manifest['config'])
  config.model.dtype = dtype
  tracker = tracker_lib.Tracker(config, variables, fns=fns, cast=False)
  tracker.exported = exported_track
  tracker.exported_init = exported_init
  tracker.manifest = manifest
  return tracker
