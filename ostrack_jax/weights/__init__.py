"""Model weights on disk: our own model file (``model_file``: Flax variables + model config, one
msgpack file) and the conversion of PyTorch checkpoints (``convert``: released OSTrack weights,
timm and MAE ViTs; needs torch, read with ``weights_only=True``).
"""
