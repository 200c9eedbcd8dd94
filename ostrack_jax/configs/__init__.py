"""Presets for every OSTrack variant, as ``ml_collections.ConfigDict``.

``get_config(name)`` returns a fresh, locked config; ``PRESETS`` lists the names. The same
presets exist as files under the repository's top-level ``configs/`` so that scripts accept
``--config configs/<name>.py``.
"""

from typing import Callable, Dict

import ml_collections

from ostrack_jax.configs.base import base_config


def _ostrack_256_ce() -> ml_collections.ConfigDict:
  """OSTrack-256 with CE (vitb_256_mae_ce_32x4_ep300): LaSOT+GOT10k-vot+COCO+TrackingNet."""
  c = base_config()
  c.name = 'ostrack_256_ce'
  return c


def _ostrack_256() -> ml_collections.ConfigDict:
  """OSTrack-256 without CE (vitb_256_mae_32x4_ep300)."""
  c = _ostrack_256_ce()
  c.name = 'ostrack_256'
  c.model.ce_loc = ()
  c.model.ce_keep_ratio = ()
  return c


def _ostrack_384_ce() -> ml_collections.ConfigDict:
  """OSTrack-384 with CE (vitb_384_mae_ce_32x4_ep300)."""
  c = base_config()
  c.name = 'ostrack_384_ce'
  c.model.template_size = 192
  c.model.search_size = 384
  c.tracker.search_factor = 5.0
  c.data.search_factor = 5.0
  c.data.search_center_jitter = 4.5
  c.data.search_scale_jitter = 0.5
  return c


def _ostrack_384() -> ml_collections.ConfigDict:
  """OSTrack-384 without CE (vitb_384_mae_32x4_ep300)."""
  c = _ostrack_384_ce()
  c.name = 'ostrack_384'
  c.model.ce_loc = ()
  c.model.ce_keep_ratio = ()
  return c


def _got10k_only(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The one-shot GOT-10k protocol: train on GOT-10k train_full only, 100 epochs."""
  c.data.train_datasets = ('got10k_train_full',)
  c.data.train_ratios = (1.0,)
  c.data.val_datasets = ('got10k_val',)
  c.data.val_ratios = (1.0,)
  c.train.epochs = 100
  c.train.lr_drop_epoch = 80
  c.train.ce_start_epoch = 20
  c.train.ce_warm_epoch = 50
  return c


def _ostrack_256_ce_got10k() -> ml_collections.ConfigDict:
  """OSTrack-256 CE for GOT-10k (vitb_256_mae_ce_32x4_got10k_ep100)."""
  c = _got10k_only(_ostrack_256_ce())
  c.name = 'ostrack_256_ce_got10k'
  return c


def _ostrack_384_ce_got10k() -> ml_collections.ConfigDict:
  """OSTrack-384 CE for GOT-10k (vitb_384_mae_ce_32x4_got10k_ep100)."""
  c = _got10k_only(_ostrack_384_ce())
  c.name = 'ostrack_384_ce_got10k'
  return c


def _ostrack_vitl_256_ce() -> ml_collections.ConfigDict:
  """OSTrack-256 CE on a ViT-L/16 backbone (vit_large_patch16_224_ce; no original config)."""
  c = _ostrack_256_ce()
  c.name = 'ostrack_vitl_256_ce'
  c.model.embed_dim = 1024
  c.model.depth = 24
  c.model.num_heads = 16
  c.model.mlp_dim = 4096
  return c


def _tiny_256_ce() -> ml_collections.ConfigDict:
  """The tiny test model: OSTrack-256 geometry with a narrow ViT (64 wide, 4 heads).

  It is the model of the test fixture and the built-in default of ``train.py``: it trains on
  the synthetic dataset on a CPU in minutes.
  """
  c = _ostrack_256_ce()
  c.name = 'tiny_256_ce'
  c.model.embed_dim = 64
  c.model.depth = 12
  c.model.num_heads = 4
  c.model.mlp_dim = 256
  c.model.head_channels = 32
  c.data.train_datasets = ('synthetic',)
  c.data.train_ratios = (1.0,)
  c.data.val_datasets = ('synthetic_val',)
  c.data.val_ratios = (1.0,)
  c.data.num_workers = 2
  # Training recipe of the built-in default run (`python train.py`: a model from scratch on the
  # synthetic set on 2 CPU cores in about 11 minutes; see the training section of the README):
  # 15 epochs of 1024 pairs at batch 8 in bfloat16 mixed precision (1.3x faster steps than
  # float32 on that CPU), a higher learning rate than ViT-B's (no pretrained backbone to
  # protect, so no backbone multiplier either), the drop for the last two epochs, CE at its
  # final keep rate from the start (one compiled step, half the cost of no CE), no drop path
  # (a tiny model that underfits in minutes needs no regulariser), the score map started at
  # probability 0.1 (else the first ~300 steps only learn to switch the background off), and a
  # smaller search centre jitter (the synthetic targets move 1-4 px per frame).
  # Measured on 2 idle cores (AO on the 20 synthetic validation sequences / training minutes):
  # this recipe 0.659 / 11.2, and 0.766 / 11.3 with train.seed = data.seed = 1. On the way there:
  # the same in float32 for 12 epochs (drop at 11): 0.695 / 10.8 and, seed 1, 0.586 / 10.3;
  # the earlier 9-epoch float32 recipe with drop path and no score prior: 0.670 / 7.1 once,
  # then validation IoU 0.35 at epoch 8 (against 0.65) after float-rounding changes elsewhere,
  # and 0.397 / 7.7 with the score prior alone. A model trained from scratch in minutes is
  # sensitive to seeds and rounding; the margin above 0.6 comes from the longer, faster bfloat16
  # schedule.
  c.model.drop_path_rate = 0.0
  c.data.samples_per_epoch = 1024
  c.data.val_samples_per_epoch = 64
  c.data.search_center_jitter = 1.0
  c.data.search_scale_jitter = 0.3
  c.train.batch_size = 8
  c.train.epochs = 15
  c.train.lr = 1e-3
  c.train.backbone_lr_multiplier = 1.0
  c.train.lr_drop_epoch = 13
  c.train.ce_start_epoch = 1
  c.train.ce_warm_epoch = 0
  c.train.mixed_precision = True
  c.train.score_prior = 0.1
  c.train.log_every_steps = 16
  c.train.checkpoint_every_steps = 256
  c.train.val_every_epochs = 5
  return c


PRESETS: Dict[str, Callable[[], ml_collections.ConfigDict]] = {
  'ostrack_256_ce': _ostrack_256_ce,
  'ostrack_256': _ostrack_256,
  'ostrack_384_ce': _ostrack_384_ce,
  'ostrack_384': _ostrack_384,
  'ostrack_256_ce_got10k': _ostrack_256_ce_got10k,
  'ostrack_384_ce_got10k': _ostrack_384_ce_got10k,
  'ostrack_vitl_256_ce': _ostrack_vitl_256_ce,
  'tiny_256_ce': _tiny_256_ce,
}


def get_config(name: str) -> ml_collections.ConfigDict:
  """Returns a fresh, locked copy of the preset ``name`` (see ``PRESETS``)."""
  if name not in PRESETS:
    raise ValueError(f'unknown preset {name!r}; known presets: {", ".join(sorted(PRESETS))}')
  return PRESETS[name]()
