"""The ONNX tracker: runs the exported network with onnxruntime, the rest of a step on the host.

``python -m ostrack_jax.export --format onnx`` (:func:`ostrack_jax.deploy.onnx_export.export_onnx`)
writes the network alone as one self-contained ONNX file with static shapes; its inputs, outputs
and metadata are described in :mod:`ostrack_jax.deploy.onnx_format`.

Per frame, :class:`OnnxTracker` cuts the search crop around the state on the host
(:func:`ostrack_jax.geometry.crop.sample_target`, NumPy + OpenCV, pixel-exact with the original),
normalises it with the float32 lookup table, runs the network, multiplies the score map by the
Hann window and decodes the box at the windowed peak (float32, as the live tracker's device
step), then maps it back to the image and clips it in float64, as the original
(:func:`ostrack_jax.tracking.host.boxes_to_image`). The template is cut once, the same way.

This module imports NumPy, OpenCV and onnxruntime only (no JAX, no Flax): :func:`load_onnx`
works on machines where JAX does not run.
"""

import json
import os
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ostrack_jax.deploy import onnx_format
from ostrack_jax.geometry import crop as crop_lib
from ostrack_jax.tracking import host
from ostrack_jax.tracking.host import check_frame


def normalization_table() -> np.ndarray:
  """(256, 3) float32 ImageNet normalization of every uint8 value per channel
  (:func:`ostrack_jax.tracking.host.normalization_table`, as a table)."""
  return host.normalization_table().reshape(256, 3)


DEFAULT_PROVIDERS = ('CPUExecutionProvider',)


