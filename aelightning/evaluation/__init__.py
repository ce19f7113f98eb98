"""What is measured and drawn for a trained model: metrics, likelihood, probes and figures.

``pipeline.py`` is the one entry (``inspect_model`` + ``InspectionOptions``) that ``ae-evaluate``
and the end-of-training callbacks call; ``scores.py`` (the test split's numbers), ``metrics.py``
(per-image MSE/PSNR/SSIM via torchmetrics, the headline metric names), ``likelihood.py``
(importance-weighted NLL), ``probes.py`` (linear probe, anomaly AUROC), ``analysis.py`` (codes,
reconstructions, noise curves), ``plots.py``/``gallery.py`` (figures), ``projector.py``
(TensorBoard's embedding projector), ``history.py`` (epoch curves from metrics.csv),
``runs.py``/``report.py`` (finished runs side by side in report.html). Add a number to
``scores.py`` (its switch to ``MetricOptions`` and ``conf/evaluate.yaml``), a figure to the
gallery.
"""
