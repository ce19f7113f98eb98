"""Variational autoencoder (``model=vae``, Kingma & Welling 2014).

The net's code is twice as wide as the latent (``code_multiplier = 2``) and is read as
the mean and log-variance of a diagonal Gaussian posterior ``q(z|x)``. The loss is the
negative ELBO per image: the reconstruction summed over pixels (nats for ``bce``) plus
``beta`` times the closed-form ``KL(q(z|x) || N(0, I))`` summed over latent units.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule
from aelightning.runtime.lightning_compat import trainer_of
from aelightning.runtime.precision import full_precision


def gaussian_posterior(code: Tensor) -> Normal:
    """Split ``code`` along dim 1 into mean and log-variance -> ``Normal`` (in float32).

    ``validate_args=False``: argument validation would synchronise with the device on
    every step.
    """
    mean, logvar = code.float().chunk(2, dim=1)
    return Normal(mean, torch.exp(0.5 * logvar), validate_args=False)


def kl_to_standard_normal(posterior: Normal) -> Tensor:
    """``KL(q || N(0, I))`` per image (summed over latent units), closed form, shape ``[B]``."""
    prior = Normal(torch.zeros_like(posterior.loc), torch.ones_like(posterior.scale))
    return kl_divergence(posterior, prior).flatten(1).sum(dim=1)


class VariationalAutoencoder(AutoencoderModule):
    """Gaussian encoder, reparameterised sample, closed-form KL; ``sample(n)`` from the prior.

    Args:
        recon_loss: ``bce`` (Bernoulli likelihood; ``neg_elbo`` is then logged in nats
            per image) or ``mse`` (squared error summed per image).
        beta: weight of the KL term (beta-VAE; 1 is the ELBO).
        kl_warmup_steps / kl_warmup_epochs: ramp the KL weight linearly from 0 to
            ``beta`` over that many optimizer steps / epochs (at most one of them).
            Validation and test always use ``beta``, so ``val/loss`` stays comparable.
    """

    code_multiplier = 2
    needs_unconstrained_code = True
    config_name = "vae"

    def __init__(
        self,
        *args: Any,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        kl_warmup_epochs: int = 0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check(math.isfinite(beta) and beta >= 0, f"model.beta must be >= 0, got {beta}.")
        check(
            kl_warmup_steps >= 0 and kl_warmup_epochs >= 0,
            "model.kl_warmup_steps and model.kl_warmup_epochs must be >= 0.",
        )
        check(
            not (kl_warmup_steps and kl_warmup_epochs),
            "set only one of model.kl_warmup_steps and model.kl_warmup_epochs.",
        )
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.kl_warmup_epochs = int(kl_warmup_epochs)

    # ----------------------------------------------------------------- forward
    def forward_step(self, x_in: Tensor) -> tuple[Tensor, Tensor]:
        """Decode a reparameterised sample ``z = mean + std * eps`` (train and eval alike:
        the ELBO is an expectation over ``q(z|x)``)."""
        code, skips = self.net.encode_with_skips(x_in)
        z = gaussian_posterior(code).rsample()
        return code, self.net.decode(z.to(code.dtype), skips)

    def forward(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction: decode the posterior mean."""
        code, skips = self.net.encode_with_skips(x)
        return self.net.decode(code.chunk(2, dim=1)[0], skips)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean (the representation for plots and probes)."""
        return self.net.encode(x).chunk(2, dim=1)[0]

    def posterior(self, x: Tensor) -> Normal:
        """``q(z|x)`` of clean inputs, for evaluation (ELBO, importance-weighted NLL)."""
        return gaussian_posterior(self.net.encode(x))

    def log_likelihood(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """``log p(x|z)`` of each image in nats (shape ``[B]``, float32) for the decoder's
        output ``x_hat``: Bernoulli for ``bce``; for ``mse`` the Gaussian ``N(x_hat, 1/2)``,
        whose negative log-density is exactly the summed squared error + ``D/2 * log(pi)``."""
        with full_precision(x.device.type):
            x_hat, x = x_hat.float(), x.float()
            if self.recon_loss == "bce":
                nll = F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x, reduction="none")
            else:
                nll = (x_hat - x).pow(2) + 0.5 * math.log(math.pi)
            return -nll.flatten(1).sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` images decoded from ``z ~ N(0, I)``, shape ``[n, C, H, W]``."""
        z = torch.randn(n, *self.net.latent_shape, device=self.device)
        return self.net.decode(z)

    # -------------------------------------------------------------------- loss
    def kl_weight(self) -> float:
        """``beta``, ramped up linearly during warm-up while training."""
        if not self.training:
            return self.beta
        steps = self.kl_warmup_steps
        if self.kl_warmup_epochs and trainer_of(self) is not None:
            trainer = self.trainer
            per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
            steps = self.kl_warmup_epochs * max(1, per_epoch)
        if not steps:
            return self.beta
        return self.beta * min(1.0, self.global_step / steps)

    def loss(self, x: Tensor, x_in: Tensor, code: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        recon = self.reconstruction_loss(x_hat, x, per_image=True)
        kl = kl_to_standard_normal(gaussian_posterior(code)).mean()
        weight = self.kl_weight()
        terms = {"loss": recon + weight * kl, "recon": recon, "kl": kl}
        if self.recon_loss == "bce":
            terms["neg_elbo"] = recon + kl  # nats per image, whatever beta is
        warming_up = self.kl_warmup_steps or self.kl_warmup_epochs
        # only at the steps the logger writes (see log_train_terms)
        if self.training and warming_up and self.logger_will_write():
            self.log("train/kl_weight", weight, on_step=True, on_epoch=False)
        return terms
