#!/usr/bin/env python3
"""Run the ORIGINAL PyTorch OSTrack (botaoye/OSTrack) for side-by-side timing and references.

Optional. Nothing in ostrack_jax needs it; the speed benchmarks use it only when given the path
of a user's checkout of the original repository (botaoye/OSTrack on GitHub, any clone;
commit 33b5e12 was used for our numbers). The original's code is imported from that path, never
copied. It needs, in the Python that runs this file: torch (CPU is fine), timm==0.5.4, numpy,
opencv-python-headless, easydict, pyyaml, pillow. torchvision is optional: when it cannot be
imported (there is no CPU build of it for every torch), a minimal in-memory stand-in is
registered with the two things the model and losses use (`ops.boxes.box_area` and names that
timm imports but never calls here). See benchmarks/README.md for a ready-made virtual env.

Library use (inside a Python that has the packages above):

  from benchmarks import torch_original as orig
  model, forward = orig.build_original(ostrack_repo, 'ostrack_256_ce', checkpoint=None)
  out = forward(template_nchw, search_nchw)          # dict of numpy arrays
  stats = orig.time_original(ostrack_repo, 'ostrack_256_ce', batch=1)   # {'median_ms', ...}
  stats = orig.time_train_step_original(ostrack_repo, 'ostrack_256_ce', batch=2)

From another interpreter (e.g. the JAX venv, which has no timm 0.5.4), run the CLI in the
reference venv and read its JSON:

  stats = orig.run_cli(python='/path/to/refvenv/bin/python', ostrack_repo=..., args=[
      'forward', '--preset', 'ostrack_256_ce', '--batch', '1'])

CLI:
  python benchmarks/torch_original.py --ostrack-repo DIR forward --preset ostrack_256_ce
  python benchmarks/torch_original.py --ostrack-repo DIR train-step --batch 2
  python benchmarks/torch_original.py --ostrack-repo DIR track --frames-dir DIR
  python benchmarks/torch_original.py --ostrack-repo DIR vitb-reference --out tests/fixtures/vitb
  python benchmarks/torch_original.py --ostrack-repo DIR tiny256-reference --out tests/fixtures/tiny256
  python benchmarks/torch_original.py --ostrack-repo DIR mae-reference --out tests/fixtures/mae
  python benchmarks/torch_original.py --ostrack-repo DIR losses-reference --out tests/fixtures/losses
  python benchmarks/torch_original.py --ostrack-repo DIR tracker-reference \
      --frames frames_soapbox.npz --out tests/fixtures/tracker
Each prints one JSON object on the last line of stdout; the timing commands print a short table
(median, min, max, device) on stdout before it. The *-reference commands regenerate the test
fixtures (tests/fixtures/README.md says what each holds and how it was made); with
`--compare-to DIR` they also report, file by file and key by key, how what they wrote differs
from DIR's files (write to a temporary folder and compare with tests/fixtures/<folder>).

`--device cuda` (default cpu; before or after the command name) runs forward / train-step / track
on the GPU: model and inputs on torch.device('cuda'), torch.cuda.synchronize() before and after
every timed call (so each time is the GPU's, not the launch's), float32 with PyTorch's default
matmul precision, and the device name (torch.cuda.get_device_name) in the table and the JSON.
The original tracker's own `.cuda()` calls are left as they are there; on the CPU they are made
no-ops (as before). The *-reference commands are CPU only (the test fixtures are CPU float32).

Inputs are NCHW float32 (ImageNet-normalized), as the original takes them; outputs are the
original's (score_map (B,1,F,F), size_map / offset_map (B,2,F,F), pred_boxes (B,1,4) cxcywh
normalized to the search crop).
"""

import argparse
import collections
import contextlib
import copy
import importlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
import types
from typing import Any, Callable, Sequence

import numpy as np

# Our preset name -> the original's experiment file (experiments/ostrack/<name>.yaml).
PRESET_TO_YAML = {
  'ostrack_256_ce': 'vitb_256_mae_ce_32x4_ep300',
  'ostrack_256': 'vitb_256_mae_32x4_ep300',
  'ostrack_384_ce': 'vitb_384_mae_ce_32x4_ep300',
  'ostrack_384': 'vitb_384_mae_32x4_ep300',
  'ostrack_256_ce_got10k': 'vitb_256_mae_ce_32x4_got10k_ep100',
  'ostrack_384_ce_got10k': 'vitb_384_mae_ce_32x4_got10k_ep100',
}

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Packages the original's training / tracking modules import at module level but that the code
# paths run here never use; stand-ins are registered for those that are not installed.
_OPTIONAL_IMPORTS = (
  'tensorboardX',
  'visdom',
  'visdom.server',
  'jpeg4py',
  'lmdb',
  'wandb',
  'matplotlib',
  'matplotlib.pyplot',
)


# --------------------------------------------------------------------------------------------
# Importing the original


def _placeholder_module(
  name: str, attrs: dict[str, Any] | None = None, missing: Sequence[str] = ()
) -> types.ModuleType:
  """A module whose unknown attributes are inert placeholder classes (never called here)."""
  module = types.ModuleType(name)
  module.__dict__.update(attrs or {})
  module.__path__ = []  # a package, so that submodules can be registered under it

  def __getattr__(attr):
    if attr.startswith('__') or attr in missing:
      raise AttributeError(attr)
    placeholder = type(
      attr,
      (),
      {
        '__init__': lambda self, *a, **k: None,
        '__call__': lambda self, *a, **k: (_ for _ in ()).throw(
          NotImplementedError(f'{name}.{attr} is a stand-in (no torchvision here)')
        ),
      },
    )
    setattr(module, attr, placeholder)
    return placeholder

  module.__getattr__ = __getattr__
  return module


def _install_torchvision_standin() -> bool:
  """Registers a minimal `torchvision` if the real one cannot be imported. Returns True if so."""
  try:
    import torchvision  # noqa: F401

    return False
  except Exception:
    for key in [k for k in sys.modules if k == 'torchvision' or k.startswith('torchvision.')]:
      del sys.modules[key]
  import torch

  def box_area(boxes):
    """Area of (N, 4) x1y1x2y2 boxes (torchvision.ops.boxes.box_area semantics)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

  modules = {
    'torchvision': _placeholder_module('torchvision', {'__version__': '0.0.0+standin'}),
    'torchvision.ops': _placeholder_module('torchvision.ops'),
    'torchvision.ops.boxes': _placeholder_module('torchvision.ops.boxes', {'box_area': box_area}),
    'torchvision.ops.misc': _placeholder_module('torchvision.ops.misc'),
    'torchvision.transforms': _placeholder_module('torchvision.transforms'),
    # timm checks for InterpolationMode with a try/except ImportError.
    'torchvision.transforms.functional': _placeholder_module(
      'torchvision.transforms.functional', missing=('InterpolationMode',)
    ),
    'torchvision.datasets': _placeholder_module('torchvision.datasets'),
  }
  modules['torchvision'].ops = modules['torchvision.ops']
  modules['torchvision'].transforms = modules['torchvision.transforms']
  modules['torchvision'].datasets = modules['torchvision.datasets']
  modules['torchvision.ops'].boxes = modules['torchvision.ops.boxes']
  modules['torchvision.ops'].misc = modules['torchvision.ops.misc']
  modules['torchvision.transforms'].functional = modules['torchvision.transforms.functional']
  del torch
  sys.modules.update(modules)
  return True


def _install_optional_standins(names: Sequence[str]) -> list[str]:
  """Stand-ins for optional packages the original imports at module level (visdom, ...).

  Dotted names register the parents too ('matplotlib.pyplot'). Returns the names stood in for.
  """
  installed = []
  for name in names:
    try:
      importlib.import_module(name)
    except Exception:
      parts = name.split('.')
      for i in range(1, len(parts) + 1):
        sub = '.'.join(parts[:i])
        if sub not in sys.modules:
          sys.modules[sub] = _placeholder_module(sub)
          if i > 1:
            setattr(sys.modules['.'.join(parts[: i - 1])], parts[i - 1], sys.modules[sub])
      installed.append(name)
  return installed


def _install_torch_six_standin() -> None:
  """`torch._six` (gone since torch 2.0) for the original's data loader module, if missing."""
  try:
    importlib.import_module('torch._six')
  except ImportError:
    import collections.abc

    six = types.ModuleType('torch._six')
    six.string_classes = (str, bytes)
    six.int_classes = int
    six.container_abcs = collections.abc
    sys.modules['torch._six'] = six


