import math

import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.noise import GaussianNoise, MaskingNoise, NoNoise, SaltPepperNoise


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
