#!/usr/bin/env python3
"""Run the ORIGINAL PyTorch OSTrack (botaoye/OSTrack) for side-by-side timing.

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
Each prints one JSON object on the last line of stdout; the timing commands print a short table
(median, min, max, device) on stdout before it. The test fixtures (the original's outputs) are
made by tests/fixtures/make_fixtures.py, which imports and builds the original through this
file (`import_original`, `build_original`).

`--device cuda` (default cpu; before or after the command name) runs forward / train-step / track
on the GPU: model and inputs on torch.device('cuda'), torch.cuda.synchronize() before and after
every timed call (so each time is the GPU's, not the launch's), float32 with PyTorch's default
matmul precision, and the device name (torch.cuda.get_device_name) in the table and the JSON.
The original tracker's own `.cuda()` calls are left as they are there; on the CPU they are made
no-ops (as before).

Inputs are NCHW float32 (ImageNet-normalized), as the original takes them; outputs are the
original's (score_map (B,1,F,F), size_map / offset_map (B,2,F,F), pred_boxes (B,1,4) cxcywh
normalized to the search crop).
"""

import argparse
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


def install_optional_standins(names: Sequence[str] = _OPTIONAL_IMPORTS) -> list[str]:
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


def tracker_params(cfg, checkpoint: str | os.PathLike) -> types.SimpleNamespace:
  """The parameters the original's ``lib.test.tracker.ostrack.OSTrack`` takes, as its test
  scripts build them from a config: the test crop factors and sizes, the checkpoint, no debug."""
  return types.SimpleNamespace(
    cfg=cfg,
    template_factor=cfg.TEST.TEMPLATE_FACTOR,
    template_size=cfg.TEST.TEMPLATE_SIZE,
    search_factor=cfg.TEST.SEARCH_FACTOR,
    search_size=cfg.TEST.SEARCH_SIZE,
    checkpoint=str(checkpoint),
    save_all_boxes=False,
    debug=0,
  )


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


def set_threads(threads: int | None) -> int:
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
    return to_numpy(out)

  return model, forward


def to_numpy(tree):
  import torch

  if isinstance(tree, torch.Tensor):
    return tree.detach().cpu().numpy()
  if isinstance(tree, dict):
    return {k: to_numpy(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [to_numpy(v) for v in tree]
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

  threads = set_threads(threads)
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
  install_optional_standins()
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

  threads = set_threads(threads)
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
def cuda_calls_stay_on_cpu():
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
  threads = set_threads(threads)
  orig = import_original(ostrack_repo)
  standins = install_optional_standins()
  cfg = load_original_config(orig, preset_name)
  cfg.MODEL.PRETRAIN_FILE = ''
  tracker_mod = importlib.import_module('lib.test.tracker.ostrack')
  with tempfile.TemporaryDirectory() as tmp:
    if checkpoint is None:
      model, _ = build_original(ostrack_repo, preset_name, seed=seed)
      checkpoint = os.path.join(tmp, 'random_init.pth.tar')
      torch.save({'net': model.state_dict()}, checkpoint)
    params = tracker_params(cfg, checkpoint)
    placement = cuda_calls_stay_on_cpu() if device == 'cpu' else contextlib.nullcontext()
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
  else:
    frames, gt = read_frames(a.frames_dir, a.num_frames)
    result = time_track_original(
      a.ostrack_repo, frames, gt[0], a.preset, a.checkpoint, a.threads, device=a.device
    )
  if 'median_ms' in result:
    print(format_table(result))
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
