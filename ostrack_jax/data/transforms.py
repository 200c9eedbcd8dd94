"""Training-pair processing (the original's STARKProcessing): joint augment, box jitter, crop,
per-crop augment; and the training label, the Gaussian heatmap of the search box (the original's
actor builds it from the batch; here the data workers build it with the rest of the sample).

NumPy and OpenCV only (grain workers import this without JAX).

Conventions: boxes in image pixels are xywh (x1, y1, w, h) with the original's pixel-index
convention; boxes in crops are normalized xywh (fractions of the crop side, (S - 1) / 2 centre
convention of :func:`ostrack_jax.geometry.crop.box_to_crop_normalized`, not clamped). Images are RGB,
HWC. Every random decision comes from the ``np.random.Generator`` passed in, so a sample is a
pure function of its seed.

Deviations from the original, all deliberate and small:

* Grayscale (probability 0.05) is applied to the crops instead of the full frames (the result
  differs by at most one grey level of rounding, and only the crop is ever converted).
* Reduced-resolution decoding: when the crop side is at least ``r`` times the output side
  (r = 2, 4, 8), the JPEG is decoded at 1/r scale by libjpeg's DCT scaling and the crop is
  resampled from it with the *full-resolution* geometry (same crop side, origin, resize factor
  and labels, so the boxes are bit-identical; the pixels differ by the smoother downsampling;
  ``tests/data/test_data_transforms.py`` bounds the difference). The full-resolution path uses
  :func:`ostrack_jax.geometry.crop.sample_target`, pixel-exact with the original.
"""

import io
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from ostrack_jax.geometry import crop as crop_lib
from ostrack_jax.geometry.boxes import box_text

_REDUCED_FLAGS = {
  2: cv2.IMREAD_REDUCED_COLOR_2,
  4: cv2.IMREAD_REDUCED_COLOR_4,
  8: cv2.IMREAD_REDUCED_COLOR_8,
}


class BadSample(Exception):
  """A sample that the original would reject (its ``valid=False``); the sampler redraws."""


class Frame(NamedTuple):
  """An encoded frame. ``size`` is (W, H) if known from the index, else None (read lazily)."""

  data: bytes
  name: str  # for error messages (a path or a pack key)
  size: Optional[Tuple[int, int]] = None


class AugmentParams(NamedTuple):
  """Per-crop processing parameters (from ``config.data`` and ``config.model``)."""

  output_size: int
  factor: float
  center_jitter: float
  scale_jitter: float


def image_size(frame: Frame) -> Tuple[int, int]:
  """(W, H) of an encoded image from its header (no decode)."""
  if frame.size is not None:
    return frame.size
  try:
    with Image.open(io.BytesIO(frame.data)) as im:
      return im.size
  except Exception as e:
    raise BadSample(f'{frame.name}: not a readable image ({e})') from e


def decode(frame: Frame, reduction: int = 1) -> np.ndarray:
  """Decodes to (H', W', 3) uint8 RGB, at 1/reduction scale for JPEGs (1, 2, 4 or 8)."""
  buf = np.frombuffer(frame.data, np.uint8)
  flag = cv2.IMREAD_COLOR if reduction == 1 else _REDUCED_FLAGS[reduction]
  img = cv2.imdecode(buf, flag) if buf.size else None
  if img is None:
    raise BadSample(f'{frame.name}: cannot decode image ({len(frame.data)} bytes)')
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def is_jpeg(data: bytes) -> bool:
  return data[:3] == b'\xff\xd8\xff'


def choose_reduction(crop_side: int, output_size: int, max_reduction: int = 8) -> int:
  """Largest r in (1, 2, 4, 8), r <= max_reduction, with crop_side >= r * output_size."""
  r = 1
  while r * 2 <= max_reduction and crop_side >= 2 * r * output_size:
    r *= 2
  return r


def flip_box_xywh(box_xywh: np.ndarray, image_width: int) -> np.ndarray:
  """Box after a horizontal flip of the frame: x1' = W - 1 - (x1 + w) (the original's rule)."""
  x, y, w, h = box_xywh
  return np.array([image_width - 1 - (x + w), y, w, h], np.float64)


def jitter_box(
  box_xywh: np.ndarray, center_jitter: float, scale_jitter: float, rng: np.random.Generator
) -> np.ndarray:
  """The original's box jitter: size * exp(N(0,1) * scale_jitter) per side, centre +
  U(-.5,.5) * max_offset.

  ``max_offset = sqrt(w_j * h_j) * center_jitter``. The RNG is consumed even for zero factors
  (the template), as in the original. Returns the jittered xywh box in pixels.
  """
  box = np.asarray(box_xywh, np.float64)
  size = box[2:] * np.exp(rng.standard_normal(2) * scale_jitter)
  max_offset = math.sqrt(max(size[0] * size[1], 0.0)) * center_jitter
  center = box[:2] + 0.5 * box[2:] + max_offset * (rng.random(2) - 0.5)
  return np.concatenate([center - 0.5 * size, size])


