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

from ostrack_jax.configs import ostrack_256_ce


def got10k_only(c):
  """The one-shot GOT-10k protocol on any preset: GOT-10k train_full only, 100 epochs."""
  c.data.train_datasets = ('got10k_train_full',)
  c.data.train_ratios = (1.0,)
  c.data.val_datasets = ('got10k_val',)
  c.data.val_ratios = (1.0,)
  c.train.epochs = 100
  c.train.lr_drop_epoch = 80
  c.train.ce_start_epoch = 20
  c.train.ce_warm_epoch = 50
  return c


def get_config():
  c = got10k_only(ostrack_256_ce.get_config())
  c.name = 'ostrack_256_ce_got10k'
  return c
