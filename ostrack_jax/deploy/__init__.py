"""Deployment, each loader beside its exporter: stablehlo.py (the exported tracker through
``jax.export``: export_tracker, load_exported), onnx_export.py (the network as one ONNX file),
onnx_tracker.py (load_onnx: that file on onnxruntime, crops and decode on the host) and
onnx_format.py (the names and metadata keys both ONNX sides share). ``python -m
ostrack_jax.export`` is the command over them.
"""
