"""``ae-evaluate`` and the training-time figures, end to end on the real MNIST sample.

Two short training runs are shared by the module (each trained once): a denoising AE with
the figure and projector callbacks on, and a VAE with a 2-D latent trained without digit 0.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from aelightning.builders import build_datamodule
from aelightning.checkpointing.atomic import read_json
from aelightning.checkpointing.checkpoint import load_model_from_checkpoint
from aelightning.cli.evaluate import evaluate
from aelightning.cli.train import train
from aelightning.errors import CheckpointError, ConfigError
from aelightning.evaluation import analysis
from aelightning.evaluation.likelihood import likelihood_metrics
from tests.conftest import ROOT, TINY, compose_config
from tests.tbutil import read_events, scalar_values, session_hparams
from tests.test_plots import assert_png_with_content

#: the tiny settings with this issue's callbacks left on
TINY_WITH_FIGURES = [
    o for o in TINY if not o.startswith(("callbacks.figures", "callbacks.projector"))
]
FAST_FIGURES = ["figures.tsne_points=300", "figures.max_points=500", "projector_images=200"]


def _train(root: Path, *overrides: str) -> tuple[object, dict]:
    (root / "data").mkdir(parents=True, exist_ok=True)
    cfg = compose_config(
        root / "run", [*TINY_WITH_FIGURES, f"data.data_dir={root / 'data'}", *overrides]
    )
    return cfg, train(cfg)


def _evaluate(out_dir: Path, ckpt: str | None, *overrides: str) -> dict:
    cfg = compose_config(
        out_dir, [f"ckpt_path={ckpt}", *FAST_FIGURES, *overrides], config_name="evaluate"
    )
    return evaluate(cfg)


@pytest.fixture(scope="module")
def dae_run(tmp_path_factory):
    return _train(
        tmp_path_factory.mktemp("dae"),
        "model=dae",
        "trainer.max_epochs=2",
        "data.batch_size=128",
        "trainer.log_every_n_steps=5",
        "callbacks.figures.tsne_points=200",
        "callbacks.figures.max_points=500",
        "callbacks.figures.noise_images=200",
        "callbacks.projector.num_images=200",
    )


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return _train(
        tmp_path_factory.mktemp("vae"),
        "model=vae",
        "net.latent_dim=2",
        "data.batch_size=32",
        "data.exclude_classes=[0]",
        "callbacks.figures=null",
        "callbacks.projector=null",
    )


# ------------------------------------------------------------------ training-time outputs
def test_training_logs_figures_projector_and_hparams_to_tensorboard(dae_run):
    cfg, _ = dae_run
    run = Path(cfg.paths.output_dir)
    acc = read_events(run / "tensorboard")
    tags = acc.Tags()
    for tag in ("train/loss", "val/loss", "test/loss", "val/psnr_noisy", "lr-Adam"):
        assert tag in tags["scalars"], tag
    images = set(tags["images"])
    for tag in (
        "val/reconstructions",
        "figures/codes_pca",
        "figures/codes_tsne",
        "figures/reconstructions",
        "figures/loss_curves",
        "figures/learning_rate",
        "figures/interpolation",
        "figures/noise_curve",
    ):
        assert tag in images, (tag, images)
    assert len(acc.Images("figures/codes_pca")) == 3  # one per epoch, and the final map
    hparams = session_hparams(acc)
    assert hparams["model"] == "dae" and hparams["noise.std"] == 0.5

    # the projector: config, the code matrix, one label per row and the thumbnail sprite
    pbtxt = (run / "tensorboard" / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "codes' in pbtxt and "sprite" in pbtxt
    folder = next((run / "tensorboard").glob("*/codes"))
    rows = (folder / "tensors.tsv").read_text().strip().splitlines()
    labels = (folder / "metadata.tsv").read_text().strip().splitlines()
    assert len(rows) == len(labels) == 200 and len(rows[0].split("\t")) == 20
    assert set(labels) == {str(d) for d in range(10)}
    assert_png_with_content(folder / "sprite.png")


#: the figures a finished run (and ae-evaluate) draws for a noisy MLP AE
FINAL_FIGURES = (
    "reconstructions",
    "loss_curves",
    "learning_rate",
    "codes_pca",
    "codes_tsne",
    "interpolation",
    "noise_curve",
)


def test_training_figures_are_pngs_with_content(dae_run):
    cfg, _ = dae_run
    figures = Path(cfg.paths.output_dir) / "figures"
    names = {p.stem for p in figures.glob("*.png")}
    for name in (*FINAL_FIGURES, "codes_pca_epoch000", "codes_pca_epoch001"):
        assert name in names, (name, names)
    for path in figures.glob("*.png"):
        assert_png_with_content(path)


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_reproduces_the_runs_test_loss_and_writes_its_own_run_dir(dae_run, tmp_path):
    cfg, trained = dae_run
    result = _evaluate(tmp_path / "eval", trained["best_checkpoint"])
    metrics = result["metrics"]
    # gaussian noise is on: equal only because both test passes start from the run's seed
    for name in ("test/loss", "test/mse", "test/psnr", "test/psnr_noisy"):
        assert abs(metrics[name] - trained["metrics"][name]) <= 1e-5, name
    assert 0 < metrics["test/ssim"] < 1 and 0 < metrics["test/bce"] < 1
    # SSIM and BCE come from a second pass that sees the same noise draws as trainer.test
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    model = load_model_from_checkpoint(trained["best_checkpoint"], input_shape=datamodule.dims)
    images, _ = analysis.split_tensors(datamodule, "test")
    with analysis.seeded(result["seed"]):
        scores = analysis.reconstruction_scores(model, images, datamodule.eval_batch_size)
    assert float(scores["mse"].mean()) == pytest.approx(metrics["test/mse"], abs=1e-6)
    assert float(scores["ssim"].mean()) == pytest.approx(metrics["test/ssim"], abs=1e-6)
    assert metrics["probe/linear_acc"] > metrics["probe/chance"]
    rows = {r["level"]: r for r in result["noise_curve"]}
    assert rows[0.5]["psnr_out"] > rows[0.5]["psnr_noisy"]  # it denoises at its training level
    assert rows[0.0]["psnr_noisy"] == pytest.approx(100.0)  # the clean image itself

    out = tmp_path / "eval"
    assert read_json(out / "metrics.json")["metrics"]["test/loss"] == metrics["test/loss"]
    for name in FINAL_FIGURES:
        assert_png_with_content(out / "figures" / f"{name}.png")
    acc = read_events(out / "tensorboard")
    assert scalar_values(acc, "test/ssim") == pytest.approx([metrics["test/ssim"]])
    assert "figures/noise_curve" in acc.Tags()["images"]
    assert session_hparams(acc)["net"] == "MLPNet"  # a checkpoint's config has no group names
    assert (out / "tensorboard" / "projector_config.pbtxt").is_file()
    # the training run's own folder is left alone
    assert not (Path(trained["output_dir"]) / "metrics.json").read_text().count("ssim")


def test_evaluate_vae_likelihood_anomaly_and_generative_figures(vae_run, vae_model, tmp_path):
    _, trained = vae_run
    result = _evaluate(tmp_path / "eval", trained["best_checkpoint"], "metrics.iw_samples=20")
    metrics = result["metrics"]
    assert abs(metrics["test/loss"] - trained["metrics"]["test/loss"]) <= 1e-5
    # the k-sample ELBO estimate agrees with the module's own one-sample test/neg_elbo
    assert metrics["test/neg_elbo_k"] == pytest.approx(metrics["test/neg_elbo"], rel=0.02)
    assert metrics["test/iw_nll"] < metrics["test/neg_elbo_k"]
    # digit 0 was left out of training: its reconstruction error flags it (sklearn agrees)
    model, images, labels = vae_model
    errors = analysis.reconstruction_errors(model, images)
    expected = roc_auc_score((labels == 0).numpy(), errors.numpy())
    assert metrics["anomaly/auroc"] == pytest.approx(expected, abs=1e-6)
    assert metrics["anomaly/auroc"] > 0.6
    figures = tmp_path / "eval" / "figures"
    for name in ("samples", "manifold", "codes_2d", "interpolation", "reconstructions"):
        assert_png_with_content(figures / f"{name}.png")
    assert not (figures / "codes_pca.png").exists()  # a 2-D code is drawn directly


@pytest.fixture(scope="module")
def vae_model(vae_run):
    """The VAE's best checkpoint loaded back, with its test split."""
    cfg, trained = vae_run
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    model = load_model_from_checkpoint(trained["best_checkpoint"], input_shape=datamodule.dims)
    return model, *analysis.split_tensors(datamodule, "test")


