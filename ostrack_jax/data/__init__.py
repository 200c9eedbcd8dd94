"""Training data: sources -> pair sampler -> transforms -> grain batches (no JAX imports here).

Modules (import them directly; this package imports nothing heavy):

* ``synthetic``: GOT-10k-layout synthetic dataset (the default of train.py / eval.py).
* ``sources``: GOT-10k, LaSOT, TrackingNet, COCO and generic-folder readers, cached index,
  skip report.
* ``sampler``: the causal template/search pair sampler (a pure function of a sample index).
* ``transforms``: spec-7 processing (joint grayscale/flip, jitter, crop, brightness, flip).
* ``pipeline``: grain pipeline, ``make_train_iterator(config, process_index=..., ...)``.
* ``pack``: ArrayRecord packs (``python -m ostrack_jax.data.pack``).
* ``preview``: PNG grid of sampled pairs (``python -m ostrack_jax.data.preview``).
"""
