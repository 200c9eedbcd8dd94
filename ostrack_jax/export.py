"""Exported tracker: the device-resident tracker as StableHLO (``jax.export``), no Flax needed.

``python -m ostrack_jax.export --checkpoint PATH --config CONFIG --output DIR`` serialises the two
pure functions of the tracker's device step
(:func:`ostrack_jax.tracking.device_step.make_tracking_fns`, batch 1, full outputs):

* ``init``: cuts the template crop around the initial box in the (padded) frame, on the device,
  and normalises it into the tracker state;
* ``track``: per frame, cuts the search crop around the state (the original's arithmetic,
  pixel-exact with OpenCV), normalises it, runs the network with candidate elimination, the
  Hann window and the box decode, maps the box back to the image and clips it.

once per compute dtype (float32 with full-precision matmuls, bfloat16). The frame's padded
height and width are *symbolic* (shape polymorphism, ``jax.export.symbolic_shape('hb, wb')``):
one artifact serves every frame size (the tracker pads frames to a bucket shape, see
:func:`~ostrack_jax.tracking.core.bucket_shape`, and compiles one program per bucket at run
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
(:func:`~ostrack_jax.tracking.device_step.constants`). The state travels as a plain
``(templates, boxes)`` tuple (no custom pytree node to register when deserialising).

By default both are lowered for 'cpu' and 'cuda', so an artifact exported on a laptop runs on
a GPU machine and vice versa.

``--format onnx`` (:func:`export_onnx`) writes instead the network alone (batch 1, float32,
weights inside, static shapes: template and search crops in, the maps, the box and the
eliminated tokens out) as one ONNX file via jax2onnx, the unit TensorRT and every onnxruntime
execution provider take; :func:`ostrack_jax.deploy.onnx_tracker.load_onnx` cuts the crops, applies the
window and decodes on the host (NumPy, OpenCV). See :mod:`ostrack_jax.deploy.onnx_tracker`.
"""

import collections
import collections.abc
import json
import logging
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

import numpy as np

from ostrack_jax.common import cli, fileio, logfilter

if TYPE_CHECKING:  # the tracker module imports JAX and Flax: only for the annotations
  from ostrack_jax.tracking import tracker as tracker_lib

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
  import jax

  from ostrack_jax.models.ostrack import cast_kernels, compute_dtype
  from ostrack_jax.tracking import device_step

  bad = [d for d in dtypes if d not in DTYPES]
  if bad or not dtypes:
    raise ValueError(f'--dtypes: expected a non-empty subset of {DTYPES}, got {list(dtypes)}')
  check_output_folder(out_dir)
  variables = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  flat = {
    k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
    for k, v in _flatten(jax.device_get(variables)).items()
  }
  variables = _unflatten(flat)
  m = config.model
  t, s = int(m.template_size), int(m.search_size)
  f = s // int(m.patch_size)
  spec = lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
  consts = jax.tree_util.tree_map(spec, device_step.constants(config))
  hb, wb = jax.export.symbolic_shape(FRAME_DIMS)
  templates = jax.ShapeDtypeStruct((1, t, t, 3), np.float32)
  boxes = jax.ShapeDtypeStruct((1, 4), np.float32)
  platforms = tuple(platforms) if platforms else None

  blobs = {}
  for dtype in dtypes:
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
      variant.model.dtype = dtype
    init, track = _state_fns(device_step.make_tracking_fns(variant, None, full_outputs=True))
    if not blobs:  # init has no network: one program serves every variant
      exported = jax.export.export(jax.jit(init), platforms=platforms)(
        consts,
        templates,
        boxes,
        jax.ShapeDtypeStruct((hb, wb, 3), np.uint8),
        jax.ShapeDtypeStruct((2,), np.int32),
        jax.ShapeDtypeStruct((4,), np.float32),
        jax.ShapeDtypeStruct((), np.int32),
      )
      blobs[INIT_FILE] = exported.serialize()
      exported_platforms = list(exported.platforms)
    # The kernels are inputs in the compute dtype (the live tracker casts them once, too).
    weights = jax.tree_util.tree_map(spec, cast_kernels(variables, compute_dtype(variant)))
    # float32 is the exact variant: its matmuls are lowered at full precision (no TF32 on
    # GPUs), as the equivalence tests run the live model. bfloat16 is the fast one.
    precision = 'highest' if dtype == 'float32' else 'default'
    with jax.default_matmul_precision(precision):
      exported = jax.export.export(jax.jit(track), platforms=platforms)(
        weights,
        consts,
        templates,
        boxes,
        jax.ShapeDtypeStruct((1, hb, wb, 3), np.uint8),
        jax.ShapeDtypeStruct((1, 2), np.int32),
        jax.ShapeDtypeStruct((1,), np.bool_),
      )
    blobs[track_file(dtype)] = exported.serialize()

  manifest = {
    'format': FORMAT,
    'format_version': FORMAT_VERSION,
    'preset': config.name,
    'config': json.loads(config.to_json()),
    'template_shape': [1, t, t, 3],
    'search_shape': [1, s, s, 3],
    'frame_shape': [1, 'hb', 'wb', 3],
    'feat_size': f,
    'variants': {d: {'init': INIT_FILE, 'track': track_file(d)} for d in dtypes},
    'platforms': exported_platforms,
    'jax_version': jax.__version__,
    'weights': [[k, list(v.shape), str(v.dtype)] for k, v in flat.items()],
  }
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix='.tmp-export-')
  try:
    os.chmod(tmp, fileio.dir_mode())  # mkdtemp's folder is private (0700); files follow the umask
    np.savez(os.path.join(tmp, WEIGHTS_FILE), **flat)
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
  return out_dir


