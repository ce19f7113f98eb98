"""How useful a code is beyond reconstruction: linear probe, k-NN and anomaly detection.

All three take codes or scores already computed (CPU tensors or arrays) and never call a
model; :mod:`aelightning.evaluation.analysis` produces the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from aelightning.errors import ConfigError
from aelightning.evaluation.analysis import single_threaded_sklearn


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _check_classes(train_labels: np.ndarray) -> None:
    if len(np.unique(train_labels)) < 2:
        raise ConfigError(
            "a probe needs at least two classes among the training labels; set "
            "metrics.probes=false for unlabelled data."
        )


def linear_probe_accuracy(
    train_codes: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray,
    test_codes: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray,
    max_iter: int = 1000,
) -> float:
    """Accuracy of a multinomial logistic regression fitted on train codes, scored on test.

    Codes are standardised with the training statistics first, so that the L2 penalty (C=1)
    treats every code unit alike whatever its scale.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = _as_numpy(train_codes), _as_numpy(train_labels)
    _check_classes(y_train)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    with single_threaded_sklearn():
        probe.fit(x_train, y_train)
        return float(probe.score(_as_numpy(test_codes), _as_numpy(test_labels)))


def knn_accuracy(
    train_codes: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray,
    test_codes: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray,
    k: int = 5,
) -> float:
    """Accuracy of a k-nearest-neighbour vote (Euclidean distance in code space)."""
    from sklearn.neighbors import KNeighborsClassifier

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"metrics.knn_k must be an integer >= 1, got {k!r}.")
    x_train, y_train = _as_numpy(train_codes), _as_numpy(train_labels)
    _check_classes(y_train)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(x_train)))
    with single_threaded_sklearn():
        knn.fit(x_train, y_train)
        return float(knn.score(_as_numpy(test_codes), _as_numpy(test_labels)))


def majority_baseline(train_labels: Tensor | np.ndarray, test_labels: Tensor | np.ndarray) -> float:
    """Accuracy of always answering the most frequent training class ("chance")."""
    y_train, y_test = _as_numpy(train_labels), _as_numpy(test_labels)
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)]))


def anomaly_auroc(scores: Tensor, labels: Tensor, anomaly_classes: Sequence[int]) -> float:
    """AUROC of ``scores`` (e.g. reconstruction errors) for telling ``anomaly_classes`` apart.

    Train an autoencoder with ``data.exclude_classes=[k]``: images of class ``k`` were never
    reconstructed in training, so a higher error should flag them; 0.5 is chance, 1 perfect.
    """
    if not anomaly_classes:
        raise ConfigError("anomaly detection needs data.exclude_classes=[k] in the training run.")
    labels = labels.to(scores.device)
    target = torch.isin(labels, torch.as_tensor(list(anomaly_classes), device=labels.device))
    n_pos = int(target.sum())
    if n_pos == 0 or n_pos == len(target):
        raise ConfigError(
            f"anomaly detection needs both normal images and images of data.exclude_classes="
            f"{list(anomaly_classes)} in the test split; it holds {n_pos} of {len(target)}."
        )
    return float(binary_auroc(scores.float(), target.long()))
