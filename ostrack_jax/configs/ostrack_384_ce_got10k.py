"""OSTrack-384 CE for GOT-10k's one-shot protocol: the original's vitb_384_mae_ce_32x4_got10k_ep100.

  python train.py --config configs/ostrack_384_ce_got10k.py --workdir workdirs/ostrack_384_ce_got10k \
      --config.data.roots.got10k=/datasets/GOT-10k \
      --config.train.pretrained=/weights/mae_pretrain_vit_base.pth

The original reports GOT-10k test AO 73.7 with its released weights (not measured here).
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=384, ce=True, got10k=True)
