"""The ONNX export: the network alone as one ONNX file with static shapes, for onnxruntime and
TensorRT.

``python -m ostrack_jax.export --format onnx`` (:func:`export_onnx`) converts the network of a
preset (batch 1, float32, weights inside: template and search crops in, the maps, the box and
the eliminated tokens out; :mod:`ostrack_jax.deploy.onnx_format` names them) with jax2onnx, then
rewrites the graph where onnxruntime runs it faster, with the same values: each dense layer's
bias into its Gemm (:func:`fold_bias_into_gemm`), the head's narrower 3x3 convolutions from
im2col + Gemm into Conv (:func:`im2col_to_conv`); ``--precision fp16`` makes every tensor
inside float16 (:func:`convert_to_float16`). The manifest goes into the file's metadata.
:func:`ostrack_jax.deploy.onnx_tracker.load_onnx` cuts the crops, applies the window and decodes
on the host (NumPy, OpenCV).

Needs jax2onnx and onnx (``pip install "ostrack_jax[onnx]"``), imported by the functions that
use them.
"""

import collections
import json
import logging
import os
import tempfile
from typing import Any, Dict, List, NamedTuple, Optional, Set

import numpy as np

from ostrack_jax.common import fileio, logfilter
from ostrack_jax.deploy import onnx_format

DEFAULT_OPSET = 20
# LayerNormalization is one op from opset 17 and GELU from opset 20 (below, their formulas);
# TensorRT 10's parser reads opsets 9 to 20.
MIN_OPSET = 17
MAX_OPSET = 20


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


def _drop_unused_initializers(graph) -> None:
  """Removes the initializers no node of ``graph`` reads (and that are no graph output)."""
  used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
  for init in [i for i in graph.initializer if i.name not in used]:
    graph.initializer.remove(init)


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
  _drop_unused_initializers(graph)
  return len(removed)


# The head's 3x3 convolutions with at most this many input channels are exported as Conv, the
# wider ones (the first of each branch, 768 -> 256 on ViT-B) as im2col + Gemm: in onnxruntime on
# a 2-core CPU the 768-channel one ran ~67 ms per frame (3 branches) as Gemm against ~81 ms as
# Conv, while the narrower ones ran faster as Conv with 11 fewer nodes each (benchmarks/
# RESULTS.md, onnx_speed).
CONV_MAX_IN_CHANNELS = 256


class _GraphIndex:
  """Lookups over a graph's nodes as they were when it was made: the initializers by name, the
  node that produces each value and the nodes that consume it."""

  def __init__(self, graph):
    self.inits = {i.name: i for i in graph.initializer}
    self.producer = {o: n for n in graph.node for o in n.output}
    self.consumers = collections.defaultdict(list)
    for n in graph.node:
      for i in n.input:
        self.consumers[i].append(n)

  def const(self, name: str) -> Optional[np.ndarray]:
    """The value of ``name`` if it is an initializer or a Reshape of one, else None."""
    from onnx import numpy_helper

    if name in self.inits:
      return numpy_helper.to_array(self.inits[name])
    node = self.producer.get(name)
    if node is not None and node.op_type == 'Reshape' and node.input[0] in self.inits:
      return numpy_helper.to_array(self.inits[node.input[0]])
    return None

  def only(self, name: str, op_type: str):
    """The one node that reads ``name`` if there is one and it is an ``op_type``, else None."""
    users = self.consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


class _Im2col(NamedTuple):
  """One 3x3 convolution as jax2onnx writes it (ostrack_jax.models.layers.Conv)."""

  pad: Any
  slices: List[Any]
  concat: Any
  flat: Any  # Reshape of the nine shifted copies to rows
  gemm: Any
  back: Any  # Reshape of the rows to NHWC

  def nodes(self) -> list:
    return [self.pad, *self.slices, self.concat, self.flat, self.gemm, self.back]


