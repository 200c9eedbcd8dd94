"""OSTrack-384 without candidate elimination: the original's vitb_384_mae_32x4_ep300.

python train.py --config configs/ostrack_384.py --workdir workdirs/ostrack_384 ...
"""

from ostrack_jax.configs import ostrack_384_ce


def get_config():
  c = ostrack_384_ce.get_config()
  c.name = 'ostrack_384'
  c.model.ce_loc = ()
  c.model.ce_keep_ratio = ()
  return c
