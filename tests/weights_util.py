"""Deterministic synthetic weights in the released OSTrack checkpoint layout (numpy only).

A re-implementation of the fill procedure documented for the test fixtures
(`tests/fixtures/README.md`): given a manifest (an ordered list of entries `key`, `shape`,
`dtype`, `rule`) and a seed, it produces the same tensors, bit for bit, as the tool that made
`tests/fixtures/tiny256/tiny256_seed0.pth.tar`.

Fill procedure:
  rng = numpy.random.default_rng(seed)
  for key in sorted(keys):            # Python string order ('blocks.10' < 'blocks.2')
    'normal:S'          -> rng.normal(0, S, size=shape)
    'one_plus_normal:S' -> 1 + rng.normal(0, S, size=shape)
    'uniform:A:B'       -> rng.uniform(A, B, size=shape)
    'zeros'             -> zeros(shape)          (draws nothing)
    then cast the float64 draw to the entry's dtype.

Rules (`assign_rule`) depend on the key name and shape only; see its docstring.

`ostrack_entries` writes the 242-entry state-dict layout of an OSTrack ViT model with the center
head, in checkpoint order, for any width; `vitb_manifest(256 | 384)` is the
ViT-B/16 OSTrack-256 / OSTrack-384 layout. Filling ViT-B (92.5 M values) takes a few seconds.
"""

import collections
import math
from typing import Any, Mapping, Sequence

import numpy as np

# Box-head conv weights use a Kaiming-normal (fan-in) std; a fixed small std gives a flat
# score map on random weights.
_TOKEN_NAMES = ('pos_embed', 'cls_token', 'dist_token', 'mask_token')
_HEAD_PREFIX = 'box_head.'


def assign_rule(key: str, shape: Sequence[int], shapes_by_key: Mapping[str, Sequence[int]]) -> str:
  """Returns the fill rule of one state-dict entry from its name and shape.

  - `*.num_batches_tracked`: 'zeros'; `*.running_mean`: 'normal:0.1';
    `*.running_var`: 'uniform:0.5:1.5';
  - names containing pos_embed / cls_token / dist_token / mask_token: 'normal:0.02';
  - `*.weight` of a 4-D box-head conv: 'normal:sqrt(2 / (C_in * kh * kw))' written with repr();
  - other `*.weight` with ndim >= 2 (Linear, Conv): 'normal:0.02';
  - `*.weight` with ndim == 1 (LayerNorm / BatchNorm scale): 'one_plus_normal:0.1';
  - `*.bias` whose sibling weight is 1-D (norm shift): 'normal:0.1'; other biases 'normal:0.02'.

  Raises:
    ValueError: for a key that no rule covers (there is no silent default).
  """
  leaf = key.rsplit('.', 1)[-1]
  if leaf == 'num_batches_tracked':
    return 'zeros'
  if leaf == 'running_mean':
    return 'normal:0.1'
  if leaf == 'running_var':
    return 'uniform:0.5:1.5'
  if any(name in leaf for name in _TOKEN_NAMES):
    return 'normal:0.02'
  if leaf == 'weight':
    if len(shape) >= 2:
      if key.startswith(_HEAD_PREFIX) and len(shape) == 4:
        fan_in = int(shape[1]) * int(shape[2]) * int(shape[3])
        return 'normal:%r' % math.sqrt(2.0 / fan_in)
      return 'normal:0.02'
    if len(shape) == 1:
      return 'one_plus_normal:0.1'
  if leaf == 'bias':
    sibling = shapes_by_key.get(key[: -len('bias')] + 'weight')
    if sibling is not None and len(sibling) == 1:
      return 'normal:0.1'
    return 'normal:0.02'
  raise ValueError(f'no fill rule for key {key!r} with shape {tuple(shape)}')


def make_manifest(
  entries: Sequence[Mapping[str, Any]], name: str, container: str = 'net'
) -> dict[str, Any]:
  """Manifest dict {name, container, fill, entries} with a rule for every entry.

  Args:
    entries: dicts with 'key', 'shape' and optionally 'dtype' (default float32), in the
      order the checkpoint stores them.
    name: manifest name.
    container: top-level key of the checkpoint ('net' for released OSTrack, 'model' for MAE).
  """
  shapes_by_key = {e['key']: list(e['shape']) for e in entries}
  if len(shapes_by_key) != len(entries):
    raise ValueError(f'manifest {name!r}: duplicate keys')
  out = []
  for e in entries:
    out.append(
      collections.OrderedDict(
        key=e['key'],
        shape=list(e['shape']),
        dtype=e.get('dtype', 'float32'),
        rule=assign_rule(e['key'], e['shape'], shapes_by_key),
      )
    )
  return collections.OrderedDict(
    name=name,
    container=container,
    fill='numpy.random.default_rng(seed); keys in sorted() order; see tests/weights_util.py',
    entries=out,
  )


def _draw(rng: np.random.Generator, rule: str, shape: tuple[int, ...]) -> np.ndarray:
  kind, *args = rule.split(':')
  if kind == 'normal':
    return rng.normal(0.0, float(args[0]), size=shape)
  if kind == 'one_plus_normal':
    return 1.0 + rng.normal(0.0, float(args[0]), size=shape)
  if kind == 'uniform':
    return rng.uniform(float(args[0]), float(args[1]), size=shape)
  if kind == 'zeros':
    return np.zeros(shape)
  raise ValueError(f'unknown fill rule {rule!r}')


