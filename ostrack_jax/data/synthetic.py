"""The synthetic dataset's generator, kept importable here (``ostrack_jax.data.synthetic``)
and runnable as ``python -m ostrack_jax.data.synthetic --output DIR``; it lives in
:mod:`ostrack_jax.datasets.synthetic`, beside the other dataset layouts."""

from ostrack_jax.datasets.synthetic import (  # noqa: F401  (re-exported)
  DEFAULT_FRAME_SIZE,
  DEFAULT_NUM_FRAMES,
  DEFAULT_NUM_TRAIN,
  DEFAULT_NUM_VAL,
  FORMAT_VERSION,
  check_named_root,
  default_root,
  ensure_synthetic_dataset,
  main,
  make_synthetic_dataset,
)

if __name__ == '__main__':
  import sys

  from ostrack_jax import cli

  sys.exit(cli.run(main, 'python -m ostrack_jax.data.synthetic'))
