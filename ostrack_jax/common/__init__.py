"""What every room uses: the error types, atomic file writes, the command-line layer, log filters.

NumPy-free and JAX-free at import: ``errors``, ``fileio`` and ``logfilter`` are imported by
grain workers and by the ONNX tracker, which run without JAX.
"""