def read_metadata(path: str, session=None) -> Dict[str, Any]:
  """The manifest stored in an ONNX tracker file; ValueError if it is not one we can run."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{path}: no such file; make one with python -m ostrack_jax.export --format onnx'
    )
  if session is None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only, as load_onnx
    session = ort.InferenceSession(path, sess_options=options, providers=['CPUExecutionProvider'])
  meta = dict(session.get_modelmeta().custom_metadata_map)
  if meta.get(onnx_format.META_FORMAT) != onnx_format.FORMAT:
    raise ValueError(
      f'{path}: not an ostrack_jax ONNX tracker (metadata {onnx_format.META_FORMAT!r} is '
      f'{meta.get(onnx_format.META_FORMAT)!r}); make one with python -m ostrack_jax.export '
      '--format onnx'
    )
  version = meta.get(onnx_format.META_VERSION)
  if version != str(onnx_format.FORMAT_VERSION):
    raise ValueError(
      f'{path}: ONNX tracker format version {version}, this ostrack_jax reads '
      f'version {onnx_format.FORMAT_VERSION}: export it again with python -m '
      'ostrack_jax.export --format onnx'
    )
  return json.loads(meta[onnx_format.META_MANIFEST])


def decode_box(response: np.ndarray, size_map: np.ndarray, offset_map: np.ndarray) -> np.ndarray:
  """Box at the peak of the windowed score map, float32 as the model's ``decode_box``.

  Args:
    response: (F, F) windowed score map; size_map, offset_map: (F, F, 2).
  Returns:
    (4,) float32 cxcywh normalized to the search crop (the first maximum wins, row-major; cell
    k maps to k / F, as the original).
  """
  f = response.shape[0]
  idx = int(np.argmax(response.reshape(-1)))
  iy, ix = divmod(idx, f)
  size = size_map.reshape(-1, 2)[idx]
  offset = offset_map.reshape(-1, 2)[idx]
  cx = (np.float32(ix) + offset[0]) / np.float32(f)
  cy = (np.float32(iy) + offset[1]) / np.float32(f)
  return np.array([cx, cy, size[0], size[1]], np.float32)


class OnnxTracker(host.LastOutputs):
  """Single-target tracker on the exported network (onnxruntime + NumPy + OpenCV).

  The same API as :class:`ostrack_jax.Tracker`: ``initialize(frame, box_xywh)``,
  ``track(frame) -> box`` (RGB uint8 frames of any size, xywh image pixels, float64),
  ``state`` (get / set), ``last_score_map`` / ``last_response`` (F, F),
  ``last_removed_indexes``, ``last_search_crop``, ``last_crop_box_xyxy``,
  ``last_resize_factor``, ``last_template_crop``, ``last_timing``. ``session`` is the
  onnxruntime session, ``providers`` the execution providers it runs on in priority order
  (``provider`` the first: the one that runs every node it supports), ``manifest`` the file's
  manifest, ``config`` its preset as a dict.
  """

  def __init__(self, path: str, session, manifest: Dict[str, Any]):
    self.path = path
    self.session = session
    self.providers = list(session.get_providers())
    self.provider = self.providers[0]
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
    self._window = host.hann_window(self.feat_size)
    self._template: Optional[np.ndarray] = None  # (1, T, T, 3) float32, set by initialize
    self._box: Optional[np.ndarray] = None  # (1, 4) float32 xywh, the state
    self._frames: Optional[host.FrameSizeWatch] = None  # set by initialize
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
    assert self._box is not None, 'initialize sets the state'
    return self._box[0].astype(np.float64)

  @state.setter
  def state(self, box_xywh):
    self._check_initialized()
    assert self._frames is not None, 'initialize sets it'
    b = host.check_box(box_xywh, self._frames.image_hw, 'state')
    self._box = b.astype(np.float32)[None]

  # ---------------------------------------------------------------- one step

  def _normalize(self, crop: np.ndarray) -> np.ndarray:
    """(N, N, 3) uint8 crop -> (1, N, N, 3) float32 ImageNet-normalized (the exact table)."""
    return self._table[crop.astype(np.intp), np.arange(3)][None]

  def step(self, template: np.ndarray, box: np.ndarray, frame: np.ndarray) -> Dict[str, Any]:
    """One tracking step from explicit inputs (what ``track`` runs; only ``last_timing`` is
    set: seconds of ``preprocess`` (crop, normalisation), ``model`` (the session) and
    ``postprocess`` (window, decode, map back)).

    Args:
      template: (1, T, T, 3) float32 normalized template.
      box: (1, 4) float32 xywh image pixels, the state the search crop is cut around.
      frame: (H, W, 3) uint8 RGB frame.
    Returns:
      dict of arrays with a leading axis of 1, the live tracker's full outputs: ``boxes``
      (1, 4) float32 xywh (the new state), ``pred_boxes`` (1, 4) cxcywh normalized at the
      windowed peak, ``score_map`` and ``response`` (1, F, F), ``search_crop`` (1, S, S, 3)
      uint8, ``crop_box_xyxy`` (1, 4) int32, ``resize_factor`` (1,), ``removed_indexes_<i>``
      (1, n_i) int32; also the network's ``size_map`` / ``offset_map`` (1, F, F, 2).
    """
    t0 = time.perf_counter()
    crop = crop_lib.sample_target(
      frame, box[0].astype(np.float64), self.search_factor, self.search_size, with_mask=False
    )
    feed = {'template': template, 'search': self._normalize(crop.image)}
    t1 = time.perf_counter()
    outs = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
    t2 = time.perf_counter()
    score = outs['score_map'][0, :, :, 0]
    response = self._window * score
    pred = decode_box(response, outs['size_map'][0], outs['offset_map'][0])
    h, w = frame.shape[:2]
    new_box = host.boxes_to_image(
      pred[None], box.astype(np.float64), [crop.resize_factor], [[h, w]], self.search_size
    ).astype(np.float32)
    last = {k: v for k, v in outs.items() if k.startswith(onnx_format.REMOVED_PREFIX)}
    last.update(
      boxes=new_box,
      pred_boxes=pred[None],
      score_map=score[None],
      response=response[None],
      size_map=outs['size_map'],
      offset_map=outs['offset_map'],
      search_crop=crop.image[None],
      crop_box_xyxy=np.array([crop.crop_box_xyxy], np.int32),
      resize_factor=np.array([crop.resize_factor], np.float32),
    )
    self.last_timing = {
      'preprocess': t1 - t0,
      'model': t2 - t1,
      'postprocess': time.perf_counter() - t2,
    }
    return last

  # ---------------------------------------------------------------- API

  def initialize(self, frame: np.ndarray, box_xywh: Sequence[float]) -> None:
    """Cuts the template around ``box_xywh`` (xywh image pixels) in the RGB uint8 ``frame``."""
    frame = check_frame(frame, 'initialize')
    box = host.check_init_box(box_xywh, frame.shape[:2])
    crop = crop_lib.sample_target(
      frame, box, self.template_factor, self.template_size, with_mask=False
    ).image
    self.last_template_crop = crop
    self._template = self._normalize(crop)
    # The state is float32, as the live tracker's.
    self._box = box.astype(np.float32)[None]
    self._frames = host.FrameSizeWatch(frame.shape[:2])
    self._initialized = True
    self._last = None
    self.frame_id = 0

  def track(self, frame: np.ndarray) -> np.ndarray:
    """Tracks one RGB uint8 frame; returns the new box (xywh image pixels, float64 (4,))."""
    self._check_initialized()
    assert self._frames is not None, 'initialize sets it'
    frame = self._frames.check(frame, self.frame_id + 1)
    assert self._template is not None and self._box is not None, 'initialize sets them'
    self._last = self.step(self._template, self._box, frame)
    box = self._last['boxes']
    self.frame_id += 1
    if not np.isfinite(box).all():
      raise FloatingPointError(
        f'frame {self.frame_id}: the network returned a non-finite box (bad checkpoint?)'
      )
    self._box = box
    return box[0].astype(np.float64)

  # ---------------------------------------------------------------- visualisation

  def _removed(self):
    n = int(self.manifest['num_removed_outputs'])
    return [self._last[f'{onnx_format.REMOVED_PREFIX}{i}'] for i in range(n)]

  @property
  def last_outputs(self) -> Optional[Dict[str, np.ndarray]]:
    """The last step's outputs (see :meth:`step`), each with a leading axis of 1."""
    return self._last


