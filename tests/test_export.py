"""ONNX and TorchScript exports of every net match PyTorch (max abs diff <= 1e-5, float32),
at batch sizes other than the one traced (the batch dimension is dynamic).

The models are built from the real configs (``conf/net/*``) and used untrained: what is checked
is that the exported graph computes what the module computes, including the SegNet-VGG
autoencoder's max-unpooling with the encoder's indices and its padding of 28x28 to 32x32.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from aelightning.api import TrainedAutoencoder
from aelightning.builders import build_model
from aelightning.export import ModelPart, example_batch, export_model
from tests.conftest import compose_config

TOLERANCE = 1e-5
NETS = {
    "mlp": ["net=mlp"],
    "conv": ["net=conv"],
    "vgg13": ["net=vgg13", "net.base_width=4"],
}


def _model(tmp_path: Path, net: str, *extra: str) -> TrainedAutoencoder:
    cfg = compose_config(tmp_path / "cfg", ["data.source=sample", *NETS[net], *extra])
    torch.manual_seed(0)
    module = build_model(cfg, (1, 28, 28))
    # batch-norm running statistics away from their 0/1 start, so eval mode is really tested
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    module.run_config = {"net": {"_target_": cfg.net._target_}, "data": {}}
    return TrainedAutoencoder(module)


def _expected(model: TrainedAutoencoder, part: str, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return ModelPart(model, part)(x).numpy()


def _check_onnx(model: TrainedAutoencoder, part: str, path: Path) -> float:
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    info = export_model(model, part, "onnx", path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 5):
        x = example_batch(model, part, n, seed=10 + n)
        (got,) = session.run(None, {"input": x.numpy()})
        worst = max(worst, float(np.abs(got - _expected(model, part, x)).max()))
    assert worst <= TOLERANCE, (part, worst)
    assert info["check"]["max_abs_diff"] <= TOLERANCE
    return worst


def _check_torchscript(model: TrainedAutoencoder, part: str, path: Path) -> float:
    export_model(model, part, "torchscript", path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path))
    worst = 0.0
    for n in (1, 5):
        x = example_batch(model, part, n, seed=20 + n)
        with torch.no_grad():
            got = loaded(x).numpy()
        worst = max(worst, float(np.abs(got - _expected(model, part, x)).max()))
    assert worst <= TOLERANCE, (part, worst)
    return worst


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("part", ["encoder", "decoder", "autoencoder"])
def test_torchscript_matches_pytorch(tmp_path, net, part):
    _check_torchscript(_model(tmp_path, net), part, tmp_path / f"{part}.pt")


@pytest.mark.parametrize("net", list(NETS))
def test_onnx_autoencoder_matches_pytorch(tmp_path, net):
    model = _model(tmp_path, net)
    _check_onnx(model, "autoencoder", tmp_path / "autoencoder.onnx")
    meta = json.loads((tmp_path / "autoencoder.json").read_text())
    assert meta["input"]["shape"] == meta["output"]["shape"] == ["batch", 1, 28, 28]
    assert meta["output"]["range"] == [0, 1]  # sigmoid output


@pytest.mark.slow  # ~10 s each with torch's dynamo exporter; the autoencoder covers the net
@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_onnx_vgg_encoder_and_decoder_match_pytorch(tmp_path, part):
    model = _model(tmp_path, "vgg13")
    _check_onnx(model, part, tmp_path / f"{part}.onnx")
    meta = json.loads((tmp_path / f"{part}.json").read_text())
    code = ["batch", *model.latent_shape]
    assert (meta["output"] if part == "encoder" else meta["input"])["shape"] == code


@pytest.mark.slow
@pytest.mark.parametrize("net", ["mlp", "conv"])
@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_onnx_encoder_and_decoder_of_the_other_nets(tmp_path, net, part):
    _check_onnx(_model(tmp_path, net), part, tmp_path / f"{part}.onnx")


def test_vae_encoder_exports_the_posterior_mean(tmp_path):
    model = _model(tmp_path, "conv", "model=vae", "net.bottleneck_activation=none")
    x = example_batch(model, "encoder", 4)
    assert _expected(model, "encoder", x).shape == (4, *model.latent_shape)
    _check_torchscript(model, "encoder", tmp_path / "encoder.pt")


def test_missing_onnx_packages_is_one_sentence(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxscript"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    from aelightning.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pip install 'aelightning\[onnx\]'"):
        export_model(_model(tmp_path, "mlp"), "autoencoder", "onnx", tmp_path / "x.onnx")
