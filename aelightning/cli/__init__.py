"""The ``ae-*`` commands: thin Hydra entry points and what they print and write.

``train.py`` (``ae-train``) and ``evaluate.py`` (``ae-evaluate``) compose, build and run;
``reporting.py`` turns user mistakes into one sentence, ``summary.py`` prints the run summary,
``sweep.py`` writes a multirun's summary and report, ``report.py`` (``ae-report``) the report
for any runs, ``hparams.py`` TensorBoard's HPARAMS tab, ``config_tree.py`` the config tree and
``reproduce.py`` the README's results. A new command: a module here plus an entry in
``[project.scripts]``.
"""