def _provider_name(provider) -> str:
  return provider if isinstance(provider, str) else provider[0]


def load_onnx(
  path: str, preset: Optional[str] = None, providers: Optional[Sequence[Any]] = None
) -> OnnxTracker:
  """An :class:`OnnxTracker` for an ONNX file written by ``python -m ostrack_jax.export --format
  onnx`` (onnxruntime, NumPy and OpenCV only; JAX is not imported).

  Args:
    path: the .onnx file.
    preset: if given, the preset name the caller expects (e.g. 'ostrack_256_ce'); a file
      exported for another preset is refused with a ValueError naming both.
    providers: onnxruntime execution providers in priority order, names or (name, options)
      pairs (default: ``['CPUExecutionProvider']``), e.g. ``['TensorrtExecutionProvider',
      'CUDAExecutionProvider', 'CPUExecutionProvider']``. A provider this onnxruntime build
      does not have is refused (ValueError naming it and the available ones), never silently
      replaced; the tracker's ``provider`` says which one runs.
  """
  import onnxruntime as ort

  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{path}: no such file; make one with python -m ostrack_jax.export --format onnx'
    )
  providers = list(providers or DEFAULT_PROVIDERS)
  available = ort.get_available_providers()
  missing = [_provider_name(p) for p in providers if _provider_name(p) not in available]
  if missing:
    raise ValueError(
      f'providers: {", ".join(missing)} not available in this onnxruntime '
      f'({ort.__version__}; available: {", ".join(available)})'
    )
  try:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no shape-merge notes on every load
    session = ort.InferenceSession(path, sess_options=options, providers=providers)
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
