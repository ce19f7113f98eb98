"""Image-quality numbers against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from aelightning.data.mnist import load_mnist_sample
from aelightning.evaluation.metrics import per_image_bce, per_image_mse, psnr, ssim

C1, C2 = 0.01**2, 0.03**2  # SSIM constants for data_range 1


def _digits(n: int = 4) -> torch.Tensor:
    images, _ = load_mnist_sample()
    return images[:n].float() / 255.0


def test_psnr_of_known_pairs():
    x = torch.zeros(3, 1, 28, 28)
    x_hat = x.clone()
    x_hat[0] += 0.1  # MSE 0.01 -> 20 dB
    x_hat[1, :, :14] = 0.5  # half the pixels off by 0.5: MSE 0.125 -> 9.0309 dB
    # x_hat[2] is perfect: capped at 100 dB instead of +inf
    assert per_image_mse(x_hat, x).tolist() == pytest.approx([0.01, 0.125, 0.0], abs=1e-7)
    expected = [20.0, 10 * math.log10(1 / 0.125), 100.0]
    assert psnr(x_hat, x).tolist() == pytest.approx(expected, abs=1e-4)
    # data_range scales the peak: images in 0..255 with an error of 25.5 -> 20 dB again
    assert float(psnr(x_hat[:1] * 255, x[:1] * 255, data_range=255.0)[0]) == pytest.approx(20.0)


@pytest.mark.parametrize(("a", "b"), [(0.2, 0.6), (0.5, 0.5), (0.9, 0.1), (0.0, 1.0)])
def test_ssim_of_constant_images_is_the_luminance_term(a, b):
    """Flat images have zero variance and covariance, so every window gives
    (2ab + C1) / (a^2 + b^2 + C1): the structure term is C2 / C2 = 1."""
    x = torch.full((2, 1, 28, 28), a)
    y = torch.full((2, 1, 28, 28), b)
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    # float32 window statistics leave variances of ~1e-8 against C2 = 9e-4: agree to ~1e-4
    assert ssim(y, x).tolist() == pytest.approx([expected] * 2, abs=2e-4)


def test_ssim_of_real_digits():
    x = _digits()
    assert ssim(x, x).tolist() == pytest.approx([1.0] * len(x), abs=1e-5)
    # grey and RGB agree: colour SSIM is the mean over channels
    rgb = x.expand(-1, 3, -1, -1)
    assert ssim(rgb * 0.8, rgb).tolist() == pytest.approx(ssim(x * 0.8, x).tolist(), abs=1e-5)
    # more noise, lower similarity; symmetric in its arguments
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    light = (x + 0.1 * noise).clamp(0, 1)
    heavy = (x + 0.5 * noise).clamp(0, 1)
    s_light, s_heavy = ssim(light, x), ssim(heavy, x)
    assert bool((s_heavy < s_light).all()) and bool((s_light < 1).all())
    assert ssim(x, light).tolist() == pytest.approx(s_light.tolist(), abs=1e-6)


def test_bce_per_pixel_by_hand():
    x = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    x_hat = torch.tensor([0.5, 0.5, 0.9, 0.2]).view(1, 1, 2, 2)
    expected = (2 * math.log(2) - math.log(0.9) - math.log(0.8)) / 4
    assert float(per_image_bce(x_hat, x)[0]) == pytest.approx(expected, rel=1e-6)
    # outputs outside (0, 1) (a linear decoder) stay finite
    assert torch.isfinite(per_image_bce(x_hat * 3 - 1, x)).all()