# ------------------------------------------------------------------------- ONNX

ONNX_DEFAULT_OPSET = 20
# LayerNormalization is one op from opset 17 and GELU from opset 20 (below, their formulas);
# TensorRT 10's parser reads opsets 9 to 20.
ONNX_MIN_OPSET = 17
ONNX_MAX_OPSET = 20


def _is_converter_noise(record: logging.LogRecord) -> bool:
  """The two kinds of log records that jax2onnx and onnx_ir write on every export and that say
  nothing about the user's file: jax2onnx failing to import its plugins and examples for
  libraries that are not installed (equinox, dm_pix, ...: ModuleNotFoundError, each record with
  a traceback), and onnx_ir leaving an untyped intermediate value out of the optional
  value_info. Everything else those loggers say, another plugin's import error included, still
  shows."""
  message = record.getMessage()
  missing_library_plugin = (
    message.startswith(('Skipping import of jax2onnx.', 'Skipping pkgutil import of jax2onnx.'))
    and record.exc_info is not None
    and isinstance(record.exc_info[1], ModuleNotFoundError)
  )
  untyped_value_info = 'is not known. Please set type for the value. Skipping serialization'
  return missing_library_plugin or untyped_value_info in message


_CONVERTER_LOGGERS = ('jax2onnx.plugins.plugin_system', 'onnx_ir.serde')


