"""Lightning callbacks a training run uses, each switched on in ``conf/callbacks/default.yaml``.

Progress bar, reconstruction grids, exact resume (``resume.py``), the divergence guard and the
end-of-training figures. Add one: a ``lightning.Callback`` subclass here plus an entry (with its
``_target_``) in ``conf/callbacks/default.yaml``; ``callbacks.<name>=null`` switches it off.
"""
