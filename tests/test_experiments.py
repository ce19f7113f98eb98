"""Every experiment in ``conf/experiment/`` composes and runs one batch of each stage.

The experiments are what the README and ``make reproduce`` promise; a typo in one of them (a
renamed key, a net that no longer fits the image size) must fail here, not an hour into a
user's run. Sizes stay as configured (the anime SegNet sees 224 px images); only the batch
size and the number of batches shrink.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aelightning.cli.train import train
from tests.conftest import TINY, config_options
from tests.data.image_files import write_crops

EXPERIMENTS = config_options("experiment")
ONE_BATCH = ["trainer.fast_dev_run=true", "data.eval_batch_size=null"]


@pytest.fixture(scope="module")
def anime_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real JPEG photo crops; 60 so the 5 % validation and test splits are not empty."""
    root = tmp_path_factory.mktemp("anime")
    write_crops(root, 60, 72)
    return root


def test_the_seed_setups_are_all_there() -> None:
    assert {"mnist_linear_dae", "mnist_conv_ae", "mnist_ae3d_tanh", "mnist_deep_ae"} <= set(
        EXPERIMENTS
    )
    assert {"mnist_vae", "anime_segnet_vgg16", "anime_vgg13_64"} <= set(EXPERIMENTS)
    assert {"anime_conv_64", "anime_vae_64"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_passes_fast_dev_run(make_cfg, anime_folder, name) -> None:
    if name.startswith("anime"):
        tiny = [o for o in TINY if not o.startswith("data.source=")]  # MNIST's key
        data = [*tiny, "data.batch_size=2", f"data.root={anime_folder}", "data.num_workers=0"]
        data.append(f"paths.data_dir={anime_folder.parent / 'cache'}")
        cfg = make_cfg(f"experiment={name}", *data, *ONE_BATCH, tiny=False)
    else:
        cfg = make_cfg(f"experiment={name}", "data.batch_size=16", *ONE_BATCH)
    assert cfg.task_name == name  # the experiment's own values were applied
    metrics = train(cfg)["metrics"]
    for stage in ("train", "val", "test"):
        assert math.isfinite(metrics[f"{stage}/loss"]), (stage, metrics)
    assert 0 < metrics["test/mse"] < 1
