"""Shared by the tests that run train.py: the small OSTrack they train (a few seconds a step on
a CPU). Each test adds its own training flags after these."""

SMALL_MODEL = [
  '--config',
  'configs/tiny_256_ce.py',
  '--config.model.template_size=64',
  '--config.model.search_size=128',
  '--config.model.depth=3',
  '--config.model.ce_loc=(1,)',
  '--config.model.ce_keep_ratio=(0.7,)',
  '--config.model.embed_dim=32',
  '--config.model.num_heads=2',
  '--config.model.mlp_dim=64',
  '--config.model.head_channels=16',
]