def import_original(ostrack_repo: str | os.PathLike) -> types.SimpleNamespace:
  """Puts a checkout of the original on sys.path and imports the modules we drive.

  Raises:
    FileNotFoundError: if `ostrack_repo` is not a checkout of botaoye/OSTrack.
    ImportError: naming the missing package (timm==0.5.4, easydict, pyyaml, ...).
  """
  repo = pathlib.Path(ostrack_repo).expanduser().resolve()
  marker = repo / 'lib' / 'models' / 'ostrack' / 'ostrack.py'
  if not marker.is_file():
    raise FileNotFoundError(
      f'--ostrack-repo {str(ostrack_repo)!r}: no lib/models/ostrack/ostrack.py there; expected a '
      'checkout of botaoye/OSTrack (GitHub)'
    )
  for package in ('torch', 'easydict', 'yaml', 'cv2'):
    try:
      importlib.import_module(package)
    except ImportError as e:
      raise ImportError(f'the original OSTrack needs the package {package!r}: {e}') from e
  standin = _install_torchvision_standin()
  _install_torch_six_standin()
  try:
    import timm
  except ImportError as e:
    raise ImportError(
      f'the original OSTrack needs timm==0.5.4 (pip install timm==0.5.4 --no-deps): {e}'
    ) from e
  if str(repo) not in sys.path:
    sys.path.insert(0, str(repo))
  ns = types.SimpleNamespace(repo=repo, torchvision_standin=standin, timm_version=timm.__version__)
  ns.config = importlib.import_module('lib.config.ostrack.config')
  ns.ostrack = importlib.import_module('lib.models.ostrack.ostrack')
  ns.ce_utils = importlib.import_module('lib.utils.ce_utils')
  return ns


def load_original_config(orig: types.SimpleNamespace, preset_name: str):
  """The original's EasyDict config for one of our preset names (fresh copy, never shared)."""
  if preset_name not in PRESET_TO_YAML:
    raise ValueError(
      f'preset {preset_name!r}: the original has no such experiment; '
      f'choose one of {sorted(PRESET_TO_YAML)}'
    )
  if not hasattr(orig, 'default_cfg'):
    orig.default_cfg = copy.deepcopy(orig.config.cfg)
  cfg = copy.deepcopy(orig.default_cfg)
  yaml_file = orig.repo / 'experiments' / 'ostrack' / f'{PRESET_TO_YAML[preset_name]}.yaml'
  orig.config.update_config_from_file(str(yaml_file), base_cfg=cfg)
  return cfg


def _set_threads(threads: int | None) -> int:
  import torch

  threads = threads or len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  return threads


DEVICES = ('cpu', 'cuda')


def _torch_device(device: str):
  """torch.device for 'cpu' / 'cuda'; a clear error when CUDA is asked for but absent."""
  import torch

  if device not in DEVICES:
    raise ValueError(f'device {device!r}: choose one of {DEVICES}')
  if device == 'cuda' and not torch.cuda.is_available():
    raise RuntimeError(
      f'--device cuda: torch {torch.__version__} sees no CUDA device '
      f'(torch.version.cuda={torch.version.cuda})'
    )
  return torch.device(device)


def _sync_fn(device: str) -> Callable[[], None] | None:
  """torch.cuda.synchronize on CUDA (each timed region waits for the GPU), None on the CPU."""
  if device == 'cuda':
    import torch

    return torch.cuda.synchronize
  return None


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  import platform

  return platform.processor() or platform.machine()


def _device_info(device: str) -> dict[str, Any]:
  """What the timings ran on: device, device_name and, on CUDA, versions and precision flags."""
  import torch

  if device != 'cuda':
    return dict(device='cpu', device_name=_cpu_name())
  return dict(
    device='cuda',
    device_name=torch.cuda.get_device_name(),
    cuda_version=torch.version.cuda,
    cudnn_version=torch.backends.cudnn.version(),
    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
    max_memory_allocated_mib=torch.cuda.max_memory_allocated() / 2**20,
  )


def _load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
  """Reads a released-layout checkpoint safely (weights_only=True; never full unpickling)."""
  import torch

  ckpt = torch.load(str(path), map_location='cpu', weights_only=True)
  if not isinstance(ckpt, dict) or 'net' not in ckpt:
    raise ValueError(f'checkpoint {str(path)!r}: expected {{"net": state_dict}} (released layout)')
  return ckpt['net']


# The tiny test model of tests/fixtures/tiny256: OSTrack-256 CE geometry, a narrow ViT.
TINY_VIT = dict(patch_size=16, embed_dim=64, depth=12, num_heads=4)  # MLP ratio 4: 256
TINY_HEAD_CHANNELS = 32  # center head 32 / 16 / 8 / 4


@contextlib.contextmanager
def tiny_original_width(orig: types.SimpleNamespace):
  """While active, the original's `build_ostrack` builds its ViT-B CE backbone at tiny width.

  The original's `lib.models.ostrack.ostrack` module looks its backbone constructor
  `vit_base_patch16_224_ce` up at call time; it is swapped for the original's own
  `VisionTransformerCE` factory with TINY_VIT (everything else, CE locations and ratios,
  finetune_track, the head, comes from the config as for ViT-B). The module attribute is restored
  on exit; no file of the original is touched.
  """
  vit_ce = importlib.import_module('lib.models.ostrack.vit_ce')
  saved = orig.ostrack.vit_base_patch16_224_ce

  def tiny_vit(pretrained=False, **kwargs):
    return vit_ce._create_vision_transformer(pretrained=pretrained, **TINY_VIT, **kwargs)

  orig.ostrack.vit_base_patch16_224_ce = tiny_vit
  try:
    yield
  finally:
    orig.ostrack.vit_base_patch16_224_ce = saved


def template_mask(orig, cfg, batch: int, device: str = 'cpu'):
  """The original's CE template mask (CTR_POINT etc.) for `batch` samples on `device`, or None."""
  import torch

  if not cfg.MODEL.BACKBONE.CE_LOC:
    return None
  # CTR_POINT / CTR_REC / ALL do not look at the box; a centred box for GT_BOX.
  box = torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch, 1)
  return orig.ce_utils.generate_mask_cond(cfg, batch, torch.device(device), box)


def build_original(
  ostrack_repo: str | os.PathLike,
  preset_name: str,
  checkpoint: str | os.PathLike | dict[str, Any] | None = None,
  seed: int = 0,
  training: bool = False,
  device: str = 'cpu',
  tiny: bool = False,
) -> tuple[Any, Callable[..., dict[str, Any]]]:
  """Builds the original model for one of our preset names, in eval mode, float32, on `device`.

  Args:
    ostrack_repo: checkout of botaoye/OSTrack.
    preset_name: a key of PRESET_TO_YAML.
    checkpoint: None (the original's own random init, seeded with `seed`), a path of a
      released-layout `.pth.tar` ({'net': state_dict}, read with weights_only=True), or a
      state dict (key -> tensor or numpy array). Loaded with strict=True.
    training: build as for training (drop path 0.1 active in train mode); no pretrained file
      is ever read.
    device: 'cpu' or 'cuda' (the weights are initialised / loaded on the CPU, then moved).
    tiny: build the tiny test model instead of ViT-B (see `tiny_original_width`): the preset's
      geometry, CE and head, a ViT 64 wide with 4 heads, head channels 32.

  Returns:
    (model, forward): `forward(template, search, keep_rate=None, return_last_attn=False)` takes
    NCHW float32 arrays or tensors (ImageNet-normalized), runs under torch.no_grad with the
    original's CE template mask for the preset, and returns the original's output dict with
    tensors converted to numpy (lists kept as lists).
  """
  import torch

  torch_device = _torch_device(device)
  orig = import_original(ostrack_repo)
  cfg = load_original_config(orig, preset_name)
  cfg.MODEL.PRETRAIN_FILE = ''  # never read a pretrained file
  torch.manual_seed(seed)
  if tiny:
    cfg.MODEL.HEAD.NUM_CHANNELS = TINY_HEAD_CHANNELS
  with tiny_original_width(orig) if tiny else contextlib.nullcontext():
    model = orig.ostrack.build_ostrack(cfg, training=training)
  if checkpoint is not None:
    state = checkpoint if isinstance(checkpoint, dict) else _load_state_dict(checkpoint)
    state = {
      k: (torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v)
      for k, v in state.items()
    }
    model.load_state_dict(state, strict=True)
  model.to(torch_device)
  model.eval()
  model.cfg = cfg
  model.orig = orig

  def as_input(x):
    if isinstance(x, torch.Tensor):
      return x.to(device=torch_device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(x, np.float32)).to(torch_device)

  def forward(template, search, keep_rate=None, return_last_attn=False):
    template, search = as_input(template), as_input(search)
    mask = template_mask(orig, cfg, template.shape[0], device)
    with torch.no_grad():
      out = model(
        template=template,
        search=search,
        ce_template_mask=mask,
        ce_keep_rate=keep_rate,
        return_last_attn=return_last_attn,
      )
    return _to_numpy(out)

  return model, forward


def _to_numpy(tree):
  import torch

  if isinstance(tree, torch.Tensor):
    return tree.detach().cpu().numpy()
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_to_numpy(v) for v in tree]
  return tree


# --------------------------------------------------------------------------------------------
# Timing


def _timed(
  fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] | None = None
) -> list[float]:
  """Wall times (ms) of `repeats` calls of fn after `warmup` untimed ones.

  `sync` (torch.cuda.synchronize on CUDA) is called before each timed call starts and before it
  is stopped, so a time covers the GPU work the call queued, not only its launch.
  """
  sync = sync or (lambda: None)
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    sync()
    start = time.perf_counter()
    fn()
    sync()
    times.append((time.perf_counter() - start) * 1e3)
  return times


def _summary(times_ms: list[float], **extra) -> dict[str, Any]:
  return dict(
    extra,
    median_ms=statistics.median(times_ms),
    min_ms=min(times_ms),
    max_ms=max(times_ms),
    repeats=len(times_ms),
    times_ms=times_ms,
  )


