"""What is measured and drawn for a trained model: metrics, likelihood, probes and figures.

``metrics.py`` (per-image MSE/PSNR), ``likelihood.py`` (importance-weighted NLL), ``probes.py``
(linear probe, anomaly AUROC), ``analysis.py`` (codes, reconstructions, noise curves),
``plots.py``/``gallery.py`` (figures), ``projector.py`` (TensorBoard's embedding projector),
``history.py`` (epoch curves from metrics.csv), ``runs.py`` / ``report.py`` (finished runs
side by side in report.html). Add a metric or figure here, then call it from the gallery.
"""
