"""How fast a run goes, never what it computes: threads, precision, fused kernels, compile.

``cpus.py`` decides how many CPUs a run may use, ``settings.py`` applies the ``runtime``
config block, and ``hook_dispatch.py`` / ``loop_overhead.py`` are the only places that patch
or reach into Lightning's internals; a new speed setting goes into ``settings.py`` and
``conf/train.yaml``.
"""
