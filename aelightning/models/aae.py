"""Adversarial autoencoder (``model=aae``, Makhzani et al. 2016).

A deterministic encoder whose codes a discriminator tries to tell from samples of a
prior (``normal`` or a 10-component Gaussian mixture). Each batch runs three phases,
each with its own optimizer (manual optimisation):

1. reconstruction: encoder + decoder minimise the reconstruction loss;
2. discriminator: prior samples are "real", codes "fake";
3. generator: the encoder alone makes its codes look "real" to the discriminator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule, OptimizerFactory, optimizer_or_default
from aelightning.models.priors import CodePrior
from aelightning.nets.discriminator import CodeDiscriminator


def _bce_with_logits(logits: Tensor, real: bool) -> Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class AdversarialAutoencoder(AutoencoderModule):
    """Reconstruction plus a code discriminator; ``sample(n)`` decodes prior samples.

    Args:
        discriminator: factory ``code_shape -> nn.Module`` returning logits ``[B]``
            (Hydra ``_partial_``; default :class:`CodeDiscriminator`).
        optimizer: phase 1 (encoder + decoder); d_optimizer: phase 2 (discriminator);
            g_optimizer: phase 3 (encoder). Factories ``params -> Optimizer``.
        prior: ``normal | mixture``; prior_components / prior_radius / prior_std shape
            the mixture (see :class:`CodePrior`).
        adversarial_weight: weight of the generator loss in phase 3.

    Logged terms: ``recon``, ``d_loss``, ``g_loss``, and ``loss = recon``: the adversarial
    terms are a two-player game, not a quantity that falls as the model improves, so the
    total that checkpoints and early stopping follow (``val/loss``) is the reconstruction.
    """

    needs_unconstrained_code = True
    config_name = "aae"

    def __init__(
        self,
        *args: Any,
        discriminator: Callable[..., nn.Module] | None = None,
        d_optimizer: OptimizerFactory | None = None,
        g_optimizer: OptimizerFactory | None = None,
        prior: str = "normal",
        prior_components: int = 10,
        prior_radius: float = 4.0,
        prior_std: float = 0.5,
        adversarial_weight: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check(adversarial_weight >= 0, "model.adversarial_weight must be >= 0.")
        self.automatic_optimization = False
        make_discriminator = discriminator if discriminator is not None else CodeDiscriminator
        self.discriminator = make_discriminator(code_shape=self.net.code_shape)
        self.prior = CodePrior(
            self.net.code_shape, prior, prior_components, prior_radius, prior_std
        )
        self.d_optimizer_factory = optimizer_or_default(d_optimizer, "model.d_optimizer")
        self.g_optimizer_factory = optimizer_or_default(g_optimizer, "model.g_optimizer")
        self.adversarial_weight = float(adversarial_weight)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` images decoded from prior samples, shape ``[n, C, H, W]``."""
        return self.net.decode(self.prior.sample(n))

    # -------------------------------------------------------------------- loss
    def discriminator_loss(self, code: Tensor) -> Tensor:
        real = self.prior.sample(code.shape[0]).to(code.dtype)
        return _bce_with_logits(self.discriminator(real), True) + _bce_with_logits(
            self.discriminator(code), False
        )

    def generator_loss(self, code: Tensor) -> Tensor:
        return _bce_with_logits(self.discriminator(code), True)

    def loss(self, x: Tensor, x_in: Tensor, code: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        """All three phases' terms for one forward pass (evaluation)."""
        recon = self.reconstruction_loss(x_hat, x)
        g_loss = self.generator_loss(code)
        return {
            "loss": recon,
            "recon": recon,
            "d_loss": self.discriminator_loss(code.detach()),
            "g_loss": g_loss,
        }

    # ---------------------------------------------------------------- training
    def optimization_step(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """The three phases on one batch, each with its optimiser, then the LR schedules."""
        opt_ae, opt_d, opt_g = self.optimizers()
        x = batch[0]
        x_in = self.noise(x)

        code, x_hat = self.forward_step(x_in)  # 1. reconstruction
        recon = self.reconstruction_loss(x_hat, x)
        self._optimize(opt_ae, recon)

        with torch.no_grad():  # 2. discriminator
            code = self.net.encode(x_in)
        d_loss = self.discriminator_loss(code)
        self._optimize(opt_d, d_loss)

        with self.toggled_optimizer(opt_g):  # 3. encoder as generator
            g_loss = self.generator_loss(self.net.encode(x_in))
            self._optimize(opt_g, self.adversarial_weight * g_loss)

        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler is not None:
                scheduler.step()
        return {"loss": recon, "recon": recon, "d_loss": d_loss, "g_loss": g_loss}

    def _optimize(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.backward_manually(loss)
        self.step_manually(optimizer)

    def configure_optimizers(self) -> Any:
        optimizers = [
            self.optimizer_factory(self.net.parameters()),
            self.d_optimizer_factory(self.discriminator.parameters()),
            self.g_optimizer_factory(self.net.encoder_parameters()),
        ]
        schedulers = self.schedulers_for(optimizers)
        return optimizers if schedulers is None else (optimizers, schedulers)
