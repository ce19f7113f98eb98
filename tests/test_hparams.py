"""The HPARAMS tab: swept keys first, then the comparison axes, the final metrics; rank zero."""

from __future__ import annotations

from types import SimpleNamespace

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from aelightning.cli.hparams import HPARAM_LIMIT, curated_hparams, log_hparams, sweep_keys


def test_a_non_zero_rank_writes_no_hparams_and_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # as on DDP rank 1
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    trainer = SimpleNamespace(is_global_zero=False, loggers=[logger])
    log_hparams(trainer, {"net": {"latent_dim": 8}}, {"val/loss": 0.1})  # type: ignore[arg-type]
    assert not (tmp_path / "tb").exists()  # nothing written on this rank


def _config(make_cfg, *overrides):
    from hydra.core.hydra_config import HydraConfig

    cfg = make_cfg(*overrides)
    choices = OmegaConf.to_container(HydraConfig.get().runtime.choices)
    return OmegaConf.to_container(cfg, resolve=True), choices


def test_swept_keys_come_first_then_the_axes_named_as_typed(make_cfg):
    config, choices = _config(
        make_cfg, "model=vae", "noise=gaussian", "noise.std=0.3", "model/optimizer=sgd"
    )
    params = curated_hparams(
        config, choices, swept=["noise.std", "model/optimizer"], overridden=["trainer.max_epochs"]
    )
    keys = list(params)
    assert keys[:2] == ["noise.std", "model/optimizer"]
    assert params["noise.std"] == 0.3 and params["model/optimizer"] == "sgd"
    assert params["model"] == "vae" and params["net"] == "mlp" and params["data"] == "mnist"
    assert params["net.latent_dim"] == 20 and params["net.bottleneck_activation"] == "none"
    assert params["model.beta"] == 1.0  # the objective's loss weight
    assert params["model.optimizer.lr"] == 0.01 and params["seed"] == 42
    assert params["net.hidden_dims"] == "[256, 64]"  # lists as text
    assert "net.channels" not in params and "noise.p" not in params  # absent keys are skipped
    # bookkeeping overrides of the test config (callbacks, data_dir, accelerator) are left out
    assert not any(
        k.startswith(("callbacks", "data.data_dir", "trainer.accelerator")) for k in keys
    )
    assert len(keys) <= HPARAM_LIMIT


def test_at_most_the_limit_and_a_checkpoint_config_names_classes(make_cfg):
    config, _ = _config(make_cfg)
    assert len(curated_hparams(config, {}, limit=5)) == 5
    params = curated_hparams(config)  # no record of the group choices (ae-evaluate)
    assert params["net"] == "MLPNet" and params["model"] == "Autoencoder"


def test_sweep_keys_read_the_sweep_overrides_and_the_sweeper_space(tmp_path):
    OmegaConf.save(
        {
            "hydra": {
                "overrides": {"task": ["net=mlp,conv", "trainer.max_epochs=2", "x=range(1,3)"]}
            }
        },
        tmp_path / "multirun.yaml",
    )
    assert sweep_keys(tmp_path, {"model.optimizer.lr": "interval(1e-4,1e-2)"}) == [
        "net",
        "x",
        "model.optimizer.lr",
    ]
    assert sweep_keys(tmp_path / "missing") == []
