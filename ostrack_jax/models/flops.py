"""Analytic FLOP count of OSTrack: the model FLOPs that model FLOPs utilisation (MFU) divides by.

Convention (as in the PaLM / Megatron MFU accounting):

* Only matrix products count, 2 FLOPs per multiply-accumulate (MAC): the patch embedding, per
  block the qkv projection, the attention scores ``Q K^T`` and values ``P V``, the output
  projection and the two MLP layers, and the head's convolutions (as the products they are:
  9 x in x out MACs per output pixel of a 3x3 conv). Norms, softmax, GELU, residual adds, the
  CE top-k and the losses are not counted (~2% of the total for ViT-B; XLA's own count on a CPU,
  which includes them, is checked against this one in tests/models/test_flops.py).
* Token counts per block follow candidate elimination exactly as the model does
  (:func:`ostrack_jax.models.vit.keep_counts`): a CE block's attention sees the tokens before
  elimination, its MLP the kept ones. Only the FLOPs the original model does count: the extra
  template-row product of the fused-attention path (``model.attention_impl``), the masked
  padding tokens of ``model.attention_pad_to`` and the recomputation of ``model.remat`` are
  implementation costs, not model FLOPs (they would count
  in a *hardware* FLOPs utilisation).
* Training step = forward + backward, the backward doing two products of the forward's size per
  product (input and weight gradients), except the patch embedding, whose input (the images)
  needs no gradient: train FLOPs = 3 x forward FLOPs - 2 x patch-embedding MACs. That is the
  ``3x forward`` rule made exact for this model; the optimiser update (elementwise) is not counted.

All counts are per sample (batch 1); multiply by the batch.
"""

import dataclasses
import math
from typing import Dict, Optional

import ml_collections

from ostrack_jax.models.vit import keep_counts


@dataclasses.dataclass(frozen=True)
class MacCount:
  """Multiply-accumulates of one forward pass of one sample, by part."""

  patch_embed: int
  qkv: int
  attn_scores: int  # Q K^T
  attn_values: int  # P V
  proj: int
  mlp: int
  head: int

  @property
  def backbone(self) -> int:
    return self.patch_embed + self.qkv + self.attn_scores + self.attn_values + self.proj + self.mlp

  @property
  def total(self) -> int:
    return self.backbone + self.head

  @property
  def forward_flops(self) -> int:
    """FLOPs of one forward pass (2 per MAC)."""
    return 2 * self.total

  @property
  def train_flops(self) -> int:
    """FLOPs of one training step (forward + backward), see the module docstring."""
    return 3 * self.forward_flops - 2 * self.patch_embed  # 2 FLOPs x its input-gradient MACs

  def as_dict(self) -> Dict[str, int]:
    d = dataclasses.asdict(self)
    d.update(total=self.total, forward_flops=self.forward_flops, train_flops=self.train_flops)
    return d


def count_macs(config: ml_collections.ConfigDict, keep_ratio: Optional[float] = None) -> MacCount:
  """MACs of one forward pass per sample for ``config.model`` (or a model section).

  ``keep_ratio``: None (the configured CE ratios) or a float replacing every ratio, as the
  model's ``keep_ratio`` argument (1.0 = no elimination).
  """
  m = config.model if 'model' in config else config
  c, mlp, p = m.embed_dim, m.mlp_dim, m.patch_size
  num_template = (m.template_size // p) ** 2
  num_search = (m.search_size // p) ** 2
  counts = keep_counts(
    num_search,
    tuple(m.ce_loc),
    tuple(m.ce_keep_ratio),
    m.depth,
    None if keep_ratio is None else float(keep_ratio),
  )
  patch_embed = (num_template + num_search) * (p * p * 3) * c
  qkv = scores = values = proj = mlp_macs = 0
  n_search = num_search
  for i in range(m.depth):
    n_in = num_template + n_search  # tokens entering block i (its attention)
    n_out = num_template + counts[i]  # tokens after its CE (its MLP)
    qkv += n_in * c * 3 * c
    scores += n_in * n_in * c  # heads x (n_in x n_in x head_dim)
    values += n_in * n_in * c
    proj += n_in * c * c
    mlp_macs += 2 * n_out * c * mlp
    n_search = counts[i]
  f = m.search_size // p
  ch = m.head_channels
  widths = (c, ch, ch // 2, ch // 4, ch // 8)
  per_branch = sum(9 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
  head = f * f * sum(per_branch + widths[-1] * out for out in (1, 2, 2))  # ctr, offset, size
  return MacCount(patch_embed, qkv, scores, values, proj, mlp_macs, head)


# Dense peak FLOP/s per device (TFLOP/s, no sparsity) by device-name fragment, most specific
# first: (bfloat16 tensor cores, float32 as XLA runs it by default on the GPU = TF32 tensor
# cores). From NVIDIA's data sheets (SXM parts unless named).
DEVICE_PEAK_TFLOPS = (
  ('H100 PCIe', 756.0, 378.0),
  ('H100 NVL', 835.0, 418.0),
  ('H100', 989.0, 495.0),
  ('H200', 989.0, 495.0),
  ('B200', 2250.0, 1100.0),
  ('A100', 312.0, 156.0),
  ('L40S', 362.0, 183.0),
)


def device_peak_tflops(device_kind: str, dtype: str = 'bfloat16'):
  """(peak TFLOP/s, the table row's name) for ``jax.Device.device_kind``, or (None, None).

  ``dtype`` 'bfloat16' gives the dense bfloat16 tensor-core peak, 'float32' the TF32 one.
  """
  for name, bf16, tf32 in DEVICE_PEAK_TFLOPS:
    if name in device_kind:
      return (bf16 if dtype == 'bfloat16' else tf32), name
  return None, None


def mfu(flops_per_step: float, step_seconds: float, peak_tflops: float, devices: int = 1) -> float:
  """Model FLOPs utilisation: achieved model FLOP/s over the devices' peak."""
  return flops_per_step / step_seconds / (peak_tflops * 1e12 * devices)


def jaxpr_matmul_flops(jaxpr) -> int:
  """2 x MACs of every ``dot_general`` in a (closed) jaxpr, nested jaxprs included.

  Counts what the traced program asks for (before XLA removes dead code), e.g. the products of
  ``jax.make_jaxpr(forward)(...)``; ``cond`` branches count their most expensive branch,
  ``scan`` bodies times their length.
  """
  import jax.extend.core as jex

  inner = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0
  for eqn in inner.eqns:
    if eqn.primitive.name == 'dot_general':
      (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
      lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
      size = math.prod(lhs)  # batch x free x contracting dimensions of the left operand
      size *= math.prod(s for d, s in enumerate(rhs) if d not in rc and d not in rb)
      total += 2 * size
      continue
    subs = [jaxpr_matmul_flops(sub) for sub in jex.jaxprs_in_params(eqn.params)]
    if subs:
      if eqn.primitive.name == 'cond':
        total += max(subs)
      elif eqn.primitive.name == 'scan':
        total += eqn.params['length'] * sum(subs)
      else:
        total += sum(subs)
  return total
