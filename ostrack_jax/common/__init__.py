"""The ground floor every room stands on: the error types (``errors``), atomic file writes with the
umask's modes (``fileio``) and the filter for known library log noise (``logfilter``).

JAX-free at import: grain workers and the ONNX tracker, which run without JAX, import them. The
command-line layer built on them is :mod:`ostrack_jax.cli`, beside the commands.
"""
