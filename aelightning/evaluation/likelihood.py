"""Likelihood numbers of a VAE as papers report them: negative ELBO and importance-weighted NLL.

For a model with ``posterior(x) -> Normal`` (the Gaussian ``q(z|x)``), a standard normal prior
and a decoder likelihood ``log_likelihood(x, x_hat) -> [B]`` (nats per image):

* negative ELBO = ``E_q[-log p(x|z)] + KL(q(z|x) || p(z))`` (KL in closed form, the
  expectation over ``k`` samples);
* importance-weighted NLL (Burda et al., 2016) =
  ``-log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``. It is an upper bound on
  ``-log p(x)`` that tightens as ``k`` grows, is <= the negative ELBO in expectation and equals
  it in expectation at ``k = 1``.

Decoding uses ``net.decode(z)`` without the encoder's skip connections (a SegNet net's pooling
indices depend on ``x``; the generative model ``p(x|z)`` must not).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Normal

from aelightning.errors import ConfigError
from aelightning.evaluation.analysis import batches, inference
from aelightning.models.vae import kl_to_standard_normal

#: decoder passes per chunk (images x samples) so that k=100 does not hold 100 batches at once
MAX_DECODES_PER_CHUNK = 20_000


def supports_likelihood(model: Any) -> bool:
    """The model exposes a Gaussian posterior and a decoder likelihood (``model=vae``)."""
    return callable(getattr(model, "posterior", None)) and callable(
        getattr(model, "log_likelihood", None)
    )


def _log_weights(model: Any, x: Tensor, k: int) -> Iterator[tuple[Tensor, Tensor, Normal]]:
    """Chunks of ``(log p(x|z), log p(z) - log q(z|x))``, each ``[m, B]``, with ``q``."""
    q = model.posterior(x)
    prior = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale), validate_args=False)
    per_chunk = max(1, MAX_DECODES_PER_CHUNK // x.shape[0])
    for start in range(0, k, per_chunk):
        m = min(per_chunk, k - start)
        z = q.sample((m,))  # [m, B, *latent]
        x_hat = model.net.decode(z.flatten(0, 1).to(x.dtype))
        x_rep = x.unsqueeze(0).expand(m, *x.shape).flatten(0, 1)
        log_px = model.log_likelihood(x_rep, x_hat).view(m, x.shape[0])
        log_ratio = (prior.log_prob(z) - q.log_prob(z)).flatten(2).sum(dim=2)
        yield log_px, log_ratio, q


def likelihood_terms(model: Any, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-image ``(negative ELBO, importance-weighted NLL)`` in nats from ``k`` samples."""
    log_px_sum = torch.zeros(x.shape[0], device=x.device)
    log_w: list[Tensor] = []
    kl = None
    for log_px, log_ratio, q in _log_weights(model, x, k):
        log_px_sum += log_px.sum(dim=0)
        log_w.append(log_px + log_ratio)
        kl = kl_to_standard_normal(q) if kl is None else kl
    neg_elbo = -log_px_sum / k + kl
    iw_nll = -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))
    return neg_elbo, iw_nll


def likelihood_metrics(
    model: Any, images: Tensor, k: int = 100, binarize: bool = False, batch_size: int = 500
) -> dict[str, float]:
    """Mean negative ELBO and ``k``-sample importance-weighted NLL over ``images`` (nats).

    ``binarize`` draws each pixel as Bernoulli(intensity) first (stochastic binarisation, as
    in the binarised-MNIST literature, ~86-90 nats for a 784-400-20 VAE), and needs a
    Bernoulli decoder (``model.recon_loss=bce``). Draws use the global generator: seed it.
    """
    if not supports_likelihood(model):
        raise ConfigError(
            "likelihood metrics need a VAE (model=vae): this model has no posterior q(z|x)."
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"metrics.iw_samples must be an integer >= 1, got {k!r}.")
    if binarize and getattr(model, "recon_loss", None) != "bce":
        raise ConfigError(
            "metrics.binarize=true scores binary images under a Bernoulli decoder; it needs a "
            "VAE trained with model.recon_loss=bce."
        )
    sums = torch.zeros(2, dtype=torch.float64, device=model.device)  # summed on device
    with inference(model):
        for x in batches(images, batch_size, model.device):
            if binarize:
                x = torch.bernoulli(x)
            neg_elbo, iw_nll = likelihood_terms(model, x, k)
            sums += torch.stack([neg_elbo.sum(), iw_nll.sum()]).double()
    neg_elbo_mean, iw_nll_mean = (sums / len(images)).tolist()
    return {"neg_elbo": neg_elbo_mean, "iw_nll": iw_nll_mean}