def _axis_pad(start: int, side: int, length: int, output_size: int) -> np.ndarray:
  """(S,) bool: output rows/cols whose INTER_LINEAR footprint touches padding on one axis.

  The crop's real-image part along this axis is [max(start, 0), min(start + side, length - 1))
  (the original's +1 quirk), as in :func:`ostrack_jax.geometry.crop.sample_target`.
  """
  lo = max(start, 0) - start
  hi = max(min(start + side, length - 1) - start, lo)
  invalid = np.ones((side, 1), np.float64)
  invalid[lo:hi] = 0.0
  if output_size != side:
    invalid = cv2.resize(invalid, (1, output_size), interpolation=cv2.INTER_LINEAR)
  return invalid.reshape(-1) != 0


def crop_pad_mask(crop_box_xyxy, image_size_wh, output_size: int) -> np.ndarray:
  """(S, S) bool padding mask, equal to ``sample_target(...).pad_mask`` without the image.

  Linear resizing is separable and the mask is 1 - row_valid x col_valid, so an output pixel
  touches padding iff its row or its column footprint does.
  """
  x1, y1, x2, _ = crop_box_xyxy
  side = x2 - x1
  rows = _axis_pad(y1, side, image_size_wh[1], output_size)
  cols = _axis_pad(x1, side, image_size_wh[0], output_size)
  return rows[:, None] | cols[None, :]


