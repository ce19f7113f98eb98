import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.nets.mlp import MLPNet


def test_default_mirrors_the_seeds_784_256_64_20():
    net = MLPNet((1, 28, 28))
    widths = [m.out_features for m in net.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 64, 20]
    assert [m.out_features for m in net.decoder if isinstance(m, torch.nn.Linear)] == [64, 256, 784]
    x = torch.rand(5, 1, 28, 28)
    code = net.encode(x)
    assert code.shape == (5, 20) and (code >= 0).all()  # relu bottleneck, as in the seed
    out = net.decode(code)
    assert out.shape == x.shape and ((out > 0) & (out < 1)).all()  # sigmoid output


def test_code_multiplier_widens_only_the_code():
    net = MLPNet(
        (3, 8, 8), hidden_dims=[32], latent_dim=4, code_multiplier=2, bottleneck_activation="none"
    )
    assert net.encode(torch.rand(2, 3, 8, 8)).shape == (2, 8)
    assert net.decode(torch.rand(2, 4)).shape == (2, 3, 8, 8)
    assert net.code_shape == (8,) and net.latent_shape == (4,)


def test_no_hidden_layer_is_one_linear_map_each_way():
    """``hidden_dims=[]``: the Keras blog's 784-32-784 autoencoder."""
    net = MLPNet((1, 28, 28), hidden_dims=[], latent_dim=32)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 32), (32, 784)]
    assert net.decode(net.encode(torch.rand(2, 1, 28, 28))).shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"latent_dim": 0}, "net.latent_dim"),
        ({"hidden_dims": [64, 0]}, "net.hidden_dims"),
        ({"hidden_activation": "relux"}, "net.hidden_activation"),
        ({"output_activation": "softplus"}, "net.output_activation"),
    ],
)
def test_bad_values_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        MLPNet((1, 28, 28), **kwargs)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "elu", "leaky_relu", "none"])
def test_closed_form_jacobian_equals_autograd(activation):
    torch.manual_seed(0)
    net = MLPNet(
        (1, 5, 4),
        hidden_dims=[7, 6],
        latent_dim=3,
        hidden_activation=activation,
        bottleneck_activation="sigmoid",
    ).double()
    x = torch.rand(4, 1, 5, 4, dtype=torch.double)
    jac = net.encoder_jacobian(x)
    for b in range(4):
        expected = torch.autograd.functional.jacobian(lambda v: net.encode(v[None])[0], x[b])
        torch.testing.assert_close(jac[b], expected.reshape(3, 20))


def test_no_closed_form_for_other_activations():
    assert (
        MLPNet((1, 4, 4), hidden_activation="gelu").encoder_jacobian(torch.rand(2, 1, 4, 4)) is None
    )
