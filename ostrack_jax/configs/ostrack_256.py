"""OSTrack-256 without candidate elimination: the original's vitb_256_mae_32x4_ep300.

  python train.py --config configs/ostrack_256.py --workdir workdirs/ostrack_256 \
      --config.data.roots.got10k=/datasets/GOT-10k ...   (the roots as in ostrack_256_ce.py)

Every search token goes through all 12 blocks: about 1.4x the CE forward's cost at batch 1 on a
CPU (benchmarks/RESULTS.md).
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=256, ce=False)
