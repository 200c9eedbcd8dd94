"""Weight conversion: PyTorch-exact bicubic, released-checkpoint and MAE/timm conversion, safety."""

import collections
import pathlib
import pickle
import runpy
import sys
import types

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ostrack_jax import cli
from ostrack_jax.configs import get_config
from ostrack_jax.models.ostrack import count_params, make_forward
from ostrack_jax.weights import model_file
from ostrack_jax.weights.convert import (
  CheckpointError,
  bicubic_matrix,
  load_torch_checkpoint,
  resize_pos_embed_grid,
)


def _torch_bicubic(grid_hwc: np.ndarray, size: int) -> np.ndarray:
  x = torch.from_numpy(grid_hwc.transpose(2, 0, 1)[None].copy())
  y = F.interpolate(x, size=(size, size), mode='bicubic', align_corners=False)
  return y[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize('size', [8, 16, 12, 24])
def test_bicubic_matches_torch_interpolate(size):
  grid = np.random.default_rng(size).standard_normal((14, 14, 768)).astype(np.float32)
  ours = resize_pos_embed_grid(grid, size)
  np.testing.assert_allclose(ours, _torch_bicubic(grid, size), atol=3e-6, rtol=0)


def test_bicubic_kernel_is_keys_a_minus_075():
  # A unit impulse upsampled 2x gives taps -0.0352, -0.1055, 0.2617, 0.8789 (a = -0.75).
  col = bicubic_matrix(8, 16)[:, 4]
  for tap in (-0.03515625, -0.10546875, 0.26171875, 0.87890625):
    assert np.any(np.isclose(col, tap, atol=1e-7)), tap
  np.testing.assert_allclose(bicubic_matrix(14, 24).sum(axis=1), 1.0, atol=1e-6)  # rows sum to one


@pytest.mark.parametrize('name,grids', [('base256ce', (8, 16)), ('base384ce', (12, 24))])
def test_pos_embed_resize_matches_original(fixtures_dir, name, grids):
  ref = np.load(fixtures_dir / 'mae' / f'{name}_pos_embed_resize.npz')
  grid = ref['mae_pos_embed'][0, 1:].reshape(14, 14, -1)
  for key, size in zip(('backbone.pos_embed_z', 'backbone.pos_embed_x'), grids, strict=True):
    ours = resize_pos_embed_grid(grid, size).reshape(1, size * size, -1)
    np.testing.assert_allclose(ours, ref[key], atol=3e-6, rtol=0)


# ----------------------------------------------------------------------------- full-size ViT-B


def _released_keys(embed=768, depth=12, lz=64, lx=256, head=256):
  """The 242-key layout of a released OSTrack checkpoint (backbone, then box head), in order."""
  c = embed
  keys = [
    ('backbone.cls_token', (1, 1, c)),
    ('backbone.pos_embed', (1, 197, c)),
    ('backbone.pos_embed_z', (1, lz, c)),
    ('backbone.pos_embed_x', (1, lx, c)),
    ('backbone.patch_embed.proj.weight', (c, 3, 16, 16)),
    ('backbone.patch_embed.proj.bias', (c,)),
  ]
  for i in range(depth):
    p = f'backbone.blocks.{i}.'
    keys += [
      (p + 'norm1.weight', (c,)),
      (p + 'norm1.bias', (c,)),
      (p + 'attn.qkv.weight', (3 * c, c)),
      (p + 'attn.qkv.bias', (3 * c,)),
      (p + 'attn.proj.weight', (c, c)),
      (p + 'attn.proj.bias', (c,)),
      (p + 'norm2.weight', (c,)),
      (p + 'norm2.bias', (c,)),
      (p + 'mlp.fc1.weight', (4 * c, c)),
      (p + 'mlp.fc1.bias', (4 * c,)),
      (p + 'mlp.fc2.weight', (c, 4 * c)),
      (p + 'mlp.fc2.bias', (c,)),
    ]
  keys += [('backbone.norm.weight', (c,)), ('backbone.norm.bias', (c,))]
  widths = [(c, head), (head, head // 2), (head // 2, head // 4), (head // 4, head // 8)]
  for b, k in (('ctr', 1), ('offset', 2), ('size', 2)):
    for j, (cin, cout) in enumerate(widths, start=1):
      p = f'box_head.conv{j}_{b}.'
      keys += [
        (p + '0.weight', (cout, cin, 3, 3)),
        (p + '0.bias', (cout,)),
        (p + '1.weight', (cout,)),
        (p + '1.bias', (cout,)),
        (p + '1.running_mean', (cout,)),
        (p + '1.running_var', (cout,)),
        (p + '1.num_batches_tracked', ()),
      ]
    keys += [
      (f'box_head.conv5_{b}.weight', (k, head // 8, 1, 1)),
      (f'box_head.conv5_{b}.bias', (k,)),
    ]
  return keys


def _settings_class():
  """A class pickled as lib.train.admin.settings.Settings, as the original trainer writes it."""
  for name in ('lib', 'lib.train', 'lib.train.admin', 'lib.train.admin.settings'):
    sys.modules.setdefault(name, types.ModuleType(name))
  cls = type('Settings', (), {'__module__': 'lib.train.admin.settings'})
  sys.modules['lib.train.admin.settings'].Settings = cls
  return cls


def _write_released(path, keys, seed=0, with_settings=True):
  gen = torch.Generator().manual_seed(seed)
  sd = collections.OrderedDict()
  for key, shape in keys:
    if key.endswith('num_batches_tracked'):
      sd[key] = torch.tensor(0, dtype=torch.int64)
    elif key.endswith('running_var'):
      sd[key] = torch.rand(shape, generator=gen) + 0.5
    elif (
      key.endswith(('norm1.weight', 'norm2.weight', 'norm.weight', '1.weight')) and len(shape) == 1
    ):
      sd[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
    elif key.startswith('box_head') and len(shape) == 4:
      sd[key] = torch.randn(shape, generator=gen) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
    else:
      sd[key] = 0.02 * torch.randn(shape, generator=gen)
  ckpt = {'epoch': 300, 'net_type': 'OSTrack', 'net': sd, 'net_info': None}
  if with_settings:
    settings = _settings_class()()
    settings.env = {'workspace_dir': '/somewhere'}
    settings.script_name = 'ostrack'
    ckpt['settings'] = settings
  torch.save(ckpt, path)
  return sd


@pytest.fixture(scope='module')
def vitb_256_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('vitb') / 'OSTrack_ep0300.pth.tar'
  keys = _released_keys()
  assert len(keys) == 242
  _write_released(path, keys)
  return path


@pytest.mark.slow
@pytest.mark.fast_compile  # shapes and finiteness only, no comparison (tests/conftest.py)
def test_full_size_released_checkpoint_converts_and_runs(vitb_256_file):
  config = get_config('ostrack_256_ce')
  variables, report = load_torch_checkpoint(str(vitb_256_file), config, return_report=True)
  assert len(report.loaded) + len(report.unused) == 242  # every key accounted for
  assert len(report.unused) == 2 + 12  # cls_token, pos_embed, 12 num_batches_tracked
  assert (
    count_params(variables) == 92_518_533 - 151_296 - 768
  )  # spec total less the unused embeddings
  fn = make_forward(config, variables)
  rng = np.random.default_rng(0)
  out = fn(
    rng.standard_normal((1, 128, 128, 3), dtype=np.float32),
    rng.standard_normal((1, 256, 256, 3), dtype=np.float32),
  )
  assert out['score_map'].shape == (1, 16, 16, 1)
  assert [r.shape for r in out['removed_indexes']] == [(1, 76), (1, 54), (1, 37)]
  assert np.all(np.isfinite(np.asarray(out['pred_boxes'])))


@pytest.mark.slow
def test_256_checkpoint_given_384_preset_says_so(vitb_256_file):
  with pytest.raises(
    CheckpointError,
    match=r'pos_embed_z.*\(1, 64, 768\).*expects \(1, 144, 768\).*template size 128',
  ):
    load_torch_checkpoint(str(vitb_256_file), get_config('ostrack_384_ce'))


def test_conversion_maps_every_tensor_exactly(tmp_path):
  """Each torch tensor lands in its Flax slot with the right transpose (tiny width)."""
  keys = _released_keys(embed=64, lz=64, lx=256, head=32)
  path = tmp_path / 'tiny.pth.tar'
  sd = _write_released(path, keys, seed=1)
  v = load_torch_checkpoint(str(path), get_config('tiny_256_ce'))
  p, bs = v['params'], v['batch_stats']
  np.testing.assert_array_equal(
    p['backbone']['patch_embed']['kernel'],
    sd['backbone.patch_embed.proj.weight'].numpy().transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    p['backbone']['blocks_7']['attn']['qkv']['kernel'],
    sd['backbone.blocks.7.attn.qkv.weight'].numpy().T,
  )
  np.testing.assert_array_equal(
    p['backbone']['blocks_11']['mlp']['fc2']['bias'], sd['backbone.blocks.11.mlp.fc2.bias'].numpy()
  )
  np.testing.assert_array_equal(p['backbone']['norm']['scale'], sd['backbone.norm.weight'].numpy())
  np.testing.assert_array_equal(
    p['box_head']['conv3_size']['bn']['scale'], sd['box_head.conv3_size.1.weight'].numpy()
  )
  np.testing.assert_array_equal(
    bs['box_head']['conv2_offset']['bn']['var'], sd['box_head.conv2_offset.1.running_var'].numpy()
  )
  np.testing.assert_array_equal(
    p['box_head']['conv5_ctr']['kernel'],
    sd['box_head.conv5_ctr.weight'].numpy().transpose(2, 3, 1, 0),
  )


def test_missing_and_extra_keys_are_named(tmp_path):
  keys = _released_keys(embed=64, head=32)
  path = tmp_path / 'missing.pth.tar'
  _write_released(path, [k for k in keys if k[0] != 'backbone.blocks.3.mlp.fc1.bias'])
  with pytest.raises(CheckpointError, match=r'missing tensors.*blocks_3/mlp/fc1/bias'):
    load_torch_checkpoint(str(path), get_config('tiny_256_ce'))
  path = tmp_path / 'extra.pth.tar'
  _write_released(path, keys + [('backbone.blocks.12.norm1.weight', (64,))])
  with pytest.raises(CheckpointError, match=r'unexpected keys.*blocks\.12\.norm1\.weight'):
    load_torch_checkpoint(str(path), get_config('tiny_256_ce'))


class _Payload:
  """Pickles as a call that would create a marker file when unpickled unsafely."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_foreign_pickled_code_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.pth.tar'
  torch.save(
    {'net': {'backbone.norm.weight': torch.ones(3)}, 'payload': _Payload(str(marker))}, path
  )
  with pytest.raises(CheckpointError, match='refusing to unpickle'):
    load_torch_checkpoint(str(path), get_config('tiny_256_ce'))
  assert not marker.exists()


def test_not_a_checkpoint_and_missing_file(tmp_path):
  bad = tmp_path / 'bad.pth'
  bad.write_bytes(b'this is not a checkpoint')
  with pytest.raises(CheckpointError, match='bad.pth'):
    load_torch_checkpoint(str(bad), get_config('tiny_256_ce'))
  with pytest.raises(CheckpointError, match='no such checkpoint'):
    load_torch_checkpoint(str(tmp_path / 'nope.pth'), get_config('tiny_256_ce'))


def test_random_file_or_folder_is_named_and_never_gets_weights_only_advice(tmp_path):
  """torch's own message advises re-running with weights_only=False (which would run any code
  the file pickles): it is replaced by one naming the file."""
  config = get_config('tiny_256_ce')
  rng = np.random.default_rng(0)
  cases = {
    'random.pth': rng.bytes(4096),
    'proto2.bin': b'\x80\x02' + rng.bytes(512),
    'text.pth': b'hello world\n',
    'number.pth': pickle.dumps(12345, protocol=4),
  }
  for name, data in cases.items():
    (tmp_path / name).write_bytes(data)
    with pytest.raises(CheckpointError) as e:
      model_file.load_checkpoint(str(tmp_path / name), config)
    msg = str(e.value)
    assert msg.startswith(f'{tmp_path / name}: not a checkpoint torch can read safely'), msg
    assert 'weights_only' not in msg and '\n' not in msg, msg
  with pytest.raises(IsADirectoryError, match='is a directory, not a checkpoint file'):
    model_file.load_checkpoint(str(tmp_path), config)
  (tmp_path / 'model.msgpack').write_bytes(b'')
  with pytest.raises(IsADirectoryError, match=r'did you mean .*model\.msgpack\?'):
    model_file.load_checkpoint(str(tmp_path), config)
  with pytest.raises(CheckpointError, match='is a directory'):
    load_torch_checkpoint(str(tmp_path), config)


def test_mae_checkpoint_fills_backbone_and_reports_unused(tmp_path, fixtures_dir):
  """An MAE-style {'model': ...} file: backbone copied, pos grid resized, head fresh."""
  ref = torch.load(
    fixtures_dir / 'tiny256' / 'tiny256_seed0.pth.tar', map_location='cpu', weights_only=True
  )['net']
  sd = collections.OrderedDict(
    (k[len('backbone.') :], v)
    for k, v in ref.items()
    if k.startswith('backbone.') and 'pos_embed_' not in k
  )
  sd['head.weight'] = torch.zeros(1000, 64)
  sd['head.bias'] = torch.zeros(1000)
  path = tmp_path / 'mae_pretrain_tiny.pth'
  torch.save({'model': sd}, path)
  config = get_config('tiny_256_ce')
  variables, report = load_torch_checkpoint(str(path), config, return_report=True)
  assert {'cls_token', 'head.weight', 'head.bias', 'pos_embed[cls slot]'} <= set(report.unused)
  assert report.initialised and all(
    k.startswith(('params/box_head', 'batch_stats/box_head')) for k in report.initialised
  )
  grid = sd['pos_embed'][0, 1:].numpy().reshape(14, 14, 64)
  np.testing.assert_allclose(
    variables['params']['backbone']['pos_embed_z'][0],
    _torch_bicubic(grid, 8).reshape(64, 64),
    atol=3e-6,
  )
  np.testing.assert_allclose(
    variables['params']['backbone']['pos_embed_x'][0],
    _torch_bicubic(grid, 16).reshape(256, 64),
    atol=3e-6,
  )
  np.testing.assert_array_equal(
    variables['params']['backbone']['blocks_5']['attn']['proj']['kernel'],
    sd['blocks.5.attn.proj.weight'].numpy().T,
  )
  # The head is a fresh initialisation with the preset's shapes.
  assert variables['params']['box_head']['conv1_ctr']['conv']['kernel'].shape == (3, 3, 64, 32)


def test_model_file_roundtrip_and_mismatch(tmp_path, fixtures_dir):
  config = get_config('tiny_256_ce')
  variables = load_torch_checkpoint(str(fixtures_dir / 'tiny256' / 'tiny256_seed0.pth.tar'), config)
  path = str(tmp_path / 'model.msgpack')
  model_file.save_variables(path, variables, config)
  restored = model_file.load_checkpoint(path, config)
  for a, b in zip(
    jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(restored), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(
    ValueError, match=r"saved for preset 'tiny_256_ce'.*embed_dim: file 64 vs preset 768"
  ):
    model_file.load_variables(path, get_config('ostrack_256_ce'))
  (tmp_path / 'junk.msgpack').write_bytes(b'\x00\x01junk')
  with pytest.raises(ValueError, match='not an ostrack_jax model file'):
    model_file.load_variables(str(tmp_path / 'junk.msgpack'), config)


@pytest.mark.slow
def test_convert_script(tmp_path, fixtures_dir, capsys):
  """convert_torch_weights.py's main, run in-process as its command line runs it (cli.run; the
  script as a subprocess, with its one-line answers to bad input, is in tests/test_cli.py): the
  file converts; a checkpoint for another preset is one line naming what the preset expects,
  status 2."""
  repo = pathlib.Path(__file__).resolve().parents[2]
  script = runpy.run_path(str(repo / 'convert_torch_weights.py'), run_name='convert_script')
  pth = str(fixtures_dir / 'tiny256' / 'tiny256_seed0.pth.tar')

  def convert(config, out):
    argv = ['--config', config, '--checkpoint', pth, '--output', str(out)]
    status = cli.run(script['main'], 'convert_torch_weights.py', argv)
    return status, *capsys.readouterr()

  status, stdout, stderr = convert(
    str(repo / 'configs' / 'tiny_256_ce.py'), tmp_path / 'tiny.msgpack'
  )
  assert status == 0 and (tmp_path / 'tiny.msgpack').exists(), stderr[-2000:]
  assert '228 tensors loaded' in stdout
  status, _, stderr = convert('ostrack_384_ce', tmp_path / 'x')
  assert status == 2 and 'expects' in stderr and stderr.count('\n') == 1, stderr


@pytest.mark.parametrize(
  'bad,match',
  [
    (np.zeros((1, 3, 128, 128), np.float32), 'looks NCHW'),
    (np.zeros((1, 128, 128, 3), np.uint8), 'must be a float array'),
    (np.zeros((1, 96, 96, 3), np.float32), r'shape \(B, 128, 128, 3\)'),
    (np.zeros((128, 128, 3), np.float32), 'NHWC batch'),
  ],
)
def test_forward_rejects_bad_template(bad, match, tiny_variables):
  fn = make_forward(get_config('tiny_256_ce'), tiny_variables)
  with pytest.raises(ValueError, match=match):
    fn(bad, np.zeros((1, 256, 256, 3), np.float32))
