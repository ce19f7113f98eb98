import math
from functools import partial

import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.models.ae import Autoencoder
from aelightning.nets.mlp import MLPNet
from aelightning.noise import GaussianNoise


def _model(**kwargs) -> Autoencoder:
    net_kwargs = kwargs.pop("net_kwargs", {})
    return Autoencoder(MLPNet((1, 28, 28), **net_kwargs), **kwargs)


def test_uint8_batches_become_unit_floats_on_device():
    model = _model()
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    out, labels = model.on_after_batch_transfer((images, torch.tensor([3])), 0)
    assert out.dtype == torch.float32 and out.flatten().tolist() == [0.0, 1.0]
    assert labels.tolist() == [3]


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
