"""How fast a run goes, never what it computes: threads, precision, fused kernels, compile.

``cpus.py`` decides how many CPUs a run may use, ``settings.py`` applies the ``runtime``
config block (its schema is there), ``fused_steps.py`` plans several optimiser steps per
Lightning step (``runtime.steps_per_call``), ``step_values.py`` keeps per-step losses for the
epoch mean and the divergence guard to use in one go, ``precision.py`` has the full-precision
block losses and metrics compute in, and ``lightning_compat.py`` is the only place that
reaches into Lightning's (or Hydra's) private names, the lean hook calls and manual step
included; a new speed setting goes into ``settings.py`` and ``conf/train.yaml``.
"""
