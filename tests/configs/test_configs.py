"""Presets: every original variant by name and as a file, faithful fields, strict overrides."""

import pathlib
import re

import pytest

from ostrack_jax.common.errors import InputError
from ostrack_jax.configs import PRESETS, apply_overrides, get_config, load_config

REPO = pathlib.Path(__file__).resolve().parents[2]
REQUIRED = (
  'ostrack_256_ce',
  'ostrack_256',
  'ostrack_384_ce',
  'ostrack_384',
  'ostrack_256_ce_got10k',
  'ostrack_384_ce_got10k',
  'ostrack_vitl_256_ce',
  'tiny_256_ce',
)


@pytest.mark.parametrize('name', REQUIRED)
def test_preset_by_name_and_file_agree(name):
  assert name in PRESETS
  from_file = load_config(str(REPO / 'configs' / f'{name}.py'))
  assert from_file.to_dict() == get_config(name).to_dict()
  assert from_file.name == name


def test_presets_reproduce_the_original_configs():
  c256, c384 = get_config('ostrack_256_ce'), get_config('ostrack_384_ce')
  assert (c256.model.template_size, c256.model.search_size, c256.tracker.search_factor) == (
    128,
    256,
    4.0,
  )
  assert (c384.model.template_size, c384.model.search_size, c384.tracker.search_factor) == (
    192,
    384,
    5.0,
  )
  assert (c256.data.search_center_jitter, c256.data.search_scale_jitter) == (3.0, 0.25)
  assert (c384.data.search_center_jitter, c384.data.search_scale_jitter) == (4.5, 0.5)
  for c in (c256, c384):
    assert c.model.ce_loc == (3, 6, 9) and c.model.ce_keep_ratio == (0.7, 0.7, 0.7)
    assert c.model.ce_template_range == 'CTR_POINT'
    assert (
      c.train.epochs,
      c.train.lr_drop_epoch,
      c.train.ce_start_epoch,
      c.train.ce_warm_epoch,
    ) == (300, 240, 20, 80)
    assert (
      c.train.lr,
      c.train.weight_decay,
      c.train.backbone_lr_multiplier,
      c.train.grad_clip_norm,
    ) == (4e-4, 1e-4, 0.1, 0.1)
    assert c.train.batch_size == 32 and c.data.samples_per_epoch == 60000
  for name in ('ostrack_256', 'ostrack_384'):
    assert get_config(name).model.ce_loc == ()
  for name in ('ostrack_256_ce_got10k', 'ostrack_384_ce_got10k'):
    c = get_config(name)
    assert c.data.train_datasets == ('got10k_train_full',)
    assert (c.train.epochs, c.train.lr_drop_epoch, c.train.ce_warm_epoch) == (100, 80, 50)
  vitl = get_config('ostrack_vitl_256_ce').model
  assert (vitl.embed_dim, vitl.depth, vitl.num_heads, vitl.mlp_dim) == (1024, 24, 16, 4096)
  tiny = get_config('tiny_256_ce').model
  assert (tiny.embed_dim, tiny.depth, tiny.num_heads, tiny.mlp_dim, tiny.head_channels) == (
    64,
    12,
    4,
    256,
    32,
  )


def test_unknown_preset_and_keys_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match="unknown preset 'ostrack_512'"):
    get_config('ostrack_512')
  c = get_config('tiny_256_ce')
  with pytest.raises(ValueError, match=r"unknown config key 'train\.lrr'; did you mean train\.lr"):
    apply_overrides(c, ['train.lrr=1e-3'])
  with pytest.raises(AttributeError):
    c.train.lrr = 1e-3  # locked ConfigDict
  with pytest.raises(ValueError, match='key=value'):
    apply_overrides(c, ['train.lr'])
  with pytest.raises(InputError, match='nope.py: no such file'):
    load_config(str(tmp_path / 'nope.py'))
  with pytest.raises(InputError, match="unknown preset 'tiny_256'; did you mean tiny_256_ce"):
    load_config('tiny_256')
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n')
  with pytest.raises(InputError, match='bad.py line 1'):
    load_config(str(bad))
  (tmp_path / 'empty.py').write_text('x = 1\n')
  with pytest.raises(InputError, match='defines no get_config'):
    load_config(str(tmp_path / 'empty.py'))
  apply_overrides(c, ['train.lr=1', 'model.ce_loc=(3,)', 'data.roots.got10k=/data/GOT-10k'])
  assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
  assert c.model.ce_loc == (3,) and c.data.roots.got10k == '/data/GOT-10k'


