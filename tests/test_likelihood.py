"""The importance-weighted NLL against its definition, on a VAE trained on binarised digits."""

from __future__ import annotations

import pytest
import torch

from aelightning.data.binarize import fixed_binarization
from aelightning.data.mnist import load_mnist_sample
from aelightning.errors import ConfigError
from aelightning.evaluation.likelihood import likelihood_metrics, likelihood_terms
from aelightning.models.vae import VariationalAutoencoder
from aelightning.nets.mlp import MLPNet


@pytest.fixture(scope="module")
def binary_digits() -> torch.Tensor:
    images, _ = load_mnist_sample()
    return fixed_binarization(images, seed=0, split="train").float().div(255)


@pytest.fixture(scope="module")
def trained_vae(binary_digits) -> VariationalAutoencoder:
    """A Bernoulli VAE 784-128-2x8, 120 Adam steps on 4,500 binarised sample digits (~2 s)."""
    torch.manual_seed(0)
    net = MLPNet(
        (1, 28, 28),
        hidden_dims=[128],
        latent_dim=8,
        bottleneck_activation="none",
        code_multiplier=2,
    )
    model = VariationalAutoencoder(net, recon_loss="bce")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train = binary_digits[:4500]
    for _ in range(120):
        x = train[torch.randint(len(train), (100,))]
        loss = model.model_step((x,)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def test_batched_over_samples_equals_unbatched(trained_vae, binary_digits) -> None:
    x = binary_digits[4500:4550]
    eps = torch.randn(64, 50, 8)
    whole = likelihood_terms(trained_vae, x, 64, chunk=64 * 50, eps=eps)
    for chunk in (50, 7 * 50, 1000):  # one sample per chunk, 7, a ragged 20
        parts = likelihood_terms(trained_vae, x, 64, chunk=chunk, eps=eps)
        for a, b in zip(whole, parts, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


@torch.no_grad()
def test_iw_nll_below_the_elbo_meets_it_at_k1_and_falls_with_k(trained_vae, binary_digits) -> None:
    x = binary_digits[4500:4800]
    torch.manual_seed(1)
    bounds = {k: likelihood_metrics(trained_vae, x, k=k, batch_size=300) for k in (1, 10, 100)}
    for k, b in bounds.items():
        assert b["iw_nll"] <= b["neg_elbo"] + 1e-4, (k, b)
    # k=1: the same estimator in expectation; over 300 images the means agree closely
    assert bounds[1]["iw_nll"] == pytest.approx(bounds[1]["neg_elbo"], abs=0.5)
    assert bounds[10]["iw_nll"] < bounds[1]["iw_nll"] - 1.0
    assert bounds[100]["iw_nll"] < bounds[10]["iw_nll"] - 0.5
    # the -ELBO and KL do not depend on k beyond Monte-Carlo noise (KL is closed form)
    assert bounds[100]["kl"] == pytest.approx(bounds[1]["kl"], rel=1e-5)
    assert bounds[100]["neg_elbo"] == pytest.approx(bounds[10]["neg_elbo"], abs=1.0)
    assert 0 < bounds[100]["kl"] < bounds[100]["neg_elbo"]


@torch.no_grad()
def test_per_image_iw_nll_is_the_log_mean_exp_of_the_weights(trained_vae, binary_digits) -> None:
    x = binary_digits[:3]
    eps = torch.randn(5, 3, 8)
    _, iw_nll, kl = likelihood_terms(trained_vae, x, 5, eps=eps)
    q = trained_vae.posterior(x)
    for i in range(3):
        log_w = []
        for j in range(5):
            z = q.loc[i] + q.scale[i] * eps[j, i]
            x_hat = trained_vae.net.decode(z[None])
            log_px = trained_vae.log_likelihood(x[i : i + 1], x_hat)[0]
            log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
            log_q = torch.distributions.Normal(q.loc[i], q.scale[i]).log_prob(z).sum()
            log_w.append(log_px + log_prior - log_q)
        expected = -(torch.logsumexp(torch.stack(log_w), 0) - torch.log(torch.tensor(5.0)))
        assert iw_nll[i] == pytest.approx(float(expected), abs=1e-3)
    assert (kl > 0).all()


def test_bad_counts_name_the_key(trained_vae, binary_digits) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.iw_samples"):
        likelihood_metrics(trained_vae, binary_digits[:10], k=0)
    with pytest.raises(ConfigError, match=r"metrics\.iw_chunk"):
        likelihood_metrics(trained_vae, binary_digits[:10], k=5, chunk=0)
