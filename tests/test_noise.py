import math

import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.models.noise import GaussianNoise, MaskingNoise, NoNoise, SaltPepperNoise


@pytest.fixture
def grey() -> torch.Tensor:
    return torch.full((64, 1, 28, 28), 0.5)


def test_gaussian_is_the_seed_recipe(grey):
    torch.manual_seed(0)
    noisy = GaussianNoise(std=0.5)(grey)
    torch.manual_seed(0)
    expected = torch.clamp(grey + 0.5 * torch.randn_like(grey), 0.0, 1.0)
    assert torch.equal(noisy, expected)
    unclipped = GaussianNoise(std=0.1, clip=False)(grey)
    assert abs(float((unclipped - grey).std()) - 0.1) < 0.005


def test_salt_pepper_and_masking_rates(grey):
    torch.manual_seed(0)
    sp = SaltPepperNoise(p=0.2)(grey)
    assert abs(float((sp == 0).float().mean()) - 0.1) < 0.01
    assert abs(float((sp == 1).float().mean()) - 0.1) < 0.01
    assert torch.equal(sp[(sp != 0) & (sp != 1)], grey[(sp != 0) & (sp != 1)])
    masked = MaskingNoise(p=0.3)(grey)
    assert abs(float((masked == 0).float().mean()) - 0.3) < 0.01


def test_no_noise_is_identity(grey):
    assert NoNoise()(grey) is grey and not NoNoise.enabled


@pytest.mark.parametrize("std", [-0.1, math.nan, math.inf])
def test_bad_std(std):
    with pytest.raises(ConfigError, match=r"noise\.std"):
        GaussianNoise(std=std)


@pytest.mark.parametrize("cls", [SaltPepperNoise, MaskingNoise])
@pytest.mark.parametrize("p", [-0.01, 1.5, math.nan])
def test_bad_probability(cls, p):
    with pytest.raises(ConfigError, match=r"noise\.p"):
        cls(p=p)


@pytest.mark.parametrize(
    "noise", [GaussianNoise(std=0.5), SaltPepperNoise(p=0.2), MaskingNoise(p=0.3)]
)
def test_corruption_stays_on_the_batch_device_and_dtype(noise):
    x = torch.empty(4, 1, 28, 28, device="meta", dtype=torch.float64)  # no host copy possible
    out = noise(x)
    assert out.device == x.device and out.dtype == x.dtype and out.shape == x.shape


def test_the_module_corrupts_in_training_and_evaluation_alike():
    from aelightning.models.ae import DenoisingAutoencoder
    from aelightning.nets.mlp import MLPNet

    model = DenoisingAutoencoder(MLPNet((1, 28, 28)), noise=GaussianNoise(std=0.5))
    x = torch.full((8, 1, 28, 28), 0.5)
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            out = model.model_step((x,))
        assert not torch.equal(out.x_in, x)
        assert float(out.terms["recon"]) == pytest.approx(float(((out.x_hat - x) ** 2).mean()))
