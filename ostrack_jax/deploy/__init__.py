"""Deployment: the exported tracker (StableHLO through ``jax.export``) and the ONNX network, each
loader beside its exporter. ``python -m ostrack_jax.export`` is the command over them.
"""
