r"""One call of :func:`pyg_rbp.rbp` as one value: the map, its start and
every checked option, with the forward pieces each gradient method builds
on (the no-grad loop, the recorded steps after it, the fully recorded run,
the stats and the reports).

:func:`~pyg_rbp.rbp` checks its arguments once, builds a :class:`Problem`
and hands it to the gradient method
(:meth:`~pyg_rbp.implicit.GradientMethod.run`), which decides what runs
with and without autograd; nothing here knows which method asked.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import Tensor

from .forward import IterationResult, graph_residual, iterate
from .penalties import penalty_at
from .precision import full_precision
from .solvers import ForwardSolver, SolverLike, resolve_solver
from .stats import (ConvergenceMonitor, ConvergenceWarning, RBPStats,
                    user_stacklevel)
from ..utils.memory import tensor_bytes


def num_graphs_of(batch: Optional[Tensor]) -> int:
    """The number of graphs PyG's node-to-graph vector names (1 without)."""
    if batch is None or batch.numel() == 0:
        return 1
    return int(batch.max()) + 1


@dataclass
class Problem:
    """A checked call of :func:`~pyg_rbp.rbp` (see its arguments)."""

    f: Callable[[Tensor], Tensor]
    h0: Tensor
    max_iter: int
    tol: float
    solver: ForwardSolver
    batch: Optional[Tensor]
    num_graphs: int
    stats: RBPStats
    jacobian_penalty: Optional[str] = None
    contraction_bound: Optional[float] = None
    contraction_weight: float = 10.0
    #: Steps between host reads of the residuals (no-grad loop).
    every: int = 1
    monitor: Optional[ConvergenceMonitor] = None

    # -- the forward ----------------------------------------------------------
    def iterate(self, h: Tensor, max_steps: int,
                every: int = 1) -> IterationResult:
        """The forward loop from ``h`` under the caller's grad mode."""
        return iterate(self.f, h, max_steps, self.tol, self.solver,
                       self.batch, self.num_graphs, every)

    def converge(self, steps_after: int = 1) -> IterationResult:
        """The no-grad loop from :math:`h^{(0)}`, leaving ``steps_after``
        of the ``max_iter`` evaluations for the caller to record."""
        with torch.no_grad():
            return self.iterate(self.h0.detach(),
                                self.max_iter - steps_after, self.every)

    def steps_after(self, h: Tensor, steps: int, damping: float = 1.0
                    ) -> Tuple[Tensor, Optional[Tensor], List[float]]:
        r"""Take ``steps`` plain steps after the loop (recorded if grad is
        on), :math:`h \leftarrow h + \lambda (F(h) - h)` with
        :math:`\lambda` = ``damping`` (1: :math:`F(h)`).

        Returns the state, the per-graph residual
        :math:`\|F(h) - h\| / \|h\|` of the last step and the residual trace
        of these steps.
        """
        res: Optional[Tensor] = None
        trace: List[float] = []
        for _ in range(steps):
            with full_precision(h.device.type):
                prev, fh = h, self.f(h).to(h.dtype)
            res = graph_residual(fh, prev, self.batch, self.num_graphs)
            trace.append(float(res.max()))
            h = fh if damping == 1.0 else prev + damping * (fh - prev)
        return h, res, trace

    def recorded_after(self, it: IterationResult, steps: int, method: str,
                       damping: float = 1.0) -> Tuple[Tensor, RBPStats]:
        """After the no-grad loop ``it``: ``steps`` recorded steps (see
        :meth:`steps_after`) that autograd back-propagates through, the
        stats naming ``method``, the report and the penalty (TBPTT and the
        phantom gradient)."""
        h, res, tail = self.steps_after(it.h.detach(), steps, damping)
        self.finish(it, res, tail)
        stats = self.stats
        stats.backward_steps = steps
        stats.backward_method = method
        stats.unrolled = True
        self.report(it)
        if self.jacobian_penalty:
            stats.jacobian_penalty = penalty_at(self.f, h,
                                                self.jacobian_penalty)
        return h, stats

    def unrolled(self) -> Tuple[Tensor, RBPStats]:
        """Every step recorded (BPTT, and the hybrid's fallback)."""
        stats = self.stats
        it = self.iterate(self.h0, self.max_iter)
        self.finish(it, None, [])
        stats.backward_steps = it.steps
        stats.backward_method = "bptt"
        stats.unrolled = True
        self.report(it)
        if self.jacobian_penalty:
            stats.jacobian_penalty = penalty_at(self.f, it.h,
                                                self.jacobian_penalty)
        return it.h, stats

    def unrolled_bytes(self, h: Tensor) -> int:
        """Bytes autograd would keep for the ``max_iter`` recorded steps of
        :meth:`unrolled` from about ``h`` (see :func:`unrolled_bytes`)."""
        return unrolled_bytes(self.f, h, self.max_iter, self.solver)

    # -- the record -----------------------------------------------------------
    def finish(self, it: IterationResult, last_res: Optional[Tensor],
               tail: List[float]) -> None:
        """Fill the forward fields of the stats from the loop and the steps
        after it (``tail``, whose last per-graph residual is
        ``last_res``)."""
        stats, tol = self.stats, self.tol
        done, graph_res = it.done, it.graph_residual
        if last_res is not None:
            graph_res = last_res.to(graph_res.dtype)
        stats.residual_trace = it.trace + tail
        stats.forward_steps = it.steps + len(tail)
        stats.low_precision_steps = it.low_precision_steps
        stats.forward_residual = float(graph_res.max())
        converged = done | (graph_res <= tol) if tol > 0 else graph_res <= 0
        if self.batch is None:
            stats.converged = bool(converged[0])
        else:
            stats.converged = converged
            steps = torch.where(it.done, it.graph_steps,
                                torch.full_like(it.graph_steps,
                                                stats.forward_steps))
            stats.graph_steps = steps
            stats.graph_residual = graph_res

    def report(self, it: IterationResult) -> None:
        """Count the call in the monitor and warn about a forward that
        produced non-finite values or missed ``tol`` (once per monitor, or
        once per place in the code without one)."""
        stats, tol, monitor = self.stats, self.tol, self.monitor
        converged = all_converged(stats)
        if monitor is not None and torch.is_grad_enabled():
            monitor.calls += 1
            monitor.forward_converged += converged
            monitor.unrolled += stats.unrolled
        if it.nonfinite:
            warnings.warn(
                f"rbp: the forward iteration produced non-finite values at "
                f"step {it.steps}; F is not a contraction here (see "
                f"docs/methods.md).", ConvergenceWarning,
                stacklevel=user_stacklevel())
            return
        if tol <= 0 or converged:
            return
        what = "some graphs" if self.batch is not None else "the state"
        if monitor is not None:
            monitor.warn_once(
                "forward",
                f"{what} did not reach tol={tol:g} within "
                f"{stats.forward_steps} steps (relative residual "
                f"{stats.forward_residual:.1e}); "
                f"{_what_the_gradient_was(stats)}. Raise the step limit "
                f"(num_layers / max_iter), use solver='anderson', or make F "
                f"more contractive; the share of converged calls is in the "
                f"layer's monitor.")
            return
        # The text stays the same from call to call (no residual in it), so
        # Python's warning filter shows it once per place, not every epoch;
        # the numbers are in the stats.
        warnings.warn(
            f"rbp: {what} did not reach tol={tol:g} within "
            f"{stats.forward_steps} steps; the last state is returned (its "
            f"residual is in the stats). Raise max_iter, use "
            f"solver='anderson', or make F more contractive.",
            ConvergenceWarning, stacklevel=user_stacklevel())


def _what_the_gradient_was(stats: RBPStats) -> str:
    """What a call that missed ``tol`` got as its gradient, in words."""
    if stats.backward_method == "bptt" and stats.method == "hybrid":
        return ("training calls like it take their gradient by "
                "back-propagation through the steps (memory grows with "
                "the steps)")
    if torch.is_grad_enabled() and stats.method == "hybrid":
        return ("its unrolled steps did not fit the memory budget, so "
                "its gradient is the implicit one at a state that is "
                "not a fixed point: off by an unknown amount")
    if stats.unrolled:
        return "its gradient is back-propagation through the steps"
    return ("an implicit gradient there is off by an unknown "
            "amount (it holds only at a fixed point)")


def all_converged(stats: RBPStats) -> bool:
    """Whether every graph of the call reached ``tol``."""
    conv = stats.converged
    return bool(conv.all()) if isinstance(conv, Tensor) else bool(conv)


def unrolled_bytes(f: Callable[[Tensor], Tensor], h: Tensor, steps: int,
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
