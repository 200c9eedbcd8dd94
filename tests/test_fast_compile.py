"""tests/conftest.py's fast_compile mark: the compile mode a test runs in, and that a program
compiled in one mode never serves a test of the other (JAX's in-memory caches are cleared when
the mode changes; the flag is not part of their keys)."""

import os

import jax
import pytest

_ADD_ONE = jax.jit(lambda x: x + 1.0)


def _fast():
  return jax.config.read('jax_disable_most_optimizations')


def test_unmarked_tests_compile_with_the_optimisations():
  assert not _fast() and 'JAX_DISABLE_MOST_OPTIMIZATIONS' not in os.environ
  assert float(_ADD_ONE(1.0)) == 2.0
  assert _ADD_ONE._cache_size() == 1


@pytest.mark.fast_compile
def test_marked_tests_compile_without_them_and_recompile():
  assert _fast() and os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] == '1'  # for subprocesses
  assert _ADD_ONE._cache_size() == 0  # the program compiled above is gone
  assert float(_ADD_ONE(1.0)) == 2.0


@pytest.mark.fast_compile(False)
def test_a_test_can_opt_out():
  assert not _fast()
