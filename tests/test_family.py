"""Every objective x architecture pair composes through the real Hydra config and runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from aelightning.builders import build_model
from aelightning.cli.reporting import find_user_error
from aelightning.cli.train import train
from aelightning.errors import ConfigError
from tests.conftest import NETS, OBJECTIVES, small_net_overrides
from tests.tbutil import read_events, scalar_values

#: small batches (and small widths) so that VGG on (padded) 28x28 MNIST stays fast on a CPU
SMALL_BATCHES = ["data.batch_size=16", "data.eval_batch_size=32", "trainer.fast_dev_run=true"]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("model", OBJECTIVES)
def test_pair_composes_and_runs_one_batch(make_cfg, model, net):
    cfg = make_cfg(f"model={model}", f"net={net}", *small_net_overrides(net), *SMALL_BATCHES)
    result = train(cfg)
    metrics = result["metrics"]
    for stage in ("train", "val", "test"):
        assert torch.isfinite(torch.tensor(metrics[f"{stage}/loss"])), (stage, metrics)
    assert 0 < metrics["test/mse"] < 1 and metrics["test/psnr"] > 0


def test_dae_defaults_to_the_seeds_gaussian_noise_and_logs_noisy_psnr(make_cfg):
    cfg = make_cfg("model=dae", *SMALL_BATCHES)
    assert cfg.noise._target_.endswith("GaussianNoise") and cfg.noise.std == 0.5
    metrics = train(cfg)["metrics"]
    assert metrics["test/psnr_out"] == metrics["test/psnr"]
    assert 5 < metrics["test/psnr_noisy"] < 15  # x + 0.5 * randn, clamped


def test_vae_and_aae_configs_make_the_code_unconstrained(make_cfg):
    for model in ("vae", "aae"):
        assert make_cfg(f"model={model}").net.bottleneck_activation == "none"
    assert make_cfg("model=ae").net.bottleneck_activation == "relu"  # the seeds' MLP


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=vae", "net.bottleneck_activation=relu"], r"model=vae needs an unconstrained code"),
        (["model=aae", "net=conv", "net.bottleneck_activation=sigmoid"], r"model=aae needs"),
        (["model=sparse", "model.rho=0.05"], r"net\.bottleneck_activation=sigmoid"),
        (["model=dae", "noise=none"], r"model=dae needs an input corruption"),
        (["model=vae", "net.output_activation=none"], r"model\.recon_loss=bce"),
        (["model=contractive", "net=conv", "model.method=closed_form"], r"closed_form"),
        (["net=conv", "net.channels=[8,8,8]"], r"divisible by 8; got 28x28"),
        (["net=vgg13", "net.pad_input=false"], r"divisible by 32; got 28x28"),
    ],
)
def test_pairs_that_make_no_sense_say_why(make_cfg, overrides, message):
    with pytest.raises(Exception) as info:  # Hydra wraps constructor errors; the CLI unwraps
        build_model(make_cfg(*overrides), (1, 28, 28))
    error = find_user_error(info.value)
    assert isinstance(error, ConfigError) and re.search(message, str(error)), info.value


@pytest.mark.parametrize(
    ("group", "target"),
    [
        ("model/optimizer=adam", "torch.optim.Adam"),
        ("model/optimizer=adamw", "torch.optim.AdamW"),
        ("model/optimizer=sgd", "torch.optim.SGD"),
    ],
)
def test_optimiser_is_one_override(make_cfg, group, target):
    cfg = make_cfg("model=sparse", group)
    assert cfg.model.optimizer._target_ == target
    model = build_model(cfg, (1, 28, 28))
    assert type(model.optimizer_factory(model.parameters())).__name__ == target.split(".")[-1]


@pytest.mark.parametrize(
    ("schedule", "options"),
    [("none", []), ("step", []), ("warmup_cosine", ["model.scheduler.warmup_steps=4"])],
)
def test_schedule_is_one_override_and_the_lr_is_logged_each_step(make_cfg, schedule, options):
    cfg = make_cfg(
        f"model/scheduler={schedule}",
        *options,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=12",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "test=false",
        "data.batch_size=16",
        "callbacks.reconstructions=null",
    )
    train(cfg)
    acc = read_events(Path(cfg.paths.output_dir) / "tensorboard")
    lr_tags = [t for t in acc.Tags()["scalars"] if t.startswith("lr-")]
    assert lr_tags, acc.Tags()["scalars"]
    lrs = scalar_values(acc, lr_tags[0])
    assert len(lrs) == 12
    if schedule == "none":
        assert lrs == pytest.approx([1e-3] * 12)
    elif schedule == "step":  # 3 decays by 0.1, evenly spaced
        assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-6)
    else:  # linear warm-up over 4 steps, then cosine decay
        assert lrs[:5] == sorted(lrs[:5]) and lrs[4] == pytest.approx(1e-3)
        assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] < 1e-4


def test_early_stopping_is_a_callbacks_option(make_cfg):
    cfg = make_cfg(
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=1.0",  # no epoch can improve by 1.0
        "trainer.max_epochs=6",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "callbacks.reconstructions=null",
    )
    assert cfg.callbacks.model_checkpoint is not None  # the defaults stay on
    train(cfg)
    acc = read_events(Path(cfg.paths.output_dir) / "tensorboard")
    assert len(scalar_values(acc, "val/loss")) == 2  # stopped after patience 1, not 6 epochs
