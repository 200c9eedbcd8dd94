"""Tracking and benchmark evaluation.

* ``tracker``: ``Tracker`` (OSTrack's inference procedure, one jitted step per frame) and
  ``BatchTracker`` (N sequences in lockstep): the front ends of the core.
* ``core``: ``TrackingCore`` (B slots whose states live on the device) and the frame buckets.
* ``device_step``: the per-frame work on the device as pure functions (crop, network, window,
  decode, map back, clip), which the core jits.
* ``host``: the host-side checks, Hann window and float64 map back shared with the ONNX tracker.
* ``runner``: tracks benchmark sequences (one at a time or in lockstep) with per-frame timing.
* ``eval_sequences``: which sequences of a benchmark an evaluation tracks and scores (read
  through ``ostrack_jax.datasets``).
* ``metrics``: GOT-10k AO / SR and pytracking-style AUC / precision / normalized precision.
* ``results``: result files in the official layouts, written atomically, and submission zips.
* ``distributed``: an evaluation's devices and processes (jax.distributed): who tracks what.
* ``evaluate``: what eval.py runs; ``report``: its tables, plots and summary; ``provenance``:
  who produced a results folder.
* ``compare``: several trackers' result folders in one table (``attribute_labels``: the
  per-sequence attributes it reads).

Nothing is imported here, so ``import ostrack_jax.tracking.eval_sequences`` stays free of JAX.
"""
