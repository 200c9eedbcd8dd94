"""Preset `ostrack_256_ce_got10k` (see ostrack_jax/configs/__init__.py for what it changes).

Used as `python train.py --config configs/ostrack_256_ce_got10k.py`; fields can be overridden with
`--config.train.batch_size=16` and the like.
"""

from ostrack_jax.configs import get_config as _get_preset


def get_config():
  return _get_preset('ostrack_256_ce_got10k')
