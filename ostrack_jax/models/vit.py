"""The one-stream ViT backbone with candidate elimination (OSTrack's vit_ce).

Tokens are laid out as ``[template (Lz); search (Lx)]``, both in row-major patch order.
Blocks are pre-norm ViT blocks with timm semantics (LayerNorm eps 1e-6, fused qkv with bias,
exact-erf GELU). At the candidate-elimination (CE) blocks, after the attention residual and before
the MLP, search tokens are ranked by the attention that the selected template rows pay them and
only ``ceil(ratio * n)`` are kept. Token counts are computed on the host in Python floats, so
every shape is static under ``jax.jit``.
"""

import dataclasses
import math
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ostrack_jax.models import layers, matmul

LAYER_NORM_EPS = 1e-6
# timm's ViT init for Linear layers (init_variables draws the same on the host).
_DENSE_INIT = nn.initializers.normal(0.02)


def dense(
  features: int, dtype, name: str, out_dtype=jnp.float32, custom_backward: bool = True
) -> layers.Dense:
  """A Linear layer of the ViT (see :class:`layers.Dense` for the dtype semantics)."""
  return layers.Dense(
    features,
    dtype,
    kernel_init=_DENSE_INIT,
    out_dtype=out_dtype,
    custom_backward=custom_backward,
    name=name,
  )


def layer_norm(name: str, act_dtype) -> nn.LayerNorm:
  """timm's LayerNorm; statistics in float32, output float32 or (fast path) bfloat16."""
  dtype = None if jnp.dtype(act_dtype) == jnp.float32 else act_dtype
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=dtype, name=name)


def keep_counts(
  num_search: int,
  ce_loc: Sequence[int],
  ce_keep_ratio: Sequence[float],
  depth: int,
  keep_ratio_override: Optional[float] = None,
) -> List[int]:
  """Number of search tokens after each block (host-side, float64 arithmetic as the original).

  A CE block fires iff its own ratio is < 1 and the override is None or < 1; it then keeps
  ``ceil(r * n)`` tokens, r being the override when given, else the block's ratio.
  Returns a list of length ``depth``: the search-token count after each block.
  """
  if len(ce_loc) != len(ce_keep_ratio):
    raise ValueError(
      f'ce_loc {tuple(ce_loc)} and ce_keep_ratio {tuple(ce_keep_ratio)} differ in length'
    )
  ratios = dict(zip(ce_loc, ce_keep_ratio, strict=True))
  counts, n = [], num_search
  for i in range(depth):
    layer_ratio = ratios.get(i, 1.0)
    if layer_ratio < 1 and (keep_ratio_override is None or keep_ratio_override < 1):
      ratio = layer_ratio if keep_ratio_override is None else keep_ratio_override
      n = math.ceil(float(ratio) * n)
    counts.append(n)
  return counts


