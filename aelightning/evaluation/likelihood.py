"""Likelihood numbers of a VAE as papers report them: negative ELBO and importance-weighted NLL.

For a model with ``posterior(x) -> Normal`` (the Gaussian ``q(z|x)``), a standard normal prior
and a decoder likelihood ``log_likelihood(x, x_hat) -> [B]`` (nats per image):

* negative ELBO = ``E_q[-log p(x|z)] + KL(q(z|x) || p(z))`` (KL in closed form, the
  expectation over ``k`` samples);
* importance-weighted NLL (Burda et al., 2016) =
  ``-log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``. It is an upper bound on
  ``-log p(x)`` that tightens as ``k`` grows, is <= the negative ELBO in expectation and equals
  it in expectation at ``k = 1``.

Under a Bernoulli decoder on binary pixels these are the numbers of the binarised-MNIST
literature (k = 5,000 in Burda et al. 2015). Under the ``mse`` decoder the likelihood is that of
a fixed-variance Gaussian ``N(x_hat, 1/2)`` per pixel on grey levels: a number no paper reports.

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

#: default decoder passes per chunk (images x samples): k=5,000 never holds 5,000 batches at once
MAX_DECODES_PER_CHUNK = 20_000
#: what papers on binarised MNIST use (Burda et al. 2015, Table 1)
PAPER_IW_SAMPLES = 5000


def supports_likelihood(model: Any) -> bool:
    """The model exposes a Gaussian posterior and a decoder likelihood (``model=vae``)."""
    return callable(getattr(model, "posterior", None)) and callable(
        getattr(model, "log_likelihood", None)
    )


def _log_weights(
    model: Any, x: Tensor, k: int, chunk: int, eps: Tensor | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Chunks of ``(log p(x|z), log p(z) - log q(z|x))``, each ``[m, B]``, ``m*B <= chunk``.

    ``z = mean + std * eps`` with ``eps`` the given ``[k, B, *latent]`` standard-normal draws
    (common random numbers) or fresh ones from the global generator.
    """
    q = model.posterior(x)
    prior = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale), validate_args=False)
    per_chunk = max(1, chunk // x.shape[0])
    for start in range(0, k, per_chunk):
        m = min(per_chunk, k - start)
        e = torch.randn((m, *q.loc.shape), device=x.device) if eps is None else eps[start:][:m]
        z = q.loc + q.scale * e.to(q.loc)  # [m, B, *latent]
        x_hat = model.net.decode(z.flatten(0, 1).to(x.dtype))
        x_rep = x.unsqueeze(0).expand(m, *x.shape).flatten(0, 1)
        log_px = model.log_likelihood(x_rep, x_hat).view(m, x.shape[0])
        log_ratio = (prior.log_prob(z) - q.log_prob(z)).flatten(2).sum(dim=2)
        yield log_px, log_ratio


def likelihood_terms(
    model: Any,
    x: Tensor,
    k: int,
    chunk: int = MAX_DECODES_PER_CHUNK,
    eps: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image ``(negative ELBO, importance-weighted NLL, KL)`` in nats from ``k`` samples.

    ``chunk`` bounds the decoder passes held at once (images x samples); the result does not
    depend on it. ``eps`` (``[k, B, *latent]``) fixes the draws.
    """
    log_px_sum = torch.zeros(x.shape[0], device=x.device)
    log_w: list[Tensor] = []
    for log_px, log_ratio in _log_weights(model, x, k, chunk, eps):
        log_px_sum += log_px.sum(dim=0)
        log_w.append(log_px + log_ratio)
    kl = kl_to_standard_normal(model.posterior(x))
    neg_elbo = -log_px_sum / k + kl
    iw_nll = -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))
    return neg_elbo, iw_nll, kl


def likelihood_metrics(
    model: Any,
    images: Tensor,
    k: int = 100,
    binarize: bool = False,
    batch_size: int = 500,
    chunk: int = MAX_DECODES_PER_CHUNK,
) -> dict[str, float]:
    """Mean negative ELBO, ``k``-sample importance-weighted NLL and KL over ``images`` (nats).

    ``binarize`` draws each pixel as Bernoulli(intensity) first (stochastic binarisation of
    grey-level test images; data binarised by ``data.binarize`` is 0/1 already), and needs a
    Bernoulli decoder (``model.recon_loss=bce``). Draws use the global generator: seed it.
    """
    if not supports_likelihood(model):
        raise ConfigError(
            "likelihood metrics need a VAE (model=vae): this model has no posterior q(z|x)."
        )
    for key, value in (("iw_samples", k), ("iw_chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"metrics.{key} must be an integer >= 1, got {value!r}.")
    if binarize and getattr(model, "recon_loss", None) != "bce":
        raise ConfigError(
            "metrics.binarize=true scores binary images under a Bernoulli decoder; it needs a "
            "VAE trained with model.recon_loss=bce."
        )
    sums = torch.zeros(3, dtype=torch.float64, device=model.device)  # summed on device
    with inference(model):
        for x in batches(images, batch_size, model.device):
            if binarize:
                x = torch.bernoulli(x)
            terms = likelihood_terms(model, x, k, chunk)
            sums += torch.stack([t.sum() for t in terms]).double()
    neg_elbo, iw_nll, kl = (sums / len(images)).tolist()
    return {"neg_elbo": neg_elbo, "iw_nll": iw_nll, "kl": kl}