def fold_bias_into_gemm(graph) -> int:
  """Moves each bias ``Add`` after a ``Gemm -> Reshape`` into the Gemm's ``C`` input (in place).

  jax2onnx writes a dense layer ``x @ kernel + bias`` on (B, N, C_in) tokens as ``Gemm`` on the
  flattened rows with a zero ``C``, a ``Reshape`` back and a separate broadcast ``Add`` of the
  bias (one more kernel and one more pass over the activations per layer, which onnxruntime
  does not fuse). When the Add's other operand is an initializer of shape (1, ..., 1, N) and
  each intermediate has one consumer, the bias becomes the Gemm's ``C`` (``beta`` 1) and the
  Add goes: the same values (a bias broadcast over rows before or after the Reshape, which keeps
  the last axis). Returns the number of Adds removed.
  """
  from onnx import helper, numpy_helper

  inits = {i.name: i for i in graph.initializer}
  producer = {o: n for n in graph.node for o in n.output}
  uses = collections.Counter(i for n in graph.node for i in n.input)
  uses.update(o.name for o in graph.output)
  removed, gone = [], set()
  for add in graph.node:
    if add.op_type != 'Add' or len(add.input) != 2:
      continue
    for x, b in (add.input, add.input[::-1]):
      reshape, bias = producer.get(x), inits.get(b)
      if reshape is None or bias is None or reshape.op_type != 'Reshape':
        continue
      gemm = producer.get(reshape.input[0])
      if gemm is None or gemm.op_type != 'Gemm' or uses[x] != 1 or uses[gemm.output[0]] != 1:
        continue
      bias_value = numpy_helper.to_array(bias)
      if bias_value.ndim < 1 or any(d != 1 for d in bias_value.shape[:-1]):
        continue
      attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
      c = inits.get(gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else None
      old_c = 0.0 if c is None else numpy_helper.to_array(c) * attrs.get('beta', 1.0)
      if len(gemm.input) > 2 and gemm.input[2] and c is None:
        continue  # a computed C: leave it
      new_c = (bias_value.reshape(-1) + old_c).astype(bias_value.dtype)
      if new_c.ndim != 1:
        continue
      name = f'{gemm.output[0]}_bias'
      graph.initializer.append(numpy_helper.from_array(new_c, name))
      del gemm.input[2:]
      gemm.input.append(name)
      kept = [a for a in gemm.attribute if a.name != 'beta']
      del gemm.attribute[:]
      gemm.attribute.extend(kept + [helper.make_attribute('beta', 1.0)])
      gone.add(reshape.output[0])
      reshape.output[0] = add.output[0]
      removed.append(add)
      break
  for add in removed:
    graph.node.remove(add)
  for info in [v for v in graph.value_info if v.name in gone]:
    graph.value_info.remove(info)
  used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
  unused = [i for i in graph.initializer if i.name not in used]
  for i in unused:
    graph.initializer.remove(i)
  return len(removed)


# The head's 3x3 convolutions with at most this many input channels are exported as Conv, the
# wider ones (the first of each branch, 768 -> 256 on ViT-B) as im2col + Gemm: in onnxruntime on
# a 2-core CPU the 768-channel one ran ~67 ms per frame (3 branches) as Gemm against ~81 ms as
# Conv, while the narrower ones ran faster as Conv with 11 fewer nodes each (benchmarks/
# RESULTS.md, onnx_speed).
ONNX_CONV_MAX_IN_CHANNELS = 256


def im2col_to_conv(graph, max_in_channels: int = ONNX_CONV_MAX_IN_CHANNELS) -> int:
  """Rewrites the head's 3x3 convolutions that jax2onnx wrote as im2col (``Pad``, nine
  ``Slice``, ``Concat``, ``Reshape``, ``Gemm``, ``Reshape``: ostrack_jax.models.layers.Conv) into
  one NCHW ``Conv`` between two ``Transpose`` (in place), for input widths up to
  ``max_in_channels``. Same values (the HWIO kernel transposed to OIHW, the Gemm's bias as the
  Conv's). Returns the number of convolutions rewritten."""
  from onnx import helper, numpy_helper

  inits = {i.name: i for i in graph.initializer}
  producer = {o: n for n in graph.node for o in n.output}
  consumers = collections.defaultdict(list)
  for n in graph.node:
    for i in n.input:
      consumers[i].append(n)

  def const(name):
    if name in inits:
      return numpy_helper.to_array(inits[name])
    node = producer.get(name)
    if node is not None and node.op_type == 'Reshape' and node.input[0] in inits:
      return numpy_helper.to_array(inits[node.input[0]])
    return None

  def only(name, op_type):
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None

  replace, drop = {}, set()
  for concat in graph.node:
    if concat.op_type != 'Concat' or len(concat.input) != 9:
      continue
    slices = [producer.get(i) for i in concat.input]
    if any(sl is None or sl.op_type != 'Slice' for sl in slices):
      continue
    pad = producer.get(slices[0].input[0])
    if pad is None or pad.op_type != 'Pad' or any(sl.input[0] != pad.output[0] for sl in slices):
      continue
    pads = const(pad.input[1])
    if pads is None or pads.tolist() != [0, 1, 1, 0, 0, 1, 1, 0]:
      continue
    starts = [const(sl.input[1]) for sl in slices]
    if any(st is None or st.tolist()[:3] != [0, k // 3, k % 3] for k, st in enumerate(starts)):
      continue
    flat = only(concat.output[0], 'Reshape')
    gemm = flat and only(flat.output[0], 'Gemm')
    back = gemm and only(gemm.output[0], 'Reshape')
    if back is None or gemm.input[0] != flat.output[0]:
      continue
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    if attrs.get('transA', 0) or attrs.get('transB', 0) or attrs.get('alpha', 1.0) != 1.0:
      continue
    kernel = const(gemm.input[1])
    if kernel is None or kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
      continue
    cin, cout = kernel.shape[2], kernel.shape[3]
    if cin > max_in_channels:
      continue
    bias = const(gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else None
    bias = np.zeros(cout, kernel.dtype) if bias is None else bias * attrs.get('beta', 1.0)
    if bias.shape != (cout,):
      continue
    x, y, name = pad.input[0], back.output[0], gemm.output[0]
    graph.initializer.append(numpy_helper.from_array(kernel.transpose(3, 2, 0, 1), f'{name}_w'))
    graph.initializer.append(numpy_helper.from_array(bias.astype(kernel.dtype), f'{name}_b'))
    replace[id(back)] = [
      helper.make_node('Transpose', [x], [f'{name}_nchw_in'], perm=[0, 3, 1, 2]),
      helper.make_node(
        'Conv',
        [f'{name}_nchw_in', f'{name}_w', f'{name}_b'],
        [f'{name}_nchw_out'],
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        name=f'{name}_conv',
      ),
      helper.make_node('Transpose', [f'{name}_nchw_out'], [y], perm=[0, 2, 3, 1]),
    ]
    drop.update(id(n) for n in (pad, *slices, concat, flat, gemm, back))
  nodes = []
  for n in graph.node:
    nodes.extend(replace.get(id(n), [] if id(n) in drop else [n]))
  # Drop what only the rewritten convolutions used (the kernels' Reshapes, their constants).
  while True:
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in nodes if not any(o in used for o in n.output)]
    if not dead:
      break
    nodes = [n for n in nodes if n not in dead]
  del graph.node[:]
  graph.node.extend(nodes)
  used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
  for init in [i for i in graph.initializer if i.name not in used]:
    graph.initializer.remove(init)
  produced = {o for n in nodes for o in n.output}
  for info in [v for v in graph.value_info if v.name not in produced]:
    graph.value_info.remove(info)
  return len(replace)


ONNX_PRECISIONS = ('fp32', 'fp16')


def convert_to_float16(model) -> None:
  """Makes every float32 tensor inside ``model``'s graph float16 (in place); the graph's inputs
  and outputs stay float32 (a Cast after each input and before each output).

  Initializers, ``Constant`` / ``ConstantOfShape`` values and ``Cast``-to-float targets become
  float16; value_info is dropped and inferred again. LayerNormalization keeps computing its
  statistics in float32 (its default ``stash_type``).
  """
  import onnx
  from onnx import helper, numpy_helper

  f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
  graph = model.graph

  def half(tensor):
    if tensor.data_type == f32:
      tensor.CopyFrom(
        numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name)
      )

  for init in graph.initializer:
    half(init)
  for node in graph.node:
    for attr in node.attribute:
      if attr.type == onnx.AttributeProto.TENSOR:
        half(attr.t)
      if node.op_type in ('Cast', 'CastLike') and attr.name == 'to' and attr.i == f32:
        attr.i = f16
  casts = []
  for value in graph.input:
    if value.type.tensor_type.elem_type == f32:
      inner = f'{value.name}_fp16'
      for node in graph.node:
        node.input[:] = [inner if i == value.name else i for i in node.input]
      casts.append(helper.make_node('Cast', [value.name], [inner], to=f16, name=f'cast_{inner}'))
  for value in graph.output:
    if value.type.tensor_type.elem_type == f32:
      inner = f'{value.name}_fp16'
      for node in graph.node:
        node.output[:] = [inner if o == value.name else o for o in node.output]
        node.input[:] = [inner if i == value.name else i for i in node.input]
      casts.append(
        helper.make_node('Cast', [inner], [value.name], to=f32, name=f'cast_{value.name}')
      )
  nodes = casts[: sum(1 for c in casts if c.output[0].endswith('_fp16'))]
  nodes += list(graph.node) + casts[len(nodes) :]
  del graph.node[:]
  graph.node.extend(nodes)
  del graph.value_info[:]
  model.CopyFrom(onnx.shape_inference.infer_shapes(model, strict_mode=True))


def export_onnx(
  config,
  variables: Dict[str, Any],
  path: str,
  opset: int = ONNX_DEFAULT_OPSET,
  precision: str = 'fp32',
) -> str:
  """Writes the network of ``config`` as one ONNX file with static shapes (atomically).

  The unit is the network alone (batch 1, float32, weights inside), what TensorRT and every
  onnxruntime execution provider take: ``template`` (1, T, T, 3) and ``search`` (1, S, S, 3)
  float32 ImageNet-normalized NHWC crops in; the model's ``score_map`` (1, F, F, 1),
  ``size_map`` and ``offset_map`` (1, F, F, 2), ``pred_boxes`` (1, 4) (cxcywh normalized, at the
  unwindowed peak) and ``removed_indexes_<i>`` (1, n_i) int32 per candidate-elimination layer
  out. The crops, the Hann window, the decode at the windowed peak, the map back and the clip
  run on the host (:mod:`ostrack_jax.deploy.onnx_tracker`, NumPy and OpenCV, pixel-exact with the
  original's crop). LayerNormalization and Gelu are single ops. Converter: jax2onnx.

  Args:
    config: the preset; exported in float32 whatever ``config.model.dtype`` says.
    variables: {'params', 'batch_stats'} float32 Flax variables of that preset.
    path: the .onnx file to write (replaced if it exists).
    opset: ONNX opset (17 to 20; 20, the default, has Gelu as one op).
    precision: 'fp32', or 'fp16': every tensor inside the graph float16 (weights included: half
      the file), inputs and outputs still float32 (:func:`convert_to_float16`).
  Returns:
    ``path``.
  """
  import importlib.metadata

  import jax
  import jax.numpy as jnp

  try:
    import jax2onnx
    import onnx
  except ImportError as e:
    raise ValueError(
      f'--format onnx needs jax2onnx and onnx ({e}): pip install "ostrack_jax[onnx]"'
    ) from None
  from ostrack_jax.deploy import onnx_tracker
  from ostrack_jax.models.ostrack import build_model

  if not ONNX_MIN_OPSET <= int(opset) <= ONNX_MAX_OPSET:
    raise ValueError(
      f'--opset {opset}: the exported network needs an opset from {ONNX_MIN_OPSET} '
      f'(LayerNormalization) to {ONNX_MAX_OPSET} (the newest TensorRT parses)'
    )
  if precision not in ONNX_PRECISIONS:
    raise ValueError(f'--precision {precision}: expected one of {", ".join(ONNX_PRECISIONS)}')
  if os.path.isdir(path):
    raise FileExistsError(f'--output {path}: a folder; --format onnx writes one .onnx file')
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.dtype = 'float32'
  variables = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  variables = jax.tree_util.tree_map(
    lambda x: jnp.asarray(np.asarray(x, np.float32)), jax.device_get(variables)
  )
  model = build_model(config)
  m = config.model
  t, s = int(m.template_size), int(m.search_size)
  f = s // int(m.patch_size)
  n_removed = []

  def network(template, search):
    out = model.apply(variables, template, search, keep_ratio=None, train=False)
    n_removed.append(len(out['removed_indexes']))
    return tuple(out[k] for k in onnx_tracker.OUTPUT_NAMES) + tuple(out['removed_indexes'])

  inputs = [
    jax.ShapeDtypeStruct((1, t, t, 3), jnp.float32),
    jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32),
  ]
  n_ce = sum(1 for r in m.ce_keep_ratio if float(r) < 1)
  output_names = list(onnx_tracker.OUTPUT_NAMES) + [f'removed_indexes_{i}' for i in range(n_ce)]
  with (
    jax.default_matmul_precision('highest'),
    logfilter.dropping(_CONVERTER_LOGGERS, _is_converter_noise),
  ):
    model_proto = jax2onnx.to_onnx(
      network,
      inputs,
      model_name=f'ostrack_jax_{config.name}',
      opset=int(opset),
      input_names=list(onnx_tracker.INPUT_NAMES),
      output_names=output_names,
      normalization_mode='prefer_native',
    )
  if n_removed and n_removed[-1] != n_ce:
    raise AssertionError(f'{n_removed[-1]} CE outputs, expected {n_ce}')
  fold_bias_into_gemm(model_proto.graph)
  im2col_to_conv(model_proto.graph)
  if precision == 'fp16':
    convert_to_float16(model_proto)
  manifest = {
    'format': onnx_tracker.FORMAT,
    'format_version': onnx_tracker.FORMAT_VERSION,
    'preset': config.name,
    'config': json.loads(config.to_json()),
    'opset': int(opset),
    'precision': precision,
    'inputs': {'template': [1, t, t, 3, 'float32'], 'search': [1, s, s, 3, 'float32']},
    'outputs': {
      'score_map': [1, f, f, 1, 'float32'],
      'size_map': [1, f, f, 2, 'float32'],
      'offset_map': [1, f, f, 2, 'float32'],
      'pred_boxes': [1, 4, 'float32'],
    },
    'num_removed_outputs': n_ce,
    'operators': sorted({node.op_type for node in model_proto.graph.node}),
    'converter': f'jax2onnx {importlib.metadata.version("jax2onnx")}',
    'jax_version': jax.__version__,
  }
  meta = {
    onnx_tracker.META_FORMAT: onnx_tracker.FORMAT,
    onnx_tracker.META_VERSION: str(onnx_tracker.FORMAT_VERSION),
    onnx_tracker.META_PRESET: config.name,
    onnx_tracker.META_MANIFEST: json.dumps(manifest),
  }
  del model_proto.metadata_props[:]
  for key, value in meta.items():
    model_proto.metadata_props.add(key=key, value=value)
  model_proto.producer_name = 'ostrack_jax'
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=parent, prefix='.tmp-export-', suffix='.onnx')
  os.close(fd)
  try:
    onnx.save_model(model_proto, tmp)
    os.chmod(tmp, fileio.file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


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


def _deserialize(directory: str, name: str):
  import jax

  with open(os.path.join(directory, name), 'rb') as fh:
    return jax.export.deserialize(bytearray(fh.read()))


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
    ``last_timing``. Its ``exported`` attribute is the deserialised ``jax.export.Exported`` of
    ``track`` (``exported_init`` that of ``init``), ``manifest`` the folder's manifest.
  """
  import jax
  import ml_collections

  from ostrack_jax.tracking import device_step, tracker as tracker_lib

  manifest = read_manifest(directory)
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
  files = manifest['variants'][dtype]
  exported_init = _deserialize(directory, files['init'])
  exported_track = _deserialize(directory, files['track'])
  variables = load_weights(weights or os.path.join(directory, WEIGHTS_FILE), manifest)
  # The weights in the dtypes the exported track takes (bfloat16 kernels for that variant).
  leaves, treedef = jax.tree_util.tree_flatten(variables)
  avals = exported_track.in_avals[: len(leaves)]
  variables = jax.tree_util.tree_unflatten(
    treedef, [np.asarray(x).astype(a.dtype) for x, a in zip(leaves, avals, strict=True)]
  )

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

  config = ml_collections.ConfigDict(manifest['config'])
  config.model.dtype = dtype
  tracker = tracker_lib.Tracker(
    config, variables, fns=device_step.TrackingFns(init, track), cast=False
  )
  tracker.exported = exported_track
  tracker.exported_init = exported_init
  tracker.manifest = manifest
  return tracker


# ------------------------------------------------------------------------- command line


def parse_args(argv=None):
  p = cli.Parser(
    'python -m ostrack_jax.export',
    'Serialise the tracker\'s device functions (template init and per-frame '
    'track, StableHLO via jax.export, any frame size) with its weights into a '
    'folder that ostrack_jax.export.load_exported runs without building the Flax '
    'model; or, with --format onnx, the network as an ONNX file with static shapes for '
    'onnxruntime / TensorRT (ostrack_jax.load_onnx).',
    config='ostrack_256_ce',
  )
  p.add_argument(
    '--checkpoint',
    required=True,
    type=cli.existing_file,
    help='our model file (.msgpack) or a PyTorch OSTrack checkpoint (.pth/.pth.tar)',
  )
  p.add_argument(
    '--output',
    required=True,
    help='output folder: new, empty, or a previous export (replaced); with '
    '--format onnx the .onnx file to write',
  )
  p.add_argument(
    '--format',
    default='stablehlo',
    choices=('stablehlo', 'onnx'),
    help='stablehlo (default): the jax.export folder that load_exported runs (needs '
    'JAX); onnx: one self-contained float32 ONNX file of the network (template and search '
    'crops in, maps and box out; static shapes) that ostrack_jax.load_onnx runs with '
    'onnxruntime, cutting the crops and decoding on the host',
  )
  p.add_argument(
    '--opset',
    type=cli.positive_int,
    default=ONNX_DEFAULT_OPSET,
    help=f'ONNX opset for --format onnx ({ONNX_MIN_OPSET} to {ONNX_MAX_OPSET}; default: '
    '%(default)s)',
  )
  p.add_argument(
    '--precision',
    default='fp32',
    choices=ONNX_PRECISIONS,
    help='--format onnx: fp32 (default), or fp16 (every tensor inside the graph float16, '
    'inputs and outputs float32)',
  )
  p.add_argument(
    '--dtypes',
    default=','.join(DTYPES),
    help='comma-separated compute dtypes to export (default: %(default)s)',
  )
  p.add_argument(
    '--platforms',
    default=','.join(DEFAULT_PLATFORMS),
    help='comma-separated platforms to lower for: cpu, cuda, tpu, rocm, or '
    '"default" for this machine\'s (default: %(default)s)',
  )
  return p.parse(argv)


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


def main(argv=None) -> int:
  args = parse_args(argv)
  fileio.check_writable(args.output, f'--output {args.output}', is_file=args.format == 'onnx')
  if args.format != 'onnx':  # before loading the model
    try:
      check_output_folder(args.output)
    except FileExistsError as e:
      raise cli.InputError(str(e)) from None
  from ostrack_jax.weights.model_file import load_checkpoint

  config = args.config
  dtypes = [d.strip() for d in args.dtypes.split(',') if d.strip()]
  platforms = (
    None
    if args.platforms == 'default'
    else [p.strip() for p in args.platforms.split(',') if p.strip()]
  )
  try:
    variables = load_checkpoint(args.checkpoint, config)
    if args.format == 'onnx':
      export_onnx(config, variables, args.output, opset=args.opset, precision=args.precision)
    else:
      export_tracker(config, variables, args.output, dtypes=dtypes, platforms=platforms)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    raise cli.InputError(str(e)) from e
  if args.format == 'onnx':
    precision = {'fp32': 'float32', 'fp16': 'float16 inside'}[args.precision]
    print(
      f'exported {config.name} (ONNX opset {args.opset}, {precision}, network with static '
      f'shapes) to {args.output}: {os.path.getsize(args.output) / 1e6:.2f} MB'
    )
    return 0
  manifest = read_manifest(args.output)
  sizes = {
    name: os.path.getsize(os.path.join(args.output, name))
    for name in sorted(os.listdir(args.output))
  }
  print(
    f'exported {config.name} ({", ".join(manifest["variants"])}; platforms '
    f'{", ".join(manifest["platforms"])}; any frame size) to {args.output}:'
  )
  for name, size in sizes.items():
    print(f'  {name:24s} {size / 1e6:9.2f} MB')
  return 0


if __name__ == '__main__':
  sys.exit(cli.run(main, 'python -m ostrack_jax.export'))
