"""The ONNX tracker: runs an ONNX export of the tracker's per-frame step with onnxruntime alone.

``python -m ostrack_jax.export --format onnx`` (:func:`ostrack_jax.export.export_onnx`) writes
the tracker's per-frame device step -- the same function the live :class:`~ostrack_jax.Tracker`
jits -- as one self-contained ONNX file (weights inside, float32). Its unit is the whole frame:

* inputs ``template`` (1, T, T, 3) float32 ImageNet-normalized, ``box`` (1, 4) float32 xywh
  image pixels (the state), ``frame`` (1, h, w, 3) uint8 RGB with *symbolic* h and w (any
  frame size, no padding), ``image_hw`` (1, 2) int32 (the frame's height and width);
* inside: the search crop around the state with the original's arithmetic (integer OpenCV
  INTER_LINEAR reproduction, pixel-exact), the normalisation, the ViT with candidate
  elimination (TopK and gathers), the center head, the Hann window, the decode at the peak, the
  map back to the image and the clip;
* outputs ``boxes`` (1, 4) float32 xywh (the new state), ``pred_boxes`` (1, 4) cxcywh
  normalized to the crop, ``score_map`` and ``response`` (1, F, F) (raw and Hann-windowed),
  ``search_crop`` (1, S, S, 3) uint8, ``crop_box_xyxy`` (1, 4) int32, ``resize_factor`` (1,)
  and ``removed_indexes_<i>`` (1, n_i) int32, one per candidate-elimination layer.

The template is cut once on the host (:func:`ostrack_jax.crop.sample_target`, NumPy + OpenCV,
pixel-exact with the original) and normalised with the float32 lookup table.

This module imports NumPy, OpenCV and onnxruntime only (no JAX, no Flax): :func:`load_onnx`
works on machines where JAX does not run. The file carries its manifest in the ONNX metadata
(``metadata_props``: ``ostrack_jax.format``, ``ostrack_jax.format_version``,
``ostrack_jax.preset``, ``ostrack_jax.manifest`` JSON with the config, the opset, the
converter's version).
"""

import json
import os
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ostrack_jax import crop as crop_lib
from ostrack_jax.tracking import host
from ostrack_jax.tracking.host import check_frame  # noqa: F401  (part of this module's API)


def normalization_table() -> np.ndarray:
  """(256, 3) float32 ImageNet normalization of every uint8 value per channel
  (:func:`ostrack_jax.tracking.host.normalization_table`, as a table)."""
  return host.normalization_table().reshape(256, 3)


FORMAT = 'ostrack_jax.onnx_tracker'
FORMAT_VERSION = 1
INPUT_NAMES = ('template', 'box', 'frame', 'image_hw')
OUTPUT_NAMES = (
  'boxes',
  'pred_boxes',
  'score_map',
  'response',
  'search_crop',
  'crop_box_xyxy',
  'resize_factor',
)  # then removed_indexes_0 .. removed_indexes_{n-1}
META_FORMAT = 'ostrack_jax.format'
META_VERSION = 'ostrack_jax.format_version'
META_PRESET = 'ostrack_jax.preset'
META_MANIFEST = 'ostrack_jax.manifest'


