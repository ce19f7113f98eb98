"""Each objective on the bundled real MNIST sample, and the exactness of its loss terms."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from aelightning.builders import build_datamodule, build_model
from aelightning.cli.train import train
from aelightning.errors import ConfigError
from aelightning.models.aae import AdversarialAutoencoder
from aelightning.models.contractive import ContractiveAutoencoder, jacobian_sq_norm
from aelightning.models.sparse import SparseAutoencoder
from aelightning.models.vae import VariationalAutoencoder, gaussian_posterior
from aelightning.nets.conv import ConvNet
from aelightning.nets.mlp import MLPNet
from aelightning.nets.vgg import SegNetVGG
from tests.conftest import OBJECTIVES, bare_trainer
from tests.tbutil import read_events, scalar_values

#: the loss terms an objective logs besides ``loss`` and ``recon`` (none when not listed)
TERMS = {
    "ae": [],
    "dae": [],
    "sparse": ["l1"],
    "dropout": [],
    "contractive": ["contractive"],
    "vae": ["kl", "neg_elbo"],
    "aae": ["d_loss", "g_loss"],
}


@pytest.mark.parametrize("model", OBJECTIVES)
def test_a_few_epochs_on_real_digits_lower_val_loss(make_cfg, model):
    cfg = make_cfg(
        f"model={model}",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=40",
        "trainer.log_every_n_steps=10",
        "data.batch_size=32",
        "model.optimizer.lr=3e-3",
        "callbacks.reconstructions=null",
    )
    result = train(cfg)
    acc = read_events(Path(cfg.paths.output_dir) / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    for term in ["loss", "recon", *TERMS.get(model, [])]:
        assert f"train/{term}" in tags and f"val/{term}" in tags, term
        values = scalar_values(acc, f"train/{term}")
        assert values and all(torch.isfinite(torch.tensor(values))), term
    val = scalar_values(acc, "val/loss")
    assert len(val) == 3 and val[-1] < val[0], val
    assert result["metrics"]["test/psnr"] > 10


def _tiny(cls, net=None, **kwargs):
    return cls(net or MLPNet((1, 8, 8), hidden_dims=[16], latent_dim=4), **kwargs)


def test_vae_kl_is_the_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mean, logvar = torch.randn(6, 5), torch.randn(6, 5)
    posterior = gaussian_posterior(torch.cat([mean, logvar], dim=1))
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    analytic = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)  # Kingma & Welling
    net = MLPNet((1, 8, 8), [16], 5, code_multiplier=2, bottleneck_activation="none")
    vae = VariationalAutoencoder(net, recon_loss="bce")
    x = torch.rand(6, 1, 8, 8)
    terms = vae.loss(x, x, torch.cat([mean, logvar], dim=1), x.clamp(0.1, 0.9))
    torch.testing.assert_close(terms["kl"], expected.mean())
    torch.testing.assert_close(expected, analytic)
    assert posterior.loc.shape == (6, 5)
    # negative ELBO in nats per image: BCE summed over pixels + KL
    bce = torch.nn.functional.binary_cross_entropy(x.clamp(0.1, 0.9), x, reduction="sum") / 6
    torch.testing.assert_close(terms["neg_elbo"], bce + expected.mean())
    torch.testing.assert_close(terms["loss"], terms["neg_elbo"])


def test_vae_beta_and_kl_warmup():
    net = MLPNet((1, 8, 8), [16], 4, code_multiplier=2, bottleneck_activation="none")
    vae = VariationalAutoencoder(net, beta=2.0, kl_warmup_steps=10)
    vae.train()
    assert vae.kl_weight() == 0.0  # global_step 0 without a trainer
    vae.eval()
    assert vae.kl_weight() == 2.0  # evaluation always uses beta
    with pytest.raises(ConfigError, match="only one of"):
        VariationalAutoencoder(net, kl_warmup_steps=5, kl_warmup_epochs=1)


def test_l1_term_is_lambda_times_mean_absolute_code():
    sparse = _tiny(SparseAutoencoder, lambda_l1=0.3)
    x = torch.rand(5, 1, 8, 8)
    code = torch.randn(5, 4)
    terms = sparse.loss(x, x, code, x)
    torch.testing.assert_close(terms["l1"], 0.3 * code.abs().mean())
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["l1"])


def test_kl_sparsity_needs_a_sigmoid_code_and_pulls_toward_rho():
    with pytest.raises(ConfigError, match=r"net\.bottleneck_activation=sigmoid"):
        _tiny(SparseAutoencoder, rho=0.05)
    net = MLPNet((1, 8, 8), [16], 4, bottleneck_activation="sigmoid")
    sparse = SparseAutoencoder(net, lambda_l1=0.0, rho=0.05, lambda_kl=1.0)
    x = torch.rand(5, 1, 8, 8)
    at_target = sparse.loss(x, x, torch.full((5, 4), 0.05), x)["kl_sparsity"]
    away = sparse.loss(x, x, torch.full((5, 4), 0.5), x)["kl_sparsity"]
    assert float(at_target) == pytest.approx(0.0, abs=1e-6) and float(away) > 0.1


@pytest.mark.parametrize(
    ("net", "method"),
    [
        (MLPNet((1, 6, 6), [12, 8], 3, hidden_activation="tanh"), "auto"),  # closed form
        (MLPNet((1, 6, 6), [12, 8], 3, hidden_activation="tanh"), "exact"),
        (ConvNet((1, 8, 8), channels=[4, 4], latent_dim=3), "auto"),  # autograd
        (SegNetVGG((1, 32, 32), base_width=2, code_channels=2), "auto"),
    ],
)
def test_contractive_term_is_the_squared_frobenius_norm_of_the_jacobian(net, method):
    torch.manual_seed(0)
    net = net.double().eval()
    cae = ContractiveAutoencoder(net, lambda_c=0.5, method=method)
    x = torch.rand(3, *net.input_shape, dtype=torch.double)
    expected = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda v: net.encode(v[None])[0], xi).pow(2).sum()
            for xi in x
        ]
    )
    terms = cae.loss(x, x, net.encode(x), net(x))
    torch.testing.assert_close(terms["contractive"], 0.5 * expected.mean())
    with torch.inference_mode():  # validation runs in inference mode
        torch.testing.assert_close(cae.contraction(x), expected)


def test_contractive_projection_estimate_is_unbiased():
    torch.manual_seed(0)
    net = ConvNet((1, 8, 8), channels=[4, 4], latent_dim=6).double().eval()
    x = torch.rand(2, 1, 8, 8, dtype=torch.double)
    exact = jacobian_sq_norm(net, x, create_graph=False)
    estimate = jacobian_sq_norm(net, x, create_graph=False, num_projections=4000)
    torch.testing.assert_close(estimate, exact, rtol=0.1, atol=0.0)


def test_contractive_penalty_trains_the_encoder():
    net = MLPNet((1, 6, 6), [12], 3)
    cae = ContractiveAutoencoder(net, lambda_c=1.0)
    x = torch.rand(4, 1, 6, 6)
    terms = cae.loss(x, x, net.encode(x), net(x))
    terms["contractive"].backward()
    weights = [p for p in net.encoder_parameters() if p.dim() == 2]
    assert weights and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_closed_form_is_refused_where_the_net_has_none():
    with pytest.raises(ConfigError, match=r"model\.method=closed_form"):
        ContractiveAutoencoder(ConvNet((1, 8, 8), channels=[4]), method="closed_form")


def _fit_one_batch(make_cfg, *overrides):
    cfg = make_cfg(*overrides, "data.batch_size=16")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.dims)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = bare_trainer(max_steps=1)
    trainer.fit(model, datamodule=datamodule)
    return model, trainer, before


def test_aae_three_optimisers_each_change_their_parameters_in_one_step(make_cfg):
    model, trainer, before = _fit_one_batch(make_cfg, "model=aae")
    assert isinstance(model, AdversarialAutoencoder) and len(trainer.optimizers) == 3
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [
        [names[id(p)] for g in opt.param_groups for p in g["params"]] for opt in trainer.optimizers
    ]
    ae, disc, gen = groups
    assert set(ae) == {n for n in names.values() if n.startswith("net.")}
    assert set(disc) == {n for n in names.values() if n.startswith("discriminator.")}
    assert set(gen) == {n for n in names.values() if n.startswith("net.encoder.")}
    params = dict(model.named_parameters())
    for opt, group in zip(trainer.optimizers, groups, strict=True):
        for name in group:
            assert opt.state[params[name]]["step"] == 1, name  # this optimiser stepped it
            assert not torch.equal(params[name], before[name]), name


def test_aae_steps_the_schedule_of_each_optimiser(make_cfg):
    _, trainer, _ = _fit_one_batch(make_cfg, "model=aae", "model/scheduler=step")
    schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
    assert [s.optimizer for s in schedulers] == list(trainer.optimizers)  # one each, 3 in all
    assert all(s.last_epoch == 1 for s in schedulers)  # stepped once in the one batch


@pytest.mark.parametrize("model", ["vae", "aae"])
@pytest.mark.parametrize(
    ("net", "latent"),
    [
        (["net=mlp"], (20,)),
        (["net=vgg13", "net.base_width=2", "net.code_channels=4"], (4, 1, 1)),
    ],
)
def test_sample_shapes_and_ranges(make_cfg, model, net, latent):
    cfg = make_cfg(f"model={model}", *net)
    generative = build_model(cfg, (1, 28, 28)).eval()
    assert generative.net.latent_shape == latent
    images = generative.sample(7)
    assert images.shape == (7, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1 and not images.requires_grad


def test_aae_mixture_prior_puts_modes_on_a_circle(make_cfg):
    cfg = make_cfg("model=aae", "model.prior=mixture", "model.prior_radius=4")
    aae = build_model(cfg, (1, 28, 28))
    torch.manual_seed(0)
    z = aae.prior.sample(2000)
    assert z.shape == (2000, 20)
    radius = z[:, :2].norm(dim=1)
    assert 3.0 < float(radius.median()) < 5.0 and float(z[:, 2:].std()) < 0.6


def test_dropout_objective_drops_inputs_and_hidden_units_only_while_training():
    from aelightning.models.dropout import DropoutAutoencoder

    net = MLPNet((1, 8, 8), [16], 4)
    model = DropoutAutoencoder(net, p_input=0.5, p_hidden=0.3)
    dropouts = [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.3}
    x = torch.rand(4, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(model.forward_step(x)[1], net(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model.forward_step(x)[1], net.eval()(x))
    with pytest.raises(ConfigError, match=r"model\.p_input"):
        DropoutAutoencoder(MLPNet((1, 8, 8)), p_input=1.0)


def test_optimizer_factories_are_checked():
    net = MLPNet((1, 8, 8), [16], 4, bottleneck_activation="none")
    with pytest.raises(ConfigError, match=r"model\.d_optimizer\.lr"):
        AdversarialAutoencoder(net, d_optimizer=partial(torch.optim.Adam, lr=0.0))
