"""Probes on codes: a linear classifier and k-NN beat chance; AUROC against hand values."""

from __future__ import annotations

import pytest
import torch

from aelightning.builders import build_datamodule
from aelightning.checkpointing.checkpoint import load_model_from_checkpoint
from aelightning.cli.train import train
from aelightning.errors import ConfigError
from aelightning.evaluation import analysis, probes


def test_probes_beat_chance_on_codes_of_a_briefly_trained_model(make_cfg):
    cfg = make_cfg(
        "data.batch_size=32",
        "model.optimizer.lr=3e-3",
        "net.bottleneck_activation=none",
        "test=false",
    )
    result = train(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    model = load_model_from_checkpoint(result["best_checkpoint"], input_shape=datamodule.dims)
    train_x, train_y = analysis.split_tensors(datamodule, "train")
    test_x, test_y = analysis.split_tensors(datamodule, "test")
    train_codes = analysis.encode_images(model, train_x)
    test_codes = analysis.encode_images(model, test_x)
    assert train_codes.shape == (4000, 20) and test_codes.shape == (500, 20)

    chance = probes.majority_baseline(train_y, test_y)
    linear = probes.linear_probe_accuracy(train_codes, train_y, test_codes, test_y)
    knn = probes.knn_accuracy(train_codes, train_y, test_codes, test_y, k=5)
    assert chance == pytest.approx(0.1)  # the sample is stratified: 50 test digits per class
    # one short epoch gives ~0.6 for both; chance is 0.1
    assert linear > chance + 0.35, (linear, chance)
    assert knn > chance + 0.35, (knn, chance)


def test_auroc_of_hand_ranked_scores():
    # positives (class 7) score 0.9, 0.4; negatives 0.1, 0.5, 0.3.
    # pairs (pos > neg): 0.9 beats all 3, 0.4 beats 0.1 and 0.3 -> 5 of 6
    scores = torch.tensor([0.1, 0.9, 0.5, 0.4, 0.3])
    labels = torch.tensor([1, 7, 2, 7, 3])
    assert probes.anomaly_auroc(scores, labels, [7]) == pytest.approx(5 / 6)
    assert probes.anomaly_auroc(-scores, labels, [7]) == pytest.approx(1 / 6)
    with pytest.raises(ConfigError, match=r"data\.exclude_classes"):
        probes.anomaly_auroc(scores, labels, [4])


def test_probe_errors_name_the_key():
    codes, labels = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"metrics\.probes"):
        probes.linear_probe_accuracy(codes, labels, codes, labels)
    with pytest.raises(ConfigError, match=r"metrics\.knn_k"):
        probes.knn_accuracy(codes, torch.tensor([0, 1, 0, 1]), codes, labels, k=0)
