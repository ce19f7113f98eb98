"""Contractive autoencoder (``model=contractive``): penalise how much the code moves when
the input moves, ``lambda_c * ||d code / d x||_F^2`` per image (Rifai et al. 2011)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from aelightning.errors import check
from aelightning.models.base import AutoencoderModule
from aelightning.nets.base import AutoencoderNet
from aelightning.runtime.precision import full_precision

METHODS = ("auto", "closed_form", "exact", "projection")


def jacobian_sq_norm(
    net: AutoencoderNet, x: Tensor, create_graph: bool, num_projections: int = 0
) -> Tensor:
    """``||d code_b / d x_b||_F^2`` for each image ``b`` (shape ``[B]``) through autograd.

    ``num_projections=0`` is exact: one vector-Jacobian product per code unit, batched
    with ``is_grads_batched`` (cost ~ code size backward passes, fine for small codes).
    Otherwise it is Hutchinson's unbiased estimate ``E_v ||v^T J||^2`` with that many
    Gaussian probes ``v``, for feature-map codes. Works under ``no_grad``/inference mode
    too (validation), on a detached copy of ``x``. Images are assumed independent; a net
    with batch norm in training mode adds the O(1/B) cross-image terms of its statistics.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        code = net.encode(x).flatten(1)
        batch, width = code.shape
        if num_projections:
            probes = torch.randn(num_projections, batch, width, device=x.device, dtype=code.dtype)
        else:
            probes = torch.eye(width, device=x.device, dtype=code.dtype)
            probes = probes.unsqueeze(1).expand(width, batch, width)
        (vjp,) = torch.autograd.grad(
            code, x, grad_outputs=probes, is_grads_batched=True, create_graph=create_graph
        )
        norms = vjp.pow(2).flatten(2).sum(dim=2).sum(dim=0)  # [B]
        return norms / num_projections if num_projections else norms


class ContractiveAutoencoder(AutoencoderModule):
    """``loss = recon + lambda_c * mean_b ||J_b||_F^2`` with ``J_b = d code / d x`` at ``x_in``.

    Args:
        lambda_c: weight of the penalty (the logged ``contractive`` term is weighted).
        method: ``closed_form`` (the net's own Jacobian, e.g. an MLP with elementwise
            activations), ``exact`` (autograd, one backward pass per code unit),
            ``projection`` (unbiased random-probe estimate), or ``auto``: closed form
            where the net has one, else exact up to ``max_exact_dims`` code units, else
            projection.
        num_projections: probes for ``projection``.
        max_exact_dims: largest code that ``auto`` differentiates exactly.
    """

    config_name = "contractive"

    def __init__(
        self,
        *args: Any,
        lambda_c: float = 1e-4,
        method: str = "auto",
        num_projections: int = 8,
        max_exact_dims: int = 256,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check(lambda_c >= 0, f"model.lambda_c must be >= 0, got {lambda_c}.")
        check(
            method in METHODS,
            f"model.method={method!r} is not supported; choose one of {', '.join(METHODS)}.",
        )
        check(num_projections >= 1, f"model.num_projections must be >= 1, got {num_projections}.")
        self.lambda_c = float(lambda_c)
        self.method = method
        self.num_projections = int(num_projections)
        self.max_exact_dims = int(max_exact_dims)
        if method == "closed_form":
            probe = torch.zeros(1, *self.net.input_shape, dtype=next(self.net.parameters()).dtype)
            check(
                self.net.encoder_jacobian(probe) is not None,
                f"model.method=closed_form: {type(self.net).__name__} with these activations "
                "has no closed-form Jacobian; use model.method=exact or auto.",
            )

    def contraction(self, x_in: Tensor) -> Tensor:
        """``||J_b||_F^2`` per image, by the configured method, outside autocast (in the
        parameters' precision: float32 under mixed precision)."""
        with full_precision(x_in.device.type):
            x_in = x_in.to(next(self.net.parameters()).dtype)
            if self.method in ("auto", "closed_form"):
                jac = self.net.encoder_jacobian(x_in)
                if jac is not None:
                    return jac.pow(2).flatten(1).sum(dim=1)
            code_size = math.prod(self.net.code_shape)
            exact = self.method == "exact" or (
                self.method == "auto" and code_size <= self.max_exact_dims
            )
            return jacobian_sq_norm(
                self.net,
                x_in,
                create_graph=torch.is_grad_enabled(),
                num_projections=0 if exact else self.num_projections,
            )

    def loss(self, x: Tensor, x_in: Tensor, code: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        terms = super().loss(x, x_in, code, x_hat)
        terms["contractive"] = self.lambda_c * self.contraction(x_in).mean()
        terms["loss"] = terms["loss"] + terms["contractive"]
        return terms
