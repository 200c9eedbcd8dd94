"""The dataset layer: one reader per layout, one record type, one registry (NumPy/OpenCV only).

Training (``ostrack_jax.data.sources``: the sequence table, its cached index, the visibility
rule of the sampler), packing (``ostrack_jax.data.pack``), the preview and evaluation
(``ostrack_jax.tracking.eval_sequences``: which sequences a benchmark scores) all read datasets
through this package, so a layout is written once and read the same way everywhere (frame
order, parsing, errors, integrity checks).

Modules:

* ``core``: :class:`Video` (the record: name, frames, xywh ground truth, per-frame flags,
  image size), :class:`DatasetError` (names dataset, sequence, file and line), the number
  parser, :func:`natural_key`, the image extensions and frame numbering, the one rule for
  sequence names (:func:`check_sequence_name`: a name never leads out of a folder), and the
  :class:`Layout` base class.
* ``frames``: the cheap integrity check of a frame file (:func:`check_image_file`) and
  :func:`read_frame`, the one decoder.
* one module per layout: ``got10k``, ``lasot``, ``trackingnet``, ``otb``, ``coco``,
  ``folder``, ``synthetic`` (the built-in dataset's generator; GOT-10k layout).
* ``registry``: dataset name -> layout, root field and options per use.

Nothing here imports JAX (grain workers import it). Import the modules themselves
(``from ostrack_jax.datasets import core``): the package hands no names on.
"""