def fill(manifest: Mapping[str, Any], seed: int) -> 'collections.OrderedDict[str, np.ndarray]':
  """Fills every entry of `manifest` from `seed`; returns key -> array in checkpoint order."""
  rng = np.random.default_rng(seed)
  by_key = {e['key']: e for e in manifest['entries']}
  values = {}
  for key in sorted(by_key):
    e = by_key[key]
    shape = tuple(int(s) for s in e['shape'])
    values[key] = np.array(_draw(rng, e['rule'], shape), dtype=np.dtype(e['dtype']), order='C')
  return collections.OrderedDict((e['key'], values[e['key']]) for e in manifest['entries'])


def ostrack_entries(
  *,
  embed_dim: int = 768,
  depth: int = 12,
  mlp_dim: int | None = None,
  head_channels: int = 256,
  template_size: int = 128,
  search_size: int = 256,
  patch_size: int = 16,
  pretrain_tokens: int = 197,
) -> list[dict[str, Any]]:
  """State-dict entries (key, shape, dtype) of OSTrack with the center head, checkpoint order.

  The released checkpoints' layout: backbone (cls_token, the unused 197-token pos_embed,
  pos_embed_z/x, patch embedding, `depth` pre-norm blocks, final norm; 4 + 2 + 12 * depth + 2
  entries), then the head: branches ctr, offset, size, each 4 x (conv3x3 + BatchNorm) with
  channels head_channels -> /2 -> /4 -> /8, and a 1x1 conv to 1 (ctr) or 2 (offset, size)
  channels.
  """
  mlp_dim = 4 * embed_dim if mlp_dim is None else mlp_dim
  lz = (template_size // patch_size) ** 2
  lx = (search_size // patch_size) ** 2
  c = embed_dim
  entries = []

  def add(key, shape, dtype='float32'):
    entries.append({'key': key, 'shape': list(shape), 'dtype': dtype})

  add('backbone.cls_token', (1, 1, c))
  add('backbone.pos_embed', (1, pretrain_tokens, c))
  add('backbone.pos_embed_z', (1, lz, c))
  add('backbone.pos_embed_x', (1, lx, c))
  add('backbone.patch_embed.proj.weight', (c, 3, patch_size, patch_size))
  add('backbone.patch_embed.proj.bias', (c,))
  for i in range(depth):
    p = f'backbone.blocks.{i}.'
    add(p + 'norm1.weight', (c,))
    add(p + 'norm1.bias', (c,))
    add(p + 'attn.qkv.weight', (3 * c, c))
    add(p + 'attn.qkv.bias', (3 * c,))
    add(p + 'attn.proj.weight', (c, c))
    add(p + 'attn.proj.bias', (c,))
    add(p + 'norm2.weight', (c,))
    add(p + 'norm2.bias', (c,))
    add(p + 'mlp.fc1.weight', (mlp_dim, c))
    add(p + 'mlp.fc1.bias', (mlp_dim,))
    add(p + 'mlp.fc2.weight', (c, mlp_dim))
    add(p + 'mlp.fc2.bias', (c,))
  add('backbone.norm.weight', (c,))
  add('backbone.norm.bias', (c,))
  channels = [c, head_channels, head_channels // 2, head_channels // 4, head_channels // 8]
  for branch, out_dim in (('ctr', 1), ('offset', 2), ('size', 2)):
    for j in range(1, 5):
      cin, cout = channels[j - 1], channels[j]
      p = f'box_head.conv{j}_{branch}.'
      add(p + '0.weight', (cout, cin, 3, 3))
      add(p + '0.bias', (cout,))
      add(p + '1.weight', (cout,))
      add(p + '1.bias', (cout,))
      add(p + '1.running_mean', (cout,))
      add(p + '1.running_var', (cout,))
      add(p + '1.num_batches_tracked', (), 'int64')
    add(f'box_head.conv5_{branch}.weight', (out_dim, channels[4], 1, 1))
    add(f'box_head.conv5_{branch}.bias', (out_dim,))
  return entries


def vitb_manifest(search_size: int = 256) -> dict[str, Any]:
  """Manifest of ViT-B/16 OSTrack-256 (search 256, template 128) or OSTrack-384 (384 / 192)."""
  if search_size not in (256, 384):
    raise ValueError(f'search_size must be 256 or 384, got {search_size}')
  template_size = {256: 128, 384: 192}[search_size]
  entries = ostrack_entries(template_size=template_size, search_size=search_size)
  return make_manifest(entries, f'vitb{search_size}', container='net')


def vitb_weights(
  search_size: int = 256, seed: int = 0
) -> 'collections.OrderedDict[str, np.ndarray]':
  """Seeded ViT-B OSTrack-{256,384} state dict (numpy arrays, released key order)."""
  return fill(vitb_manifest(search_size), seed)


def write_pth(arrays: Mapping[str, np.ndarray], path: str, container: str = 'net') -> None:
  """Writes `{container: OrderedDict(key -> tensor)}` with torch.save (needs torch)."""
  import torch

  state = collections.OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in arrays.items())
  torch.save({container: state}, path)