def time_original(
  ostrack_repo: str | os.PathLike,
  preset_name: str,
  batch: int = 1,
  repeats: int = 20,
  warmup: int = 3,
  threads: int | None = None,
  keep_rate: float | None = None,
  seed: int = 0,
  device: str = 'cpu',
) -> dict[str, Any]:
  """Median wall time of the original's eval-mode forward (torch.no_grad, float32, `device`).

  Inputs are random normal NCHW batches of the preset's sizes, made on `device` (as is the CE
  template mask) once outside the timed region, as the original tracker does at initialisation.
  `keep_rate`: None = the preset's CE ratios; 1.0 = no elimination. On 'cuda' each timed call
  is bracketed by torch.cuda.synchronize().
  Returns {'median_ms', 'min_ms', 'max_ms', 'repeats', 'times_ms', 'threads', 'batch',
  'device', 'device_name', ...}.
  """
  import torch

  threads = _set_threads(threads)
  model, _ = build_original(ostrack_repo, preset_name, seed=seed, device=device)
  cfg = model.cfg
  rng = np.random.default_rng(seed)
  t_size, s_size = cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE
  template = torch.from_numpy(rng.standard_normal((batch, 3, t_size, t_size), np.float32)).to(
    device
  )
  search = torch.from_numpy(rng.standard_normal((batch, 3, s_size, s_size), np.float32)).to(device)
  mask = template_mask(model.orig, cfg, batch, device)

  def step():
    with torch.no_grad():
      return model(template=template, search=search, ce_template_mask=mask, ce_keep_rate=keep_rate)

  times = _timed(step, repeats, warmup, _sync_fn(device))
  return _summary(
    times,
    what='forward',
    preset=preset_name,
    batch=batch,
    threads=threads,
    keep_rate=keep_rate,
    torch_version=torch.__version__,
    **_device_info(device),
  )


def make_train_step_original(
  ostrack_repo: str | os.PathLike,
  preset_name: str = 'ostrack_256_ce',
  batch: int = 2,
  seed: int = 0,
  epoch: int = 300,
  device: str = 'cpu',
) -> tuple[Callable[[], dict[str, float]], dict[str, Any]]:
  """One training iteration of the original: its actor's forward + losses, AdamW step.

  As the original trainer does it: model in train mode (drop path 0.1, BatchNorm batch
  statistics), `OSTrackActor` (CE template mask, keep rate from `adjust_keep_rate` at `epoch`:
  300 gives the final 0.7; 20 gives 1.0, i.e. no CE), loss = 2 GIoU + 5 L1 + 1 focal, zero_grad,
  backward, clip_grad_norm_(0.1), AdamW (lr 4e-4, backbone 4e-5, weight decay 1e-4).
  Data: random normal template / search images and fixed boxes (xywh normalized), batch `batch`,
  made once on `device` (model and optimizer state live there too).

  Returns:
    (step, info): step() runs one iteration and returns the actor's loss status dict.
  """
  import torch

  orig = import_original(ostrack_repo)
  _install_optional_standins(_OPTIONAL_IMPORTS)
  actors = importlib.import_module('lib.train.actors')
  box_ops = importlib.import_module('lib.utils.box_ops')
  focal = importlib.import_module('lib.utils.focal_loss')
  model, _ = build_original(ostrack_repo, preset_name, seed=seed, training=True, device=device)
  cfg = model.cfg
  model.train()
  objective = {
    'giou': box_ops.giou_loss,
    'l1': torch.nn.functional.l1_loss,
    'focal': focal.FocalLoss(),
  }
  loss_weight = {'giou': cfg.TRAIN.GIOU_WEIGHT, 'l1': cfg.TRAIN.L1_WEIGHT, 'focal': 1.0}
  settings = types.SimpleNamespace(batchsize=batch, num_template=1)
  actor = actors.OSTrackActor(
    net=model, objective=objective, loss_weight=loss_weight, settings=settings, cfg=cfg
  )
  param_groups = [
    {'params': [p for n, p in model.named_parameters() if 'backbone' not in n and p.requires_grad]},
    {
      'params': [p for n, p in model.named_parameters() if 'backbone' in n and p.requires_grad],
      'lr': cfg.TRAIN.LR * cfg.TRAIN.BACKBONE_MULTIPLIER,
    },
  ]
  optimizer = torch.optim.AdamW(param_groups, lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WEIGHT_DECAY)
  rng = np.random.default_rng(seed)
  t_size, s_size = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
  box = np.array([0.3, 0.35, 0.3, 0.25], np.float32)  # xywh normalized to the crop
  data = {
    'template_images': torch.from_numpy(
      rng.standard_normal((1, batch, 3, t_size, t_size), np.float32)
    ).to(device),
    'search_images': torch.from_numpy(
      rng.standard_normal((1, batch, 3, s_size, s_size), np.float32)
    ).to(device),
    'template_anno': torch.from_numpy(np.tile(box, (1, batch, 1))).to(device),
    'search_anno': torch.from_numpy(np.tile(box, (1, batch, 1))).to(device),
    'epoch': epoch,
  }
  clip = cfg.TRAIN.GRAD_CLIP_NORM

  def step():
    loss, status = actor(data)
    optimizer.zero_grad()
    loss.backward()
    if clip > 0:
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return status

  info = dict(
    preset=preset_name,
    batch=batch,
    epoch=epoch,
    device=device,
    keep_rate=orig.ce_utils.adjust_keep_rate(
      epoch,
      warmup_epochs=cfg.TRAIN.CE_START_EPOCH,
      total_epochs=cfg.TRAIN.CE_START_EPOCH + cfg.TRAIN.CE_WARM_EPOCH,
      ITERS_PER_EPOCH=1,
      base_keep_rate=cfg.MODEL.BACKBONE.CE_KEEP_RATIO[0],
    )
    if cfg.MODEL.BACKBONE.CE_LOC
    else None,
  )
  return step, info


def time_train_step_original(
  ostrack_repo: str | os.PathLike,
  preset_name: str = 'ostrack_256_ce',
  batch: int = 2,
  repeats: int = 5,
  warmup: int = 2,
  threads: int | None = None,
  seed: int = 0,
  epoch: int = 300,
  device: str = 'cpu',
) -> dict[str, Any]:
  """Median wall time of `make_train_step_original`'s step (ms); see there for what it does.

  On 'cuda' each timed step is bracketed by torch.cuda.synchronize().
  """
  import torch

  threads = _set_threads(threads)
  step, info = make_train_step_original(ostrack_repo, preset_name, batch, seed, epoch, device)
  last = {}

  def run():
    last.update(step())

  times = _timed(run, repeats, warmup, _sync_fn(device))
  info = dict(info, **_device_info(device))
  return _summary(
    times,
    what='train_step',
    threads=threads,
    last_status=last,
    torch_version=torch.__version__,
    **info,
  )


# --------------------------------------------------------------------------------------------
# The original tracker


@contextlib.contextmanager
def _cuda_calls_stay_on_cpu():
  """The original tracker calls .cuda() on tensors and the network: make those no-ops."""
  import torch

  saved = torch.Tensor.cuda, torch.nn.Module.cuda
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  try:
    yield
  finally:
    torch.Tensor.cuda, torch.nn.Module.cuda = saved


def time_track_original(
  ostrack_repo: str | os.PathLike,
  frames: Sequence[np.ndarray],
  init_box_xywh: Sequence[float],
  preset_name: str = 'ostrack_256_ce',
  checkpoint: str | os.PathLike | None = None,
  threads: int | None = None,
  warmup_frames: int = 2,
  seed: int = 0,
  device: str = 'cpu',
) -> dict[str, Any]:
  """Per-frame wall time of the original tracker's `track()` (RGB uint8 HxWx3 frames).

  The tracker is the unmodified `lib.test.tracker.ostrack.OSTrack`. On 'cpu' its `.cuda()` calls
  are made no-ops for the duration, so it runs on the CPU; on 'cuda' they are left as they are
  (the tracker puts itself on the current GPU) and each timed call (initialize, every track) is
  bracketed by torch.cuda.synchronize(). `checkpoint`: a released-layout file; None writes the
  model's own seeded random init to a temporary file (the tracker insists on one). The first
  `warmup_frames` tracked frames are not counted.
  """
  import tempfile

  import torch

  _torch_device(device)
  sync = _sync_fn(device) or (lambda: None)
  threads = _set_threads(threads)
  orig = import_original(ostrack_repo)
  standins = _install_optional_standins(_OPTIONAL_IMPORTS)
  cfg = load_original_config(orig, preset_name)
  cfg.MODEL.PRETRAIN_FILE = ''
  tracker_mod = importlib.import_module('lib.test.tracker.ostrack')
  with tempfile.TemporaryDirectory() as tmp:
    if checkpoint is None:
      model, _ = build_original(ostrack_repo, preset_name, seed=seed)
      checkpoint = os.path.join(tmp, 'random_init.pth.tar')
      torch.save({'net': model.state_dict()}, checkpoint)
    params = types.SimpleNamespace(
      cfg=cfg,
      template_factor=cfg.TEST.TEMPLATE_FACTOR,
      template_size=cfg.TEST.TEMPLATE_SIZE,
      search_factor=cfg.TEST.SEARCH_FACTOR,
      search_size=cfg.TEST.SEARCH_SIZE,
      checkpoint=str(checkpoint),
      save_all_boxes=False,
      debug=0,
    )
    placement = _cuda_calls_stay_on_cpu() if device == 'cpu' else contextlib.nullcontext()
    with placement:
      tracker = tracker_mod.OSTrack(params, 'got10k')
      sync()
      start = time.perf_counter()
      tracker.initialize(frames[0], {'init_bbox': list(map(float, init_box_xywh))})
      sync()
      init_ms = (time.perf_counter() - start) * 1e3
      times, boxes = [], []
      for frame in frames[1:]:
        sync()
        start = time.perf_counter()
        out = tracker.track(frame)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
        boxes.append(out['target_bbox'])
  counted = times[warmup_frames:]
  return _summary(
    counted,
    what='track',
    preset=preset_name,
    threads=threads,
    init_ms=init_ms,
    frames=len(frames),
    frame_shape=list(frames[0].shape),
    standins=standins,
    fps=1e3 / statistics.median(counted),
    last_box=boxes[-1],
    torch_version=torch.__version__,
    **_device_info(device),
  )


