"""OSTrack-256 CE on a ViT-L/16 backbone (the original's vit_large_patch16_224_ce; it ships no
experiment config for it): 24 blocks, 1024 wide, 16 heads.

  python train.py --config configs/ostrack_vitl_256_ce.py --workdir workdirs/ostrack_vitl_256_ce \
      --config.train.pretrained=/weights/mae_pretrain_vit_large.pth ...
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=256, ce=True, backbone='L')
