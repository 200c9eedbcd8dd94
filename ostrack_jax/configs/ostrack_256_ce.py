"""OSTrack-256 with candidate elimination: the original's vitb_256_mae_ce_32x4_ep300.

ViT-B/16 (MAE-initialised) over a 128 px template and a 256 px search crop, CE at blocks 4, 7, 10
(keep 0.7), trained 300 epochs on LaSOT + GOT-10k (vot train split) + COCO + TrackingNet::

  python train.py --config configs/ostrack_256_ce.py --workdir workdirs/ostrack_256_ce \
      --config.data.roots.got10k=/datasets/GOT-10k --config.data.roots.lasot=/datasets/LaSOT \
      --config.data.roots.coco=/datasets/COCO --config.data.roots.trackingnet=/datasets/TrackingNet \
      --config.data.split_files.got10k_vottrain=/datasets/GOT-10k/vot_train_split.txt \
      --config.data.split_files.got10k_votval=/datasets/GOT-10k/vot_val_split.txt \
      --config.train.pretrained=/weights/mae_pretrain_vit_base.pth
  python eval.py --config configs/ostrack_256_ce.py --checkpoint OSTrack_ep0300.pth.tar \
      --dataset lasot --data-dir /datasets/LaSOT

The field values and their meaning are in ``ostrack_jax/configs/base.py``; this preset is the
base config itself. With the released weights the original reports LaSOT AUC 69.1 (not
measured here: no LaSOT copy on our machines).
"""

from ostrack_jax.configs import base


def get_config():
  return base.ostrack_variant(search_size=256, ce=True)
