import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.nets.conv import ConvNet


@pytest.mark.parametrize(
    ("shape", "channels"),
    [((1, 28, 28), [32, 64]), ((3, 64, 64), [16, 32, 64, 128]), ((1, 32, 48), [8, 8, 8])],
)
def test_output_shape_equals_input_shape(shape, channels):
    net = ConvNet(shape, channels=channels, latent_dim=12)
    x = torch.rand(3, *shape)
    code = net.encode(x)
    assert code.shape == (3, 12) and net.code_shape == (12,)
    out = net.decode(code)
    assert out.shape == x.shape and ((out >= 0) & (out <= 1)).all()


def test_code_multiplier_and_batch_norm():
    net = ConvNet((3, 64, 64), latent_dim=5, code_multiplier=2, batch_norm=True)
    assert net.encode(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    assert net.decode(torch.rand(2, 5)).shape == (2, 3, 64, 64)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_pad_input_supports_any_size_and_crops_back():
    net = ConvNet((1, 28, 28), channels=[8, 8, 8], pad_input=True)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    ("shape", "kwargs", "message"),
    [
        ((1, 28, 28), {"channels": [8, 8, 8]}, "divisible by 8; got 28x28"),
        ((3, 30, 30), {"channels": [8, 8]}, "divisible by 4; got 30x30"),
        ((1, 28, 28), {"channels": []}, r"net\.channels"),
        ((1, 28, 28), {"latent_dim": 0}, r"net\.latent_dim"),
        ((1, 28, 28), {"output_activation": "gelu"}, r"net\.output_activation"),
    ],
)
def test_bad_sizes_and_values_are_rejected_clearly(shape, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConvNet(shape, **kwargs)