def _match_im2col(index: _GraphIndex, concat) -> Optional[_Im2col]:
  """The im2col convolution whose nine shifted copies ``concat`` joins, or None: ``Pad`` by one
  pixel, nine ``Slice`` at the 3x3 offsets, ``Concat``, ``Reshape``, a plain ``Gemm``,
  ``Reshape``, each intermediate read once."""
  from onnx import helper

  if concat.op_type != 'Concat' or len(concat.input) != 9:
    return None
  slices = [index.producer.get(i) for i in concat.input]
  if any(sl is None or sl.op_type != 'Slice' for sl in slices):
    return None
  pad = index.producer.get(slices[0].input[0])
  if pad is None or pad.op_type != 'Pad' or any(sl.input[0] != pad.output[0] for sl in slices):
    return None
  pads = index.const(pad.input[1])
  if pads is None or pads.tolist() != [0, 1, 1, 0, 0, 1, 1, 0]:
    return None
  starts = [index.const(sl.input[1]) for sl in slices]
  if any(st is None or st.tolist()[:3] != [0, k // 3, k % 3] for k, st in enumerate(starts)):
    return None
  flat = index.only(concat.output[0], 'Reshape')
  gemm = flat and index.only(flat.output[0], 'Gemm')
  back = gemm and index.only(gemm.output[0], 'Reshape')
  if back is None or gemm.input[0] != flat.output[0]:
    return None
  attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
  if attrs.get('transA', 0) or attrs.get('transB', 0) or attrs.get('alpha', 1.0) != 1.0:
    return None
  return _Im2col(pad, slices, concat, flat, gemm, back)


def _conv_weights(index: _GraphIndex, gemm, max_in_channels: int):
  """(HWIO kernel (3, 3, C_in, C_out), bias (C_out,)) of the im2col Gemm ``gemm``, or None when
  they are not constants of those shapes or C_in is over ``max_in_channels``."""
  from onnx import helper

  kernel = index.const(gemm.input[1])
  if kernel is None or kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
    return None
  cin, cout = kernel.shape[2], kernel.shape[3]
  if cin > max_in_channels:
    return None
  attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
  bias = index.const(gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else None
  bias = np.zeros(cout, kernel.dtype) if bias is None else bias * attrs.get('beta', 1.0)
  if bias.shape != (cout,):
    return None
  return kernel, bias


def _conv_nodes(graph, conv: _Im2col, kernel: np.ndarray, bias: np.ndarray) -> list:
  """The NCHW ``Conv`` between two ``Transpose`` that computes ``conv`` (its kernel, OIHW, and
  bias added to ``graph``'s initializers), from the Pad's input to the last Reshape's output."""
  from onnx import helper, numpy_helper

  x, y, name = conv.pad.input[0], conv.back.output[0], conv.gemm.output[0]
  graph.initializer.append(numpy_helper.from_array(kernel.transpose(3, 2, 0, 1), f'{name}_w'))
  graph.initializer.append(numpy_helper.from_array(bias.astype(kernel.dtype), f'{name}_b'))
  return [
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


def _set_nodes_dropping_dead(graph, nodes: list) -> None:
  """Makes ``nodes`` the graph's nodes, less those whose outputs nothing reads any more (the
  rewritten convolutions' kernel Reshapes, their constants), and drops the initializers and
  value_info that no longer belong to a node."""
  while True:
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in nodes if not any(o in used for o in n.output)]
    if not dead:
      break
    nodes = [n for n in nodes if n not in dead]
  del graph.node[:]
  graph.node.extend(nodes)
  _drop_unused_initializers(graph)
  produced = {o for n in nodes for o in n.output}
  for info in [v for v in graph.value_info if v.name not in produced]:
    graph.value_info.remove(info)


def im2col_to_conv(graph, max_in_channels: int = CONV_MAX_IN_CHANNELS) -> int:
  """Rewrites the head's 3x3 convolutions that jax2onnx wrote as im2col (``Pad``, nine
  ``Slice``, ``Concat``, ``Reshape``, ``Gemm``, ``Reshape``: ostrack_jax.models.layers.Conv) into
  one NCHW ``Conv`` between two ``Transpose`` (in place), for input widths up to
  ``max_in_channels``. Same values (the HWIO kernel transposed to OIHW, the Gemm's bias as the
  Conv's). Returns the number of convolutions rewritten."""
  index = _GraphIndex(graph)
  replace: Dict[int, list] = {}
  drop: Set[int] = set()
  for concat in graph.node:
    conv = _match_im2col(index, concat)
    weights = conv and _conv_weights(index, conv.gemm, max_in_channels)
    if conv is None or not weights:
      continue
    replace[id(conv.back)] = _conv_nodes(graph, conv, *weights)
    drop.update(id(n) for n in conv.nodes())
  nodes = []
  for n in graph.node:
    nodes.extend(replace.get(id(n), [] if id(n) in drop else [n]))
  _set_nodes_dropping_dead(graph, nodes)
  return len(replace)


PRECISIONS = ('fp32', 'fp16')


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


def _import_converter():
  """(jax2onnx, onnx), or a ValueError saying how to install them."""
  try:
    import jax2onnx
    import onnx
  except ImportError as e:
    raise ValueError(
      f'--format onnx needs jax2onnx and onnx ({e}): pip install "ostrack_jax[onnx]"'
    ) from None
  return jax2onnx, onnx


def _check_request(path: str, opset: int, precision: str) -> None:
  """ValueError / FileExistsError naming the flag when the opset, precision or path is wrong."""
  if not MIN_OPSET <= int(opset) <= MAX_OPSET:
    raise ValueError(
      f'--opset {opset}: the exported network needs an opset from {MIN_OPSET} '
      f'(LayerNormalization) to {MAX_OPSET} (the newest TensorRT parses)'
    )
  if precision not in PRECISIONS:
    raise ValueError(f'--precision {precision}: expected one of {", ".join(PRECISIONS)}')
  if os.path.isdir(path):
    raise FileExistsError(f'--output {path}: a folder; --format onnx writes one .onnx file')


def _num_ce_layers(config) -> int:
  """The number of candidate-elimination layers (one ``removed_indexes_<i>`` output each)."""
  return sum(1 for r in config.model.ce_keep_ratio if float(r) < 1)


def _convert(config, variables: Dict[str, Any], opset: int):
  """The float32 network of ``config`` (``variables`` float32) as an ONNX ModelProto, straight
  from jax2onnx (matmuls traced at full precision; the converter's known log noise dropped)."""
  import jax
  import jax.numpy as jnp

  from ostrack_jax.models.ostrack import build_model

  jax2onnx, _ = _import_converter()
  model = build_model(config)
  m = config.model
  t, s = int(m.template_size), int(m.search_size)
  n_ce = _num_ce_layers(config)
  n_removed = []

  def network(template, search):
    out = model.apply(variables, template, search, keep_ratio=None, train=False)
    n_removed.append(len(out['removed_indexes']))
    return tuple(out[k] for k in onnx_format.OUTPUT_NAMES) + tuple(out['removed_indexes'])

  inputs = [
    jax.ShapeDtypeStruct((1, t, t, 3), jnp.float32),
    jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32),
  ]
  removed_names = [f'{onnx_format.REMOVED_PREFIX}{i}' for i in range(n_ce)]
  with (
    jax.default_matmul_precision('highest'),
    logfilter.dropping(_CONVERTER_LOGGERS, _is_converter_noise),
  ):
    model_proto = jax2onnx.to_onnx(
      network,
      inputs,
      model_name=f'ostrack_jax_{config.name}',
      opset=int(opset),
      input_names=list(onnx_format.INPUT_NAMES),
      output_names=list(onnx_format.OUTPUT_NAMES) + removed_names,
      normalization_mode='prefer_native',
    )
  if n_removed and n_removed[-1] != n_ce:
    raise AssertionError(f'{n_removed[-1]} CE outputs, expected {n_ce}')
  return model_proto


def _manifest(config, model_proto, opset: int, precision: str) -> Dict[str, Any]:
  """What the file's ``ostrack_jax.manifest`` metadata holds."""
  import importlib.metadata

  import jax

  m = config.model
  t, s = int(m.template_size), int(m.search_size)
  f = s // int(m.patch_size)
  return {
    'format': onnx_format.FORMAT,
    'format_version': onnx_format.FORMAT_VERSION,
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
    'num_removed_outputs': _num_ce_layers(config),
    'operators': sorted({node.op_type for node in model_proto.graph.node}),
    'converter': f'jax2onnx {importlib.metadata.version("jax2onnx")}',
    'jax_version': jax.__version__,
  }


def _set_metadata(model_proto, config, manifest: Dict[str, Any]) -> None:
  """Replaces the file's metadata with the format, its version, the preset and ``manifest``."""
  meta = {
    onnx_format.META_FORMAT: onnx_format.FORMAT,
    onnx_format.META_VERSION: str(onnx_format.FORMAT_VERSION),
    onnx_format.META_PRESET: config.name,
    onnx_format.META_MANIFEST: json.dumps(manifest),
  }
  del model_proto.metadata_props[:]
  for key, value in meta.items():
    model_proto.metadata_props.add(key=key, value=value)
  model_proto.producer_name = 'ostrack_jax'


def _save(model_proto, path: str) -> None:
  """Writes ``model_proto`` to ``path`` atomically (a temporary file beside it, renamed)."""
  import onnx

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


def export_onnx(
  config,
  variables: Dict[str, Any],
  path: str,
  opset: int = DEFAULT_OPSET,
  precision: str = 'fp32',
) -> str:
  """Writes the network of ``config`` as one ONNX file with static shapes (atomically).

  The unit is the network alone (batch 1, float32, weights inside), what TensorRT and every
  onnxruntime execution provider take: ``template`` (1, T, T, 3) and ``search`` (1, S, S, 3)
  float32 ImageNet-normalized NHWC crops in; the model's ``score_map`` (1, F, F, 1),
  ``size_map`` and ``offset_map`` (1, F, F, 2), ``pred_boxes`` (1, 4) (cxcywh normalized, at the
  unwindowed peak) and ``removed_indexes_<i>`` (1, n_i) int32 per candidate-elimination layer
  out (:mod:`ostrack_jax.deploy.onnx_format`). The crops, the Hann window, the decode at the
  windowed peak, the map back and the clip run on the host
  (:mod:`ostrack_jax.deploy.onnx_tracker`, NumPy and OpenCV, pixel-exact with the original's
  crop). LayerNormalization and Gelu are single ops. Converter: jax2onnx.

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
  import jax
  import jax.numpy as jnp

  _import_converter()
  _check_request(path, opset, precision)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.dtype = 'float32'
  variables = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
  variables = jax.tree_util.tree_map(
    lambda x: jnp.asarray(np.asarray(x, np.float32)), jax.device_get(variables)
  )
  model_proto = _convert(config, variables, opset)
  fold_bias_into_gemm(model_proto.graph)
  im2col_to_conv(model_proto.graph)
  if precision == 'fp16':
    convert_to_float16(model_proto)
  _set_metadata(model_proto, config, _manifest(config, model_proto, opset, precision))
  _save(model_proto, path)
  return path
