"""The tracker's per-frame work on the device, as pure functions over explicit pytrees.

Per frame, inside ONE jitted step (:func:`make_tracking_fns`, which
:class:`ostrack_jax.tracking.tracking_core.TrackingCore` jits and dispatches), on the device: the search
crop around the previous state with the original's arithmetic
(:mod:`ostrack_jax.geometry.device_crop`: crop side, rounding, zero padding, the border
off-by-one, OpenCV's INTER_LINEAR uint8 resize, pixel-exact), the ImageNet normalisation (an
exact lookup table), the network, the centered Hann window, the decode at the windowed peak, the
map back to the image and the clip. The state (:class:`TrackState`) goes in and comes out.

Coordinates: boxes in and out are ``xywh`` in image pixels (floats). The network's box is
``cxcywh`` normalized to the search crop. States are float32 on the device (the original
computes in float64; :func:`ostrack_jax.tracking.host.boxes_to_image` is that float64 map back
and clip, and tests/geometry/test_device_crop.py bounds the difference).

Conventions reproduced from the original (documented quirks):

* The template is cut once at initialisation (factor ``config.tracker.template_factor``) and
  never updated.
* The map back uses ``crop_sz / 2`` as the crop centre and ignores the rounding of the crop
  origin (a systematic shift of about ``-0.5 / resize_factor`` px, as the published numbers).
* The clip computes the right/bottom corners from the *unclamped* box, then clamps:
  ``x1`` to ``[0, W - 10]``, ``x2`` to ``[10, W]``, and keeps ``w, h >= 10``. A target leaving
  the frame therefore leaves a box of at least 10 px at the border.
"""

from typing import Callable, Dict, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ostrack_jax.tracking.host import CLIP_MARGIN, hann_window, normalization_table


def normalize_uint8(images, table):
  """uint8 (..., 3) images -> float32 ImageNet-normalized, via the exact lookup table of
  :func:`ostrack_jax.tracking.host.normalization_table` (``table``)."""
  idx = images.astype(jnp.int32) * 3 + jnp.arange(3, dtype=jnp.int32)
  return table[idx]


BATCH_MODES = ('vmap', 'map')


class TrackState(NamedTuple):
  """What the tracker carries between frames, on the device, for B slots.

  templates: (B, T, T, 3) float32 ImageNet-normalized template crops.
  boxes: (B, 4) float32 xywh image pixels (the state the next search crop is cut around).
  """

  templates: jax.Array
  boxes: jax.Array


def constants(config: ml_collections.ConfigDict) -> Dict[str, np.ndarray]:
  """The step's constant inputs: the normalization table and the (F, F) Hann window."""
  f = int(config.model.search_size) // int(config.model.patch_size)
  return {'table': normalization_table(), 'window': hann_window(f)}


def boxes_to_image_device(
  pred_cxcywh_norm, prev_xywh, side, resize_factor, image_hw, search_size: int
):
  """Device twin of :func:`ostrack_jax.tracking.host.boxes_to_image` in float32: scale, map
  back, clip.

  Args:
    pred_cxcywh_norm: (..., 4) float32 cxcywh normalized to the search crop.
    prev_xywh: (..., 4) float32 state the crop was cut around.
    side: (...,) int32 crop side in image pixels; resize_factor: (...,) ``S / side``.
    image_hw: (..., 2) int32 image height and width.
  Returns:
    (..., 4) float32 xywh image pixels. The original does the map-back in float64; float32
    moves boxes by at most a few 1e-5 px (tests/geometry/test_device_crop.py bounds it).
  """
  pred_px = (pred_cxcywh_norm * jnp.float32(search_size)) / resize_factor[..., None]
  half = jnp.float32(0.5) * side.astype(jnp.float32)
  cx_prev = prev_xywh[..., 0] + jnp.float32(0.5) * prev_xywh[..., 2]
  cy_prev = prev_xywh[..., 1] + jnp.float32(0.5) * prev_xywh[..., 3]
  cx = pred_px[..., 0] + (cx_prev - half)
  cy = pred_px[..., 1] + (cy_prev - half)
  w, h = pred_px[..., 2], pred_px[..., 3]
  x1, y1 = cx - jnp.float32(0.5) * w, cy - jnp.float32(0.5) * h
  height = image_hw[..., 0].astype(jnp.float32)
  width = image_hw[..., 1].astype(jnp.float32)
  m = jnp.float32(CLIP_MARGIN)
  x2, y2 = x1 + w, y1 + h  # corners of the UNCLAMPED box (the original's order)
  x1 = jnp.minimum(jnp.maximum(0.0, x1), width - m)
  x2 = jnp.minimum(jnp.maximum(m, x2), width)
  y1 = jnp.minimum(jnp.maximum(0.0, y1), height - m)
  y2 = jnp.minimum(jnp.maximum(m, y2), height)
  return jnp.stack([x1, y1, jnp.maximum(m, x2 - x1), jnp.maximum(m, y2 - y1)], axis=-1)


class TrackingFns(NamedTuple):
  """Pure functions of one preset (not jitted; :class:`TrackingCore` jits them).

  init(consts, state, frame (Hb, Wb, 3) uint8, hw (2,) int32, box (4,) float32, slot int32)
      -> (state with slot ``slot`` holding the template cut around ``box`` and the box,
      the (T, T, 3) uint8 template crop).
  track(variables, consts, state, frames (B, Hb, Wb, 3) uint8, hw (B, 2) int32, active (B,)
      bool) -> (state, outputs). ``outputs['boxes']`` (B, 4) float32 xywh are the new states
      (inactive slots keep theirs). With ``full_outputs``: also ``pred_boxes`` (B, 4) cxcywh
      normalized, ``score_map`` and ``response`` (B, F, F) (raw and Hann-windowed),
      ``removed_indexes`` (list of (B, n_i) int32 per CE layer), ``search_crop`` (B, S, S, 3)
      uint8, ``crop_box_xyxy`` (B, 4) int32 and ``resize_factor`` (B,) float32.
  """

  init: Callable
  track: Callable


