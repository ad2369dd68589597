"""The solver options every implicit layer takes: checked once, resolved
once to values, held as one frozen :class:`SolverSettings`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .._checks import check_choice, check_tol
from ..implicit import (METHODS, REGISTRY, ConvergenceMonitor,
                        ForwardSolver, GradientMethod, Hybrid, MethodLike,
                        SolverLike, resolve_method, resolve_solver)
from ..implicit.methods import DEFAULT_STEPS, DEFAULT_TOL


@dataclass(frozen=True)
class SolverSettings:
    r"""The options of :func:`pyg_rbp.rbp` a layer takes, as given, and the
    values they resolve to (:attr:`gradient`, :attr:`forward`), resolved
    once when the settings are made.

    Args:
        method: A name from :data:`pyg_rbp.METHODS` or a
            :class:`~pyg_rbp.implicit.GradientMethod` value.
        tol: The forward's relative residual tolerance.
        solver: A name from :data:`pyg_rbp.SOLVERS` or a
            :class:`~pyg_rbp.implicit.ForwardSolver` value.
        backward_steps: The adjoint's steps, for a method given by name
            (``None``: ``default_steps``); must be ``None`` with a value.
        backward_tol: The adjoint's tolerance, for a method given by name
            (``None``: ``default_tol``); must be ``None`` with a value.
        default_steps: The layer's ``backward_steps`` default.
        default_tol: The layer's ``backward_tol`` default; ``None``: the
            forward's ``tol`` (``DEFAULT_TOL``, 1e-6, where ``tol`` is 0). The
            fixed point is known to relative residual ``tol``, which bounds
            the implicit gradient's accuracy to about
            :math:`\mathrm{tol} / (1 - L)`; an adjoint solved to the same
            residual adds an error of that order, one solved tighter buys
            nothing beyond it.
        hybrid_adjoint: The method, by name, that solves the adjoint of
            ``method='hybrid'`` given by name.

    Raises:
        ValueError: an unknown name, a setting out of range, or
            ``backward_steps`` / ``backward_tol`` beside a method value.
        TypeError: an option of the wrong type.
    """

    method: MethodLike = "hybrid"
    tol: float = 1e-5
    solver: SolverLike = "fixed_point"
    backward_steps: Optional[int] = None
    backward_tol: Optional[float] = None
    default_steps: int = DEFAULT_STEPS
    default_tol: Optional[float] = DEFAULT_TOL
    hybrid_adjoint: str = "neumann"
    #: The gradient method the options resolve to.
    gradient: GradientMethod = field(init=False, repr=False, compare=False)
    #: The forward solver the options resolve to.
    forward: ForwardSolver = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tol = check_tol("tol", self.tol)
        object.__setattr__(self, "tol", tol)
        check_choice("hybrid_adjoint", self.hybrid_adjoint, METHODS)
        if isinstance(self.method, GradientMethod):
            gradient = resolve_method(self.method, self.backward_steps,
                                      self.backward_tol)
        else:  # checks the name, the steps and the tolerance
            steps, adjoint_tol = self.steps, self.adjoint_tol
            gradient = resolve_method(self.method, steps, adjoint_tol)
            if isinstance(gradient, Hybrid) and \
                    self.hybrid_adjoint != "neumann":
                gradient = Hybrid(adjoint=REGISTRY[
                    self.hybrid_adjoint].from_options(steps, adjoint_tol))
        object.__setattr__(self, "gradient", gradient)
        object.__setattr__(self, "forward", resolve_solver(self.solver))

    @property
    def steps(self) -> Optional[int]:
        """The adjoint's steps of a method given by name (``None`` for a
        value, which carries its own)."""
        if isinstance(self.method, GradientMethod):
            return None
        return self.default_steps if self.backward_steps is None \
            else self.backward_steps

    @property
    def adjoint_tol(self) -> Optional[float]:
        """The adjoint's tolerance of a method given by name (``None`` for
        a value)."""
        if isinstance(self.method, GradientMethod):
            return None
        if self.backward_tol is not None:
            return self.backward_tol
        if self.default_tol is not None:
            return self.default_tol
        return self.tol if self.tol > 0 else DEFAULT_TOL

    def replace(self, **changes: Any) -> "SolverSettings":
        """These settings with ``changes`` (option names as in the
        constructor), checked and resolved again. A method given as a value
        drops ``backward_steps`` / ``backward_tol`` (the value carries its
        own)."""
        if isinstance(changes.get("method"), GradientMethod):
            changes.setdefault("backward_steps", None)
            changes.setdefault("backward_tol", None)
        return dataclasses.replace(self, **changes)


class _Option:
    """A layer attribute that reads ``settings.<read>`` and sets the option
    of its own name, checked and resolved at once
    (:meth:`SolverSettings.replace`)."""

    def __init__(self, read: str, doc: str) -> None:
        self.read = read
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: Any, owner: Optional[type] = None) -> Any:
        if layer is None:
            return self
        return getattr(layer.settings, self.read)

    def __set__(self, layer: Any, value: Any) -> None:
        layer.settings = layer.settings.replace(**{self.name: value})


class ImplicitOptions:
    """The solver options of an implicit layer, read and set as attributes
    (``conv.method = 'cg'``, ``conv.backward_steps = 50``, ``conv.tol``,
    ``conv.solver``), each set checked at once and resolved into the
    layer's :class:`SolverSettings` (``conv.settings``), which the call
    passes to :func:`pyg_rbp.rbp` as values; a bad value raises and leaves
    the settings as they were.
    """

    settings: SolverSettings
    method = _Option("method", "The gradient method as given (a name or a "
                               "value).")
    tol = _Option("tol", "The forward's relative residual tolerance.")
    solver = _Option("solver", "The forward solver as given (a name or a "
                               "value).")
    backward_steps = _Option("steps", "The adjoint's steps of a method "
                                      "given by name (None for a value).")
    backward_tol = _Option("adjoint_tol", "The adjoint's tolerance of a "
                                          "method given by name (None for a "
                                          "value).")

    def _set_solver_options(self, **options: Any) -> None:
        self.settings = SolverSettings(**options)
        # the layer's tally of its training calls; it warns once per layer
        self.monitor = ConvergenceMonitor(owner=type(self).__name__)