def read_metadata(path: str, session=None) -> Dict[str, Any]:
  """The manifest stored in an ONNX tracker file; ValueError if it is not one we can run."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{path}: no such file; make one with python -m ostrack_jax.export --format onnx'
    )
  if session is None:
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only, as load_onnx
    session = ort.InferenceSession(path, sess_options=options, providers=['CPUExecutionProvider'])
  meta = dict(session.get_modelmeta().custom_metadata_map)
  if meta.get(META_FORMAT) != FORMAT:
    raise ValueError(
      f'{path}: not an ostrack_jax ONNX tracker (metadata {META_FORMAT!r} is '
      f'{meta.get(META_FORMAT)!r}); make one with python -m ostrack_jax.export '
      '--format onnx'
    )
  version = meta.get(META_VERSION)
  if version != str(FORMAT_VERSION):
    raise ValueError(
      f'{path}: ONNX tracker format version {version}, this ostrack_jax reads '
      f'version {FORMAT_VERSION}: export it again with python -m '
      'ostrack_jax.export --format onnx'
    )
  return json.loads(meta[META_MANIFEST])


class OnnxTracker(host.LastOutputs):
  """Single-target tracker on an ONNX export of the per-frame step (onnxruntime + NumPy + OpenCV).

  The same API as :class:`ostrack_jax.Tracker`: ``initialize(frame, box_xywh)``,
  ``track(frame) -> box`` (RGB uint8 frames of any size, xywh image pixels, float64),
  ``state`` (get / set), ``last_score_map`` / ``last_response`` (F, F),
  ``last_removed_indexes``, ``last_search_crop``, ``last_crop_box_xyxy``,
  ``last_resize_factor``, ``last_template_crop``, ``last_timing``. ``session`` is the
  onnxruntime session, ``manifest`` the file's manifest, ``config`` its preset as a dict.
  """

  def __init__(self, path: str, session, manifest: Dict[str, Any]):
    self.path = path
    self.session = session
    self.manifest = manifest
    self.config = manifest['config']
    self.preset = manifest['preset']
    m, t = self.config['model'], self.config['tracker']
    self.template_size = int(m['template_size'])
    self.search_size = int(m['search_size'])
    self.feat_size = self.search_size // int(m['patch_size'])
    self.template_factor = float(t['template_factor'])
    self.search_factor = float(t['search_factor'])
    self.output_names = [o.name for o in session.get_outputs()]
    self._table = normalization_table()
    self._template = None
    self._box = None
    self._image_hw = None
    self._size_warned = False
    self._initialized = False
    self._last: Optional[Dict[str, np.ndarray]] = None
    self.last_template_crop: Optional[np.ndarray] = None
    self.frame_id = 0
    self.last_timing: Dict[str, float] = {}

  # ---------------------------------------------------------------- state

  def _check_initialized(self):
    if not self._initialized:
      raise RuntimeError('the tracker is not initialized: call initialize(frame, box) first')

  @property
  def state(self) -> np.ndarray:
    """Current box, xywh image pixels (float64 copy)."""
    self._check_initialized()
    return self._box[0].astype(np.float64)

  @state.setter
  def state(self, box_xywh):
    self._check_initialized()
    b = host.check_box(box_xywh, self._image_hw, 'state')
    self._box = b.astype(np.float32)[None]

  # ---------------------------------------------------------------- API

  def initialize(self, frame: np.ndarray, box_xywh: Sequence[float]) -> None:
    """Cuts the template around ``box_xywh`` (xywh image pixels) in the RGB uint8 ``frame``."""
    frame = check_frame(frame, 'initialize')
    box = host.check_init_box(box_xywh, frame.shape[:2])
    crop = crop_lib.sample_target(
      frame, box, self.template_factor, self.template_size, with_mask=False
    ).image
    self.last_template_crop = crop
    self._template = self._table[crop.astype(np.intp), np.arange(3)][None]
    # The state is float32, as the device step's (the exported one and the live tracker's).
    self._box = box.astype(np.float32)[None]
    self._image_hw = frame.shape[:2]
    self._size_warned = False
    self._initialized = True
    self._last = None
    self.frame_id = 0

  def track(self, frame: np.ndarray) -> np.ndarray:
    """Tracks one RGB uint8 frame; returns the new box (xywh image pixels, float64 (4,))."""
    self._check_initialized()
    t0 = time.perf_counter()
    frame = check_frame(frame, f'frame {self.frame_id + 1}')
    h, w = frame.shape[:2]
    self._size_warned = host.note_frame_size(
      self._image_hw, (h, w), self.frame_id + 1, self._size_warned
    )
    self._image_hw = (h, w)
    feed = {
      'template': self._template,
      'box': self._box,
      'frame': frame[None],
      'image_hw': np.array([[h, w]], np.int32),
    }
    t1 = time.perf_counter()
    outs = self.session.run(None, feed)
    t2 = time.perf_counter()
    self._last = dict(zip(self.output_names, outs))
    box = self._last['boxes'].astype(np.float32)
    self.frame_id += 1
    if not np.isfinite(box).all():
      raise FloatingPointError(
        f'frame {self.frame_id}: the network returned a non-finite box (bad checkpoint?)'
      )
    self._box = box
    self.last_timing = {
      'preprocess': t1 - t0,
      'model': t2 - t1,
      'postprocess': time.perf_counter() - t2,
    }
    return box[0].astype(np.float64)

  # ---------------------------------------------------------------- visualisation

  def _removed(self):
    n = int(self.manifest['num_removed_outputs'])
    return [self._last[f'removed_indexes_{i}'] for i in range(n)]

  @property
  def last_outputs(self) -> Optional[Dict[str, np.ndarray]]:
    """The last step's outputs by ONNX output name, each with a leading axis of 1."""
    return self._last


def load_onnx(
  path: str, preset: Optional[str] = None, providers: Optional[Sequence[Any]] = None
) -> OnnxTracker:
  """An :class:`OnnxTracker` for an ONNX file written by ``python -m ostrack_jax.export --format
  onnx`` (onnxruntime, NumPy and OpenCV only; JAX is not imported).

  Args:
    path: the .onnx file.
    preset: if given, the preset name the caller expects (e.g. 'ostrack_256_ce'); a file
      exported for another preset is refused with a ValueError naming both.
    providers: onnxruntime execution providers (default: CPU only), e.g.
      ``['CUDAExecutionProvider', 'CPUExecutionProvider']``.
  """
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{path}: no such file; make one with python -m ostrack_jax.export --format onnx'
    )
  try:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no shape-merge notes on every load
    session = ort.InferenceSession(
      path, sess_options=options, providers=list(providers or ['CPUExecutionProvider'])
    )
  except Exception as e:  # onnxruntime raises its own exception types
    raise ValueError(
      f'{path}: onnxruntime cannot load it as an ONNX model: {str(e).splitlines()[0][:300]}'
    ) from None
  manifest = read_metadata(path, session)
  if preset is not None and preset != manifest['preset']:
    raise ValueError(
      f'{path} was exported for preset {manifest["preset"]!r}, not {preset!r}: '
      f'export {preset!r} with python -m ostrack_jax.export --format onnx '
      f'--config {preset}'
    )
  return OnnxTracker(path, session, manifest)
