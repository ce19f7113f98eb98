"""Checkpoints written before the package was reorganised still rebuild."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from aelightning.builders import build_model
from aelightning.checkpointing.checkpoint import rebuild_model
from aelightning.models.noise import GaussianNoise
from aelightning.models.schedulers import warmup_cosine


def test_old_module_paths_in_a_stored_config_are_renamed(make_cfg):
    cfg = make_cfg("noise=gaussian", "model/scheduler=warmup_cosine")
    model = build_model(cfg, (1, 28, 28))
    stored = OmegaConf.to_container(cfg, resolve=True)
    stored["noise"]["_target_"] = "aelightning.noise.GaussianNoise"  # before the move
    stored["model"]["scheduler"]["_target_"] = "aelightning.schedulers.warmup_cosine"
    checkpoint = {"state_dict": model.state_dict()}

    rebuilt = rebuild_model(checkpoint, OmegaConf.create(stored), (1, 28, 28), "old.ckpt")

    assert isinstance(rebuilt.noise, GaussianNoise)
    assert rebuilt.run_config["model"]["scheduler"]["_target_"].endswith("schedulers.warmup_cosine")
    assert warmup_cosine.__module__ == "aelightning.models.schedulers"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, rebuilt.state_dict()[name])
