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
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import Tensor

from .._checks import (check_batch, check_choice, check_float_tensor,
                       check_int, check_tol)
from .forward import (IterationResult, check_interval, graph_residual,
                      iterate)
from .maps import closed_form_vjp, promises_closed_form, release
from .methods import (BPTT, TBPTT, GradientMethod, Hybrid, MethodLike,
                      resolve_method)
from .precision import full_precision, switch_tol
from .solvers import (FixedPointIteration, ForwardSolver, SolverLike,
                      resolve_solver)
from .stats import (ConvergenceMonitor, ConvergenceWarning, RBPStats,
                    user_stacklevel)
from .tree import FlatMap, State, TreeSpec
from ..utils.memory import tensor_bytes

PENALTIES = ("spectral", "frobenius")
#: Power iterations behind jacobian_penalty='spectral'.
POWER_STEPS = 5


class _AdjointConfig:
    """What the backward needs, kept off the autograd tensor inputs."""

    def __init__(self, h_out: Tensor, h_in: Tensor, method: GradientMethod,
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
            vjp = _autograd_vjp(h_out, h_in)

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


def _autograd_vjp(h_out: Tensor, h_in: Tensor) -> Callable[[Tensor], Tensor]:
    """``v -> J^T v`` through the recorded step ``h_out = F(h_in)``."""
    def vjp(v: Tensor) -> Tensor:
        (out, ) = torch.autograd.grad(h_out, h_in, v, retain_graph=True)
        return out
    return vjp


def _needs_state_grad(f: Callable[[Tensor], Tensor], method: GradientMethod,
                      penalty: Optional[str]) -> bool:
    """Whether the recorded step must keep a gradient path to its input
    state: for vector-Jacobian products through autograd (no closed form,
    CG's double-vjp, the penalty). Without one, backward computes only the
    parameter gradients, not an unused ``dL/dh*`` of the size of the state."""
    return not promises_closed_form(f) or method.uses_jvp or \
        penalty is not None


def _num_graphs(batch: Optional[Tensor]) -> int:
    if batch is None or batch.numel() == 0:
        return 1
    return int(batch.max()) + 1


def _steps_after(f: Callable[[Tensor], Tensor], h: Tensor, steps: int,
                 batch: Optional[Tensor], num_graphs: int
                 ) -> Tuple[Tensor, Optional[Tensor], List[float]]:
    """Take ``steps`` plain steps after the loop (recorded if grad is on).

    Returns the state, the per-graph residual of the last step and the
    residual trace of these steps.
    """
    res: Optional[Tensor] = None
    trace: List[float] = []
    for _ in range(steps):
        with full_precision(h.device.type):
            prev, h = h, f(h).to(h.dtype)
        res = graph_residual(h, prev, batch, num_graphs)
        trace.append(float(res.max()))
    return h, res, trace


def _finish_forward(stats: RBPStats, it: IterationResult,
                    last_res: Optional[Tensor], tail: List[float],
                    batch: Optional[Tensor], num_graphs: int,
                    tol: float) -> None:
    """Fill the forward fields of ``stats`` from the loop and the steps after
    it (``tail``, whose last per-graph residual is ``last_res``)."""
    done, graph_res = it.done, it.graph_residual
    if last_res is not None:
        graph_res = last_res.to(graph_res.dtype)
    stats.residual_trace = it.trace + tail
    stats.forward_steps = it.steps + len(tail)
    stats.low_precision_steps = it.low_precision_steps
    stats.forward_residual = float(graph_res.max())
    converged = done | (graph_res <= tol) if tol > 0 else graph_res <= 0
    if batch is None:
        stats.converged = bool(converged[0])
    else:
        stats.converged = converged
        steps = torch.where(it.done, it.graph_steps,
                            torch.full_like(it.graph_steps,
                                            stats.forward_steps))
        stats.graph_steps = steps
        stats.graph_residual = graph_res


def _all_converged(stats: RBPStats) -> bool:
    conv = stats.converged
    return bool(conv.all()) if isinstance(conv, Tensor) else bool(conv)


def _report_forward(stats: RBPStats, it: IterationResult,
                    batch: Optional[Tensor], tol: float,
                    monitor: Optional[ConvergenceMonitor]) -> None:
    """Count the call in ``monitor`` and warn about a forward that produced
    non-finite values or missed ``tol`` (once per monitor, or once per
    place in the code without one)."""
    converged = _all_converged(stats)
    if monitor is not None and torch.is_grad_enabled():
        monitor.calls += 1
        monitor.forward_converged += converged
        monitor.unrolled += stats.backward_method in ("bptt", "tbptt")
    if it.nonfinite:
        warnings.warn(
            f"rbp: the forward iteration produced non-finite values at step "
            f"{it.steps}; F is not a contraction here (see docs/methods.md).",
            ConvergenceWarning, stacklevel=user_stacklevel())
        return
    if tol <= 0 or converged:
        return
    what = "some graphs" if batch is not None else "the state"
    if monitor is not None:
        if stats.backward_method == "bptt" and stats.method == "hybrid":
            grad = ("training calls like it take their gradient by "
                    "back-propagation through the steps (memory grows with "
                    "the steps)")
        elif torch.is_grad_enabled() and stats.method == "hybrid":
            grad = ("its unrolled steps did not fit the memory budget, so "
                    "its gradient is the implicit one at a state that is "
                    "not a fixed point: off by an unknown amount")
        elif stats.backward_method in ("bptt", "tbptt"):
            grad = "its gradient is back-propagation through the steps"
        else:
            grad = ("an implicit gradient there is off by an unknown "
                    "amount (it holds only at a fixed point)")
        monitor.warn_once(
            "forward",
            f"{what} did not reach tol={tol:g} within {stats.forward_steps} "
            f"steps (relative residual {stats.forward_residual:.1e}); "
            f"{grad}. Raise the step limit (num_layers / max_iter), use "
            f"solver='anderson', or make F more contractive; the share of "
            f"converged calls is in the layer's monitor.")
        return
    # The text stays the same from call to call (no residual in it), so
    # Python's warning filter shows it once per place, not every epoch;
    # the numbers are in the stats.
    warnings.warn(
        f"rbp: {what} did not reach tol={tol:g} within {stats.forward_steps}"
        f" steps; the last state is returned (its residual is in the "
        f"stats). Raise max_iter, use solver='anderson', or make F more "
        f"contractive.", ConvergenceWarning, stacklevel=user_stacklevel())


def _unrolled_bytes(f: Callable[[Tensor], Tensor], h: Tensor,
                    steps: int,
                    solver: SolverLike = "fixed_point") -> int:
    """Bytes autograd would keep for ``steps`` recorded steps of ``f``
    from about ``h``: two steps are recorded (and dropped) to count what
    each step adds; storages both steps save (parameters, inputs, the
    adjacency) count once, not per step. A solver with a mixer also keeps
    its history alive per recorded step
    (:meth:`~pyg_rbp.implicit.solvers.ForwardSolver.recorded_states`: for
    Anderson the stacked values of :math:`F` and the residuals, which fill
    up over the first steps)."""
    seen: List[dict] = [{}, {}]
    current = [0]

    def pack(t: Tensor) -> Tensor:
        if t.layout == torch.strided:  # views count once, as their storage
            storage = t.untyped_storage()
            key: Any = storage.data_ptr()
            size = storage.nbytes()
        else:  # sparse layouts
            key, size = id(t), tensor_bytes(t)
        seen[current[0]][key] = size
        return t

    with torch.enable_grad(), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h1 = f(h.detach().requires_grad_(True))
        current[0] = 1
        f(h1)
    first, second = seen
    per_step = sum(b for k, b in second.items() if k not in first)
    total = sum(first.values()) + per_step * max(steps - 1, 0)
    total += resolve_solver(solver).recorded_states(steps) * \
        tensor_bytes(h)
    return total


def _penalty(h_out: Tensor, h_in: Tensor, kind: str,
             vjp: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    """A differentiable measure of J = dh_out/dh_in (see ``rbp``)."""
    v = torch.randn_like(h_in)
    if kind == "spectral":
        vjp = vjp or _autograd_vjp(h_out, h_in)
        for _ in range(POWER_STEPS):  # v -> J^T v: towards J^T's dominant
            v = v / v.norm().clamp_min(1e-30)  # eigenvector (slowly, and
            v = vjp(v)  # blind to non-normal growth: docs/methods.md)
        v = (v / v.norm().clamp_min(1e-30)).detach()
    (vjp, ) = torch.autograd.grad(h_out, h_in, v, create_graph=True,
                                  retain_graph=True)
    scale = 1 if kind == "spectral" else max(v.numel(), 1)
    return vjp.pow(2).sum() / scale


class _AddToLoss(torch.autograd.Function):
    """Identity on ``h``; in the backward pass, ``penalty`` gets gradient 1,
    as if it had been added to the loss. Only reached when ``h`` takes part
    in the loss."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, penalty: Tensor) -> Tensor:
        ctx.penalty_shape = penalty.shape
        return h.view_as(h)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, Tensor]:
        return grad, grad.new_ones(ctx.penalty_shape)


def _contraction_penalty(h_out: Tensor, h_in: Tensor,
                         f: Callable[[Tensor], Tensor], bound: float,
                         weight: float, spectral: Optional[Tensor]
                         ) -> Tensor:
    r"""``weight * max(0, rho^2 - bound^2)``, with ``rho^2`` the spectral
    penalty's estimate (``spectral`` when the call computed it already)."""
    if spectral is None:
        spectral = _penalty(h_out, h_in, "spectral",
                            closed_form_vjp(f, h_in))
    return weight * torch.relu(spectral - bound ** 2)


def _penalty_at(f: Callable[[Tensor], Tensor], h: Tensor,
                kind: str) -> Tensor:
    """The penalty at ``h``, through one extra evaluation of ``f``."""
    h_in = h.detach().requires_grad_(True)
    return _penalty(f(h_in), h_in, kind)


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
    if not (gradient.implicit or isinstance(gradient, (BPTT, TBPTT))):
        raise TypeError(f"'method' {gradient!r} is neither implicit (a "
                        f"GradientMethod with implicit = True and a solve) "
                        f"nor BPTT / TBPTT")
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
    num_graphs = _num_graphs(batch)
    stats = RBPStats(method=gradient.name, solver=solver.name)

    if isinstance(gradient, BPTT) and torch.is_grad_enabled():
        return _unrolled(f, h0, max_iter, tol, solver, batch, num_graphs,
                         stats, jacobian_penalty, monitor)

    if isinstance(gradient, TBPTT) and torch.is_grad_enabled():
        k = min(gradient.steps, max_iter)
        with torch.no_grad():
            it = iterate(f, h0, max_iter - k, tol, solver, batch, num_graphs,
                         every)
        h, res, tail = _steps_after(f, it.h.detach(), k, batch, num_graphs)
        _finish_forward(stats, it, res, tail, batch, num_graphs, tol)
        stats.backward_steps = k
        stats.backward_method = gradient.name
        _report_forward(stats, it, batch, tol, monitor)
        if jacobian_penalty:
            stats.jacobian_penalty = _penalty_at(f, h, jacobian_penalty)
        return h, stats

    hybrid = isinstance(gradient, Hybrid) and torch.is_grad_enabled()
    if hybrid and gradient.predict and monitor is not None and \
            monitor.unrolled_rate is not None and \
            (gradient.memory_budget is None or monitor.unrolled_rate *
             h0.numel() <= gradient.memory_budget):
        # the last training call did not converge: record from the start
        out, stats = _unrolled(f, h0, max_iter, tol, solver, batch,
                               num_graphs, stats, jacobian_penalty, monitor)
        if _all_converged(stats):
            monitor.unrolled_rate = None  # the next call tries RBP again
        return out, stats
    with torch.no_grad():
        it = iterate(f, h0.detach(), max_iter - 1, tol, solver, batch,
                     num_graphs, every)
    if isinstance(gradient, Hybrid):
        if hybrid and not bool(it.done.all()):
            need = 0 if gradient.memory_budget is None else \
                _unrolled_bytes(f, it.h, max_iter, solver)
            if gradient.memory_budget is None or \
                    need <= gradient.memory_budget:
                # not at a fixed point: the exact gradient of what is
                # computed, by recording the same steps again
                if monitor is not None:
                    monitor.unrolled_rate = need / max(h0.numel(), 1)
                return _unrolled(f, h0, max_iter, tol, solver, batch,
                                 num_graphs, stats, jacobian_penalty,
                                 monitor)
        elif hybrid and monitor is not None:
            monitor.unrolled_rate = None
        gradient = gradient.for_forward(max_iter)
    h_in = it.h.detach()
    # The safeguard acts on calls whose loop stopped short of tol.
    guard = contraction_bound is not None and contraction_weight > 0 and \
        tol > 0 and torch.is_grad_enabled() and not bool(it.done.all())
    if torch.is_grad_enabled() and (guard or _needs_state_grad(
            f, gradient, jacobian_penalty)):
        h_in.requires_grad_(True)
    h_out, res, tail = _steps_after(f, h_in, 1, batch, num_graphs)
    _finish_forward(stats, it, res, tail, batch, num_graphs, tol)
    stats.backward_method = gradient.name
    _report_forward(stats, it, batch, tol, monitor)
    if not torch.is_grad_enabled():
        return h_out, stats
    if jacobian_penalty:
        stats.jacobian_penalty = _penalty(h_out, h_in, jacobian_penalty,
                                          closed_form_vjp(f, h_in))
    penalty = None
    if guard:
        spectral = stats.jacobian_penalty \
            if jacobian_penalty == "spectral" else None
        penalty = _contraction_penalty(h_out, h_in, f, contraction_bound,
                                       contraction_weight, spectral)
        stats.contraction_penalty = float(penalty.detach())
    cfg = _AdjointConfig(h_out, h_in, gradient, stats, f, monitor)
    out = _ImplicitGrad.apply(h_out, cfg)
    if penalty is not None and bool(penalty > 0):
        out = _AddToLoss.apply(out, penalty)
    return out, stats


def _unrolled(f: Callable[[Tensor], Tensor], h0: Tensor, max_iter: int,
              tol: float, solver: ForwardSolver, batch: Optional[Tensor],
              num_graphs: int, stats: RBPStats,
              jacobian_penalty: Optional[str],
              monitor: Optional[ConvergenceMonitor]
              ) -> Tuple[Tensor, RBPStats]:
    """Every step recorded (BPTT, and the hybrid's fallback)."""
    it = iterate(f, h0, max_iter, tol, solver, batch, num_graphs)
    _finish_forward(stats, it, None, [], batch, num_graphs, tol)
    stats.backward_steps = it.steps
    stats.backward_method = "bptt"
    _report_forward(stats, it, batch, tol, monitor)
    if jacobian_penalty:
        stats.jacobian_penalty = _penalty_at(f, it.h, jacobian_penalty)
    return it.h, stats
