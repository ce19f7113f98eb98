"""Using a trained model: ``aelightning.load_model``, ``ae-reconstruct``, ``ae-encode``,
``ae-sample``, ``ae-export`` and ``ae-evaluate data=<other data>``, on checkpoints trained here.

Three short runs are shared by the module: a plain MLP AE on the real MNIST sample, a VAE on it,
and a conv AE on a folder of real photo crops (RGB, 16x16).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import aelightning
from aelightning.api import ChannelError, TrainedAutoencoder, grey
from aelightning.builders import build_datamodule
from aelightning.checkpointing.atomic import read_json
from aelightning.cli.encode import encode_folder
from aelightning.cli.evaluate import evaluate
from aelightning.cli.export import export
from aelightning.cli.reconstruct import reconstruct_folder
from aelightning.cli.sample import sample_grid
from aelightning.cli.train import train
from aelightning.errors import CheckpointError, ConfigError, DataError
from aelightning.evaluation import analysis
from aelightning.evaluation.metrics import per_image_mse, psnr
from tests.conftest import ROOT, TINY, compose_config
from tests.data.conftest import write_idx_set
from tests.data.image_files import BAD_FILES, photo_crop, write_crops, write_mixed_folder


def _train(root: Path, *overrides: str) -> dict:
    (root / "data").mkdir(parents=True, exist_ok=True)
    base = [*TINY, f"data.data_dir={root / 'data'}"]
    if "data=anime" in overrides:  # an image folder has neither key
        base = [o for o in base if not o.startswith(("data.source", "data.data_dir"))]
    cfg = compose_config(root / "run", [*base, *overrides])
    result = train(cfg)
    result["cfg"] = cfg
    return result


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("ae"), "trainer.max_epochs=2", "model.optimizer.lr=3e-3")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("vae"), "model=vae", "net.latent_dim=2")


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgb")
    write_crops(root / "faces", 60, 24)
    return _train(
        root,
        "data=anime",
        f"data.root={root / 'faces'}",
        "data.image_size=16",
        "data.cache_dir=null",
        "data.num_workers=0",
        "data.progress=false",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
        "net=conv",
        "net.channels=[8,16]",
    )


@pytest.fixture(scope="module")
def mnist_test(ae_run):
    """The sample's test split (uint8 [500, 1, 28, 28]) the AE was tested on."""
    datamodule = build_datamodule(ae_run["cfg"])
    datamodule.setup("test")
    images, _ = analysis.split_tensors(datamodule, "test")
    return images


