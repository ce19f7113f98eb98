import math
from functools import partial

import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.models.ae import Autoencoder
from aelightning.models.noise import GaussianNoise
from aelightning.nets.mlp import MLPNet


def _model(**kwargs) -> Autoencoder:
    net_kwargs = kwargs.pop("net_kwargs", {})
    return Autoencoder(MLPNet((1, 28, 28), **net_kwargs), **kwargs)


def test_uint8_batches_become_unit_floats_on_device():
    model = _model()
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out, labels = model.on_after_batch_transfer((images, torch.tensor([3])), 0)
    assert out.dtype == torch.float32 and out.flatten().tolist() == [0.0, 1.0]
    assert labels.tolist() == [3]


def test_tensor_batches_move_without_a_copy_when_already_there():
    model = _model()
    images, labels = torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.arange(4)
    cpu = model.transfer_batch_to_device((images, labels), torch.device("cpu"), 0)
    assert type(cpu) is tuple and cpu[0] is images and cpu[1] is labels  # same storage
    # meta tensors have no data: the move cannot pass through the host; uint8 stays uint8
    meta = model.transfer_batch_to_device([images, labels], torch.device("meta"), 0)
    assert type(meta) is list and [t.device.type for t in meta] == ["meta", "meta"]
    assert meta[0].dtype == torch.uint8 and meta[0].shape == images.shape


def test_other_batches_take_lightnings_collection_walk():
    model = _model()
    batch = {"x": torch.zeros(2), "meta": ["a", "b"]}
    moved = model.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved["x"].device.type == "meta" and moved["meta"] == ["a", "b"]


def test_target_is_the_clean_image():
    model = _model(noise=GaussianNoise(std=0.5))
    x = torch.full((8, 1, 28, 28), 0.5)
    with torch.no_grad():
        out = model.model_step((x,))
    assert not torch.equal(out.x_in, x)
    assert float(out.loss) == pytest.approx(float(torch.mean((out.x_hat - x) ** 2)))


def test_bce_is_per_pixel_binary_cross_entropy():
    model = _model(recon_loss="bce")
    x_hat = torch.tensor([0.25, 0.75])
    x = torch.tensor([0.0, 1.0])
    assert float(model.reconstruction_loss(x_hat, x)) == pytest.approx(-math.log(0.75))


def test_bce_needs_sigmoid_output():
    with pytest.raises(ConfigError, match=r"net\.output_activation=sigmoid"):
        _model(recon_loss="bce", net_kwargs={"output_activation": "none"})


@pytest.mark.parametrize("lr", [0.0, -1e-3, math.nan])
def test_learning_rate_must_be_positive(lr):
    with pytest.raises(ConfigError, match=r"model\.optimizer\.lr"):
        _model(optimizer=partial(torch.optim.Adam, lr=lr))


def test_unknown_loss():
    with pytest.raises(ConfigError, match=r"model\.recon_loss"):
        _model(recon_loss="l3")
