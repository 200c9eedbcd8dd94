"""tests/conftest.py's fast_compile mark: the compile mode a test runs in (optimisations, and the
CPU code emitters given to every compile), and that a program compiled in one mode never serves
a test of another (JAX's in-memory caches are cleared when the mode changes; neither switch is
part of their keys)."""

import os

import jax
import pytest
from jax._src import compiler

_ADD_ONE = jax.jit(lambda x: x + 1.0)


def _fast():
  return jax.config.read('jax_disable_most_optimizations')


def _emitter_overrides():
  """The CPU-emitter compiler options every compile of this process gets now."""
  options = compiler.get_compile_options(num_replicas=1, num_partitions=1)
  return [o for o in options.env_option_overrides if o[0] == 'xla_cpu_use_fusion_emitters']


def test_unmarked_tests_compile_with_the_optimisations():
  assert not _fast() and 'JAX_DISABLE_MOST_OPTIMIZATIONS' not in os.environ
  assert _emitter_overrides() == []
  assert float(_ADD_ONE(1.0)) == 2.0
  assert _ADD_ONE._cache_size() == 1


@pytest.mark.fast_compile
def test_marked_tests_compile_without_them_and_recompile():
  assert _fast() and os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] == '1'  # for subprocesses
  # (empty if this JAX / XLA has no such option: conftest then keeps the default emitters)
  assert _emitter_overrides() == [('xla_cpu_use_fusion_emitters', False)]
  assert _ADD_ONE._cache_size() == 0  # the program compiled with the default emitters is gone
  assert float(_ADD_ONE(1.0)) == 2.0


@pytest.mark.fast_compile(older_emitters=False)
def test_a_fast_test_can_keep_the_default_emitters_and_recompiles():
  assert _fast() and _emitter_overrides() == []
  assert _ADD_ONE._cache_size() == 0  # the program compiled on the normal compiler is gone
  assert float(_ADD_ONE(1.0)) == 2.0


@pytest.mark.fast_compile(False)
def test_a_test_can_opt_out():
  assert not _fast() and _emitter_overrides() == []
