"""Test set-up: 8 simulated CPU devices (for the sharding tests), a compilation cache shared by the
whole test run, the test order, the fast_compile mark, and the fixtures shared by modules (the
fixtures folder, the tiny model, the tracker fixtures' frames).

XLA_FLAGS must be set before JAX initialises its backends, so it is done here at import time.

The compilation cache: many modules compile the same programs (the tiny tracker's step, the small
training step of train.py), in both xdist workers and in train.py / eval.py subprocesses. JAX's
persistent compilation cache, pointed at one fresh folder per test run through the environment
(JAX_COMPILATION_CACHE_DIR, inherited by the workers and every subprocess), lets each program be
compiled once per run. A loaded executable is the one that was compiled: results are unchanged.
The folder is made per run (never reused between runs, so a run's timing is honest) and removed
at its end. OSTRACK_JAX_TEST_NO_CACHE=1 turns it off.

Order: the modules in RUN_FIRST run first, the rest in file order (inside a module, fast_compile
tests last: below). RUN_FIRST holds the longest tests
(train.py runs); xdist's 'load' scheduling hands each worker a run of consecutive tests at the
start, so they start at once in one worker while the other takes the short tests, instead of
ending the run on one worker while the other idles (a 45 s tail in file order on 2 cores).
test_train_step follows them for the same reason: in file order its tests were split between
the workers, and both computed its module fixture (a one-device train step, ~20 s each).
"""

import os
import pathlib
import shutil
import tempfile

