"""Training data: sources -> pair sampler -> transforms -> grain batches (no JAX imports here).

Modules (import them directly; this package imports nothing heavy):

* ``sources``: training sources from the dataset layer (``ostrack_jax.datasets``: the readers
  and the registry of names): the training visibility rule, ``make_source(name, config.data)``.
* ``index``: the sequence table, its skip report, its cache, and ``Source`` (table + frames).
* ``sampler``: the causal template/search pair sampler (a pure function of a sample index).
* ``transforms``: the original's STARKProcessing (joint grayscale/flip, jitter, crop, brightness,
  flip) and the label (the Gaussian heatmap of the search box).
* ``pipeline``: grain pipeline, ``make_train_iterator(config, process_index=..., ...)``.
* ``pack`` / ``packed``: writing ArrayRecord packs (``python -m ostrack_jax.data.pack``) /
  reading them.
* ``preview``: PNG grid of sampled pairs (``python -m ostrack_jax.data.preview``).
"""
