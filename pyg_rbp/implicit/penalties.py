r"""Jacobian penalties: differentiable measures of how far :math:`F` is
from a contraction at a state, for the loss (``jacobian_penalty=``) and for
the implicit methods' safeguard (``contraction_bound=``); see
:func:`pyg_rbp.rbp`."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor

from .maps import autograd_vjp, closed_form_vjp

PENALTIES = ("spectral", "frobenius")
#: Power iterations behind jacobian_penalty='spectral'.
POWER_STEPS = 5


def penalty(h_out: Tensor, h_in: Tensor, kind: str,
            vjp: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    """A differentiable measure of J = dh_out/dh_in (see ``rbp``)."""
    v = torch.randn_like(h_in)
    if kind == "spectral":
        vjp = vjp or autograd_vjp(h_out, h_in)
        for _ in range(POWER_STEPS):  # v -> J^T v: towards J^T's dominant
            v = v / v.norm().clamp_min(1e-30)  # eigenvector (slowly, and
            v = vjp(v)  # blind to non-normal growth: docs/methods.md)
        v = (v / v.norm().clamp_min(1e-30)).detach()
    (vjp, ) = torch.autograd.grad(h_out, h_in, v, create_graph=True,
                                  retain_graph=True)
    scale = 1 if kind == "spectral" else max(v.numel(), 1)
    return vjp.pow(2).sum() / scale


class AddToLoss(torch.autograd.Function):
    """Identity on ``h``; in the backward pass, ``penalty`` gets gradient 1,
    as if it had been added to the loss. Only reached when ``h`` takes part
    in the loss."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, value: Tensor) -> Tensor:
        ctx.penalty_shape = value.shape
        return h.view_as(h)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, Tensor]:
        return grad, grad.new_ones(ctx.penalty_shape)


def contraction_penalty(h_out: Tensor, h_in: Tensor,
                        f: Callable[[Tensor], Tensor], bound: float,
                        weight: float, spectral: Optional[Tensor]
                        ) -> Tensor:
    r"""``weight * max(0, rho^2 - bound^2)``, with ``rho^2`` the spectral
    penalty's estimate (``spectral`` when the call computed it already)."""
    if spectral is None:
        spectral = penalty(h_out, h_in, "spectral",
                           closed_form_vjp(f, h_in))
    return weight * torch.relu(spectral - bound ** 2)


def penalty_at(f: Callable[[Tensor], Tensor], h: Tensor,
               kind: str) -> Tensor:
    """The penalty at ``h``, through one extra evaluation of ``f``."""
    h_in = h.detach().requires_grad_(True)
    return penalty(f(h_in), h_in, kind)
