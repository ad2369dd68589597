"""The solver options every implicit layer takes, checked in one place."""
from __future__ import annotations

from typing import Any, Optional

from .._checks import check_int, check_tol
from ..implicit import (REGISTRY, ConvergenceMonitor, GradientMethod,
                        Hybrid, MethodLike, SolverLike, resolve_method,
                        resolve_solver)


def set_solver_options(layer: Any, method: MethodLike, tol: float,
                       solver: SolverLike, backward_steps: Optional[int],
                       backward_tol: Optional[float],
                       default_steps: int = 20,
                       default_tol: float = 1e-6,
                       hybrid_adjoint: str = "neumann") -> None:
    """Check the options of :func:`pyg_rbp.rbp` and store them on ``layer``.

    ``layer.method`` keeps what was given: a name (then ``.backward_steps``
    and ``.backward_tol`` hold its settings, ``default_steps`` /
    ``default_tol`` where ``None``) or a
    :class:`~pyg_rbp.implicit.GradientMethod` value (then both are ``None``:
    the value carries them). :func:`gradient_method` reads them back;
    ``method='hybrid'`` by name solves its adjoint with the method named
    ``hybrid_adjoint`` (stored as ``layer.hybrid_adjoint``).
    """
    layer.hybrid_adjoint = hybrid_adjoint
    if isinstance(method, GradientMethod):
        resolve_method(method, backward_steps, backward_tol)  # conflicts
        layer.method = method
        layer.backward_steps = layer.backward_tol = None
    else:
        resolve_method(method, backward_steps, backward_tol)  # type, range
        layer.method = method
        layer.backward_steps = check_int(
            "backward_steps",
            default_steps if backward_steps is None else backward_steps, 1)
        layer.backward_tol = check_tol(
            "backward_tol", default_tol if backward_tol is None
            else backward_tol)
    layer.tol = check_tol("tol", tol)
    resolve_solver(solver)  # a name from SOLVERS or a value, else raise
    layer.solver = solver
    # the layer's tally of its training calls; it warns once per instance
    layer.monitor = ConvergenceMonitor(owner=type(layer).__name__)


def gradient_method(layer: Any) -> GradientMethod:
    """The layer's gradient method as a value (read at every call, so that
    ``layer.method = 'cg'`` after construction takes effect)."""
    if isinstance(layer.method, GradientMethod):
        return resolve_method(layer.method)
    method = resolve_method(layer.method, layer.backward_steps,
                            layer.backward_tol)
    adjoint = getattr(layer, "hybrid_adjoint", "neumann")
    if isinstance(method, Hybrid) and adjoint != "neumann":
        return Hybrid(adjoint=REGISTRY[adjoint].from_options(
            layer.backward_steps, layer.backward_tol))
    return method