def test_iw_nll_is_below_the_elbo_and_meets_it_at_k1(vae_model):
    model, images, _ = vae_model
    with analysis.seeded(0):
        k100 = likelihood_metrics(model, images, k=100)
    with analysis.seeded(1):
        k1 = likelihood_metrics(model, images, k=1)
    # Jensen: log of a mean of weights >= mean of log weights; the gap is nats, not noise
    assert k100["iw_nll"] < k100["neg_elbo"] - 0.5, k100
    # one importance sample is an ELBO estimate: equal in expectation, 500 images average it
    assert k1["iw_nll"] == pytest.approx(k1["neg_elbo"], abs=1.0), k1
    assert k1["neg_elbo"] == pytest.approx(k100["neg_elbo"], rel=0.01)
    with analysis.seeded(0):
        binary = likelihood_metrics(model, images, k=10, binarize=True)
    assert math.isfinite(binary["iw_nll"]) and binary["iw_nll"] < binary["neg_elbo"]


# ------------------------------------------------------------------------------ errors
def test_missing_or_foreign_checkpoints_are_refused_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        _evaluate(tmp_path / "a", str(tmp_path / "nope.ckpt"))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="no saved run config"):
        _evaluate(tmp_path / "b", str(foreign))
    with pytest.raises(ConfigError, match="ckpt_path is required"):
        _evaluate(tmp_path / "c", "null")


def test_cli_reports_a_missing_checkpoint_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aelightning.cli.evaluate",
            f"ckpt_path={tmp_path / 'missing.ckpt'}",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "error: checkpoint" in proc.stderr and "missing.ckpt" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("metrics.noise_images=0", "metrics.noise_images must be null (all) or an integer >= 1"),
        ("metrics.probe_train_images=1.5", "metrics.probe_train_images must be null (all)"),
        ("figures.max_points=0", "figures.max_points must be an integer >= 1, got 0."),
        ("projector_images=-1", "projector_images must be null (all) or an integer >= 0"),
    ],
)
def test_bad_inspection_options_fail_before_loading_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _evaluate(tmp_path / "eval", str(tmp_path / "never-read.ckpt"), override)


def test_training_and_evaluate_draw_with_the_same_gallery_sizes(make_cfg, tmp_path):
    training = make_cfg(tiny=False).callbacks.figures
    evaluating = compose_config(tmp_path / "eval", [], config_name="evaluate").figures
    sizes = {k: v for k, v in evaluating.items() if k != "enabled"}
    assert sizes and sizes.keys() <= training.keys()
    # one set of sizes (conf/gallery/default.yaml); training only draws a smaller t-SNE map
    assert {k for k, v in sizes.items() if training[k] != v} == {"tsne_points"}