def read_frames(
  frames_dir: str | os.PathLike, limit: int | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
  """RGB frames (sorted *.jpg / *.png) and groundtruth.txt (xywh) of a GOT-10k-style folder."""
  import cv2

  folder = pathlib.Path(frames_dir)
  paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
  if not paths:
    raise FileNotFoundError(f'--frames-dir {str(frames_dir)!r}: no .jpg/.png frames')
  gt_path = folder / 'groundtruth.txt'
  if not gt_path.is_file():
    raise FileNotFoundError(f'--frames-dir {str(frames_dir)!r}: no groundtruth.txt')
  gt = np.loadtxt(gt_path, delimiter=',', ndmin=2)
  paths = paths[:limit] if limit else paths
  frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
  return frames, gt


# --------------------------------------------------------------------------------------------
# Full-size ViT-B reference outputs for tests/fixtures/vitb


def _load_weights_util():
  sys.path.insert(0, str(_REPO_ROOT / 'tests'))
  try:
    return importlib.import_module('weights_util')
  finally:
    sys.path.pop(0)


def _ce_scores(attn, mask, lens_t: int):
  """Search-token scores of a CE block (mean over template rows, then heads) from its attention
  (B,H,L,L) and template mask."""
  a = attn[:, :, :lens_t, lens_t:]
  if mask is not None:
    a = a[:, :, np.asarray(mask[0]).astype(bool), :]
  return a.mean(axis=2).mean(axis=1)


def vitb_reference(
  ostrack_repo: str | os.PathLike,
  preset_name: str,
  seed: int = 0,
  input_seed: int = 100,
  batch: int = 1,
  keep_rate: float | None = None,
  feat_rows: int = 16,
) -> dict[str, np.ndarray]:
  """The original's outputs for seeded ViT-B weights (tests/weights_util.py) on seeded inputs.

  Inputs: `rng = np.random.default_rng(input_seed)`; template then search, standard normal
  float32, NCHW. Per CE block the remaining global search indices and the CE margin (gap
  between the last kept and the first removed score, re-derived in float64 from the block's
  attention by forward hooks; the original is not modified).
  """
  import torch

  weights_util = _load_weights_util()
  search_size = 384 if '384' in preset_name else 256
  weights = weights_util.vitb_weights(search_size, seed=seed)
  model, _ = build_original(ostrack_repo, preset_name, checkpoint=weights)
  expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  ours = {k: tuple(v.shape) for k, v in weights.items()}
  if expected != ours or list(model.state_dict()) != list(weights):
    raise AssertionError('tests/weights_util.py ViT-B layout differs from the original state dict')
  cfg = model.cfg
  rng = np.random.default_rng(input_seed)
  t_size, s_size = cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE
  template = rng.standard_normal((batch, 3, t_size, t_size)).astype(np.float32)
  search = rng.standard_normal((batch, 3, s_size, s_size)).astype(np.float32)
  mask = template_mask(model.orig, cfg, batch)
  lens_t = (t_size // 16) ** 2

  out, captured = _run_with_block_hooks(
    model,
    torch.from_numpy(template),
    torch.from_numpy(search),
    mask,
    keep_rate,
    return_last_attn=False,
  )
  out = _to_numpy(out)
  result = {
    # The inputs are not stored (they regenerate from input_seed); a few values check that.
    'template_first8': template.reshape(-1)[:8],
    'search_first8': search.reshape(-1)[:8],
    'template_shape': np.array(template.shape),
    'search_shape': np.array(search.shape),
    'input_seed': np.int64(input_seed),
    'weights_seed': np.int64(seed),
    'preset': np.str_(preset_name),
    'ce_keep_rate': np.float64(np.nan if keep_rate is None else keep_rate),
    'ce_template_mask': np.zeros((batch, lens_t), bool) if mask is None else mask.numpy(),
    'score_map': out['score_map'],
    'size_map': out['size_map'],
    'offset_map': out['offset_map'],
    'pred_boxes': out['pred_boxes'],
  }
  feat = out['backbone_feat']
  rows = np.unique(np.linspace(0, feat.shape[1] - 1, feat_rows).round().astype(np.int64))
  result['backbone_feat_rows'] = rows
  result['backbone_feat_sampled'] = feat[:, rows]
  result['backbone_feat_abs_sum'] = np.abs(feat.astype(np.float64)).sum(axis=(1, 2))
  result['backbone_feat_zero_rows'] = np.abs(feat).sum(-1) == 0
  removed = out.get('removed_indexes_s') or []
  ce_loc = list(cfg.MODEL.BACKBONE.CE_LOC)
  n_lists = 0
  for j, r in enumerate(removed):
    if r is None:
      continue
    result[f'removed_indexes_s_{j}'] = np.asarray(r)
    n_lists += 1
  result['num_removed_lists'] = np.int64(n_lists)
  for i, (index_in, (_, _, global_index_s, removed_index_s, attn)) in sorted(captured.items()):
    if i not in ce_loc:
      continue
    result[f'block{i:02d}_global_index_s'] = global_index_s.numpy()
    if removed_index_s is None:
      continue
    lens_s = attn.shape[-1] - lens_t
    lens_keep = global_index_s.shape[1]
    scores = _ce_scores(attn.double().numpy(), None if mask is None else mask.numpy(), lens_t)
    ordered = -np.sort(-scores, axis=1)
    result[f'block{i:02d}_ce_margin'] = (ordered[:, lens_keep - 1] - ordered[:, lens_keep]).astype(
      np.float32
    )
    result[f'block{i:02d}_ce_lens'] = np.array([lens_s, lens_keep], np.int64)
    # Consistency of the hook re-derivation: the float64 ranking of the block's attention keeps
    # the same global indices as the original's float32 sort (unless a margin is ~1e-9).
    kept_local = np.argsort(-scores, axis=1, kind='stable')[:, :lens_keep]
    kept_global = np.take_along_axis(index_in.numpy(), kept_local, axis=1)
    result[f'block{i:02d}_rederived_set_matches'] = np.array(
      [
        set(kept_global[b].tolist()) == set(global_index_s.numpy()[b].tolist())
        for b in range(batch)
      ]
    )
  return result


# tests/fixtures/vitb/<name>.npz: (preset, keep-rate override).
VITB_FIXTURES = {
  'vitb256ce_seed0': ('ostrack_256_ce', None),
  'vitb384ce_seed0': ('ostrack_384_ce', None),
  'vitb256ce_keep1.0_seed0': ('ostrack_256_ce', 1.0),
}


def write_vitb_references(
  ostrack_repo: str | os.PathLike, out_dir: str | os.PathLike
) -> dict[str, Any]:
  """Writes tests/fixtures/vitb/{vitb256ce,vitb384ce,vitb256ce_keep1.0}_seed0.npz (compressed)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  written = {}
  for name, (preset, keep_rate) in VITB_FIXTURES.items():
    start = time.perf_counter()
    ref = vitb_reference(ostrack_repo, preset, keep_rate=keep_rate)
    path = out_dir / f'{name}.npz'
    tmp = out_dir / f'.{name}.tmp.npz'
    np.savez_compressed(tmp, **ref)
    os.replace(tmp, path)
    margins = {k: ref[k].tolist() for k in ref if k.endswith('_ce_margin')}
    written[str(path.name)] = dict(
      bytes=path.stat().st_size,
      seconds=time.perf_counter() - start,
      margins=margins,
      pred_boxes=ref['pred_boxes'].reshape(-1).tolist(),
    )
  return written


# --------------------------------------------------------------------------------------------
# The tiny model, MAE resize and loss references for tests/fixtures/{tiny256,mae,losses}

TINY_INPUT_SEED = 100
TINY_BATCH = 2
# tiny256/manifest.json's `fill` note, word for word: the manifest was first written by the
# reference material's make_weights.py, of which tests/weights_util.py is a re-implementation.
TINY_MANIFEST_FILL = 'numpy.random.default_rng(seed); keys in sorted() order; see make_weights.py'
# The losses' ground truth: search_anno (1 search frame, batch 2, xywh normalized to the crop).
LOSS_SEARCH_ANNO = np.array([[[0.4, 0.35, 0.2, 0.25], [0.1, 0.55, 0.33, 0.18]]], np.float32)
# tests/fixtures/tiny256/forward_keep{name}.npz: keep-rate override (None: the preset's 0.7).
TINY_KEEP_RATES = (('0.7', None), ('0.85', 0.85), ('1.0', 1.0))


def tiny256_manifest(ostrack_repo: str | os.PathLike) -> dict[str, Any]:
  """tests/fixtures/tiny256/manifest.json: the tiny original model's state-dict layout + rules.

  The (key, shape, dtype) list is read from the original's tiny model (`build_original(...,
  tiny=True)`) and must equal `weights_util.ostrack_entries(embed_dim=64, mlp_dim=256,
  head_channels=32)`; the fill rules are `weights_util.make_manifest`'s.
  """
  weights_util = _load_weights_util()
  model, _ = build_original(ostrack_repo, 'ostrack_256_ce', tiny=True)
  entries = [
    {'key': k, 'shape': list(v.shape), 'dtype': str(v.numpy().dtype)}
    for k, v in model.state_dict().items()
  ]
  ours = weights_util.ostrack_entries(embed_dim=64, depth=12, mlp_dim=256, head_channels=32)
  if entries != ours:
    raise AssertionError("tests/weights_util.py's tiny layout differs from the original's")
  manifest = weights_util.make_manifest(entries, 'tiny256', container='net')
  manifest['fill'] = TINY_MANIFEST_FILL
  return manifest


def _ce_scores_float32(attn, mask, lens_t: int):
  """A CE block's search-token scores in float32, reduced in the original's order (template
  rows, then heads)."""
  bs, hn = attn.shape[:2]
  a = attn[:, :, :lens_t, lens_t:]
  if mask is not None:
    a = a[mask.unsqueeze(1).unsqueeze(-1).expand(-1, hn, -1, a.shape[-1])].view(
      bs, hn, -1, a.shape[-1]
    )
  return a.mean(dim=2).mean(dim=1)


def _run_with_block_hooks(model, template, search, mask, keep_rate, return_last_attn=True):
  """The original's forward (no_grad) with every block's input indices and outputs captured."""
  import torch

  captured = {}

  def hook(index):
    def fn(_, inputs, output):
      captured[index] = (
        inputs[2].clone(),
        [o.clone() if isinstance(o, torch.Tensor) else o for o in output],
      )

    return fn

  handles = [blk.register_forward_hook(hook(i)) for i, blk in enumerate(model.backbone.blocks)]
  try:
    with torch.no_grad():
      out = model(
        template=template,
        search=search,
        ce_template_mask=mask,
        ce_keep_rate=keep_rate,
        return_last_attn=return_last_attn,
      )
  finally:
    for h in handles:
      h.remove()
  return out, captured


def _ce_margins_float32(captured, mask, lens_t: int):
  """{block: (B,) float32 gap between the last kept and the first removed CE score}."""
  import torch

  margins = {}
  for i, (_, (_, _, global_index_s, removed_index_s, attn)) in sorted(captured.items()):
    if removed_index_s is None:
      continue
    lens_keep = global_index_s.shape[1]
    ordered, _ = torch.sort(_ce_scores_float32(attn, mask, lens_t), dim=1, descending=True)
    margins[i] = (ordered[:, lens_keep - 1] - ordered[:, lens_keep]).numpy()
  return margins


def tiny256_forward_reference(
  ostrack_repo: str | os.PathLike,
  weights: dict[str, np.ndarray],
  keep_rate: float | None = None,
  input_seed: int = TINY_INPUT_SEED,
  batch: int = TINY_BATCH,
) -> dict[str, np.ndarray]:
  """tests/fixtures/tiny256/forward_keep*.npz: the original tiny model on seeded inputs.

  Inputs: `rng = np.random.default_rng(input_seed)`; template (B,3,128,128) then search
  (B,3,256,256), standard normal, cast to float32, NCHW (stored). Eval mode, `torch.no_grad`,
  the CTR_POINT template mask, `ce_keep_rate=keep_rate`, `return_last_attn=True`. Forward hooks
  (the original is not modified) capture every block's output and remaining search indices;
  the CE margins are re-derived in float32 from each CE block's attention, reduced in the
  original's order.
  """
  import torch

  model, _ = build_original(ostrack_repo, 'ostrack_256_ce', checkpoint=weights, tiny=True)
  cfg = model.cfg
  rng = np.random.default_rng(input_seed)
  t_size, s_size = cfg.TEST.TEMPLATE_SIZE, cfg.TEST.SEARCH_SIZE
  template = rng.standard_normal((batch, 3, t_size, t_size)).astype(np.float32)
  search = rng.standard_normal((batch, 3, s_size, s_size)).astype(np.float32)
  mask = template_mask(model.orig, cfg, batch)
  lens_t = (t_size // cfg.MODEL.BACKBONE.STRIDE) ** 2
  out, captured = _run_with_block_hooks(
    model, torch.from_numpy(template), torch.from_numpy(search), mask, keep_rate
  )
  margins = _ce_margins_float32(captured, mask, lens_t)
  result = {k: out[k].numpy() for k in ('score_map', 'size_map', 'offset_map', 'pred_boxes')}
  result['backbone_feat'] = out['backbone_feat'].numpy()
  result['has_last_attn'] = np.bool_(out.get('attn') is not None)
  result['last_attn'] = out['attn'].numpy()
  removed = out['removed_indexes_s']
  if all(r is None for r in removed):
    result['removed_indexes_s_kind'] = np.str_('list of None (no elimination)')
    result['removed_indexes_s_len'] = np.int64(len(removed))
  else:
    result['removed_indexes_s_kind'] = np.str_('list of float tensors (B, n_removed)')
    for j, r in enumerate(removed):
      result[f'removed_indexes_s_{j}'] = r.numpy()
  for i, (_, (x, _, global_index_s, _, _)) in sorted(captured.items()):
    result[f'block{i:02d}_global_index_s'] = global_index_s.numpy()
    if i in margins:
      result[f'block{i:02d}_ce_margin'] = margins[i]
    result[f'block{i:02d}_out'] = x.numpy()
  result['template'] = template
  result['search'] = search
  result['input_seed'] = np.int64(input_seed)
  result['ce_keep_rate'] = np.float64(np.nan if keep_rate is None else keep_rate)
  result['config'] = np.str_('tiny256')
  result['ce_template_mask'] = mask.numpy()
  return result


def _savez(path: pathlib.Path, arrays: dict[str, Any], compressed: bool = True) -> None:
  """np.savez(_compressed) through a temporary name, then an atomic rename."""
  tmp = path.with_name(f'.{path.stem}.tmp.npz')
  (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
  os.replace(tmp, path)


def write_tiny256_references(
  ostrack_repo: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0
) -> dict[str, Any]:
  """Writes tests/fixtures/tiny256/: manifest.json, tiny256_seed0.pth.tar, forward_keep*.npz."""
  weights_util = _load_weights_util()
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  manifest = tiny256_manifest(ostrack_repo)
  with open(out_dir / 'manifest.json', 'w', encoding='utf-8') as f:
    json.dump(manifest, f, indent=1)
  weights = weights_util.fill(manifest, seed)
  weights_util.write_pth(weights, str(out_dir / f'tiny256_seed{seed}.pth.tar'), container='net')
  written = {'manifest.json': len(manifest['entries']), f'tiny256_seed{seed}.pth.tar': len(weights)}
  for name, keep_rate in TINY_KEEP_RATES:
    ref = tiny256_forward_reference(ostrack_repo, weights, keep_rate)
    _savez(out_dir / f'forward_keep{name}.npz', ref)
    written[f'forward_keep{name}.npz'] = dict(
      pred_boxes=ref['pred_boxes'].reshape(-1).tolist(),
      margins={k: ref[k].tolist() for k in ref if k.endswith('_ce_margin')},
    )
  return written


def mae_weights(seed: int = 0) -> 'collections.OrderedDict[str, np.ndarray]':
  """A seeded ViT-B/16 encoder in the MAE pretrain checkpoint layout (container 'model').

  The keys are those of tests/weights_util.py's ViT-B OSTrack layout under `backbone.` without
  the prefix and without pos_embed_z / pos_embed_x (cls_token, pos_embed (1,197,768),
  patch_embed, 12 blocks, norm), filled with the same rules; every key sorts as it does under
  `backbone.`, so `pos_embed` equals `vitb_weights(256, seed)['backbone.pos_embed']`.
  """
  weights_util = _load_weights_util()
  entries = [
    dict(e, key=e['key'][len('backbone.') :])
    for e in weights_util.ostrack_entries()
    if e['key'].startswith('backbone.')
    and e['key'] not in ('backbone.pos_embed_z', 'backbone.pos_embed_x')
  ]
  return weights_util.fill(weights_util.make_manifest(entries, 'mae_vitb', 'model'), seed)


def mae_reference(
  ostrack_repo: str | os.PathLike, preset_name: str, seed: int = 0
) -> dict[str, np.ndarray]:
  """tests/fixtures/mae/*_pos_embed_resize.npz: the original's resize of an MAE pos_embed.

  `mae_weights(seed)` is written as an MAE pretrain checkpoint (`{'model': state_dict}`) to a
  temporary file and given to the original as `MODEL.PRETRAIN_FILE`; its `build_ostrack(cfg,
  training=True)` loads it (strict=False, as for the released MAE file) and `finetune_track`
  resizes the 14x14 grid of `pos_embed` to the template and search grids (bicubic,
  align_corners=False).
  """
  import tempfile

  import torch

  weights_util = _load_weights_util()
  mae = mae_weights(seed)
  orig = import_original(ostrack_repo)
  cfg = load_original_config(orig, preset_name)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, f'mae_vitb_seed{seed}.pth')
    if 'OSTrack' in path:  # the original would read such a file as an OSTrack checkpoint
      raise RuntimeError(f'temporary path {path!r} contains "OSTrack"; set TMPDIR elsewhere')
    weights_util.write_pth(mae, path, container='model')
    cfg.MODEL.PRETRAIN_FILE = path
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(sys.stderr):  # its 'Load pretrained model from: ...'
      model = orig.ostrack.build_ostrack(cfg, training=True)
  state = model.state_dict()
  return {
    'backbone.pos_embed_z': state['backbone.pos_embed_z'].numpy(),
    'backbone.pos_embed_x': state['backbone.pos_embed_x'].numpy(),
    'backbone.pos_embed': state['backbone.pos_embed'].numpy(),
    'mae_pos_embed': mae['pos_embed'],
  }


# tests/fixtures/mae/<name>_pos_embed_resize.npz: the preset whose grids it resizes to.
MAE_FIXTURES = (('base256ce', 'ostrack_256_ce'), ('base384ce', 'ostrack_384_ce'))


def write_mae_references(
  ostrack_repo: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0
) -> dict[str, Any]:
  """Writes tests/fixtures/mae/base{256,384}ce_pos_embed_resize.npz (compressed)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  written = {}
  for name, preset in MAE_FIXTURES:
    ref = mae_reference(ostrack_repo, preset, seed)
    path = out_dir / f'{name}_pos_embed_resize.npz'
    _savez(path, ref)
    written[path.name] = {k: list(v.shape) for k, v in ref.items()}
  return written


def loss_reference(
  ostrack_repo: str | os.PathLike,
  forward: dict[str, np.ndarray],
  search_anno: np.ndarray = LOSS_SEARCH_ANNO,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """tests/fixtures/losses: the original actor's losses on the tiny model's keep-0.7 outputs.

  `forward`: tiny256_forward_reference(...) at keep rate None (its pred_boxes, score_map).
  The original `OSTrackActor.compute_losses` with the trainer's objectives (GIoU, L1, focal) and
  the preset's weights (GIoU 2, L1 5, focal 1); the Gaussian target is its
  `generate_heatmap(search_anno, 256, 16)[-1]`.

  Returns:
    (arrays for tiny256_loss.npz, the actor's status dict for loss_summary.json).
  """
  import torch

  orig = import_original(ostrack_repo)
  _install_optional_standins(_OPTIONAL_IMPORTS)
  actors = importlib.import_module('lib.train.actors')
  box_ops = importlib.import_module('lib.utils.box_ops')
  focal = importlib.import_module('lib.utils.focal_loss')
  heatmaps = importlib.import_module('lib.utils.heapmap_utils')
  cfg = load_original_config(orig, 'ostrack_256_ce')
  objective = {
    'giou': box_ops.giou_loss,
    'l1': torch.nn.functional.l1_loss,
    'focal': focal.FocalLoss(),
  }
  loss_weight = {'giou': cfg.TRAIN.GIOU_WEIGHT, 'l1': cfg.TRAIN.L1_WEIGHT, 'focal': 1.0}
  settings = types.SimpleNamespace(batchsize=search_anno.shape[1], num_template=1)
  actor = actors.OSTrackActor(
    net=None, objective=objective, loss_weight=loss_weight, settings=settings, cfg=cfg
  )
  anno = torch.from_numpy(np.asarray(search_anno, np.float32))
  pred = {
    'pred_boxes': torch.from_numpy(forward['pred_boxes']),
    'score_map': torch.from_numpy(forward['score_map']),
  }
  with torch.no_grad():
    loss, status = actor.compute_losses(pred, {'search_anno': anno})
    heatmap = heatmaps.generate_heatmap(anno, cfg.DATA.SEARCH.SIZE, cfg.MODEL.BACKBONE.STRIDE)[-1]
  arrays = {
    'search_anno': anno.numpy(),
    'gt_heatmap': heatmap.numpy(),
    'loss_total': loss.numpy(),
  }
  for name, value in status.items():
    arrays[name.replace('/', '_')] = np.float32(value)
  arrays['giou_weight'] = np.float32(loss_weight['giou'])
  arrays['l1_weight'] = np.float32(loss_weight['l1'])
  # The name the reference material gave the keep-0.7 forward (tiny256/forward_keep0.7.npz).
  arrays['forward_file'] = np.str_('tiny256_forward.npz')
  return arrays, status


def write_loss_references(
  ostrack_repo: str | os.PathLike,
  out_dir: str | os.PathLike,
  forward_file: str | os.PathLike | None = None,
  seed: int = 0,
) -> dict[str, Any]:
  """Writes tests/fixtures/losses/tiny256_loss.npz (compressed) and loss_summary.json.

  `forward_file`: the tiny model's keep-0.7 outputs to compute the losses on (a
  forward_keep0.7.npz; its `pred_boxes` and `score_map`), so that the stored losses belong to the
  stored forward; None re-runs the original tiny forward (`seed`) instead.
  """
  weights_util = _load_weights_util()
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  if forward_file is None:
    weights = weights_util.fill(tiny256_manifest(ostrack_repo), seed)
    forward = tiny256_forward_reference(ostrack_repo, weights, keep_rate=None)
  else:
    with np.load(forward_file) as data:
      forward = {k: data[k] for k in ('pred_boxes', 'score_map')}
  arrays, status = loss_reference(ostrack_repo, forward)
  _savez(out_dir / 'tiny256_loss.npz', arrays)
  with open(out_dir / 'loss_summary.json', 'w', encoding='utf-8') as f:
    json.dump({'tiny256': status}, f, indent=1)
  return {'loss_summary.json': status, 'forward': str(forward_file or 're-run')}


# --------------------------------------------------------------------------------------------
# The original tracker on the tiny model for tests/fixtures/tracker

TRACKER_CROP_FRAMES = (1, 2, 3)  # tracked frames whose search crops are stored


def read_tracker_frames(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """(frames (N,H,W,3) uint8 RGB, gt (N,4) xywh float64) of a sequence.

  `path`: an .npz with `frames` and `gt` (the layout of the reference material's
  frames_<seq>.npz), or a GOT-10k-style folder (sorted .jpg / .png frames and groundtruth.txt;
  decoded with OpenCV, as the original's loaders do).
  """
  path = pathlib.Path(path)
  if path.is_dir():
    frames, gt = read_frames(path)
    return np.stack(frames), np.asarray(gt, np.float64)[: len(frames)]
  data = np.load(path)
  if 'frames' not in data.files or 'gt' not in data.files:
    raise ValueError(f'--frames {str(path)!r}: expected an .npz with `frames` and `gt`')
  return data['frames'], data['gt'].astype(np.float64)


def tracker_reference_run(
  ostrack_repo: str | os.PathLike,
  frames: np.ndarray,
  gt: np.ndarray,
  checkpoint: str | os.PathLike,
  teacher_forced: bool,
) -> dict[str, np.ndarray]:
  """One run of the unmodified original tracker (`lib.test.tracker.ostrack.OSTrack`), tiny model.

  The tracker is built with the OSTrack-256 CE config, head channels 32, and the original's
  `build_ostrack` at tiny width (`tiny_original_width`), loading `checkpoint`; its `.cuda()`
  calls are no-ops (CPU). `initialize(frames[0], gt[0])`, then `track(frames[i])` for every
  later frame; teacher-forced: `tracker.state = gt[i - 1]` before each. Observed without
  modifying the original: its `sample_target` (module attribute, wrapped while running) for the
  crops, the network's `forward` (instance attribute) for the raw outputs, forward hooks on the
  blocks for the CE margins (float32 scores reduced in the original's order; per frame the
  smallest gap over the CE blocks, as float64).

  Returns the keys of the reference material's tiny256_<seq>_results.npz for one run, without
  the run prefix: boxes (N,4) xywh (row 0 = gt[0]), box_mask_z, output_window, template_crop /
  _amask / _resize_factor / _tensor, search_crop / _amask / _resize_factor / _crop_box_f{1,2,3},
  net_score_map / _size_map / _offset_map / _pred_boxes (N-1, ...), net_response_top2_gap and
  net_response_argmax of the Hann-windowed score map, ce_min_margin_per_frame (N-1,),
  net_removed_indexes_s_{0,1,2} (N-1, 1, n).
  """
  orig = import_original(ostrack_repo)
  _install_optional_standins(_OPTIONAL_IMPORTS)
  cfg = load_original_config(orig, 'ostrack_256_ce')
  cfg.MODEL.PRETRAIN_FILE = ''
  cfg.MODEL.HEAD.NUM_CHANNELS = TINY_HEAD_CHANNELS
  tracker_mod = importlib.import_module('lib.test.tracker.ostrack')
  params = types.SimpleNamespace(
    cfg=cfg,
    template_factor=cfg.TEST.TEMPLATE_FACTOR,
    template_size=cfg.TEST.TEMPLATE_SIZE,
    search_factor=cfg.TEST.SEARCH_FACTOR,
    search_size=cfg.TEST.SEARCH_SIZE,
    checkpoint=str(checkpoint),
    save_all_boxes=False,
    debug=0,
  )
  lens_t = (cfg.TEST.TEMPLATE_SIZE // cfg.MODEL.BACKBONE.STRIDE) ** 2
  crops, outputs, margins = [], [], []
  real_sample_target = tracker_mod.sample_target

  def sample_target_spy(im, target_bb, *args, **kwargs):
    result = real_sample_target(im, target_bb, *args, **kwargs)
    crops.append((np.array(target_bb, np.float64), result))
    return result

  with _cuda_calls_stay_on_cpu():
    with tiny_original_width(orig):
      tracker = tracker_mod.OSTrack(params, 'got10k')
    network_forward = tracker.network.forward
    captured = {}

    def forward_spy(*args, **kwargs):
      captured.clear()
      out = network_forward(*args, **kwargs)
      outputs.append(_to_numpy(out))
      gaps = _ce_margins_float32(captured, tracker.box_mask_z, lens_t)
      margins.append(min(float(g.min()) for g in gaps.values()) if gaps else np.nan)
      return out

    def hook(index):
      def fn(_, inputs, output):
        captured[index] = (inputs[2], list(output))

      return fn

    tracker.network.forward = forward_spy
    handles = [
      blk.register_forward_hook(hook(i)) for i, blk in enumerate(tracker.network.backbone.blocks)
    ]
    tracker_mod.sample_target = sample_target_spy
    try:
      tracker.initialize(frames[0], {'init_bbox': gt[0].tolist()})
      boxes = [gt[0].tolist()]
      for i in range(1, len(frames)):
        if teacher_forced:
          tracker.state = gt[i - 1].tolist()
        boxes.append(tracker.track(frames[i])['target_bbox'])
    finally:
      tracker_mod.sample_target = real_sample_target
      for h in handles:
        h.remove()
  window = tracker.output_window.numpy()
  _, (z_crop, z_factor, z_amask) = crops[0]
  result = {
    'boxes': np.array(boxes, np.float64),
    'box_mask_z': tracker.box_mask_z.numpy(),
    'output_window': window,
    'template_crop': z_crop,
    'template_amask': z_amask,
    'template_resize_factor': np.float64(z_factor),
    'template_tensor': tracker.z_dict1.tensors.numpy(),
  }
  for k in TRACKER_CROP_FRAMES:
    box, (x_crop, x_factor, x_amask) = crops[k]
    result[f'search_crop_f{k}'] = x_crop
    result[f'search_amask_f{k}'] = x_amask
    result[f'search_resize_factor_f{k}'] = np.float64(x_factor)
    result[f'search_crop_box_f{k}'] = box
  for key in ('score_map', 'size_map', 'offset_map', 'pred_boxes'):
    result[f'net_{key}'] = np.stack([o[key] for o in outputs])
  response = np.stack([(window * o['score_map']).reshape(-1) for o in outputs])
  ordered = -np.sort(-response, axis=1)
  result['net_response_top2_gap'] = ordered[:, 0] - ordered[:, 1]
  result['net_response_argmax'] = response.argmax(axis=1).astype(np.int64)
  result['ce_min_margin_per_frame'] = np.array(margins, np.float64)
  for j in range(len(outputs[0]['removed_indexes_s'])):
    result[f'net_removed_indexes_s_{j}'] = np.stack([o['removed_indexes_s'][j] for o in outputs])
  return result


def _load_tracker_fixture_maker():
  sys.path.insert(0, str(_REPO_ROOT / 'tests' / 'fixtures' / 'tracker'))
  if str(_REPO_ROOT) not in sys.path:
    sys.path.append(
      str(_REPO_ROOT)
    )  # make_tracker_fixture imports ostrack_jax.geometry.crop (no JAX)
  try:
    return importlib.import_module('make_tracker_fixture')
  finally:
    sys.path.pop(0)


def write_tracker_references(
  ostrack_repo: str | os.PathLike,
  frames_path: str | os.PathLike,
  sequence: str,
  out_dir: str | os.PathLike,
  checkpoint: str | os.PathLike | None = None,
  raw_out: str | os.PathLike | None = None,
) -> dict[str, Any]:
  """Writes tests/fixtures/tracker/<sequence>.npz from the original tracker's two runs.

  Runs `tracker_reference_run` free-running and teacher-forced on the frames of `frames_path`
  (`read_tracker_frames`), then compacts both with tests/fixtures/tracker/make_tracker_fixture.py.
  `raw_out`: also write the uncompacted tiny256_<sequence>_results.npz and _boxes.json there
  (the reference material's layout; keys prefixed `free_` / `tf_`, plus `gt`, `frames_file`).
  """
  checkpoint = checkpoint or _REPO_ROOT / 'tests' / 'fixtures' / 'tiny256' / 'tiny256_seed0.pth.tar'
  maker = _load_tracker_fixture_maker()
  if sequence not in maker.RUNS:
    raise ValueError(
      f'sequence {sequence!r}: make_tracker_fixture.RUNS says how many frames to keep for '
      f'{sorted(maker.RUNS)} only (name it with --sequence, or add it there)'
    )
  frames, gt = read_tracker_frames(frames_path)
  results = {}
  for prefix, teacher_forced in (('free', False), ('tf', True)):
    run = tracker_reference_run(ostrack_repo, frames, gt, checkpoint, teacher_forced)
    results.update({f'{prefix}_{k}': v for k, v in run.items()})
  results['gt'] = gt
  results['frames_file'] = np.str_(f'track_frames/{sequence}.npz')
  written = {}
  if raw_out is not None:
    raw_out = pathlib.Path(raw_out)
    raw_out.mkdir(parents=True, exist_ok=True)
    _savez(raw_out / f'tiny256_{sequence}_results.npz', results)
    boxes = {
      'gt': gt.tolist(),
      'free': results['free_boxes'].tolist(),
      'teacher_forced': results['tf_boxes'].tolist(),
      'note': 'boxes [x,y,w,h]; row 0 = init box; teacher_forced row t = track(frame t) after '
      'tracker.state = gt[t-1]',
    }
    with open(raw_out / f'tiny256_{sequence}_boxes.json', 'w', encoding='utf-8') as f:
      json.dump(boxes, f, indent=1)
    written['raw'] = str(raw_out)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f'{sequence}.npz'
  tmp = out_dir / f'.{sequence}.tmp.npz'
  np.savez(tmp, **maker.compact(sequence, frames, gt, results))
  os.replace(tmp, path)
  written[path.name] = dict(
    bytes=path.stat().st_size,
    tf_boxes_1_4=results['tf_boxes'][1:5].tolist(),
    tf_ce_min_margin=float(np.nanmin(results['tf_ce_min_margin_per_frame'])),
  )
  return written


# --------------------------------------------------------------------------------------------
# Comparing a regenerated fixture folder with the stored one


def _array_difference(new: np.ndarray, old: np.ndarray, key: str) -> Any:
  """None if equal; else the max abs difference (floats) or a short description."""
  if key.startswith('png_') or (
    new.dtype == np.uint8
    and new.ndim == 1
    and key.endswith(('_crop', '_crop_f1', '_crop_f2', '_crop_f3'))
  ):
    import cv2

    if new.tobytes() == old.tobytes():
      return None
    a, b = cv2.imdecode(new, cv2.IMREAD_UNCHANGED), cv2.imdecode(old, cv2.IMREAD_UNCHANGED)
    if a is None or b is None or a.shape != b.shape:
      return 'PNG images differ in shape (or do not decode)'
    return None if np.array_equal(a, b) else f'decoded pixels differ: {int((a != b).sum())}'
  if new.dtype != old.dtype or new.shape != old.shape:
    return f'dtype/shape {new.dtype}{list(new.shape)} vs {old.dtype}{list(old.shape)}'
  if np.array_equal(new, old, equal_nan=new.dtype.kind in 'fc'):
    return None
  if new.dtype.kind in 'fc':
    return float(np.nanmax(np.abs(new.astype(np.float64) - old.astype(np.float64))))
  return f'{int((new != old).sum())} of {new.size} entries differ'


def compare_fixture_files(new: str | os.PathLike, old: str | os.PathLike) -> dict[str, Any]:
  """How a regenerated fixture file differs from the stored one.

  Returns {'bytes_identical': bool, 'identical': bool, 'differences': {key: value}} where a value
  is the max abs difference of a float array, or a description (PNG bytes are compared as
  decoded pixels, .pth.tar files tensor by tensor, .json files by value).
  """
  new, old = pathlib.Path(new), pathlib.Path(old)
  if new.read_bytes() == old.read_bytes():
    return {'bytes_identical': True, 'identical': True, 'differences': {}}
  diffs = {}
  if new.suffix == '.npz':
    a, b = np.load(new), np.load(old)
    if a.files != b.files:
      diffs['(keys)'] = f'{a.files} vs {b.files}'
    for key in b.files:
      if key in a.files:
        d = _array_difference(a[key], b[key], key)
        if d is not None:
          diffs[key] = d
  elif new.suffix == '.json':
    a, b = json.loads(new.read_text()), json.loads(old.read_text())

    def walk(x, y, path):
      if isinstance(x, dict) and isinstance(y, dict) and list(x) == list(y):
        for k in x:
          walk(x[k], y[k], f'{path}/{k}')
      elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        d = _array_difference(np.asarray(x), np.asarray(y), path)
        if d is not None:
          diffs[path or '/'] = d
      elif x != y:
        diffs[path or '/'] = (
          abs(x - y) if isinstance(x, float) and isinstance(y, float) else f'{x!r} vs {y!r}'
        )

    walk(a, b, '')
  elif new.name.endswith(('.pth', '.pth.tar')):
    import torch

    a = torch.load(str(new), map_location='cpu', weights_only=True)
    b = torch.load(str(old), map_location='cpu', weights_only=True)
    for container in b:
      for key, value in b[container].items():
        d = _array_difference(a[container][key].numpy(), value.numpy(), key)
        if d is not None:
          diffs[f'{container}/{key}'] = d
  else:
    diffs['(bytes)'] = 'differ'
  return {'bytes_identical': False, 'identical': not diffs, 'differences': diffs}


def compare_fixture_dirs(
  new_dir: str | os.PathLike, old_dir: str | os.PathLike, names: Sequence[str]
) -> dict[str, Any]:
  """compare_fixture_files for each of `names` in two folders; {'all_identical': bool, name: ...}."""
  result = {
    name: compare_fixture_files(pathlib.Path(new_dir) / name, pathlib.Path(old_dir) / name)
    for name in names
  }
  return {'all_identical': all(r['identical'] for r in result.values()), **result}


# --------------------------------------------------------------------------------------------
# Running from another interpreter


def run_cli(
  python: str,
  ostrack_repo: str | os.PathLike,
  args: Sequence[str],
  timeout: float | None = None,
  device: str | None = None,
) -> dict[str, Any]:
  """Runs this file's CLI with another Python (e.g. the reference venv); returns its JSON.

  `device`: 'cpu' / 'cuda' passes --device; None leaves it to `args` (default cpu).

  Raises:
    RuntimeError: with the subprocess's stderr tail if it fails.
  """
  cmd = [
    python,
    str(pathlib.Path(__file__).resolve()),
    '--ostrack-repo',
    str(ostrack_repo),
    *(['--device', device] if device else []),
    *args,
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(result: dict[str, Any]) -> str:
  """A few-line text table of a timing result: what, sizes, device and the median/min/max."""
  cols = [
    ('what', result.get('what')),
    ('preset', result.get('preset')),
    ('batch', result.get('batch')),
    ('keep_rate', result.get('keep_rate')),
    ('device', result.get('device')),
    ('device_name', result.get('device_name')),
    ('threads', result.get('threads')),
    ('repeats', result.get('repeats')),
    ('median_ms', result['median_ms']),
    ('min_ms', result['min_ms']),
    ('max_ms', result['max_ms']),
  ]
  if result.get('what') == 'track':
    cols += [('fps', result.get('fps')), ('init_ms', result.get('init_ms'))]
  cells = [(k, f'{v:.2f}' if isinstance(v, float) else str(v)) for k, v in cols if v is not None]
  widths = [max(len(k), len(v)) for k, v in cells]
  head = ' | '.join(k.ljust(w) for (k, _), w in zip(cells, widths, strict=True))
  rule = '-|-'.join('-' * w for w in widths)
  row = ' | '.join(v.ljust(w) for (_, v), w in zip(cells, widths, strict=True))
  return '\n'.join((f'torch {result.get("torch_version")}, original OSTrack', head, rule, row))


def main(argv: Sequence[str] | None = None) -> int:
  ap = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument('--ostrack-repo', required=True, help='checkout of botaoye/OSTrack')
  ap.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
  ap.add_argument(
    '--device',
    choices=DEVICES,
    default='cpu',
    help='where forward / train-step / track run (default: cpu); may also follow the command name',
  )
  sub = ap.add_subparsers(dest='cmd', required=True)
  # --device after the command name too; SUPPRESS keeps the subparser from resetting the value
  # given before it.
  on_device = argparse.ArgumentParser(add_help=False)
  on_device.add_argument(
    '--device', choices=DEVICES, default=argparse.SUPPRESS, help='cpu or cuda (default: cpu)'
  )
  f = sub.add_parser('forward', help='time the eval forward', parents=[on_device])
  f.add_argument('--preset', default='ostrack_256_ce', choices=sorted(PRESET_TO_YAML))
  f.add_argument('--batch', type=int, default=1)
  f.add_argument('--repeats', type=int, default=20)
  f.add_argument('--warmup', type=int, default=3)
  f.add_argument('--keep-rate', type=float, default=None)
  t = sub.add_parser('train-step', help='time one training iteration', parents=[on_device])
  t.add_argument('--preset', default='ostrack_256_ce', choices=sorted(PRESET_TO_YAML))
  t.add_argument('--batch', type=int, default=2)
  t.add_argument('--repeats', type=int, default=5)
  t.add_argument('--warmup', type=int, default=2)
  t.add_argument('--epoch', type=int, default=300, help='sets the CE keep rate (300: 0.7)')
  k = sub.add_parser(
    'track', help="time the original tracker's track() per frame", parents=[on_device]
  )
  k.add_argument('--frames-dir', required=True, help='folder of frames + groundtruth.txt')
  k.add_argument('--preset', default='ostrack_256_ce', choices=sorted(PRESET_TO_YAML))
  k.add_argument('--num-frames', type=int, default=30)
  k.add_argument('--checkpoint', default=None)
  fixtures = _REPO_ROOT / 'tests' / 'fixtures'
  refs = {}
  for cmd, folder, what in (
    ('vitb-reference', 'vitb', 'the ViT-B reference outputs'),
    ('tiny256-reference', 'tiny256', 'the tiny model: manifest, weights, forward outputs'),
    ('mae-reference', 'mae', "the original's resize of an MAE pos_embed"),
    ('losses-reference', 'losses', "the original's training losses on the tiny outputs"),
    ('tracker-reference', 'tracker', "the original tracker's runs on one sequence"),
  ):
    refs[cmd] = sub.add_parser(cmd, help=f'write tests/fixtures/{folder}/ ({what}); CPU only')
    refs[cmd].add_argument('--out', default=str(fixtures / folder), help='output folder')
    refs[cmd].add_argument(
      '--compare-to',
      default=None,
      metavar='DIR',
      help=f'compare what was written with the files of DIR (e.g. tests/fixtures/{folder})',
    )
  refs['losses-reference'].add_argument(
    '--forward',
    default=str(fixtures / 'tiny256' / 'forward_keep0.7.npz'),
    help="the tiny model's keep-0.7 outputs to take the losses of; 'rerun': run the original",
  )
  tr = refs['tracker-reference']
  tr.add_argument(
    '--frames', required=True, help='frames_<seq>.npz (frames, gt) or a GOT-10k-style folder'
  )
  tr.add_argument('--sequence', default=None, help='fixture name (default: from --frames)')
  tr.add_argument(
    '--checkpoint', default=str(fixtures / 'tiny256' / 'tiny256_seed0.pth.tar'), help='tiny model'
  )
  tr.add_argument('--raw-out', default=None, help='also write the uncompacted run outputs here')
  a = ap.parse_args(argv)
  if a.cmd == 'forward':
    result = time_original(
      a.ostrack_repo,
      a.preset,
      a.batch,
      a.repeats,
      a.warmup,
      a.threads,
      a.keep_rate,
      device=a.device,
    )
  elif a.cmd == 'train-step':
    result = time_train_step_original(
      a.ostrack_repo,
      a.preset,
      a.batch,
      a.repeats,
      a.warmup,
      a.threads,
      epoch=a.epoch,
      device=a.device,
    )
  elif a.cmd == 'track':
    frames, gt = read_frames(a.frames_dir, a.num_frames)
    result = time_track_original(
      a.ostrack_repo, frames, gt[0], a.preset, a.checkpoint, a.threads, device=a.device
    )
  else:
    if a.device != 'cpu':
      ap.error(f'{a.cmd} runs on the CPU only (the fixtures are CPU float32)')
    _set_threads(a.threads)
    if a.cmd == 'vitb-reference':
      result = write_vitb_references(a.ostrack_repo, a.out)
      names = [f'{n}.npz' for n in VITB_FIXTURES]
    elif a.cmd == 'tiny256-reference':
      result = write_tiny256_references(a.ostrack_repo, a.out)
      names = ['manifest.json', 'tiny256_seed0.pth.tar']
      names += [f'forward_keep{n}.npz' for n, _ in TINY_KEEP_RATES]
    elif a.cmd == 'mae-reference':
      result = write_mae_references(a.ostrack_repo, a.out)
      names = [f'{n}_pos_embed_resize.npz' for n, _ in MAE_FIXTURES]
    elif a.cmd == 'losses-reference':
      forward = None if a.forward == 'rerun' else a.forward
      result = write_loss_references(a.ostrack_repo, a.out, forward)
      names = ['tiny256_loss.npz', 'loss_summary.json']
    else:
      sequence = a.sequence or pathlib.Path(a.frames).stem.removeprefix('frames_')
      result = write_tracker_references(
        a.ostrack_repo, a.frames, sequence, a.out, a.checkpoint, a.raw_out
      )
      names = [f'{sequence}.npz']
    if a.compare_to:
      result = {'written': result, 'compare': compare_fixture_dirs(a.out, a.compare_to, names)}
  if 'median_ms' in result:
    print(format_table(result))
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
