"""The solver options every implicit layer takes, checked in one place."""
from __future__ import annotations

from typing import Any

from .._checks import check_choice, check_int, check_tol
from ..implicit import METHODS, SOLVERS


def set_solver_options(layer: Any, method: str, tol: float, solver: str,
                       backward_steps: int, backward_tol: float) -> None:
    """Check the options of :func:`pyg_rbp.rbp` and store them on ``layer``
    (``layer.method``, ``.tol``, ``.solver``, ``.backward_steps``,
    ``.backward_tol``)."""
    layer.method = check_choice("method", method, METHODS)
    layer.tol = check_tol("tol", tol)
    layer.solver = check_choice("solver", solver, SOLVERS)
    layer.backward_steps = check_int("backward_steps", backward_steps, 1)
    layer.backward_tol = check_tol("backward_tol", backward_tol)
