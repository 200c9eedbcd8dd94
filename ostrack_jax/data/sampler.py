"""The causal template/search pair sampler (the original's TrackingSampler), as a pure function
of a seed.

NumPy only (grain workers import this without JAX).

:class:`PairSampler` turns a global sample index into a processed training pair. The random
stream of sample ``k`` is ``np.random.default_rng([seed, k])``, so sample ``k`` is identical on
every run, with any number of workers or hosts. Per attempt (repeated until valid, as the
original's sampler):

1. dataset drawn by ratio;
2. sequence drawn uniformly among the dataset's sequences with >= 20 frames and >= 5 visible
   frames (the original re-draws until that holds, which is the same distribution); COCO:
   any annotation;
3. video: template = a visible frame in [0, n - 1), search = a visible frame in
   [template + 1, template + 200 + gap) (capped at n), gap growing by 5 whenever none exists
   (the template is re-drawn too); COCO: template = search = the single frame;
4. processing (:func:`ostrack_jax.data.transforms.process_pair`); a :class:`BadSample` (invalid
   crop, unreadable frame) starts a new attempt from step 1;
5. the label: the Gaussian heatmap of the search box
   (:func:`ostrack_jax.data.transforms.gaussian_heatmap`), so that a batch arrives with it.
"""

import collections
import logging
import os
from typing import List, NamedTuple, Optional, Sequence as Seq, Tuple

import cv2
import numpy as np

from ostrack_jax.data import sources as sources_lib, transforms

MAX_ATTEMPTS = 100


class FramePair(NamedTuple):
  dataset_index: int
  seq_index: int
  template_frame: int
  search_frame: int


def sample_causal_frames(
  visible: np.ndarray, max_interval: int, rng: np.random.Generator
) -> Tuple[int, int]:
  """(template, search) frame indices as the original's causal mode draws them: both visible,
  search strictly later.

  ``visible`` (N,) bool must have at least one visible frame after some visible frame in
  [0, N - 1); otherwise this raises ValueError (the sources only offer such sequences).
  """
  n = len(visible)
  candidates = np.flatnonzero(visible[: n - 1])
  visible_idx = np.flatnonzero(visible)
  if len(candidates) == 0 or visible_idx[-1] <= candidates[0]:
    raise ValueError('sequence has no visible frame after a visible template frame')
  gap_increase = 0
  while True:
    base = int(candidates[rng.integers(len(candidates))])
    hi = min(base + max_interval + gap_increase, n)
    lo_pos = np.searchsorted(visible_idx, base + 1)
    hi_pos = np.searchsorted(visible_idx, hi)
    gap_increase += 5
    if hi_pos > lo_pos:
      return base, int(visible_idx[rng.integers(lo_pos, hi_pos)])