def test_presets_are_files_with_their_command_in_one_copy():
  """Each preset is a file of the package carrying its run command; the repository's configs/
  is the same folder (a clone and an installed package see one copy)."""
  package_dir = REPO / 'ostrack_jax' / 'configs'
  assert (REPO / 'configs').resolve() == package_dir.resolve()
  files = {p.stem for p in package_dir.glob('*.py')} - {'__init__', 'base'}
  assert files == set(PRESETS)
  for name in PRESETS:
    doc = (package_dir / f'{name}.py').read_text().split('"""')[1]
    assert 'python train.py' in doc, f'{name}.py: its docstring carries no run command'


def test_own_config_file_starts_from_a_preset(tmp_path):
  own = tmp_path / 'my_run.py'
  own.write_text(
    'from ostrack_jax.configs import ostrack_384_ce\n\n\n'
    'def get_config():\n'
    '  c = ostrack_384_ce.get_config()\n'
    "  c.name = 'my_run'\n"
    '  c.train.batch_size = 16\n'
    '  return c\n'
  )
  c = load_config(str(own))
  assert (c.name, c.train.batch_size, c.model.search_size) == ('my_run', 16, 384)


def test_a_config_file_that_is_not_python_is_refused_in_one_line(tmp_path):
  own = tmp_path / 'my_run.cfg'
  own.write_text('def get_config():\n  return None\n')
  with pytest.raises(InputError, match=r'my_run\.cfg: not a Python file'):
    load_config(str(own))


@pytest.mark.parametrize(
  'override,message',
  [
    ('train.batch_size=0', 'config.train.batch_size=0: must be >= 1'),
    ('train.batch_size=-3', 'config.train.batch_size=-3: must be >= 1'),
    ('train.lr=nan', 'config.train.lr=nan: must be a finite number > 0'),
    ('train.lr=-1', 'config.train.lr=-1.0: must be a finite number > 0'),
    ('train.epochs=0', 'config.train.epochs=0: must be >= 1'),
    ('model.ce_keep_ratio=(0.7,0,0.7)', 'every keep ratio must lie in (0, 1]'),
    ('model.ce_keep_ratio=(0.7,0.7)', '2 ratio(s) for the 3 block(s)'),
    ('tracker.search_factor=0', 'config.tracker.search_factor=0.0: must be a finite number > 0'),
    ('data.num_workers=-1', 'config.data.num_workers=-1: must be >= 0'),
    ('train.score_prior=1.5', 'config.train.score_prior=1.5'),
  ],
)
def test_check_config_names_the_field(override, message):
  from ostrack_jax.configs import check_config

  config = apply_overrides(get_config('tiny_256_ce'), [override])
  with pytest.raises(InputError) as e:
    check_config(config, training=True)
  assert message in str(e.value) and '\n' not in str(e.value)


def test_every_preset_builds_its_model_from_the_model_section_alone():
  """config.model's keys are exactly OSTrack's fields (one definition): OSTrack(**config.model)."""
  import dataclasses

  from ostrack_jax.models.ostrack import OSTrack

  fields = {f.name for f in dataclasses.fields(OSTrack)} - {'parent', 'name'}
  for name in PRESETS:
    section = get_config(name).model
    assert set(section) == fields, name
    model = OSTrack(**section)
    assert {k: getattr(model, k) for k in fields} == section.to_dict(), name


@pytest.mark.parametrize(
  'field,value,message',
  [
    ('dtype', 'float16', "config.model.dtype must be one of ['bfloat16', 'float32']"),
    ('search_size', 250, 'config.model.search_size=250 is not a multiple of patch_size=16'),
    ('num_heads', 5, 'config.model.embed_dim=64 is not divisible by num_heads=5'),
  ],
)
def test_the_model_refuses_a_field_it_cannot_use(field, value, message):
  from ostrack_jax.models.ostrack import OSTrack

  section = get_config('tiny_256_ce').model.to_dict()
  with pytest.raises(ValueError, match=re.escape(message)):
    OSTrack(**{**section, field: value})


def test_variant_builder_names_its_presets_and_refuses_unknown_variants():
  from ostrack_jax.configs import base

  assert base.ostrack_variant(search_size=384, ce=False, got10k=True).name == 'ostrack_384_got10k'
  with pytest.raises(ValueError, match='search size 512'):
    base.ostrack_variant(search_size=512)
  with pytest.raises(ValueError, match='ViT-H'):
    base.ostrack_variant(backbone='H')
