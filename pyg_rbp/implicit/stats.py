"""Solver diagnostics: a small record per call, and the warning we raise."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Union

from torch import Tensor


class ConvergenceWarning(UserWarning):
    """The forward iteration or the backward (adjoint) solve did not converge.

    Raised at most once per forward call and once per backward call, never
    once per step. The result is still returned; :class:`RBPStats` says how
    far it got.
    """


@dataclass
class RBPStats:
    r"""What one call of :func:`pyg_rbp.rbp` did.

    The forward fields are set when the forward pass returns; the backward
    fields are set when the backward pass has run (they stay ``None`` until
    then, and for ``'bptt'``/``'tbptt'`` they are set in the forward pass,
    since the backward is ordinary autograd through the unrolled steps).

    Attributes:
        method: The backward method (``'neumann'``, ``'cg'``,
            ``'fixed_point'``, ``'bptt'`` or ``'tbptt'``).
        solver: The forward solver (``'fixed_point'`` or ``'anderson'``).
        forward_steps: Number of evaluations of :math:`F`, the final
            differentiable one included.
        low_precision_steps: How many of them ran in the autocast dtype
            (0 outside :func:`torch.autocast`; see
            :mod:`pyg_rbp.implicit.precision`).
        forward_residual: Final relative residual
            :math:`\|F(h) - h\| / (\|h\| + \epsilon)`; with ``batch``, the
            largest over the graphs.
        converged: Whether ``forward_residual <= tol``; a bool, or a bool
            tensor with one entry per graph when ``batch`` was given.
        residual_trace: The relative residual after every step (with
            ``batch``, the largest over the graphs not yet converged).
        graph_steps: With ``batch``, the step at which each graph converged
            (``forward_steps`` for those that did not), else ``None``.
        graph_residual: With ``batch``, each graph's final residual.
        backward_steps: Number of vector-Jacobian products (``'neumann'``,
            ``'fixed_point'``), CG iterations (``'cg'``) or differentiable
            unrolled steps (``'bptt'``, ``'tbptt'``).
        backward_residual: Final relative residual of the adjoint solve:
            the norm of the last Neumann term over :math:`\|g\|`; for
            ``'fixed_point'`` :math:`\|z_i - z_{i-1}\| / \|g\|`; for
            ``'cg'`` the residual of the normal equations over the norm of
            their right-hand side; ``None`` for ``'bptt'``/``'tbptt'``.
        backward_diverged: Whether the adjoint solve was stopped because it
            diverged (then the last finite, best estimate was used).
        jacobian_penalty: With ``jacobian_penalty`` set and grad enabled, a
            differentiable estimate of :math:`\sigma_{\max}(J)^2`
            (``'spectral'``) or :math:`\|J\|_F^2 / n` (``'frobenius'``) at
            the returned state (add a multiple of it to the loss), else
            ``None``.
        contraction_penalty: The value of the automatic contraction
            safeguard's hinge penalty (see ``contraction_bound`` of
            :func:`pyg_rbp.rbp`) when the call computed it (a training call
            whose forward did not reach ``tol``; ``0.0`` when the estimate
            was below the bound), else ``None``.
    """

    method: str
    solver: str
    forward_steps: int = 0
    low_precision_steps: int = 0
    forward_residual: float = float("nan")
    converged: Union[bool, Tensor] = False
    residual_trace: List[float] = field(default_factory=list, repr=False)
    graph_steps: Optional[Tensor] = None
    graph_residual: Optional[Tensor] = None
    backward_steps: Optional[int] = None
    backward_residual: Optional[float] = None
    backward_diverged: bool = False
    jacobian_penalty: Optional[Tensor] = field(default=None, repr=False)
    contraction_penalty: Optional[float] = None
