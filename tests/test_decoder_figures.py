"""The bottleneck comparison and the decoder-on-random-codes figure, on real built models."""

from __future__ import annotations

import pytest
import torch

from aelightning.builders import build_model
from aelightning.evaluation import plots
from aelightning.evaluation.decoder_figures import (
    bottleneck_comparison,
    decoder_random_codes,
    random_codes_like,
)
from aelightning.evaluation.metrics import psnr
from tests.data.image_files import photo_crop
from tests.test_plots import assert_png_with_content


def faces(n: int = 6, size: int = 32) -> torch.Tensor:
    """Real photo crops as uint8 ``[n, 3, size, size]``, as the image-folder module holds them."""
    import numpy as np

    return torch.from_numpy(
        np.stack([np.asarray(photo_crop(i, size, size)).transpose(2, 0, 1) for i in range(n)])
    )


def model(make_cfg, *overrides: str):
    cfg = make_cfg("net=vgg13", "net.base_width=2", *overrides)
    return build_model(cfg, (3, 32, 32)).eval()


def test_random_codes_have_the_real_codes_channel_statistics() -> None:
    real = torch.randn(4000, 3, 2, 2) * torch.tensor([0.1, 5.0, 1.0]).view(1, 3, 1, 1)
    real += torch.tensor([2.0, -1.0, 0.0]).view(1, 3, 1, 1)
    drawn = random_codes_like(real, 4000, torch.Generator().manual_seed(0))
    assert drawn.shape == real.shape
    per_channel = drawn.transpose(0, 1).flatten(1)
    assert per_channel.mean(1) == pytest.approx([2.0, -1.0, 0.0], abs=0.2)
    assert per_channel.std(1) == pytest.approx([0.1, 5.0, 1.0], rel=0.05)


def test_bottleneck_comparison_measures_brightness_and_psnr(make_cfg) -> None:
    images = faces()
    models = {
        "none": model(make_cfg, "net.bottleneck_activation=none"),
        "sigmoid": model(make_cfg, "net.bottleneck_activation=sigmoid"),
    }
    fig, stats = bottleneck_comparison(models, images)
    x = images.float() / 255
    assert stats["input"]["brightness"] == pytest.approx(float(x.mean()))
    for label, m in models.items():
        with torch.no_grad():
            out = m(x).clamp(0, 1)
        assert stats[label]["brightness"] == pytest.approx(float(out.mean()), abs=1e-5)
        assert stats[label]["psnr"] == pytest.approx(float(psnr(out, x).mean()), abs=1e-4)
    grid = assert_png_with_content(plots.figure_png(fig))
    assert grid.shape[1] > grid.shape[0]  # 6 images per row, 3 rows


@pytest.mark.parametrize("net", [["net=vgg13", "net.base_width=2"], ["net=conv"]])
def test_decoder_random_codes_figure(make_cfg, net: list[str]) -> None:
    m = build_model(make_cfg(*net, "net.bottleneck_activation=none"), (3, 32, 32)).eval()
    fig = decoder_random_codes(m, faces(10), n=4)
    assert_png_with_content(plots.figure_png(fig))
    # SegNet adds the "code, no indices" row; a vector code has no indices
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "random code" and ("code, no indices" in labels) == (net[0] == "net=vgg13")
