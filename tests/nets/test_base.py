import pytest
import torch

from aelightning.errors import ConfigError
from aelightning.nets.discriminator import CodeDiscriminator
from tests.conftest import NETS, build_net


@pytest.mark.parametrize("name", NETS)
def test_hidden_dropout_hook_is_off_by_default_and_generic(name):
    net = build_net(name)
    x = torch.rand(4, 1, 28, 28)
    net.eval()
    before = net(x)
    assert net.set_hidden_dropout(0.5) >= 2
    net.train()
    for m in net.modules():  # keep batch norm deterministic, only dropout active
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    torch.manual_seed(0)
    assert not torch.allclose(net(x), before)
    net.eval()
    assert torch.allclose(net(x), before)  # off at eval
    with pytest.raises(ConfigError, match=r"model\.p_hidden"):
        net.set_hidden_dropout(1.0)


@pytest.mark.parametrize("name", NETS)
def test_encoder_parameters_are_the_encoders(name):
    net = build_net(name)
    encoder = {id(p) for p in net.encoder_parameters()}
    assert encoder and encoder < {id(p) for p in net.parameters()}
    code = net.encode(torch.rand(2, 1, 28, 28))
    code.sum().backward()
    with_grad = {id(p) for p in net.parameters() if p.grad is not None}
    assert with_grad == encoder


def test_discriminator_reads_vector_and_feature_map_codes():
    for shape in [(20,), (8, 2, 2)]:
        logits = CodeDiscriminator(shape, hidden_dims=[16])(torch.randn(5, *shape))
        assert logits.shape == (5,)
    with pytest.raises(ConfigError, match=r"model\.discriminator\.hidden_dims"):
        CodeDiscriminator((4,), hidden_dims=[])