def make_tracking_fns(
  config: ml_collections.ConfigDict, batch_mode: Optional[str] = None, full_outputs: bool = True
) -> TrackingFns:
  """The tracker's per-frame work as pure functions over explicit pytrees.

  Per slot and frame, on the device: the search crop around the state (the original's
  arithmetic, :mod:`ostrack_jax.geometry.device_crop`), ImageNet normalisation (exact lookup
  table), the network, the Hann window, the decode at the windowed peak, the map back to the
  image and the clip. ``batch_mode``: None runs the B = 1 network on slot 0 (B must be 1);
  'vmap' runs the slots as one batched forward (the throughput mode; equal to one at a time up
  to float rounding); 'map' runs them one by one with ``jax.lax.map`` (bit-identical to B = 1).
  """
  if batch_mode is not None and batch_mode not in BATCH_MODES:
    raise ValueError(f'batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}')
  one = _slot_step(config, full_outputs)
  t_size = int(config.model.template_size)

  def track(variables, consts, state, frames, hw, active):
    b = state.boxes.shape[0]
    chex.assert_shape(frames, (b, None, None, 3))
    chex.assert_type(frames, jnp.uint8)
    chex.assert_shape(
      [state.templates, state.boxes, hw, active], [(b, t_size, t_size, 3), (b, 4), (b, 2), (b,)]
    )
    if batch_mode is None:
      if state.boxes.shape[0] != 1:
        raise ValueError('batch_mode=None tracks one slot; use vmap or map for more')
      new_box, extras = one(variables, consts, state.templates[0], state.boxes[0], frames[0], hw[0])
      new_boxes = new_box[None]
      extras = jax.tree_util.tree_map(lambda x: x[None], extras)
    elif batch_mode == 'vmap':
      new_boxes, extras = jax.vmap(one, in_axes=(None, None, 0, 0, 0, 0))(
        variables, consts, state.templates, state.boxes, frames, hw
      )
    else:
      new_boxes, extras = jax.lax.map(
        lambda a: one(variables, consts, *a), (state.templates, state.boxes, frames, hw)
      )
    boxes = jnp.where(active[:, None], new_boxes, state.boxes)
    return TrackState(state.templates, boxes), dict(extras, boxes=boxes)

  return TrackingFns(_template_init(config), track)


def _template_init(config: ml_collections.ConfigDict) -> Callable:
  """:attr:`TrackingFns.init`: the template of one slot, cut around its initial box."""
  from ostrack_jax.geometry import device_crop

  t_size = int(config.model.template_size)
  t_factor = float(config.tracker.template_factor)

  def init(consts, state, frame, hw, box, slot):
    # Trace-time checks (no cost per call): shapes and dtypes of the explicit pytrees.
    chex.assert_shape(frame, (None, None, 3))
    chex.assert_type(frame, jnp.uint8)
    chex.assert_shape([hw, box], [(2,), (4,)])
    chex.assert_shape(state.templates, (None, t_size, t_size, 3))
    crop, _ = device_crop.sample_target(frame, hw, box, t_factor, t_size)
    template = normalize_uint8(crop, consts['table'])
    return TrackState(
      jax.lax.dynamic_update_index_in_dim(state.templates, template, slot, axis=0),
      jax.lax.dynamic_update_index_in_dim(state.boxes, box.astype(jnp.float32), slot, axis=0),
    ), crop

  return init


def _slot_step(config: ml_collections.ConfigDict, full_outputs: bool) -> Callable:
  """One slot's frame: ``one(variables, consts, template (T, T, 3), box (4,), frame (Hb, Wb,
  3), hw (2,)) -> (new box (4,), extras)``, the extras those of :class:`TrackingFns` without
  the slot axis (empty unless ``full_outputs``)."""
  from ostrack_jax.geometry import device_crop
  from ostrack_jax.models.head import decode_box
  from ostrack_jax.models.ostrack import build_model

  model = build_model(config)
  s_size = int(config.model.search_size)
  s_factor = float(config.tracker.search_factor)

  def one(variables, consts, template, box, frame, hw):
    crop, g = device_crop.sample_target(frame, hw, box, s_factor, s_size)
    search = normalize_uint8(crop, consts['table'])
    out = model.apply(variables, template[None], search[None], keep_ratio=None, train=False)
    score = out['score_map'][..., 0]
    response = consts['window'][None] * score
    pred = decode_box(response[..., None], out['size_map'], out['offset_map'])[0]
    new_box = boxes_to_image_device(pred, box, g.side, g.resize_factor, hw, s_size)
    extras = {}
    if full_outputs:
      extras = {
        'pred_boxes': pred,
        'score_map': score[0],
        'response': response[0],
        'removed_indexes': [r[0] for r in out['removed_indexes']],
        'search_crop': crop,
        'resize_factor': g.resize_factor,
        'crop_box_xyxy': jnp.stack([g.x1, g.y1, g.x1 + g.side, g.y1 + g.side]),
      }
    return new_box, extras

  return one
