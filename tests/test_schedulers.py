from itertools import pairwise

import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.models.schedulers import step_decay, warmup_cosine


def _lrs(factory, steps: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = factory(opt, total_steps=steps, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_then_cosine():
    lrs = _lrs(warmup_cosine, 100, warmup_steps=10, min_lr_ratio=0.1)
    assert all(a < b for a, b in pairwise(lrs[:11]))  # linear warm-up
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in pairwise(lrs[10:]))  # then decays
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_step_decay():
    lrs = _lrs(step_decay, 100, num_decays=3, gamma=0.5)
    assert sorted(set(lrs), reverse=True) == [1.0, 0.5, 0.25, 0.125]


def test_bad_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match="warmup_fraction"):
        warmup_cosine(opt, total_steps=10, warmup_fraction=1.5)


def test_old_configs_with_the_constant_schedule_rebuild_with_no_schedule():
    from hydra.utils import instantiate

    from aelightning.checkpointing.checkpoint import current_targets

    for old in ("aelightning.schedulers.constant", "aelightning.models.schedulers.constant"):
        config = current_targets({"scheduler": {"_target_": old, "_partial_": True}})
        factory = instantiate(config["scheduler"])
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        assert factory(opt, total_steps=20) is None  # the base LR throughout, nothing to step


def test_none_option_configures_no_scheduler_and_the_lr_stays(make_cfg):
    """``model/scheduler=none``: the optimiser alone, nothing stepped per batch, base LR kept."""
    from aelightning.builders import build_datamodule, build_model
    from tests.conftest import bare_trainer

    cfg = make_cfg("model/scheduler=none", "model.optimizer.lr=0.002")
    datamodule = build_datamodule(cfg)
    module = build_model(cfg, datamodule.dims)
    trainer = bare_trainer(max_steps=3)
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    assert trainer.lr_scheduler_configs == []
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 0.002