def _pngs(folder: Path, images: torch.Tensor) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"digit_{i:03d}.png"
        Image.fromarray(img[0].numpy()).save(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------ python API
def test_load_model_reconstructs_exactly_as_the_runs_test_pass(ae_run, mnist_test):
    model = aelightning.load_model(ae_run["best_checkpoint"])
    assert isinstance(model, TrainedAutoencoder) and not model.training
    assert not model.module.training and model.input_shape == (1, 28, 28)
    x_hat = model.reconstruct(mnist_test)
    assert x_hat.shape == (500, 1, 28, 28)
    # trainer.test logged the mean per-image MSE of the same checkpoint on the same images
    mse = per_image_mse(x_hat, mnist_test.float() / 255).mean()
    assert float(mse) == pytest.approx(ae_run["metrics"]["test/mse"], abs=1e-6)
    assert float(psnr(x_hat, mnist_test.float() / 255).mean()) == pytest.approx(
        ae_run["metrics"]["test/psnr"], abs=1e-4
    )
    # the same numbers for a smaller batch (up to float summation order)
    assert torch.allclose(model.denoise(mnist_test[:8]), x_hat[:8], atol=1e-6)
    assert torch.equal(model(mnist_test[:8]), model.reconstruct(mnist_test[:8]))


def test_preprocess_files_pil_and_arrays_give_the_training_pixels(ae_run, mnist_test, tmp_path):
    model = aelightning.load_model(ae_run["best_checkpoint"])
    images = mnist_test[:6]
    expected = images.float() / 255
    paths = _pngs(tmp_path / "digits", images)
    assert torch.equal(model.preprocess(paths), expected)
    assert torch.equal(model.preprocess([str(p) for p in paths]), expected)
    assert torch.equal(model.preprocess([Image.open(p) for p in paths]), expected)
    arrays = images[:, 0].numpy()
    assert torch.equal(model.preprocess(list(arrays)), expected)
    assert torch.equal(model.preprocess(arrays[..., None]), expected)  # [N, H, W, 1]
    # a grey digit saved as RGB comes back exactly; one file alone is a batch of one
    rgb = tmp_path / "rgb.png"
    Image.fromarray(arrays[0]).convert("RGB").save(rgb)
    assert torch.equal(model.preprocess(rgb), expected[:1])
    # any size: a 3x larger digit is resized (bicubic) back close to the original
    big = tmp_path / "big.png"
    Image.fromarray(arrays[1]).resize((84, 84), Image.Resampling.BICUBIC).save(big)
    again = model.preprocess(big)
    assert again.shape == (1, 1, 28, 28)
    assert float((again - expected[1:2]).abs().mean()) < 0.05
    # files straight into the model methods
    assert torch.equal(model.reconstruct(paths), model.reconstruct(images))


def test_preprocess_colour_is_luma_or_refused_and_bad_inputs_are_one_sentence(ae_run, tmp_path):
    model = aelightning.load_model(ae_run["best_checkpoint"])
    photo = photo_crop(0, 28, 28)
    rgb = np.asarray(photo).transpose(2, 0, 1)
    assert np.array_equal(grey(rgb)[0], np.asarray(photo.convert("L")))  # PIL's own luma
    assert torch.equal(model.preprocess(photo)[0, 0], torch.from_numpy(grey(rgb)[0]) / 255.0)
    with pytest.raises(ChannelError, match="colour image"):
        model.image_to_array(photo, to_grey=False)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.png' is not a readable image"):
        model.preprocess(tmp_path / "notes.png")
    with pytest.raises(DataError, match="does not exist"):
        model.preprocess(tmp_path / "missing.png")
    with pytest.raises(DataError, match="uint8"):
        model.preprocess(np.zeros((28, 28), dtype=np.float32))
    with pytest.raises(DataError, match=r"shape \[1, 28, 28\]"):
        model.reconstruct(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ConfigError, match="no prior to sample from"):
        model.sample(4)
    with pytest.raises(CheckpointError, match="does not exist"):
        aelightning.load_model(tmp_path / "none.ckpt")
    # weights-only, like every command: a pickled object is refused before it can run
    checkpoint = torch.load(ae_run["best_checkpoint"], weights_only=True)
    checkpoint["callback"] = Path("anything")  # any non-allow-listed Python object
    torch.save(checkpoint, tmp_path / "pickled.ckpt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        aelightning.load_model(tmp_path / "pickled.ckpt")


def test_encode_decode_and_vae_sampling(ae_run, vae_run, mnist_test):
    model = aelightning.load_model(ae_run["best_checkpoint"])
    codes = model.encode(mnist_test[:5])
    assert codes.shape == (5, 20)
    assert torch.allclose(model.decode(codes), model.reconstruct(mnist_test[:5]), atol=1e-6)
    vae = aelightning.load_model(vae_run["best_checkpoint"])
    assert vae.objective == "vae" and vae.latent_shape == (2,)
    # the deterministic reconstruction decodes the posterior mean
    x = mnist_test[:5]
    assert torch.equal(vae.reconstruct(x), vae.reconstruct(x))
    assert torch.allclose(vae.decode(vae.encode(x)), vae.reconstruct(x), atol=1e-6)
    samples = vae.sample(6, seed=3)
    assert samples.shape == (6, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(samples, vae.sample(6, seed=3))
    assert not torch.equal(samples, vae.sample(6, seed=4))


# ------------------------------------------------------------------------- ae-reconstruct
def _run(config: str, out: Path, *overrides: str):
    runner = {
        "reconstruct": reconstruct_folder,
        "encode": encode_folder,
        "sample": sample_grid,
        "export": export,
        "evaluate": evaluate,
    }[config]
    return runner(compose_config(out / "hydra", list(overrides), config_name=config))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_reconstruct_a_folder_writes_pngs_grid_and_errors(ae_run, mnist_test, tmp_path):
    ckpt = ae_run["best_checkpoint"]
    folder = tmp_path / "mine"
    _pngs(folder / "a", mnist_test[:5])
    _pngs(folder / "b", mnist_test[5:9])
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    summary = _run("reconstruct", tmp_path, f"ckpt_path={ckpt}", f"input={folder}", f"output={out}")
    assert summary["images"] == 9 and [s["file"] for s in summary["skipped"]] == ["b/broken.png"]
    rows = _read_csv(out / "errors.csv")
    assert [r["file"] for r in rows] == [f"a/digit_{i:03d}.png" for i in range(5)] + [
        f"b/digit_{i:03d}.png" for i in range(4)
    ]
    model = aelightning.load_model(ckpt)
    x = torch.cat([mnist_test[:5], mnist_test[5:9]]).float() / 255
    x_hat = model.reconstruct(x)
    mse = per_image_mse(x_hat, x)
    assert [float(r["mse"]) for r in rows] == pytest.approx(mse.tolist(), abs=1e-7)
    assert [float(r["psnr"]) for r in rows] == pytest.approx(psnr(x_hat, x).tolist(), abs=1e-4)
    # each reconstruction as an 8-bit PNG under the same relative name
    png = np.asarray(Image.open(out / "b" / "digit_002.png"))
    assert png.shape == (28, 28) and png.dtype == np.uint8
    expected = (x_hat[7, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(png, expected)
    grid = Image.open(out / "grid.png")
    assert grid.size == (2 * 28 + 3 * 2, 9 * 28 + 10 * 2)  # input | reconstruction, 9 rows
    assert read_json(out / "reconstruct.json")["mean_mse"] == pytest.approx(float(mse.mean()))


def test_reconstruct_with_noise_shows_denoising_columns(ae_run, mnist_test, tmp_path):
    folder = tmp_path / "mine"
    _pngs(folder, mnist_test[:4])
    out = tmp_path / "out"
    args = [f"ckpt_path={ae_run['best_checkpoint']}", f"input={folder}", f"output={out}"]
    summary = _run("reconstruct", tmp_path, *args, "noise=gaussian", "noise.std=0.3")
    assert "GaussianNoise(std=0.3" in summary["noise"]
    rows = _read_csv(out / "errors.csv")
    assert all(float(r["psnr_noisy"]) < 20 for r in rows)  # the corruption is really there
    assert Image.open(out / "grid.png").size[0] == 3 * 28 + 4 * 2  # input | noisy | output
    again = _run(
        "reconstruct", tmp_path, *args[:2], f"output={tmp_path / 'again'}", "noise=gaussian"
    )
    assert again["mean_psnr_noisy"] != summary["mean_psnr_noisy"]  # std 0.5 vs 0.3
    with pytest.raises(ConfigError, match="trained without corruption"):
        _run("reconstruct", tmp_path, *args, "run_noise=true")


def test_reconstruct_any_image_files_with_an_rgb_model(rgb_run, tmp_path):
    folder = tmp_path / "messy"
    good = write_mixed_folder(folder)
    out = tmp_path / "out"
    summary = _run(
        "reconstruct",
        tmp_path,
        f"ckpt_path={rgb_run['best_checkpoint']}",
        f"input={folder}",
        f"output={out}",
    )
    assert summary["images"] == len(good)
    assert sorted(s["file"] for s in summary["skipped"]) == sorted(BAD_FILES)
    for rel in good:
        img = Image.open(out / Path(rel).with_suffix(".png"))
        assert img.size == (16, 16) and img.mode == "RGB"
    # one file works too, written beside nothing else
    one = _run(
        "reconstruct",
        tmp_path,
        f"ckpt_path={rgb_run['best_checkpoint']}",
        f"input={folder / 'wide.jpg'}",
        f"output={tmp_path / 'one'}",
    )
    assert one["images"] == 1 and (tmp_path / "one" / "wide.png").is_file()


def test_reconstruct_errors_are_one_sentence(ae_run, rgb_run, tmp_path):
    ckpt = f"ckpt_path={ae_run['best_checkpoint']}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        _run("reconstruct", tmp_path, ckpt, f"input={tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        _run("reconstruct", tmp_path, ckpt, f"input={tmp_path / 'nowhere'}")
    write_crops(tmp_path / "photos", 2, 32)
    with pytest.raises(ChannelError, match=r"colour image .* one-channel"):
        _run("reconstruct", tmp_path, ckpt, f"input={tmp_path / 'photos'}")
    converted = _run(
        "reconstruct",
        tmp_path,
        ckpt,
        f"input={tmp_path / 'photos'}",
        "to_grey=true",
        f"output={tmp_path / 'grey'}",
    )
    assert converted["images"] == 2
    with pytest.raises(ConfigError, match="lies inside input"):
        _run(
            "reconstruct",
            tmp_path,
            ckpt,
            f"input={tmp_path / 'photos'}",
            f"output={tmp_path / 'photos' / 'out'}",
        )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("nope")
    with pytest.raises(DataError, match="none of the 1 files"):
        _run("reconstruct", tmp_path, ckpt, f"input={tmp_path / 'bad'}")
    with pytest.raises(ConfigError, match="ckpt_path is required"):
        _run("reconstruct", tmp_path, f"input={tmp_path / 'bad'}")


def test_reconstruct_command_prints_one_sentence_without_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "aelightning.cli.reconstruct",
            f"ckpt_path={tmp_path / 'missing.ckpt'}", f"input={tmp_path / 'empty'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"error: checkpoint '{tmp_path / 'missing.ckpt'}' does not exist" in proc.stderr


# ------------------------------------------------------------------------ encode, sample
def test_encode_writes_codes_with_file_names(ae_run, mnist_test, tmp_path):
    folder = tmp_path / "mine"
    _pngs(folder, mnist_test[:7])
    out = tmp_path / "codes"
    summary = _run(
        "encode",
        tmp_path,
        f"ckpt_path={ae_run['best_checkpoint']}",
        f"input={folder}",
        f"output={out}",
        "batch_size=3",
    )
    assert summary["images"] == 7 and summary["code_size"] == 20
    codes = np.load(out / "codes.npy")
    expected = aelightning.load_model(ae_run["best_checkpoint"]).encode(mnist_test[:7])
    assert codes.dtype == np.float32 and np.allclose(codes, expected.numpy(), atol=1e-6)
    rows = _read_csv(out / "codes.csv")
    assert [r["file"] for r in rows] == [f"digit_{i:03d}.png" for i in range(7)]
    assert np.allclose([[float(r[f"z{j}"]) for j in range(20)] for r in rows], codes, atol=1e-5)


def test_sample_writes_a_grid_for_generative_models_only(vae_run, ae_run, tmp_path):
    out = tmp_path / "samples"
    result = _run(
        "sample",
        tmp_path,
        f"ckpt_path={vae_run['best_checkpoint']}",
        f"output={out}",
        "num_samples=10",
        "seed=1",
    )
    assert result["samples"] == 10
    samples = np.load(out / "samples.npy")
    expected = aelightning.load_model(vae_run["best_checkpoint"]).sample(10, seed=1)
    assert np.array_equal(samples, expected.numpy())
    assert Image.open(out / "samples.png").size == (4 * 28 + 5 * 2, 3 * 28 + 4 * 2)
    with pytest.raises(ConfigError, match="model=ae has no prior"):
        _run("sample", tmp_path, f"ckpt_path={ae_run['best_checkpoint']}")


# --------------------------------------------------------------------------------- export
def test_export_onnx_runs_in_onnxruntime_like_pytorch(ae_run, mnist_test, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    path = tmp_path / "model.onnx"
    info = _run("export", tmp_path, f"ckpt_path={ae_run['best_checkpoint']}", f"output={path}")
    assert info["check"]["max_abs_diff"] <= 1e-5
    meta = read_json(tmp_path / "model.json")
    assert meta["input"]["shape"] == ["batch", 1, 28, 28] and meta["input"]["range"] == [0, 1]
    assert meta["preprocessing"]["channels"].startswith("grey")
    x = (mnist_test[:13].float() / 255).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    expected = aelightning.load_model(ae_run["best_checkpoint"]).reconstruct(torch.from_numpy(x))
    assert np.abs(out - expected.numpy()).max() <= 1e-5


def test_export_torchscript_encoder_of_the_rgb_model(rgb_run, tmp_path):
    info = _run(
        "export",
        tmp_path,
        f"ckpt_path={rgb_run['best_checkpoint']}",
        "format=torchscript",
        "part=encoder",
    )
    path = Path(info["path"])
    assert path.name == "encoder.pt" and path.with_suffix(".json").is_file()
    assert info["input"]["shape"] == ["batch", 3, 16, 16]
    assert info["preprocessing"]["channels"].startswith("RGB")
    assert info["check"]["max_abs_diff"] <= 1e-5
    with pytest.raises(ConfigError, match="part='head' is unknown"):
        _run("export", tmp_path, f"ckpt_path={rgb_run['best_checkpoint']}", "part=head")
    with pytest.raises(ConfigError, match="format='tflite' is unknown"):
        _run("export", tmp_path, f"ckpt_path={rgb_run['best_checkpoint']}", "format=tflite")


# ----------------------------------------------------------------- evaluate on other data
def _fashion_files(root: Path) -> Path:
    """Fashion-MNIST-format IDX files (flat, .gz, as dataset-fashion-mnist installs them)
    holding grey 28x28 crops of real photographs: images the digit model never saw."""

    def crops(n: int, seed: int) -> torch.Tensor:
        pixels = [np.asarray(photo_crop(i, 28, 28, seed).convert("L")) for i in range(n)]
        return torch.from_numpy(np.stack(pixels))[:, None]

    labels = torch.arange(300) % 10
    write_idx_set(root, (crops(300, 1), labels, crops(200, 2), labels[:200]), gz=True)
    return root


def test_evaluate_on_fashion_mnist_scores_its_test_split_and_ood_auroc(
    ae_run, mnist_test, tmp_path
):
    fashion = _fashion_files(tmp_path / "fashion-mnist")
    data = ["data=fashion_mnist", f"data.data_dir={fashion}", "data.val_size=50"]
    result = _run("evaluate", tmp_path / "eval", f"ckpt_path={ae_run['best_checkpoint']}", *data)
    metrics = result["metrics"]
    model = aelightning.load_model(ae_run["best_checkpoint"])
    dm = build_datamodule(compose_config(tmp_path / "c", data))
    dm.setup("test")
    other, _ = analysis.split_tensors(dm, "test")
    out_err = per_image_mse(model.reconstruct(other), other.float() / 255)
    in_err = per_image_mse(model.reconstruct(mnist_test), mnist_test.float() / 255)
    assert metrics["test/mse"] == pytest.approx(float(out_err.mean()), rel=1e-5)
    assert metrics["ood/out_mse"] == pytest.approx(float(out_err.mean()), rel=1e-5)
    assert metrics["ood/in_mse"] == pytest.approx(float(in_err.mean()), rel=1e-5)
    from sklearn.metrics import roc_auc_score

    target = np.r_[np.zeros(len(in_err)), np.ones(len(out_err))]
    expected = roc_auc_score(target, np.r_[in_err.numpy(), out_err.numpy()])
    assert metrics["ood/auroc"] == pytest.approx(expected, abs=1e-6)
    assert metrics["ood/auroc"] > 0.8  # photographs are not digits
    assert "Fashion-MNIST" in result["data"]
    assert read_json(Path(result["output_dir"]) / "metrics.json")["metrics"] == metrics
    assert (Path(result["output_dir"]) / "figures" / "ood_errors.png").is_file()


def test_evaluate_on_data_of_another_shape_is_one_sentence(ae_run, tmp_path):
    write_crops(tmp_path / "faces", 30, 20)
    with pytest.raises(ConfigError, match=r"shape \[3, 16, 16\].*trained on \[1, 28, 28\]"):
        _run(
            "evaluate",
            tmp_path,
            f"ckpt_path={ae_run['best_checkpoint']}",
            "data=anime",
            f"data.root={tmp_path / 'faces'}",
            "data.image_size=16",
            "data.cache_dir=null",
            "data.num_workers=0",
            "data.progress=false",
            "data.test_fraction=0.3",
        )


def test_readme_onnx_demo_runs_the_exported_file_like_pytorch(
    ae_run, mnist_test, tmp_path, monkeypatch
):
    """The README's ``onnx_demo.py``, run as written next to ``ae-export``'s files."""
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    demo = readme.split("`onnx_demo.py`, using only", 1)[1].split("```python\n", 1)[1]
    demo = demo.split("```", 1)[0]
    _run(
        "export",
        tmp_path,
        f"ckpt_path={ae_run['best_checkpoint']}",
        f"output={tmp_path / 'model.onnx'}",
    )
    (tmp_path / "my_pngs").mkdir()
    Image.fromarray(mnist_test[3, 0].numpy()).save(tmp_path / "my_pngs" / "a.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(demo, "onnx_demo.py", "exec"), namespace)
    expected = aelightning.load_model(ae_run["best_checkpoint"]).reconstruct(mnist_test[3:4])
    assert np.abs(namespace["out"] - expected.numpy()).max() <= 1e-5
    assert Image.open(tmp_path / "a_recon.png").size == (28, 28)
