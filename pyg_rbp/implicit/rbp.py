r"""The generic entry point :func:`rbp`: a fixed point and its implicit gradient.

The engine knows nothing about graphs. It takes an iterated map
``f(h) -> h`` that closes over its inputs and parameters, finds
:math:`h^* = F(h^*)` and makes autograd see

.. math::
    \frac{\partial L}{\partial w} = \frac{\partial L}{\partial h^*}
    (I - J)^{-1} \frac{\partial F(h^*)}{\partial w},
    \qquad J = \frac{\partial F}{\partial h}(h^*),

for every tensor :math:`w` that ``f`` closes over and that requires grad.

How: the forward iterations run under :func:`torch.no_grad`; one final step
:math:`h_{out} = F(h^*)` is recorded, with :math:`h^*` a detached leaf. An
identity :class:`torch.autograd.Function` on :math:`h_{out}` turns the
incoming gradient :math:`g` into the adjoint :math:`z = (I - J^\top)^{-1} g`,
using vector-Jacobian products through that one recorded step, and autograd
carries :math:`z` on through :math:`\partial F / \partial w`. Memory therefore
stays that of one step, whatever the number of forward steps.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor

from .._checks import (check_batch, check_choice, check_float_tensor,
                       check_int, check_tol)
from .forward import check_interval
from .methods import MethodLike, resolve_method
from .penalties import PENALTIES
from .precision import switch_tol
from .problem import Problem, num_graphs_of
from .solvers import SolverLike, resolve_solver
from .stats import ConvergenceMonitor, ConvergenceWarning, RBPStats
from .tree import FlatMap, State, TreeSpec


def rbp(f: Callable[[Any], Any], h0: State, *,
        method: MethodLike = "neumann",
        max_iter: int = 100, tol: float = 1e-5,
        solver: SolverLike = "fixed_point",
        backward_steps: Optional[int] = None,
        backward_tol: Optional[float] = None,
        batch: Optional[Tensor] = None,
        jacobian_penalty: Optional[str] = None,
        contraction_bound: Optional[float] = None,
        contraction_weight: float = 10.0,
        check_every: Optional[int] = None,
        monitor: Optional[ConvergenceMonitor] = None
        ) -> Tuple[Tensor, RBPStats]:
    r"""Find the fixed point :math:`h^* = F(h^*)` and differentiate through it.

    Args:
        f (callable): The map :math:`F`, ``f(h) -> h`` of the same shape. It
            closes over its inputs and parameters; gradients reach every
            tensor it uses that requires grad.
        h0 (Tensor, or tuple / list / dict of Tensors): The initial state.
            With ``batch``, its first dimension indexes nodes. A tuple,
            list or dict of tensors (one dtype and device) is a state of
            several parts, e.g. an optimiser's (weights, momenta): ``f``
            maps it to one of the same structure and shapes, every method
            works on the joint state (see :mod:`pyg_rbp.implicit.tree`),
            the result comes back in that structure, and
            ``stats.leaf_residuals`` holds each part's last relative
            residual (``forward_residual`` is the joint one).
        method (str or GradientMethod, optional): How gradients are
            computed: a value carrying its settings,
            :class:`~pyg_rbp.implicit.Neumann` (Neumann-RBP, Algorithm 2),
            :class:`~pyg_rbp.implicit.CG` (CG-RBP on the normal equations),
            :class:`~pyg_rbp.implicit.FixedPoint` (original RBP, Algorithm
            1, random start), :class:`~pyg_rbp.implicit.BPTT`
            (back-propagation through every step) or
            :class:`~pyg_rbp.implicit.TBPTT` (through the last steps only),
            :class:`~pyg_rbp.implicit.Hybrid` (the implicit gradient where
            the forward converged, exact back-propagation through the steps
            where it did not; the layers' default),
            e.g. ``method=CG(steps=50)``; or its name, ``'neumann'``,
            ``'cg'``, ``'fixed_point'``, ``'bptt'``, ``'tbptt'``,
            ``'hybrid'``, with the settings from ``backward_steps`` /
            ``backward_tol``.
            (default: :obj:`"neumann"`)
        max_iter (int, optional): The most evaluations of :math:`F`, the
            final differentiable step included. (default: :obj:`100`)
        tol (float, optional): Stop when the relative residual
            :math:`\|F(h) - h\| / (\|h\| + \epsilon)` is at most ``tol``;
            ``0`` runs exactly ``max_iter`` steps and never warns.
            (default: :obj:`1e-5`)
        solver (str or ForwardSolver, optional): The forward solver, a value
            with its settings (:class:`~pyg_rbp.implicit.Anderson`
            ``(memory=8)``, :class:`~pyg_rbp.implicit.Broyden`,
            :class:`~pyg_rbp.implicit.FixedPointIteration`) or its name,
            ``'fixed_point'``, ``'anderson'`` or ``'broyden'``.
            (default: :obj:`"fixed_point"`)
        backward_steps (int, optional): With ``method`` given by name: the
            most adjoint iterations (terms :math:`K` of the Neumann series,
            CG iterations, fixed-point iterations), or the truncation of
            ``'tbptt'``; must stay ``None`` with a method value.
            (default: :obj:`None`, meaning 20)
        backward_tol (float, optional): With ``method`` given by name: stop
            the adjoint solve when its relative residual is below this;
            ``0`` runs exactly ``backward_steps``.
            (default: :obj:`None`, meaning 1e-6)
        batch (Tensor, optional): Node-to-graph vector ``[N]``; convergence
            is then judged per graph and converged graphs stop changing.
            (default: :obj:`None`)
        jacobian_penalty (str, optional): Also return, in
            ``stats.jacobian_penalty``, a differentiable estimate of how far
            :math:`F` is from a contraction at the returned state, to add
            (times a weight) to the loss: ``'spectral'``,
            :math:`\|J^\top v\|^2` after 5 power iterations
            :math:`v \leftarrow J^\top v / \|v\|` from a random start: an
            estimate of the dominant eigenvalue's squared modulus
            :math:`\rho(J)^2` (what decides whether the iteration and the
            Neumann series converge) that lags it and is below
            :math:`\sigma_{\max}(J)^2` for a non-normal :math:`J`
            (measured in docs/methods.md), or ``'frobenius'``,
            :math:`\|J\|_F^2 / n` from one Hutchinson sample (Jacobian
            regularisation, Bai et al., 2021). Costs a few vector-Jacobian
            products and one with ``create_graph=True``.
            (default: :obj:`None`)
        contraction_bound (float, optional): The automatic safeguard of the
            implicit methods (``'neumann'``, ``'cg'``, ``'fixed_point'``):
            when a training call's forward iteration does not reach ``tol``
            (some graph still above it after ``max_iter - 1`` steps), the
            returned state carries the hinge penalty
            :math:`w \max(0, \hat\rho^2 - b^2)`, :math:`b` this bound,
            :math:`w` = ``contraction_weight`` and :math:`\hat\rho^2` the
            ``'spectral'`` estimate of the Jacobian's dominant eigenvalue at
            that state: its gradient joins the parameters' gradients in the
            backward pass as if it were part of the loss. It pulls an
            expansive or marginal map (:math:`\rho(J) \to 1`, where no
            unique fixed point exists and the implicit gradient is wrong)
            back to a contraction, and acts only then. A call that
            converges costs nothing extra: reaching ``tol`` from a unit
            residual within ``max_iter`` steps already implies
            :math:`\rho \lesssim` ``tol ** (1 / max_iter)``. ``None``
            switches it off; it is off for ``'bptt'``/``'tbptt'``, with
            ``tol=0``, and without grad. The value is in
            ``stats.contraction_penalty``. (default: :obj:`None`)
        contraction_weight (float, optional): :math:`w` above.
            (default: :obj:`10.0`)
        check_every (int, optional): Read the forward residuals on the
            host once every this many steps instead of after each (no-grad
            steps with ``solver='fixed_point'``), so that a GPU queues the
            steps without waiting. Results and stats are the same (a graph
            that converged stops changing on the device, at its step);
            up to ``check_every - 1`` extra evaluations of :math:`F` run
            after the last graph converged. ``None``: 1 on the CPU,
            :data:`~pyg_rbp.implicit.forward.DEVICE_CHECK_EVERY` (8)
            elsewhere. (default: :obj:`None`)
        monitor (ConvergenceMonitor, optional): A tally to count this call
            in and to warn through, once per kind of miss (a layer passes
            its own, so that each layer instance warns once with the
            numbers). Without it, a forward that misses ``tol`` and an
            adjoint that misses its tolerance each warn once per place in
            the code. (default: :obj:`None`)

    Returns:
        ``(h_star, stats)``: the state after the last step and an
        :class:`RBPStats` (backward fields are filled in by the backward).

    Note:
        If ``f`` implements :class:`~pyg_rbp.implicit.ClosedFormMap` (a
        method ``vjp_at(h)`` returning :math:`v \mapsto J(h)^\top v`), the
        adjoint solvers and the penalty's power iterations use it instead
        of autograd through the recorded step; it must compute the same
        product (e.g. in closed form, as :class:`pyg_rbp.nn.GGNNStep`
        does). The parameter gradient still goes through autograd.

        For the RBP methods the result does not depend on ``h0`` (a fixed
        point forgets its start), so no gradient flows to ``h0``. Gradients
        of gradients (``create_graph=True``) are not supported.
    """
    if not callable(f):
        raise TypeError(f"'f' must be callable (got {type(f).__name__})")
    if not isinstance(h0, Tensor):
        if batch is not None:
            raise ValueError("'batch' needs a tensor state whose first "
                             "dimension indexes nodes (got a "
                             f"{type(h0).__name__} state)")
        spec = TreeSpec(h0)
        flat = FlatMap(f, spec)
        h, stats = rbp(flat, spec.flatten(h0, "h0"), method=method,
                       max_iter=max_iter, tol=tol, solver=solver,
                       backward_steps=backward_steps,
                       backward_tol=backward_tol,
                       jacobian_penalty=jacobian_penalty,
                       contraction_bound=contraction_bound,
                       contraction_weight=contraction_weight,
                       check_every=check_every, monitor=monitor)
        if flat.last is not None:
            stats.leaf_residuals = spec.leaf_residuals(flat.last[1],
                                                       flat.last[0])
        return spec.unflatten(h), stats
    check_float_tensor("h0", h0)
    gradient = resolve_method(method, backward_steps, backward_tol)
    if not (gradient.implicit or gradient.runs_itself):
        raise TypeError(f"'method' {gradient!r} is neither implicit (a "
                        f"GradientMethod with implicit = True and a solve) "
                        f"nor one that runs itself (BPTT, TBPTT, Phantom)")
    solver = resolve_solver(solver)
    check_int("max_iter", max_iter, 1)
    tol = check_tol("tol", tol)
    if jacobian_penalty is not None:
        check_choice("jacobian_penalty", jacobian_penalty, PENALTIES)
    if contraction_bound is not None:
        contraction_bound = check_tol("contraction_bound", contraction_bound)
        if not 0 < contraction_bound < 1:
            raise ValueError(f"'contraction_bound' must be in (0, 1) "
                             f"(got {contraction_bound})")
    contraction_weight = check_tol("contraction_weight", contraction_weight)
    if check_every is not None:
        check_int("check_every", check_every, 1)
    every = check_interval(h0.device, check_every)
    if h0.dtype in (torch.float16, torch.bfloat16) and \
            0 < tol < switch_tol(h0.dtype):
        warnings.warn(
            f"rbp: tol={tol:g} is below what a {h0.dtype} state can resolve "
            f"(about {switch_tol(h0.dtype):.0e}); every call will run "
            f"max_iter steps. Raise tol, or keep the model in float32 and "
            f"train under torch.autocast (the engine then iterates in low "
            f"precision and finishes in float32).", ConvergenceWarning,
            stacklevel=2)
    if batch is not None:
        if h0.dim() == 0:
            raise ValueError("'h0' must have a node dimension when 'batch' "
                             "is given (got a 0-d tensor)")
        batch = check_batch(batch, h0.size(0)).to(h0.device)
    stats = RBPStats(method=gradient.name, solver=solver.name)
    problem = Problem(f, h0, max_iter, tol, solver, batch,
                      num_graphs_of(batch), stats, jacobian_penalty,
                      contraction_bound, contraction_weight, every, monitor)
    return gradient.run(problem)