def template_rows(grid: int, mode: str) -> Optional[np.ndarray]:
  """Template token indices whose attention scores the search tokens (CE_TEMPLATE_RANGE).

  'ALL' -> None (every row). 'CTR_POINT' -> the single token at (r, r), r = grid // 2 - 1 for
  even grids (the top-left of the four central tokens: 27 for 8x8, 65 for 12x12) and grid // 2
  for odd grids. 'CTR_REC' -> the central 2x2 block for even grids (rows/cols r..r+1), the
  central token for odd grids. Indices are row-major on the grid x grid template.
  """
  if mode == 'ALL':
    return None
  r = grid // 2 - 1 if grid % 2 == 0 else grid // 2
  if mode == 'CTR_POINT':
    rows = [r]
  elif mode == 'CTR_REC':
    rows = [r, r + 1] if grid % 2 == 0 else [r]
  else:
    raise ValueError(
      f"unknown ce_template_range {mode!r}; expected 'ALL', 'CTR_POINT' or 'CTR_REC'"
      ' (GT_BOX is not supported: the original breaks on batches with different boxes)'
    )
  return np.array([y * grid + x for y in rows for x in rows], dtype=np.int32)


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per sample (training only)."""

  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(
      self.make_rng('drop_path'), keep, (x.shape[0],) + (1,) * (x.ndim - 1)
    )
    return x * mask.astype(x.dtype) / keep


ATTENTION_IMPLS = ('explicit', 'xla', 'cudnn')
REMAT_MODES = ('none', 'block', 'block_save_dots')


def ce_score(probs, num_template: int, rows: Optional[np.ndarray]):
  """CE score of each search token: the attention the scoring template rows pay it.

  Args:
    probs: (B, heads, Lz + n, Lz + n) attention probabilities.
    num_template: Lz.
    rows: indices of the template rows that score; None = all Lz.

  Returns:
    (B, n) float32: mean over the rows, then over the heads, as the original.
  """
  attn = probs[:, :, :num_template] if rows is None else probs[:, :, rows]
  return attn[..., num_template:].mean(axis=2).mean(axis=1)


def padded_attention(q, k, v, scale: float, impl: Literal['xla', 'cudnn'], pad_to: int):
  """``jax.nn.dot_product_attention`` on a token count rounded up to a multiple of ``pad_to``.

  Args:
    q, k, v: (B, N, heads, head_dim).
    scale: the logits' factor.
    impl: 'xla' or 'cudnn'.
    pad_to: 0 (no padding) or the multiple the kernel sees (N itself when it is one already).

  Returns:
    (B, N, heads, head_dim): the attention of the N queries over the N keys only; the padded
    keys are masked (``key_value_seq_lengths`` = N), the padded queries' rows dropped.
  """
  b, n = q.shape[:2]
  extra = -n % pad_to if pad_to else 0
  if not extra:
    return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=impl)
  q, k, v = (jnp.pad(t, ((0, 0), (0, extra), (0, 0), (0, 0))) for t in (q, k, v))
  out = jax.nn.dot_product_attention(
    q,
    k,
    v,
    scale=scale,
    key_value_seq_lengths=jnp.full((b,), n, jnp.int32),
    implementation=impl,
  )
  return out[:, :n]


class Attention(nn.Module):
  """Multi-head self-attention with a fused qkv projection; also the CE scores when asked.

  ``impl``: 'explicit' (two matmuls and a float32 softmax, the probabilities materialised:
  today's default), or 'xla' / 'cudnn': ``jax.nn.dot_product_attention`` with that
  implementation (cuDNN's fused kernel takes bfloat16 operands only: with float32 operands
  'cudnn' runs the XLA implementation). The fused paths never form the probabilities, so the
  CE scores come from a separate product of the scoring template rows against all keys
  (float32 softmax over the full row, no gradient: the kept set is an index choice).

  ``pad_to`` (fused paths only; 0 = off): the fused kernel sees the token count rounded up to
  a multiple of ``pad_to`` (153 = 64 + 89 after three CE blocks -> 192 with 64): zero tokens
  appended to q, k and v, the padded keys masked out through ``key_value_seq_lengths`` (XLA:
  a large negative logit, whose exponential is 0; cuDNN: its padding mask), the padded
  queries' outputs dropped. The kept tokens'
  outputs are the unpadded ones up to float rounding; the CE scores never see the padding.
  """

  num_heads: int
  dtype: jnp.dtype = jnp.float32
  act_dtype: jnp.dtype = jnp.float32
  impl: str = 'explicit'
  custom_backward: bool = True
  pad_to: int = 0

  def _dense(self, features, name):
    return dense(features, self.dtype, name, self.act_dtype, self.custom_backward)

  @nn.compact
  def __call__(
    self,
    x,
    num_template: int = 0,
    score_rows: Optional[Tuple[int, ...]] = None,
    need_score: bool = False,
  ):
    """x: (B, N, C) -> (out (B, N, C) ``act_dtype``, CE score (B, N - Lz) float32 or None).

    ``score_rows``: the template rows that score (None = all Lz); ``need_score``: compute the
    scores (CE blocks only).
    """
    b, n, c = x.shape
    head_dim = c // self.num_heads
    rows = None if score_rows is None else np.asarray(score_rows, np.int32)
    qkv = self._dense(3 * c, 'qkv')(x)
    if self.impl == 'explicit':
      # (3, B, heads, N, head_dim): heads-major layouts make the two attention matmuls plain
      # batched matmuls (measured 10% faster per block on a CPU than einsums over (B, N, heads)).
      qkv = qkv.reshape(b, n, 3, self.num_heads, head_dim).transpose(2, 0, 3, 1, 4)
      q, k, v = qkv[0], qkv[1], qkv[2]
      logits = matmul.matmul_nt(
        q * head_dim**-0.5, k, self.dtype, custom_backward=self.custom_backward
      )  # (B, heads, N, N) float32
      probs = jax.nn.softmax(logits, axis=-1)
      out = matmul.matmul(probs, v, self.dtype, self.act_dtype, self.custom_backward)
      out = out.transpose(0, 2, 1, 3).reshape(b, n, c)
      score = ce_score(probs, num_template, rows) if need_score else None
      return self._dense(c, 'proj')(out), score
    if self.impl not in ATTENTION_IMPLS:
      raise ValueError(f'attention impl {self.impl!r}: expected one of {ATTENTION_IMPLS}')
    qkv = qkv.reshape(b, n, 3, self.num_heads, head_dim)  # (B, N, 3, heads, head_dim)
    q, k, v = (qkv[:, :, i].astype(self.dtype) for i in range(3))  # (B, N, heads, head_dim)
    cudnn = self.impl == 'cudnn' and jnp.dtype(self.dtype) != jnp.float32
    out = padded_attention(
      q, k, v, head_dim**-0.5, 'cudnn' if cudnn else 'xla', self.pad_to
    ).reshape(b, n, c)
    score = None
    if need_score:
      # The scoring rows only: (B, heads, R, head_dim) against every key, the same product and
      # softmax as the explicit path computes for these rows.
      q_rows = q[:, :num_template] if rows is None else q[:, rows]
      q_rows, k_all = jax.lax.stop_gradient((q_rows, k))
      logits = matmul.matmul_nt(
        q_rows.transpose(0, 2, 1, 3) * head_dim**-0.5, k_all.transpose(0, 2, 1, 3), self.dtype
      )  # (B, heads, R, N) float32
      probs = jax.nn.softmax(logits, axis=-1)  # every row scores: mean rows, then heads
      score = probs[..., num_template:].mean(axis=2).mean(axis=1)
    return self._dense(c, 'proj')(out), score


class Mlp(nn.Module):
  hidden_dim: int
  dtype: jnp.dtype = jnp.float32
  act_dtype: jnp.dtype = jnp.float32
  custom_backward: bool = True

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = dense(self.hidden_dim, self.dtype, 'fc1', self.act_dtype, self.custom_backward)(x)
    # PyTorch nn.GELU is the exact erf form; computed in float32 (a no-op cast in float32).
    x = nn.gelu(x.astype(jnp.float32), approximate=False).astype(self.act_dtype)
    return dense(c, self.dtype, 'fc2', self.act_dtype, self.custom_backward)(x)


def eliminate_candidates(tokens, score, global_index, num_template: int, num_keep: int):
  """Keeps the ``num_keep`` search tokens the template attends to most.

  Args:
    tokens: (B, Lz + n, C) tokens, template first.
    score: (B, n) CE score of each current search token (:func:`ce_score`).
    global_index: (B, n) int32 original search index of each current search token.
    num_template: Lz.
    num_keep: search tokens to keep (static).

  Returns:
    tokens (B, Lz + num_keep, C) with the kept search tokens in descending-score order,
    kept global indices (B, num_keep), removed global indices (B, n - num_keep) (descending
    score), and the margin between the last kept and the first removed score (B,).
  """
  n = score.shape[1]
  sorted_score, order = jax.lax.top_k(score, n)  # descending; ties keep the lower index first
  keep_pos, removed_pos = order[:, :num_keep], order[:, num_keep:]
  kept_index = jnp.take_along_axis(global_index, keep_pos, axis=1)
  removed_index = jnp.take_along_axis(global_index, removed_pos, axis=1)
  search = jnp.take_along_axis(tokens[:, num_template:], keep_pos[:, :, None], axis=1)
  tokens = jnp.concatenate([tokens[:, :num_template], search], axis=1)
  margin = sorted_score[:, num_keep - 1] - sorted_score[:, num_keep]
  return tokens, kept_index, removed_index, margin


def recover_tokens(kept_tokens, kept_index, removed: Sequence[jax.Array]):
  """The kept search tokens at their original positions, zeros where tokens were eliminated.

  A gather through the inverse permutation, not a scatter: ``[kept_index; removed...]`` is a
  permutation of the search positions, and its inverse (a TopK of the negated permutation, an
  argsort without ties) says, for each position, where its token is in that order; positions
  whose token was removed read an appended zero row. The same values as
  ``zeros.at[batch, kept_index].set(kept_tokens)``, but with static shapes only (the scatter
  becomes NonZero + ScatterND in ONNX, which TensorRT's parser rejects).

  Args:
    kept_tokens: (B, n_kept, C) search tokens in the order of ``kept_index``.
    kept_index: (B, n_kept) int32 original search index of each kept token.
    removed: the (B, n_i) int32 indices removed by each CE layer (together with ``kept_index``
      they cover 0 .. N - 1 once each).
  Returns:
    (B, N, C) search tokens, N = n_kept + sum n_i.
  """
  b, n_kept, c = kept_tokens.shape
  perm = jnp.concatenate([kept_index, *removed], axis=1)
  n = perm.shape[1]
  _, inverse = jax.lax.top_k(-perm, n)  # inverse[p] = place of position p in perm
  source = jnp.minimum(inverse, n_kept).astype(jnp.int32)  # removed -> the zero row
  padded = jnp.concatenate([kept_tokens, jnp.zeros((b, 1, c), kept_tokens.dtype)], axis=1)
  return jnp.take_along_axis(padded, source[:, :, None], axis=1)


class Block(nn.Module):
  """Pre-norm ViT block; with ``num_keep`` set, candidate elimination before the MLP.

  The residual stream stays float32; with ``act_dtype`` bfloat16 the norms' outputs and the
  products between them are bfloat16.
  """

  num_heads: int
  mlp_dim: int
  drop_path_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  act_dtype: jnp.dtype = jnp.float32
  attention_impl: str = 'explicit'
  attention_pad_to: int = 0
  custom_backward: bool = True

  @nn.compact
  def __call__(
    self,
    tokens,
    global_index,
    num_template: int,
    num_keep: Optional[int],
    rows: Optional[Tuple[int, ...]],
    train: bool,
  ):
    """tokens (B, Lz + n, C) float32, global_index (B, n) int32 -> (tokens (B, Lz + n', C),
    global_index (B, n'), removed (B, n - n') int32 or None). The last four arguments are static
    (positional, so that :func:`flax.linen.remat` can mark them)."""
    drop_path = DropPath(self.drop_path_rate)
    eliminate = num_keep is not None and num_keep < global_index.shape[1]
    attn_out, score = Attention(
      self.num_heads,
      dtype=self.dtype,
      act_dtype=self.act_dtype,
      impl=self.attention_impl,
      custom_backward=self.custom_backward,
      pad_to=self.attention_pad_to,
      name='attn',
    )(layer_norm('norm1', self.act_dtype)(tokens), num_template, rows, eliminate)
    tokens = tokens + drop_path(attn_out, deterministic=not train)
    removed_index = None
    if eliminate and num_keep is not None:
      tokens, global_index, removed_index, margin = eliminate_candidates(
        tokens, score, global_index, num_template, num_keep
      )
      self.sow('intermediates', 'ce_margin', margin)
    mlp_out = Mlp(
      self.mlp_dim,
      dtype=self.dtype,
      act_dtype=self.act_dtype,
      custom_backward=self.custom_backward,
      name='mlp',
    )(layer_norm('norm2', self.act_dtype)(tokens))
    tokens = tokens + drop_path(mlp_out, deterministic=not train)
    return tokens, global_index, removed_index


def remat_block(mode: str):
  """The block class for ``model.remat``: 'none' (store every activation for the backward),
  'block' (store each block's input only and recompute the block in the backward pass:
  ~1/3 more FLOPs, far less memory) or 'block_save_dots' (recompute the elementwise work, keep
  the matmul results; JAX's ``dots_with_no_batch_dims_saveable`` policy)."""
  if mode == 'none':
    return Block
  if mode == 'block':
    return nn.remat(Block, static_argnums=(3, 4, 5, 6))  # self = 0: num_template .. train
  if mode == 'block_save_dots':
    return nn.remat(
      Block,
      static_argnums=(3, 4, 5, 6),
      policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    )
  raise ValueError(f'model.remat={mode!r}: expected one of {REMAT_MODES}')


DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
MATMUL_BACKWARDS = ('custom', 'autodiff')


class BackboneFields(nn.Module):
  """The backbone's fields: the keys of ``config.model`` (ostrack_jax/configs/base.py gives each
  one's meaning) but ``head_channels``, which :class:`ostrack.OSTrack` adds. Declared once here,
  inherited by :class:`OneStreamViT` and ``OSTrack``, so that ``OSTrack(**config.model)`` builds
  the model and hands these on to its backbone (:meth:`backbone_fields`). No defaults: the
  values live in the config. Constructing either module checks them (ValueError naming the
  ``config.model`` field).
  """

  template_size: int
  search_size: int
  patch_size: int
  embed_dim: int
  depth: int
  num_heads: int
  mlp_dim: int
  ce_loc: Tuple[int, ...]
  ce_keep_ratio: Tuple[float, ...]
  ce_template_range: str
  drop_path_rate: float
  dtype: str  # the matmul/conv operands: 'float32' or 'bfloat16' (:attr:`matmul_dtype`)
  # The GPU fast path; the config's defaults are the plain path the equivalence tests pin.
  bf16_activations: bool
  attention_impl: str
  attention_pad_to: int
  matmul_backward: str
  remat: str

  def __post_init__(self):
    check_backbone_fields(self)
    super().__post_init__()

  def backbone_fields(self) -> Dict[str, Any]:
    """This module's values of the :class:`BackboneFields` fields (the backbone's arguments)."""
    names = [f.name for f in dataclasses.fields(BackboneFields)]
    return {name: getattr(self, name) for name in names if name not in ('parent', 'name')}

  @property
  def matmul_dtype(self):
    """jnp.float32 or jnp.bfloat16: the matmul/conv operands (float32 accumulation)."""
    return DTYPES[self.dtype]

  @property
  def act_dtype(self):
    """The matmuls' results and the activations between them: bfloat16 with bfloat16 matmuls
    and ``bf16_activations`` (norm statistics, softmax, the head's sigmoids and the losses stay
    float32, so does the residual stream), else float32."""
    fast = self.bf16_activations and self.matmul_dtype == jnp.bfloat16
    return jnp.bfloat16 if fast else jnp.float32

  @property
  def custom_backward(self) -> bool:
    """The hand-written bfloat16 backward of models/matmul.py (``matmul_backward='custom'``)."""
    return self.matmul_backward == 'custom'


def check_backbone_fields(m: BackboneFields) -> None:
  """Raises ValueError naming the first ``config.model`` field that no model can be built from.

  * ``dtype``: 'float32' or 'bfloat16'; ``template_size`` / ``search_size`` multiples of
    ``patch_size``; ``embed_dim`` divisible by ``num_heads``.
  * ``attention_impl``: 'explicit', 'xla' or 'cudnn' (:class:`Attention`).
  * ``attention_pad_to``: 0 (off), or the multiple the fused kernel's token count is padded to
    with masked keys (:func:`padded_attention`); needs 'xla' or 'cudnn'.
  * ``matmul_backward``: 'custom' (the hand-written bfloat16 backward of models/matmul.py) or
    'autodiff' (JAX's own); no effect in float32.
  * ``remat``: 'none', 'block' or 'block_save_dots' (:func:`remat_block`).
  """
  if m.dtype not in DTYPES:
    raise ValueError(f'config.model.dtype must be one of {sorted(DTYPES)}, got {m.dtype!r}')
  for field in ('template_size', 'search_size'):
    if getattr(m, field) % m.patch_size:
      raise ValueError(
        f'config.model.{field}={getattr(m, field)} is not a multiple of patch_size={m.patch_size}'
      )
  if m.embed_dim % m.num_heads:
    raise ValueError(
      f'config.model.embed_dim={m.embed_dim} is not divisible by num_heads={m.num_heads}'
    )
  for field, allowed in (
    ('attention_impl', ATTENTION_IMPLS),
    ('matmul_backward', MATMUL_BACKWARDS),
    ('remat', REMAT_MODES),
  ):
    if getattr(m, field) not in allowed:
      raise ValueError(f'config.model.{field}={getattr(m, field)!r}: expected one of {allowed}')
  pad_to = m.attention_pad_to
  if not isinstance(pad_to, int) or isinstance(pad_to, bool) or pad_to < 0:
    raise ValueError(
      f'config.model.attention_pad_to={pad_to!r}: expected 0 (off) or a positive integer'
    )
  if pad_to and m.attention_impl == 'explicit':
    raise ValueError(
      f'config.model.attention_pad_to={pad_to} pads the fused kernel only: it needs'
      " config.model.attention_impl 'xla' or 'cudnn', not 'explicit'"
    )


class OneStreamViT(BackboneFields):
  """The OSTrack backbone: shared patch embedding, two position embeddings, blocks with CE."""

  @nn.compact
  def __call__(self, template, search, keep_ratio: Optional[float] = None, train: bool = False):
    """Runs the backbone.

    Args:
      template: (B, template_size, template_size, 3) normalized NHWC.
      search: (B, search_size, search_size, 3) normalized NHWC.
      keep_ratio: None (the configured ratios) or a Python float replacing every CE ratio.
      train: stochastic depth on (needs the 'drop_path' rng).

    Returns:
      feat (B, Lz + Lx, C): final-normed template tokens, then the search tokens at their
        original positions, eliminated ones as exact zeros;
      kept_index (B, n_kept) int32, in the order the kept tokens ended up (descending score of
        the last CE block);
      removed (list of (B, n_i) int32, one per CE block that removed tokens).
    """
    grid_z, grid_x = self.template_size // self.patch_size, self.search_size // self.patch_size
    num_template, num_search = grid_z * grid_z, grid_x * grid_x
    patch_embed = layers.Conv(
      self.embed_dim,
      (self.patch_size, self.patch_size),
      stride=self.patch_size,
      dtype=self.matmul_dtype,
      out_dtype=self.act_dtype,
      custom_backward=self.custom_backward,
      name='patch_embed',
    )
    pos_z = self.param(
      'pos_embed_z', nn.initializers.normal(0.02), (1, num_template, self.embed_dim)
    )
    pos_x = self.param('pos_embed_x', nn.initializers.normal(0.02), (1, num_search, self.embed_dim))
    b = template.shape[0]
    z = patch_embed(template).reshape(b, num_template, self.embed_dim) + pos_z
    x = patch_embed(search).reshape(b, num_search, self.embed_dim) + pos_x
    tokens = jnp.concatenate([z, x], axis=1)

    counts = keep_counts(num_search, self.ce_loc, self.ce_keep_ratio, self.depth, keep_ratio)
    scoring = template_rows(grid_z, self.ce_template_range)
    rows = None if scoring is None else tuple(int(r) for r in scoring)  # hashable: static
    global_index = jnp.broadcast_to(jnp.arange(num_search, dtype=jnp.int32), (b, num_search))
    drop_rates = np.linspace(0.0, self.drop_path_rate, self.depth)
    block_cls = remat_block(self.remat)
    removed = []
    for i in range(self.depth):
      tokens, global_index, removed_index = block_cls(
        self.num_heads,
        self.mlp_dim,
        float(drop_rates[i]),
        dtype=self.matmul_dtype,
        act_dtype=self.act_dtype,
        attention_impl=self.attention_impl,
        attention_pad_to=self.attention_pad_to,
        custom_backward=self.custom_backward,
        name=f'blocks_{i}',
      )(tokens, global_index, num_template, counts[i], rows, train)
      if removed_index is not None:
        removed.append(removed_index)
      self.sow('intermediates', 'block_out', tokens)
      self.sow('intermediates', 'global_index', global_index)
    tokens = layer_norm('norm', self.act_dtype)(tokens)

    z, s = tokens[:, :num_template], tokens[:, num_template:]
    if s.shape[1] < num_search:  # kept tokens back at their positions; eliminated ones zero
      s = recover_tokens(s, global_index, removed)
    return jnp.concatenate([z, s], axis=1), global_index, removed
