"""OSTrack-384 with candidate elimination: the original's vitb_384_mae_ce_32x4_ep300.

A 192 px template and a 384 px search crop (5x the target's size), the larger search jitter of
the original's 384 experiments::

  python train.py --config configs/ostrack_384_ce.py --workdir workdirs/ostrack_384_ce \
      --config.data.roots.got10k=/datasets/GOT-10k ...   (the roots as in ostrack_256_ce.py)
  python eval.py --config configs/ostrack_384_ce.py --checkpoint OSTrack_ep0300.pth.tar \
      --dataset lasot --data-dir /datasets/LaSOT

The original reports LaSOT AUC 71.1 with its released weights (not measured here).
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=384, ce=True)