def crop_frame(
  frame: Frame,
  box_xywh: np.ndarray,
  factor: float,
  output_size: int,
  *,
  flip: bool,
  reduced_decode: bool = True,
):
  """Crops ``frame`` (optionally mirrored) around a box given in the (mirrored) frame's pixels.

  Returns (crop (S, S, 3) uint8, resize_factor, crop_box_xyxy, image size (W, H)). The crop
  geometry (side, rounded origin, resize factor) is always the full-resolution one of
  :func:`ostrack_jax.geometry.crop.sample_target`.
  """
  side = crop_lib.crop_size(box_xywh, factor)  # raises ValueError for empty boxes
  x, y, w, h = (float(v) for v in box_xywh)
  x1 = round(x + 0.5 * w - side * 0.5)
  y1 = round(y + 0.5 * h - side * 0.5)
  crop_box = (x1, y1, x1 + side, y1 + side)
  reduction = choose_reduction(side, output_size) if reduced_decode else 1
  if reduction > 1 and is_jpeg(frame.data):
    width, height = image_size(frame)
    img = decode(frame, reduction)
    if img.shape[:2] == (-(-height // reduction), -(-width // reduction)):
      return (
        _crop_reduced(img, reduction, crop_box, (width, height), output_size, flip),
        output_size / side,
        crop_box,
        (width, height),
      )
    # Unexpected reduced size: fall through to the exact full-resolution path.
  img = decode(frame)
  height, width = img.shape[:2]
  if frame.size is not None and frame.size != (width, height):
    raise BadSample(f'{frame.name}: image is {width}x{height}, index says {frame.size}')
  if flip:
    img = img[:, ::-1]
  crop = crop_lib.sample_target(img, box_xywh, factor, output_size, with_mask=False)
  assert crop.crop_box_xyxy == crop_box
  return crop.image, crop.resize_factor, crop_box, (width, height)


def _crop_reduced(
  img: np.ndarray, reduction: int, crop_box, image_size_wh, output_size: int, flip: bool
) -> np.ndarray:
  """Bilinear crop from a 1/r-scale decode with the full-resolution crop geometry.

  Output pixel u samples full-resolution column x = x1 + (u + 0.5) * side / S - 0.5 (the
  half-pixel convention of cv2.resize), mirrored to W - 1 - x when the frame is flipped, at
  reduced column (x + 0.5) / r - 0.5. Outside the image is black, as in the full-res crop.
  """
  x1, y1, x2, _ = crop_box
  side = x2 - x1
  scale = side / output_size
  # Full-res x as a function of u: a * u + b.
  a, b = scale, x1 + 0.5 * scale - 0.5
  if flip:
    a, b = -a, image_size_wh[0] - 1 - b
  ay, by = scale, y1 + 0.5 * scale - 0.5
  r = float(reduction)
  matrix = np.array(
    [[a / r, 0.0, (b + 0.5) / r - 0.5], [0.0, ay / r, (by + 0.5) / r - 0.5]], np.float64
  )
  return cv2.warpAffine(
    img,
    matrix,
    (output_size, output_size),
    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    borderMode=cv2.BORDER_CONSTANT,
    borderValue=0,
  )


def to_gray3(image: np.ndarray) -> np.ndarray:
  """OpenCV RGB -> GRAY (0.299/0.587/0.114, uint8) replicated to 3 channels."""
  return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def normalize(image01: np.ndarray) -> np.ndarray:
  """(x - ImageNet mean) / std on an HWC float image in [0, 1]; float32."""
  return ((image01 - crop_lib.IMAGENET_MEAN) / crop_lib.IMAGENET_STD).astype(np.float32)


def to_normalized_float(image: np.ndarray, brightness: float = 1.0) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 ``(clip(x * brightness / 255, 0, 1) - mean) / std``.

  Computed through a 256-entry lookup table per channel (cv2.LUT), the same values as the
  elementwise formula in float32 and ~10x faster.
  """
  values = np.arange(256, dtype=np.float32)[:, None]
  lut = normalize(
    np.clip(values * np.float32(brightness / 255.0), 0.0, 1.0)[:, None, :].repeat(3, axis=2)[
      :, 0, :
    ]
  )
  return cv2.LUT(np.ascontiguousarray(image), lut.reshape(1, 256, 3))


def process_crop(
  frame: Frame,
  box_xywh: np.ndarray,
  params: AugmentParams,
  rng: np.random.Generator,
  *,
  gray: bool,
  flip: bool,
  train: bool,
  reduced_decode: bool = True,
):
  """The per-crop chain for one of template / search: jitter, crop, box into the crop,
  brightness and flip, validity checks.

  Args:
    frame: the encoded full frame.
    box_xywh: the ground-truth box in the *unflipped* frame's pixels.
    params: output size, context factor and jitter factors.
    rng: consumed in the original's order: jitter (randn, rand), then in training brightness
      and per-crop flip.
    gray, flip: the joint decisions shared by template and search (made on the full frames).
    train: brightness jitter U(0.8, 1.2) and per-crop horizontal flip (p 0.5); validation
      only normalizes.
    reduced_decode: allow decoding JPEGs at 1/2, 1/4, 1/8 scale when the crop allows it.

  Returns:
    (image (S, S, 3) float32 normalized, anno (4,) float32 normalized xywh in the crop).
  Raises:
    BadSample when the original would mark the sample invalid or the frame is unreadable.
  """
  box = np.asarray(box_xywh, np.float64)
  if flip:
    box = flip_box_xywh(box, image_size(frame)[0])
  jittered = jitter_box(box, params.center_jitter, params.scale_jitter, rng)
  if not np.all(np.isfinite(jittered)) or not (jittered[2] > 0 and jittered[3] > 0):
    raise BadSample(f'{frame.name}: degenerate jittered box {box_text(jittered)}')
  if math.ceil(math.sqrt(jittered[2] * jittered[3]) * params.factor) < 1:
    raise BadSample(f'{frame.name}: crop smaller than one pixel')
  image, resize_factor, crop_box, size_wh = crop_frame(
    frame, jittered, params.factor, params.output_size, flip=flip, reduced_decode=reduced_decode
  )
  anno = crop_lib.box_to_crop_normalized(box, jittered, resize_factor, params.output_size)
  if gray:
    image = to_gray3(image)
  brightness = 1.0
  if train:
    brightness = rng.uniform(0.8, 1.2)
    if rng.random() < 0.5:
      image = cv2.flip(np.ascontiguousarray(image), 1)  # horizontal mirror
      anno = np.array([1.0 - (anno[0] + anno[2]), anno[1], anno[2], anno[3]])
  image = to_normalized_float(image, brightness)
  pad = crop_pad_mask(crop_box, size_wh, params.output_size)
  if pad.all():
    raise BadSample(f'{frame.name}: crop lies entirely outside the image')
  # The original's validity check: nearest resize to S // 16 samples rows/cols 0, 16, 32, ...
  stride = 16
  if pad[::stride, ::stride][: params.output_size // 16, : params.output_size // 16].all():
    raise BadSample(f'{frame.name}: crop is padding at every feature-grid point')
  return image, anno.astype(np.float32)


def process_pair(
  template: Frame,
  template_box: Sequence[float],
  search: Frame,
  search_box: Sequence[float],
  template_params: AugmentParams,
  search_params: AugmentParams,
  rng: np.random.Generator,
  *,
  grayscale_probability: float = 0.05,
  train: bool = True,
  reduced_decode: bool = True,
) -> dict:
  """One training pair as the original's STARKProcessing makes it: joint grayscale/flip, then
  the template chain, then the search chain.

  Boxes are xywh pixels of the respective frames. Returns a dict of numpy arrays:
  ``template`` (St, St, 3) and ``search`` (Ss, Ss, 3) float32 normalized RGB (NHWC without
  N), ``template_anno`` and ``search_anno`` (4,) float32 normalized xywh in their crops.
  Raises BadSample when the sample is invalid.
  """
  gray = rng.random() < grayscale_probability
  flip = rng.random() < 0.5
  t_img, t_anno = process_crop(
    template,
    template_box,
    template_params,
    rng,
    gray=gray,
    flip=flip,
    train=train,
    reduced_decode=reduced_decode,
  )
  s_img, s_anno = process_crop(
    search,
    search_box,
    search_params,
    rng,
    gray=gray,
    flip=flip,
    train=train,
    reduced_decode=reduced_decode,
  )
  return dict(template=t_img, search=s_img, template_anno=t_anno, search_anno=s_anno)


# ------------------------------------------------------------------ the label: Gaussian target
HEATMAP_MIN_OVERLAP = 0.7  # CornerNet's IoU bound that sets the Gaussian radius


def gaussian_radius(width, height, min_overlap: float = HEATMAP_MIN_OVERLAP) -> np.ndarray:
  """CornerNet's radius in its "bug version" (each root divided by 2, not 2a), as OSTrack uses.

  ``width``/``height`` are in feature cells (scalars or arrays). The original evaluates this on
  float32 torch tensors, with the Python-float constants rounded to float32; so does this
  function (the result decides an int truncation, so the dtype matters at the boundaries).
  Returns the float32 radius before clamping and truncation (see :func:`heatmap_radius`).
  """
  f32 = np.float32
  w = np.asarray(width, f32)
  h = np.asarray(height, f32)
  o = float(min_overlap)
  b1 = h + w
  c1 = w * h * f32(1 - o) / f32(1 + o)
  r1 = (b1 + np.sqrt(b1 * b1 - f32(4) * c1)) / f32(2)
  b2 = f32(2) * (h + w)
  c2 = f32(1 - o) * w * h
  r2 = (b2 + np.sqrt(b2 * b2 - f32(4 * 4) * c2)) / f32(2)
  a3 = 4 * o
  b3 = f32(-2 * o) * (h + w)
  c3 = f32(o - 1) * w * h
  r3 = (b3 + np.sqrt(b3 * b3 - f32(4 * a3) * c3)) / f32(2)
  return np.minimum(r1, np.minimum(r2, r3))


def heatmap_radius(width, height) -> np.ndarray:
  """The radius the original draws with: max(0, radius) truncated toward zero (int)."""
  return np.maximum(gaussian_radius(width, height), np.float32(0)).astype(np.int32)


def gaussian_kernel(radius: int) -> np.ndarray:
  """(2r+1, 2r+1) float64 Gaussian with sigma = (2r+1)/6 and peak exactly 1."""
  sigma = (2 * radius + 1) / 6.0
  d = np.arange(-radius, radius + 1, dtype=np.float64)
  kernel = np.exp(-(d[None, :] ** 2 + d[:, None] ** 2) / (2 * sigma * sigma))
  kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
  return kernel


def _draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
  """Elementwise max of ``heatmap`` (F, F) with the kernel centred at (cx, cy).

  The window is clipped to the map as the original clips it (left = min(cx, r), right =
  min(F - cx, r + 1), same vertically) and skipped when empty.
  """
  kernel = gaussian_kernel(radius).astype(np.float32)  # the original casts it to float32
  height, width = heatmap.shape
  left, right = min(cx, radius), min(width - cx, radius + 1)
  top, bottom = min(cy, radius), min(height - cy, radius + 1)
  # Same slicing semantics as the original (Python slices, negative starts included).
  region = heatmap[cy - top : cy + bottom, cx - left : cx + right]
  patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
  if min(patch.shape) > 0 and min(region.shape) > 0 and region.shape == patch.shape:
    np.maximum(region, patch, out=region)


def gaussian_heatmap(search_anno_xywh: np.ndarray, feat_size: int) -> np.ndarray:
  """The CenterNet target of a batch, as the original builds it (bit for bit: the radius in
  float32 with its int truncation, half-to-even rounding of the centre, the float64 kernel).

  Args:
    search_anno_xywh: (B, 4) GT boxes, xywh normalized to the search crop.
    feat_size: F, the side of the score map (search_size // patch_size).
  Returns:
    (B, F, F, 1) float32 heatmap; 1.0 exactly at each box's centre cell.
  """
  boxes = np.asarray(search_anno_xywh, np.float32).reshape(-1, 4)
  box_f = boxes * np.float32(feat_size)
  wh = box_f[:, 2:]
  # torch.round and np.round both round half to even.
  centres = np.round(box_f[:, :2] + wh / np.float32(2)).astype(np.int64)
  radii = heatmap_radius(wh[:, 0], wh[:, 1])
  out = np.zeros((boxes.shape[0], feat_size, feat_size), np.float32)
  for b in range(boxes.shape[0]):
    _draw_gaussian(out[b], int(centres[b, 0]), int(centres[b, 1]), int(radii[b]))
  return out[..., None]
