"""The full configuration tree shared by every preset.

A config is an ``ml_collections.ConfigDict`` with four sections:

* ``model``: the network (ViT backbone with candidate elimination, center head).
* ``tracker``: inference-time crop factors.
* ``data``: training data sources, sampling and augmentation.
* ``train``: optimisation, schedules, checkpointing and logging.

Presets (``ostrack_jax.configs.PRESETS``) start from :func:`base_config` and change a few
fields. The returned dict is locked: assigning a key that does not exist raises, so a typo in
an override (``--config.train.lrr=1e-3``) fails at once instead of being ignored.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """OSTrack-256 with candidate elimination, trained on the four datasets (300 epochs)."""
  c = ml_collections.ConfigDict()
  c.name = 'ostrack_256_ce'

  # ---------------------------------------------------------------------------- model
  c.model = ml_collections.ConfigDict()
  c.model.template_size = 128  # pixels (square); template grid = template_size // patch_size
  c.model.search_size = 256  # pixels (square); search grid = search_size // patch_size
  c.model.patch_size = 16
  c.model.embed_dim = 768
  c.model.depth = 12
  c.model.num_heads = 12
  c.model.mlp_dim = 3072
  # Candidate elimination: 0-based block indices and the keep ratio of each. Empty = no CE.
  c.model.ce_loc = (3, 6, 9)
  c.model.ce_keep_ratio = (0.7, 0.7, 0.7)
  # Which template rows score the search tokens: 'ALL', 'CTR_POINT' or 'CTR_REC'.
  c.model.ce_template_range = 'CTR_POINT'
  c.model.head_channels = 256  # center head widths: C, C/2, C/4, C/8
  c.model.drop_path_rate = 0.1  # stochastic depth, training only
  # Matmul/conv operand dtype ('float32' or 'bfloat16'). With bfloat16 the operands are rounded
  # to bfloat16 and accumulated in float32; activations, norms and softmax stay float32, and
  # parameters are stored in float32.
  c.model.dtype = 'float32'
  # The GPU fast path (ostrack_jax.models.ostrack.fast_path_options; each measured on a GPU by
  # benchmarks/device/train_run.sh). The defaults are the plain path the equivalence tests pin.
  # On an H100 (benchmarks/RESULTS.md): bf16_activations -10% step time at batch 128 (-5% at 32);
  # 'autodiff' +44%; 'cudnn' refused by cuDNN for CE's token counts; remat='block' 2.2 GB
  # instead of 6.8 GB at batch 32 for +9% time.
  c.model.bf16_activations = False  # with bfloat16 matmuls, bfloat16 activations between them
  c.model.attention_impl = 'explicit'  # 'explicit', or jax.nn.dot_product_attention's 'xla'/'cudnn'
  # With 'xla'/'cudnn': 0 (off) or a multiple (8, 16, 64) that the fused kernel's token count is
  # padded up to with masked keys (CE leaves 64 + 89 = 153, which cuDNN refused; 64 -> 192). The
  # kept sets and outputs stay the unpadded ones (tests/test_model_equivalence.py).
  c.model.attention_pad_to = 0
  c.model.matmul_backward = 'custom'  # bfloat16 backward: 'custom' (models/matmul.py) or 'autodiff'
  c.model.remat = 'none'  # recompute in the backward: 'none', 'block', 'block_save_dots'

  # ---------------------------------------------------------------------------- tracker
  c.tracker = ml_collections.ConfigDict()
  c.tracker.template_factor = 2.0  # template crop side = factor * sqrt(w * h)
  c.tracker.search_factor = 4.0  # search crop side = factor * sqrt(w * h)

  # ---------------------------------------------------------------------------- data
  c.data = ml_collections.ConfigDict()
  # Training sources and their sampling ratios. Names: got10k_train_full, got10k_vottrain,
  # got10k_votval, got10k_val, lasot, trackingnet, coco, folder, synthetic.
  c.data.train_datasets = ('lasot', 'got10k_vottrain', 'coco', 'trackingnet')
  c.data.train_ratios = (1.0, 1.0, 1.0, 1.0)
  c.data.val_datasets = ('got10k_votval',)
  c.data.val_ratios = (1.0,)
  # Dataset roots (native layouts). Empty = not configured; set on the command line, e.g.
  # --config.data.roots.got10k=/datasets/GOT-10k
  c.data.roots = ml_collections.ConfigDict()
  c.data.roots.got10k = ''
  c.data.roots.lasot = ''
  c.data.roots.trackingnet = ''
  c.data.roots.coco = ''
  c.data.roots.folder = ''
  c.data.roots.synthetic = ''
  c.data.packed = False  # read the ArrayRecord packs written by `python -m ostrack_jax.data.pack`
  # Subset lists (sequence names, or 0-based indices into GOT-10k train/list.txt), needed by
  # got10k_vottrain / got10k_votval; lasot defaults to <root>/training_set.txt.
  c.data.split_files = ml_collections.ConfigDict()
  c.data.split_files.got10k_vottrain = ''
  c.data.split_files.got10k_votval = ''
  c.data.split_files.lasot = ''
  # Decode JPEGs at 1/2, 1/4, 1/8 scale when the crop is that much larger than its output.
  c.data.reduced_decode = True
  c.data.packed_dir = ''  # with packed=True: the folder holding <dataset name>/ packs
  c.data.samples_per_epoch = 60000
  c.data.val_samples_per_epoch = 10000
  c.data.max_sample_interval = 200
  c.data.template_factor = 2.0
  c.data.search_factor = 4.0
  c.data.template_center_jitter = 0.0
  c.data.template_scale_jitter = 0.0
  c.data.search_center_jitter = 3.0
  c.data.search_scale_jitter = 0.25
  c.data.grayscale_probability = 0.05
  c.data.num_workers = 8  # grain worker processes per host (0 = in the main process)
  c.data.seed = 42

  # ---------------------------------------------------------------------------- train
  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32  # per device; the global batch is batch_size * device count
  c.train.epochs = 300
  c.train.lr = 4e-4
  c.train.weight_decay = 1e-4
  c.train.backbone_lr_multiplier = 0.1
  c.train.lr_drop_epoch = 240
  c.train.lr_drop_factor = 0.1
  c.train.grad_clip_norm = 0.1
  c.train.giou_weight = 2.0
  c.train.l1_weight = 5.0
  c.train.focal_weight = 1.0
  c.train.ce_start_epoch = 20
  c.train.ce_warm_epoch = 80
  # Initial score-map probability p: sets the bias of the head's last score conv to
  # log(p / (1 - p)) in freshly initialised weights (CenterNet's focal-loss prior; 0.1 there).
  # Only a fresh head gets it (not one loaded with an OSTrack checkpoint); 0 keeps the
  # original's initialisation. Speeds up training from scratch: with a bias near 0
  # the first few hundred steps only learn to switch the background off.
  c.train.score_prior = 0.0
  c.train.pretrained = ''  # MAE / timm ViT checkpoint (.pth) or an OSTrack checkpoint
  c.train.mixed_precision = (
    False  # bfloat16 matmul operands (float32 accumulation), float32 parameters and optimizer
  )
  c.train.seed = 42
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 1000
  c.train.keep_checkpoints = 3
  c.train.val_every_epochs = 20
  c.train.max_bad_steps = 10  # isolated non-finite steps skipped before stopping
  c.train.max_steps = 0  # stop (checkpointed, resumable) after this many steps; 0 = all epochs

  c.lock()
  return c