class PairSampler:
  """Sample index -> processed pair dict (picklable; grain runs it in worker processes).

  Args:
    sources: the datasets (``index.Source``: folder or packed sources).
    ratios: sampling weight per source (normalized here).
    template_params, search_params: crop sizes, factors and jitter (``transforms``).
    seed: base seed; sample k uses ``default_rng([seed, k])``.
    max_interval: the maximum template-search gap (200).
    grayscale_probability: joint grayscale probability (0.05).
    train: training augmentation (brightness, per-crop flip) or validation processing.
    reduced_decode: decode JPEGs at reduced resolution where the crop allows it.
    stride: the backbone's stride (``config.model.patch_size``): the heatmap has
      ``search_params.output_size // stride`` cells a side, as the score map.
  """

  def __init__(
    self,
    sources: Seq,
    ratios: Seq[float],
    template_params: transforms.AugmentParams,
    search_params: transforms.AugmentParams,
    *,
    seed: int,
    max_interval: int = 200,
    grayscale_probability: float = 0.05,
    train: bool = True,
    reduced_decode: bool = True,
    stride: int = 16,
  ):
    if len(sources) != len(ratios) or not sources:
      raise ValueError(f'need one ratio per source, got {len(sources)} sources and {ratios}')
    weights = np.asarray(ratios, np.float64)
    if np.any(weights < 0) or weights.sum() <= 0:
      raise ValueError(f'ratios must be >= 0 with a positive sum, got {ratios}')
    self.sources = list(sources)
    self.probabilities = weights / weights.sum()
    self.template_params = template_params
    self.search_params = search_params
    self.seed = int(seed)
    self.max_interval = int(max_interval)
    self.grayscale_probability = float(grayscale_probability)
    self.train = bool(train)
    self.reduced_decode = bool(reduced_decode)
    self.heatmap_size = int(search_params.output_size) // int(stride)
    self.failures = collections.Counter()  # per process; for diagnostics only
    self._creator_pid = os.getpid()
    self._threads_set = False

  def draw_frames(self, rng: np.random.Generator) -> FramePair:
    """Steps 1-3: dataset, sequence and the (template, search) frame indices."""
    d = int(rng.choice(len(self.sources), p=self.probabilities))
    source = self.sources[d]
    s = int(source.sampleable[rng.integers(len(source.sampleable))])
    if not source.is_video:
      return FramePair(d, s, 0, 0)
    table = source.sequences
    visible = table.visible[table.offsets[s] : table.offsets[s + 1]]
    t, f = sample_causal_frames(visible, self.max_interval, rng)
    return FramePair(d, s, t, f)

  def sample(self, index: int) -> dict:
    """The processed pair of global sample ``index`` (see ``transforms.process_pair``) with its
    label.

    Adds ``heatmap`` ((F, F, 1) float32, F = ``heatmap_size``), ``dataset_index`` (int32) and
    ``attempts`` (int32, 1 when the first draw was valid).
    """
    if not self._threads_set:
      self._threads_set = True
      if os.getpid() != self._creator_pid:  # a grain worker: one OpenCV thread per process
        cv2.setNumThreads(1)
    rng = np.random.default_rng([self.seed, int(index)])
    last_error = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
      pair = self.draw_frames(rng)
      source = self.sources[pair.dataset_index]
      boxes = source.sequences.boxes[source.sequences.offsets[pair.seq_index] :]
      try:
        template = source.frame(pair.seq_index, pair.template_frame)
        search = (
          template
          if pair.search_frame == pair.template_frame
          else source.frame(pair.seq_index, pair.search_frame)
        )
        out = transforms.process_pair(
          template,
          boxes[pair.template_frame],
          search,
          boxes[pair.search_frame],
          self.template_params,
          self.search_params,
          rng,
          grayscale_probability=self.grayscale_probability,
          train=self.train,
          reduced_decode=self.reduced_decode,
        )
      except transforms.BadSample as e:
        last_error = e
        self.failures[str(e).split(':')[-1].strip()[:60]] += 1
        if sum(self.failures.values()) in (1, 10, 100, 1000, 10000):
          logging.warning(
            'redrawing an invalid sample (%d so far in this process): %s',
            sum(self.failures.values()),
            e,
          )
        continue
      out['heatmap'] = transforms.gaussian_heatmap(out['search_anno'], self.heatmap_size)[0]
      out['dataset_index'] = np.int32(pair.dataset_index)
      out['attempts'] = np.int32(attempt)
      return out
    raise RuntimeError(
      f'sample {index}: no valid pair in {MAX_ATTEMPTS} attempts; last error: {last_error}'
    )

  def __call__(self, index: int) -> dict:
    return self.sample(index)


def params_from_config(config) -> Tuple[transforms.AugmentParams, transforms.AugmentParams]:
  """(template, search) AugmentParams from ``config.model`` and ``config.data``."""
  d = config.data
  template = transforms.AugmentParams(
    int(config.model.template_size),
    float(d.template_factor),
    float(d.template_center_jitter),
    float(d.template_scale_jitter),
  )
  search = transforms.AugmentParams(
    int(config.model.search_size),
    float(d.search_factor),
    float(d.search_center_jitter),
    float(d.search_scale_jitter),
  )
  return template, search


def make_sampler(
  config, *, train: bool = True, sources: Optional[List] = None, seed: Optional[int] = None
) -> PairSampler:
  """The PairSampler of ``config`` (train or val datasets, ratios, seed, augmentation)."""
  d = config.data
  names = d.train_datasets if train else d.val_datasets
  ratios = d.train_ratios if train else d.val_ratios
  if sources is None:
    sources = [sources_lib.make_source(n, d) for n in names]
    for s in sources:  # bad input is a warning, so that it shows without logging set-up
      bad = s.report.skipped or any(
        k in s.report.invisible_frames
        for k in ('image file missing', 'image file truncated or corrupt', 'zero-size or NaN box')
      )
      level = logging.WARNING if bad else logging.INFO
      logging.log(level, 'training data index: %s', s.report.summary())
  template, search = params_from_config(config)
  base_seed = int(d.seed) if seed is None else int(seed)
  return PairSampler(
    sources,
    ratios,
    template,
    search,
    seed=base_seed if train else base_seed + 1_000_003,
    max_interval=int(d.max_sample_interval),
    grayscale_probability=float(d.grayscale_probability),
    train=train,
    reduced_decode=bool(d.get('reduced_decode', True)),
    stride=int(config.model.patch_size),
  )
