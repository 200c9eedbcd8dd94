"""Preset `tiny_256_ce` (see ostrack_jax/configs/__init__.py for what it changes).

Used as `python train.py --config configs/tiny_256_ce.py`; fields can be overridden with
`--config.train.batch_size=16` and the like.
"""

from ostrack_jax.configs import get_config as _get_preset


def get_config():
  return _get_preset('tiny_256_ce')
