"""The ONNX tracker file: what its exporter writes and its loader reads (names, metadata keys).

:func:`ostrack_jax.deploy.onnx_export.export_onnx` (``python -m ostrack_jax.export --format
onnx``) writes the network alone as one self-contained ONNX file (batch 1, weights inside,
float32 -- or float16 inside with ``--precision fp16``, its inputs and outputs still float32 --
static shapes), the unit TensorRT and every onnxruntime execution provider take; the loader
(:func:`ostrack_jax.deploy.onnx_tracker.load_onnx`) runs it. T = template size, S = search
size, F = S // patch:

* inputs ``template`` (1, T, T, 3) and ``search`` (1, S, S, 3), float32 ImageNet-normalized
  NHWC crops;
* outputs the model's ``score_map`` (1, F, F, 1), ``size_map`` and ``offset_map``
  (1, F, F, 2), ``pred_boxes`` (1, 4) (cxcywh normalized to the crop, at the unwindowed peak)
  and ``removed_indexes_<i>`` (1, n_i) int32, one per candidate-elimination layer.

The file carries its manifest in the ONNX metadata (``metadata_props``: ``ostrack_jax.format``,
``ostrack_jax.format_version``, ``ostrack_jax.preset``, ``ostrack_jax.manifest`` JSON with the
config, the opset, the precision, ``num_removed_outputs``, the operators, the converter's
version). Plain constants: importing this module imports nothing.
"""

# The format's name in the metadata (what every file written so far carries).
FORMAT = 'ostrack_jax.deploy.onnx_tracker'
FORMAT_VERSION = 2  # 1: the whole step (crop, network, decode) in one graph
INPUT_NAMES = ('template', 'search')
OUTPUT_NAMES = ('score_map', 'size_map', 'offset_map', 'pred_boxes')
REMOVED_PREFIX = 'removed_indexes_'  # then removed_indexes_0 .. removed_indexes_{n-1}
META_FORMAT = 'ostrack_jax.format'
META_VERSION = 'ostrack_jax.format_version'
META_PRESET = 'ostrack_jax.preset'
META_MANIFEST = 'ostrack_jax.manifest'
