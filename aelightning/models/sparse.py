"""Sparse autoencoder (``model=sparse``): an L1 penalty on the code, and optionally a KL
penalty pulling each sigmoid unit's mean activation toward a small target ``rho``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule


def bernoulli_kl(rho: float, rho_hat: Tensor) -> Tensor:
    """``sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j))`` (Ng's sparse-AE penalty)."""
    rho_hat = rho_hat.clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


class SparseAutoencoder(AutoencoderModule):
    """``loss = recon + lambda_l1 * mean|code| [+ lambda_kl * KL(rho || mean activation)]``.

    Args:
        lambda_l1: weight of the mean absolute code value (logged as ``l1``, weighted).
        rho: target mean activation of each code unit (e.g. 0.05); None switches the KL
            penalty off. Needs codes in (0, 1): ``net.bottleneck_activation=sigmoid``.
        lambda_kl: weight of the KL sparsity penalty (logged as ``kl_sparsity``, weighted).
    """

    config_name = "sparse"

    def __init__(
        self,
        *args: Any,
        lambda_l1: float = 1e-3,
        rho: float | None = None,
        lambda_kl: float = 1e-2,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check(lambda_l1 >= 0, f"model.lambda_l1 must be >= 0, got {lambda_l1}.")
        check(lambda_kl >= 0, f"model.lambda_kl must be >= 0, got {lambda_kl}.")
        if rho is not None:
            check(0 < rho < 1, f"model.rho must be in (0, 1) or null, got {rho}.")
            check(
                self.net.bottleneck_activation == "sigmoid",
                "model.rho is a target mean activation in (0, 1) and needs a sigmoid code: set "
                f"net.bottleneck_activation=sigmoid (it is {self.net.bottleneck_activation!r}) "
                "or model.rho=null.",
            )
        self.lambda_l1 = float(lambda_l1)
        self.rho = None if rho is None else float(rho)
        self.lambda_kl = float(lambda_kl)

    def loss(self, x: Tensor, x_in: Tensor, code: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        terms = super().loss(x, x_in, code, x_hat)
        code = code.float()
        terms["l1"] = self.lambda_l1 * code.abs().mean()
        terms["loss"] = terms["loss"] + terms["l1"]
        if self.rho is not None:
            rho_hat = code.flatten(1).mean(dim=0)  # mean activation of each unit
            terms["kl_sparsity"] = self.lambda_kl * bernoulli_kl(self.rho, rho_hat)
            terms["loss"] = terms["loss"] + terms["kl_sparsity"]
        return terms