os.environ.setdefault('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_force_host_platform_device_count=8'
# One thread per process for XLA's CPU matmuls and convolutions: the README's command runs two
# test processes on two cores, and each would otherwise run them on a pool as wide as the
# machine. The train.py / eval.py processes the tests start get the same flag
# (train_util.xla_flags): a program compiled with it is a different program (the compilation
# cache's key includes the flags) and rounds differently.
if '--xla_cpu_multi_thread_eigen' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_cpu_multi_thread_eigen=false'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

_CACHE_OWNER = False
if (
  os.environ.get('OSTRACK_JAX_TEST_NO_CACHE') != '1'
  and 'JAX_COMPILATION_CACHE_DIR' not in os.environ
):
  # The controller (or a run without xdist) makes the folder; xdist workers inherit the variable.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='ostrack_jax_test_xla_cache_')
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  _CACHE_OWNER = True

import pytest

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'

RUN_FIRST = (
  'tests/training/test_train_multihost.py',
  'tests/training/test_train_resume.py',
  'tests/training/test_train_step.py',
)


def pytest_collection_modifyitems(config, items):
  """RUN_FIRST's modules first, then the others in file order; inside a module the tests on the
  normal compiler before the fast_compile ones (one switch of the compile mode per module:
  below), each group in file order."""
  del config
  rank = {module: i for i, module in enumerate(RUN_FIRST)}
  modules = {}
  for item in items:
    modules.setdefault(item.nodeid.split('::', 1)[0], len(modules))

  def key(item):
    module = item.nodeid.split('::', 1)[0]
    return rank.get(module, len(RUN_FIRST)), modules[module], _fast_compile_mark(item)

  items.sort(key=key)


def pytest_unconfigure(config):
  del config
  if _CACHE_OWNER:
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
  return FIXTURES


# ---------------------------------------------------------------------------------------------
# The tiny model (tests/fixtures/tiny256) and the tracker fixtures' soapbox frames, made once per test
# process for every module that needs them. Shared objects: a test must not modify them.


@pytest.fixture(scope='session')
def tiny_checkpoint() -> pathlib.Path:
  """The tiny model's checkpoint in the released PyTorch layout (weights seed 0)."""
  return FIXTURES / 'tiny256' / 'tiny256_seed0.pth.tar'


@pytest.fixture(scope='session')
def tiny_variables(tiny_checkpoint):
  """The float32 {'params', 'batch_stats'} of :func:`tiny_checkpoint` for tiny_256_ce."""
  from ostrack_jax.configs import get_config
  from ostrack_jax.weights.model_file import load_checkpoint

  return load_checkpoint(str(tiny_checkpoint), get_config('tiny_256_ce'))


@pytest.fixture(scope='session')
def soapbox():
  """(frames, data) of tests/fixtures/tracker/soapbox.npz: the RGB uint8 frames (H, W, 3), and
  the file's other arrays by name ('gt' xywh pixels, the original's 'tf_boxes' / 'free_boxes',
  'tf_frames' / 'free_frames'; see tests/fixtures/tracker/README.md)."""
  import cv2
  import numpy as np

  with np.load(FIXTURES / 'tracker' / 'soapbox.npz') as data:
    n = len([k for k in data.files if k.startswith('png_')])
    frames = [cv2.imdecode(data[f'png_{i}'], cv2.IMREAD_COLOR)[..., ::-1] for i in range(n)]
    arrays = {k: data[k] for k in data.files if not k.startswith('png_')}
  for a in [*frames, *arrays.values()]:  # shared by the session's tests: nobody writes to them
    a.flags.writeable = False
  return frames, arrays


# ---------------------------------------------------------------------------------------------
# fast_compile: XLA's backend optimisations off for tests that check behaviour.
#
# A module (`pytestmark = pytest.mark.fast_compile`) or a test (`@pytest.mark.fast_compile`)
# whose assertions are about behaviour (files, messages, resume, compile counts, two of our own
# runs agreeing) and never compare with the original's outputs (tests/fixtures) runs with
# jax_disable_most_optimizations: XLA spends about half the time compiling the tiny tracker, and
# the programs run somewhat slower. In this process its programs are also compiled with XLA's
# older CPU code emitters (the compiler option xla_cpu_use_fusion_emitters=False, given to every
# compile while the mode is on): a small OSTrack's train step compiles in 2.7 s instead of 4.0.
# Results move in the last float bits only, the same way for every program of the test.
# `@pytest.mark.fast_compile(False)` keeps a test of such a module on the normal compiler (a
# comparison with the original inside a behaviour module); `fast_compile(older_emitters=False)`
# keeps the default emitters, for a test that asserts bit-identity between two programs
# (the product's claim is about its compiler's emitters) and for programs shared through the
# compilation cache with train.py / eval.py subprocesses, which compile with the default
# emitters (JAX_DISABLE_MOST_OPTIMIZATIONS only: below) unless a test starts them with
# train_util.command_env(older_emitters=True) (through XLA_FLAGS: another cache key).
#
# Neither switch is part of JAX's in-memory cache keys, so the caches are cleared whenever one
# changes: a program compiled one way never serves a test of another kind (the persistent
# compilation cache's key includes both). JAX_DISABLE_MOST_OPTIMIZATIONS follows the mode, for
# the train.py / eval.py subprocesses the tests start. The module-level mark is applied before
# the module's fixtures are made (they may train or compile); a test's own mark before the test.


_OLDER_EMITTERS = {'xla_cpu_use_fusion_emitters': False}
_older_emitters_on = False


def _install_older_emitters_option() -> None:
  """Wraps JAX's (private) compile-options builder once, so that every compile in this process
  gets _OLDER_EMITTERS while _older_emitters_on. Nothing is wrapped if this JAX or XLA has no
  such builder or option (the tests then compile with the default emitters, more slowly)."""
  import jax
  from jax._src import compiler

  build = getattr(compiler, 'get_compile_options', None)
  if build is None or getattr(build, 'adds_older_emitters', False):
    return
  try:
    jax.jit(lambda x: x + 1.0).lower(1.0).compile(dict(_OLDER_EMITTERS))
  except Exception:  # noqa: BLE001 (an XLA without the option: keep the default emitters)
    return

  def get_compile_options(*args, **kwargs):
    if _older_emitters_on:
      kwargs['env_options_overrides'] = {
        **_OLDER_EMITTERS,
        **(kwargs.get('env_options_overrides') or {}),
      }
    return build(*args, **kwargs)

  get_compile_options.adds_older_emitters = True
  compiler.get_compile_options = get_compile_options


def _compile_fast(fast: bool, older_emitters: bool = True) -> None:
  import jax

  global _older_emitters_on
  _install_older_emitters_option()
  older = fast and older_emitters
  if jax.config.read('jax_disable_most_optimizations') == fast and _older_emitters_on == older:
    return
  jax.clear_caches()
  jax.config.update('jax_disable_most_optimizations', fast)
  _older_emitters_on = older
  if fast:
    os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
  else:
    os.environ.pop('JAX_DISABLE_MOST_OPTIMIZATIONS', None)


def _fast_compile_mark(node) -> tuple:
  """(fast, older_emitters) of the node's closest fast_compile mark (see above)."""
  mark = node.get_closest_marker('fast_compile')
  if mark is None:
    return False, False
  fast = mark.args[0] if mark.args else True
  return fast, fast and mark.kwargs.get('older_emitters', True)


@pytest.fixture(scope='module', autouse=True)
def _fast_compile_module(request):
  _compile_fast(*_fast_compile_mark(request.node))


@pytest.fixture(autouse=True)
def _fast_compile_test(request):
  _compile_fast(*_fast_compile_mark(request.node))
