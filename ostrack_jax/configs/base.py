"""The full configuration tree shared by every preset.

A config is an ``ml_collections.ConfigDict`` with four sections:

* ``model``: the network (ViT backbone with candidate elimination, center head).
* ``tracker``: inference-time crop factors.
* ``data``: training data sources, sampling and augmentation.
* ``train``: optimisation, schedules, checkpointing and logging.

Presets (``ostrack_jax.configs.PRESETS``) start from :func:`base_config` and change a few
fields; the original's experiments are :func:`ostrack_variant` of a search size, with or
without candidate elimination, on the four datasets or GOT-10k only, with a ViT-B or ViT-L
backbone. The returned dict is locked: assigning a key that does not exist raises, so a typo in
an override (``--config.train.lrr=1e-3``) fails at once instead of being ignored.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """OSTrack-256 with candidate elimination, trained on the four datasets (300 epochs)."""
  c = ml_collections.ConfigDict()
  c.name = 'ostrack_256_ce'
  c.model = model_section()
  c.tracker = tracker_section()
  c.data = data_section()
  c.train = train_section()
  c.lock()
  return c


# timm's ViT sizes: embed_dim, depth, num_heads, mlp_dim.
BACKBONES = {'B': (768, 12, 12, 3072), 'L': (1024, 24, 16, 4096)}


def ostrack_variant(
  search_size: int = 256, ce: bool = True, got10k: bool = False, backbone: str = 'B'
) -> ml_collections.ConfigDict:
  """One of the original's experiment configs, named ``ostrack[_vitl]_<size>[_ce][_got10k]``.

  Args:
    search_size: 256 (a 128 px template, the search crop 4x the target's size) or 384 (192 px,
      5x, and the larger search jitter of the original's 384 experiments).
    ce: candidate elimination at blocks 4, 7, 10 keeping 0.7 (``base_config``'s); False: every
      search token goes through every block.
    got10k: GOT-10k's one-shot protocol: trained on GOT-10k train (all of it) only, 100 epochs.
    backbone: 'B' (ViT-B/16) or 'L' (ViT-L/16, :data:`BACKBONES`).
  """
  if search_size not in (256, 384) or backbone not in BACKBONES:
    raise ValueError(f'no OSTrack variant of search size {search_size} on ViT-{backbone}')
  c = base_config()
  c.name = (
    f'ostrack{"_vitl" if backbone == "L" else ""}_{search_size}'
    f'{"_ce" if ce else ""}{"_got10k" if got10k else ""}'
  )
  c.model.embed_dim, c.model.depth, c.model.num_heads, c.model.mlp_dim = BACKBONES[backbone]
  if search_size == 384:
    c.model.template_size = 192
    c.model.search_size = 384
    c.tracker.search_factor = 5.0
    c.data.search_factor = 5.0
    c.data.search_center_jitter = 4.5
    c.data.search_scale_jitter = 0.5
  if not ce:
    c.model.ce_loc = ()
    c.model.ce_keep_ratio = ()
  if got10k:
    c.data.train_datasets = ('got10k_train_full',)
    c.data.train_ratios = (1.0,)
    c.data.val_datasets = ('got10k_val',)
    c.data.val_ratios = (1.0,)
    c.train.epochs = 100
    c.train.lr_drop_epoch = 80
    c.train.ce_start_epoch = 20
    c.train.ce_warm_epoch = 50
  return c


def model_section() -> ml_collections.ConfigDict:
  """The network: exactly the fields of ``ostrack_jax.models.ostrack.OSTrack``
  (``OSTrack(**config.model)``)."""
  c = ml_collections.ConfigDict()
  c.template_size = 128  # pixels (square); template grid = template_size // patch_size
  c.search_size = 256  # pixels (square); search grid = search_size // patch_size
  c.patch_size = 16
  c.embed_dim = 768
  c.depth = 12
  c.num_heads = 12
  c.mlp_dim = 3072
  # Candidate elimination: 0-based block indices and the keep ratio of each. Empty = no CE.
  c.ce_loc = (3, 6, 9)
  c.ce_keep_ratio = (0.7, 0.7, 0.7)
  # Which template rows score the search tokens: 'ALL', 'CTR_POINT' or 'CTR_REC'.
  c.ce_template_range = 'CTR_POINT'
  c.head_channels = 256  # center head widths: C, C/2, C/4, C/8
  c.drop_path_rate = 0.1  # stochastic depth, training only
  # Matmul/conv operand dtype ('float32' or 'bfloat16'). With bfloat16 the operands are rounded
  # to bfloat16 and accumulated in float32; activations, norms and softmax stay float32, and
  # parameters are stored in float32.
  c.dtype = 'float32'
  # The GPU fast path (ostrack_jax.models.vit.check_backbone_fields; each measured on a GPU by
  # benchmarks/device/train_run.sh). The defaults are the plain path the equivalence tests pin.
  # On an H100 (benchmarks/RESULTS.md): bf16_activations -10% step time at batch 128 (-5% at 32);
  # 'autodiff' +44%; 'cudnn' refused by cuDNN for CE's token counts; remat='block' 2.2 GB
  # instead of 6.8 GB at batch 32 for +9% time.
  c.bf16_activations = False  # with bfloat16 matmuls, bfloat16 activations between them
  c.attention_impl = 'explicit'  # 'explicit', or jax.nn.dot_product_attention's 'xla'/'cudnn'
  # With 'xla'/'cudnn': 0 (off) or a multiple (8, 16, 64) that the fused kernel's token count is
  # padded up to with masked keys (CE leaves 64 + 89 = 153, which cuDNN refused; 64 -> 192). The
  # kept sets and outputs stay the unpadded ones (tests/models/test_model_equivalence.py).
  c.attention_pad_to = 0
  c.matmul_backward = 'custom'  # bfloat16 backward: 'custom' (models/matmul.py) or 'autodiff'
  c.remat = 'none'  # recompute in the backward: 'none', 'block', 'block_save_dots'
  return c


def tracker_section() -> ml_collections.ConfigDict:
  """Inference-time crop factors."""
  c = ml_collections.ConfigDict()
  c.template_factor = 2.0  # template crop side = factor * sqrt(w * h)
  c.search_factor = 4.0  # search crop side = factor * sqrt(w * h)
  return c


def data_section() -> ml_collections.ConfigDict:
  """Training data sources, sampling and augmentation."""
  c = ml_collections.ConfigDict()
  # Training sources and their sampling ratios. Names: got10k_train_full, got10k_vottrain,
  # got10k_votval, got10k_val, lasot, trackingnet, coco, folder, synthetic.
  c.train_datasets = ('lasot', 'got10k_vottrain', 'coco', 'trackingnet')
  c.train_ratios = (1.0, 1.0, 1.0, 1.0)
  c.val_datasets = ('got10k_votval',)
  c.val_ratios = (1.0,)
  # Dataset roots (native layouts). Empty = not configured; set on the command line, e.g.
  # --config.data.roots.got10k=/datasets/GOT-10k
  c.roots = ml_collections.ConfigDict()
  c.roots.got10k = ''
  c.roots.lasot = ''
  c.roots.trackingnet = ''
  c.roots.coco = ''
  c.roots.folder = ''
  c.roots.synthetic = ''
  c.packed = False  # read the ArrayRecord packs written by `python -m ostrack_jax.data.pack`
  # Subset lists (sequence names, or 0-based indices into GOT-10k train/list.txt), needed by
  # got10k_vottrain / got10k_votval; lasot defaults to <root>/training_set.txt.
  c.split_files = ml_collections.ConfigDict()
  c.split_files.got10k_vottrain = ''
  c.split_files.got10k_votval = ''
  c.split_files.lasot = ''
  # Decode JPEGs at 1/2, 1/4, 1/8 scale when the crop is that much larger than its output.
  c.reduced_decode = True
  c.packed_dir = ''  # with packed=True: the folder holding <dataset name>/ packs
  c.samples_per_epoch = 60000
  c.val_samples_per_epoch = 10000
  c.max_sample_interval = 200
  c.template_factor = 2.0
  c.search_factor = 4.0
  c.template_center_jitter = 0.0
  c.template_scale_jitter = 0.0
  c.search_center_jitter = 3.0
  c.search_scale_jitter = 0.25
  c.grayscale_probability = 0.05
  c.num_workers = 8  # grain worker processes per host (0 = in the main process)
  c.seed = 42
  return c


def train_section() -> ml_collections.ConfigDict:
  """Optimisation, schedules, checkpointing and logging."""
  c = ml_collections.ConfigDict()
  c.batch_size = 32  # per device; the global batch is batch_size * device count
  c.epochs = 300
  c.lr = 4e-4
  c.weight_decay = 1e-4
  c.backbone_lr_multiplier = 0.1
  c.lr_drop_epoch = 240
  c.lr_drop_factor = 0.1
  c.grad_clip_norm = 0.1
  c.giou_weight = 2.0
  c.l1_weight = 5.0
  c.focal_weight = 1.0
  c.ce_start_epoch = 20
  c.ce_warm_epoch = 80
  # Initial score-map probability p: sets the bias of the head's last score conv to
  # log(p / (1 - p)) in freshly initialised weights (CenterNet's focal-loss prior; 0.1 there).
  # Only a fresh head gets it (not one loaded with an OSTrack checkpoint); 0 keeps the
  # original's initialisation. Speeds up training from scratch: with a bias near 0
  # the first few hundred steps only learn to switch the background off.
  c.score_prior = 0.0
  c.pretrained = ''  # MAE / timm ViT checkpoint (.pth) or an OSTrack checkpoint
  # bfloat16 matmul operands (float32 accumulation), float32 parameters and optimizer.
  c.mixed_precision = False
  c.seed = 42
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.val_every_epochs = 20
  c.max_bad_steps = 10  # isolated non-finite steps skipped before stopping
  c.max_steps = 0  # stop (checkpointed, resumable) after this many steps; 0 = all epochs
  return c
