import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.nets.vgg import SegNetVGG


def _convs(module: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())


@pytest.mark.parametrize("variant", ["vgg13", "vgg16"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64), (1, 32, 32), (3, 224, 224)])
def test_output_shape_equals_input_shape(variant, shape):
    net = SegNetVGG(shape, variant=variant, base_width=2, code_channels=6).eval()
    x = torch.rand(2, *shape)
    code, indices = net.encode_with_skips(x)
    grid = (-(-shape[1] // 32), -(-shape[2] // 32))  # padded up to a multiple of 32
    assert code.shape == (2, 6, *grid) and net.code_shape == (6, *grid)
    assert len(indices) == 5
    out = net.decode(code, indices)
    assert out.shape == x.shape and ((out >= 0) & (out <= 1)).all()
    assert net.decode(code).shape == x.shape  # no pooling indices (sampling): still decodes


def test_vgg_layer_counts_and_batch_norm():
    # VGG16: 13 conv layers in the encoder + the code conv; VGG13: 10 + 1
    assert _convs(SegNetVGG((3, 64, 64), variant="vgg16", base_width=2).encoder) == 14
    assert _convs(SegNetVGG((3, 64, 64), variant="vgg13", base_width=2).encoder) == 11
    net = SegNetVGG((3, 64, 64), base_width=2)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.encoder.modules())
    assert any(isinstance(m, torch.nn.MaxPool2d) and m.return_indices for m in net.modules())


def test_unpooling_puts_values_back_where_the_maxima_were():
    net = SegNetVGG((1, 32, 32), base_width=2).eval()
    x = torch.rand(1, 1, 32, 32)
    _, indices = net.encode_with_skips(x)
    first_pool = indices[0]
    up = torch.nn.functional.max_unpool2d(
        torch.ones(1, 2, 16, 16), first_pool, kernel_size=2, stride=2
    )
    assert up.sum() == 2 * 16 * 16 and up.shape == (1, 2, 32, 32)


def test_code_multiplier_widens_the_feature_map_code():
    net = SegNetVGG((3, 64, 64), base_width=2, code_channels=4, code_multiplier=2)
    assert net.code_shape == (8, 2, 2) and net.latent_shape == (4, 2, 2)
    code, indices = net.encode_with_skips(torch.rand(2, 3, 64, 64))
    assert net.decode(code[:, :4], indices).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("activation", ["none", "sigmoid", "relu"])
def test_bottleneck_activation(activation):
    net = SegNetVGG((1, 32, 32), base_width=2, bottleneck_activation=activation)
    code = net.encode(torch.rand(4, 1, 32, 32))
    if activation == "sigmoid":
        assert ((code > 0) & (code < 1)).all()
    elif activation == "relu":
        assert (code >= 0).all()
    else:
        assert (code < 0).any()


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((1, 28, 28), {"pad_input": False}, "divisible by 32; got 28x28"),
        ((3, 100, 64), {"pad_input": False}, "divisible by 32; got 100x64"),
        ((2, 64, 64), {}, "1 or 3 image channels"),
        ((3, 64, 64), {"variant": "vgg14"}, r"net\.variant"),
        ((3, 64, 64), {"bottleneck_activation": "tanh"}, r"net\.bottleneck_activation"),
    ],
)
def test_bad_sizes_and_values_are_rejected_clearly(shape, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SegNetVGG(shape, base_width=2, **kwargs)


def test_untrained_output_is_flat_grey_not_saturated_noise():
    """The output conv starts near zero: pre-sigmoid values of std ~2 (VGG's ReLU init there)
    start training as saturated noise with twice the mean image's error, and the anime faces
    run collapsed to the mean image from that start (issue 16)."""
    torch.manual_seed(0)
    net = SegNetVGG((3, 64, 64), variant="vgg13", base_width=8)
    x = torch.rand(8, 3, 64, 64)
    out = net(x)
    assert (out - 0.5).abs().max() < 0.15  # sigmoid of small values, not of +-2
    out.mean().backward()  # and the gradient reaches the first encoder conv
    assert net.encoder.blocks[0][0][0].weight.grad.abs().sum() > 0
