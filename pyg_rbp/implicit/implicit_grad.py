r"""The implicit gradient: one recorded step :math:`h_{out} = F(h^*)` and
an identity autograd function on it that turns the incoming gradient
:math:`g` into the adjoint :math:`z = (I - J^\top)^{-1} g`, solved by the
gradient method (:meth:`~pyg_rbp.implicit.GradientMethod.solve`) with
vector-Jacobian products through that step; autograd carries :math:`z` on
through :math:`\partial F / \partial w`. Memory stays that of one step.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Protocol, Tuple

import torch
from torch import Tensor

from .adjoint import AdjointResult, Op
from .forward import IterationResult
from .maps import (autograd_vjp, closed_form_vjp, promises_closed_form,
                   release)
from .penalties import AddToLoss, contraction_penalty, penalty
from .problem import Problem
from .stats import (ConvergenceMonitor, ConvergenceWarning, RBPStats,
                    user_stacklevel)


class AdjointSolve(Protocol):
    """What this module needs of a gradient method (the methods call this
    module, not the other way round): its name, whether its solve needs
    ``J u`` and the solve of :math:`(I - J^\top) z = g`."""

    name: str
    uses_jvp: bool

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult: ...


class _AdjointConfig:
    """What the backward needs, kept off the autograd tensor inputs."""

    def __init__(self, h_out: Tensor, h_in: Tensor, method: AdjointSolve,
                 stats: RBPStats,
                 f: Optional[Callable[[Tensor], Tensor]] = None,
                 monitor: Optional[ConvergenceMonitor] = None) -> None:
        self.h_out = h_out
        self.h_in = h_in
        self.f = f
        self.method = method
        self.stats = stats
        self.monitor = monitor


class _ImplicitGrad(torch.autograd.Function):
    """Identity in the forward; replaces ``g`` by the adjoint ``z`` backward."""

    @staticmethod
    def forward(ctx: Any, h_out: Tensor, cfg: _AdjointConfig) -> Tensor:
        ctx.cfg = cfg
        return h_out.view_as(h_out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], None]:
        cfg: _AdjointConfig = ctx.cfg
        h_out, h_in = cfg.h_out, cfg.h_in

        # Built here, not in the forward, so that nothing beyond the
        # recorded step is held between forward and backward.
        vjp = closed_form_vjp(cfg.f, h_in)
        if vjp is None:
            if not h_in.requires_grad:
                raise RuntimeError(
                    "rbp: the map's vjp_at returned None although it "
                    "promised a closed form (has_closed_form_vjp is True or "
                    "missing); set has_closed_form_vjp = False for calls "
                    "without one (see pyg_rbp.implicit.ClosedFormMap)")
            vjp = autograd_vjp(h_out, h_in)

        def jvp() -> Callable[[Tensor], Tensor]:
            # J u by the double-vjp trick: w(v) = J^T v is linear in v, so
            # d<w(v), u>/dv = J u. One extra graph serves all products.
            dummy = torch.zeros_like(grad, requires_grad=True)
            (w, ) = torch.autograd.grad(h_out, h_in, dummy,
                                        retain_graph=True, create_graph=True)

            def product(u: Tensor) -> Tensor:
                (out, ) = torch.autograd.grad(w, dummy, u, retain_graph=True)
                return out
            return product

        with torch.enable_grad():
            result = cfg.method.solve(vjp, grad.detach(), jvp)
        cfg.stats.backward_steps = result.steps
        cfg.stats.backward_residual = result.residual
        cfg.stats.backward_diverged = result.diverged
        tol = getattr(cfg.method, "tol", None)
        judged = isinstance(tol, float) and tol > 0 and \
            result.residual == result.residual  # NaN: g passed through
        solved = None if not judged else \
            (not result.diverged and result.residual <= tol)
        cfg.stats.backward_converged = solved
        if cfg.monitor is not None and judged:
            cfg.monitor.adjoint_calls += 1
            cfg.monitor.adjoint_solved += bool(solved)
        # Done with the references the map kept for vjp_at (optional
        # protocol): autograd frees the recorded step's own tensors after
        # this backward, and these must not outlive them. A second backward
        # (retain_graph=True) recomputes what it needs.
        release(cfg.f)
        if result.diverged:
            warnings.warn(
                f"rbp: the '{cfg.method.name}' adjoint solve diverged (J has "
                f"spectral radius >= 1 at the returned state, which is "
                f"probably not a fixed point); its best finite estimate was "
                f"used (see stats.backward_residual). Make F contractive or "
                f"lower 'backward_steps'.", ConvergenceWarning, stacklevel=2)
        elif solved is False:
            _warn_adjoint(cfg, result.steps, result.residual, tol)
        return result.z.detach(), None


def _warn_adjoint(cfg: _AdjointConfig, steps: int, residual: float,
                  tol: float) -> None:
    """The adjoint stopped at its cap above its tolerance: the gradient is
    off by about that relative residual."""
    text = (f"the '{cfg.method.name}' adjoint solve stopped at its cap of "
            f"{steps} iterations with relative residual {residual:.1e} > "
            f"tol={tol:g}, so the gradient is off by about that much. Raise "
            f"'backward_steps' (or the method's steps), use method='hybrid' "
            f"(its adjoint is solved to tolerance) or 'gmres', or make F more "
            f"contractive; stats.backward_converged says per call.")
    if cfg.monitor is not None:
        cfg.monitor.warn_once("adjoint", text)
    else:  # one text for every call: Python shows it once per place
        warnings.warn("rbp: an adjoint solve stopped at its cap above its "
                      "tolerance, so the gradient is off (the numbers are "
                      "in stats.backward_residual / backward_converged). "
                      "Raise 'backward_steps', use method='hybrid' or "
                      "'gmres', or make F more contractive.", ConvergenceWarning,
                      stacklevel=user_stacklevel())


def needs_state_grad(f: Callable[[Tensor], Tensor], method: AdjointSolve,
                     penalty: Optional[str]) -> bool:
    """Whether the recorded step must keep a gradient path to its input
    state: for vector-Jacobian products through autograd (no closed form,
    CG's double-vjp, the penalty). Without one, backward computes only the
    parameter gradients, not an unused ``dL/dh*`` of the size of the state."""
    return not promises_closed_form(f) or method.uses_jvp or \
        penalty is not None


def implicit_gradient(problem: Problem, gradient: AdjointSolve,
                      it: IterationResult) -> Tuple[Tensor, RBPStats]:
    """After the no-grad loop ``it``: the one recorded step, the stats,
    the Jacobian penalty and the safeguard where asked, and the implicit
    gradient's autograd function on the result (without grad: the step
    only)."""
    f, stats = problem.f, problem.stats
    h_in = it.h.detach()
    # The safeguard acts on calls whose loop stopped short of tol.
    guard = problem.contraction_bound is not None and \
        problem.contraction_weight > 0 and problem.tol > 0 and \
        torch.is_grad_enabled() and not bool(it.done.all())
    if torch.is_grad_enabled() and (guard or needs_state_grad(
            f, gradient, problem.jacobian_penalty)):
        h_in.requires_grad_(True)
    h_out, res, tail = problem.steps_after(h_in, 1)
    problem.finish(it, res, tail)
    stats.backward_method = gradient.name
    problem.report(it)
    if not torch.is_grad_enabled():
        return h_out, stats
    if problem.jacobian_penalty:
        stats.jacobian_penalty = penalty(h_out, h_in,
                                         problem.jacobian_penalty,
                                         closed_form_vjp(f, h_in))
    hinge = None
    if guard:
        spectral = stats.jacobian_penalty \
            if problem.jacobian_penalty == "spectral" else None
        hinge = contraction_penalty(h_out, h_in, f,
                                    problem.contraction_bound,
                                    problem.contraction_weight, spectral)
        stats.contraction_penalty = float(hinge.detach())
    cfg = _AdjointConfig(h_out, h_in, gradient, stats, f, problem.monitor)
    out = _ImplicitGrad.apply(h_out, cfg)
    if hinge is not None and bool(hinge > 0):
        out = AddToLoss.apply(out, hinge)
    return out, stats
