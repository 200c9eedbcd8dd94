"""OSTrack-256 CE for GOT-10k's one-shot protocol: the original's vitb_256_mae_ce_32x4_got10k_ep100.

Trained on GOT-10k train (all of it) only, 100 epochs::

  python train.py --config configs/ostrack_256_ce_got10k.py --workdir workdirs/ostrack_256_ce_got10k \
      --config.data.roots.got10k=/datasets/GOT-10k \
      --config.train.pretrained=/weights/mae_pretrain_vit_base.pth
  python eval.py --config configs/ostrack_256_ce_got10k.py \
      --checkpoint workdirs/ostrack_256_ce_got10k/model.msgpack \
      --dataset got10k_test --data-dir /datasets/GOT-10k   # then upload submission.zip

The original reports GOT-10k test AO 71.0 with its released weights (not measured here).
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=256, ce=True, got10k=True)
