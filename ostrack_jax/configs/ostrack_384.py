"""OSTrack-384 without candidate elimination: the original's vitb_384_mae_32x4_ep300.

python train.py --config configs/ostrack_384.py --workdir workdirs/ostrack_384 ...
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=384, ce=False)
