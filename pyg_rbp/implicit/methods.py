r"""How gradients are computed, as values that carry their own settings.

A gradient method is a small frozen dataclass passed to :func:`pyg_rbp.rbp`
or to a layer (``method=Neumann(steps=5)``), in the manner of diffrax's
``adjoint=ImplicitAdjoint(...)``:

* :class:`Neumann` (Neumann-RBP, Algorithm 2 of Liao et al., 2018):
  :math:`z \approx \sum_{k=0}^{K} (J^\top)^k g`.
* :class:`CG` (CG-RBP): conjugate gradient on
  :math:`(I - J)(I - J^\top) z = (I - J) g`.
* :class:`FixedPoint` (the original RBP, Algorithm 1):
  :math:`z \leftarrow J^\top z + g`.
* :class:`BPTT`: back-propagation through every forward step.
* :class:`TBPTT`: back-propagation through the last ``steps`` steps only.

The first three are *implicit*: they solve :math:`(I - J^\top) z = g` at the
fixed point and keep one step in memory. The strings ``'neumann'``,
``'cg'``, ``'fixed_point'``, ``'bptt'``, ``'tbptt'`` with the flat options
``backward_steps`` / ``backward_tol`` name the same values
(:func:`resolve_method`); :data:`METHODS` is built from the one registry
here, so a new method is one class added to :data:`REGISTRY`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, Optional, Tuple, Type, Union

from torch import Tensor

from .._checks import check_choice, check_int, check_tol
from . import adjoint
from .adjoint import AdjointResult, Op

#: The adjoint solve's settings when a string names the method.
DEFAULT_STEPS = 20
DEFAULT_TOL = 1e-6
#: Starts of the original RBP's iteration.
FIXED_POINT_INITS = ("random", "zeros", "grad")


@dataclass(frozen=True)
class GradientMethod:
    """Base of the gradient methods; see the module docstring."""

    #: The string that names the method (``method='neumann'``).
    name: ClassVar[str] = ""
    #: Whether the gradient comes from the implicit function theorem.
    implicit: ClassVar[bool] = False
    #: Whether the solve needs ``J u`` as well as ``J^T v``.
    uses_jvp: ClassVar[bool] = False

    @classmethod
    def from_options(cls, steps: int, tol: float) -> "GradientMethod":
        """The value the flat options ``backward_steps`` / ``backward_tol``
        describe (methods without them ignore them)."""
        return cls()

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        r"""Solve :math:`(I - J^\top) z = g` given ``vjp(v) = J^T v``;
        ``jvp()`` builds ``u -> J u`` (called only where :attr:`uses_jvp`).
        """
        raise TypeError(f"{type(self).__name__} is not an implicit method: "
                        f"it has no adjoint solve")


@dataclass(frozen=True)
class _Solved(GradientMethod):
    """An implicit method: at most ``steps`` iterations, stopping once the
    relative residual is below ``tol`` (``0``: exactly ``steps``)."""

    steps: int = DEFAULT_STEPS
    tol: float = DEFAULT_TOL
    implicit: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        object.__setattr__(self, "tol", check_tol("tol", self.tol))

    @classmethod
    def from_options(cls, steps: int, tol: float) -> "GradientMethod":
        return cls(steps=steps, tol=tol)


@dataclass(frozen=True)
class Neumann(_Solved):
    r"""Neumann-RBP: :math:`z = \sum_{k=0}^{K} (J^\top)^k g`, :math:`K` =
    ``steps`` terms at most; stops once a term's norm relative to
    :math:`\|g\|` is below ``tol``."""

    name: ClassVar[str] = "neumann"

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        return adjoint.neumann(vjp, g, self.steps, self.tol)


@dataclass(frozen=True)
class CG(_Solved):
    r"""CG-RBP: conjugate gradient on the normal equations
    :math:`(I - J)(I - J^\top) z = (I - J) g`, at most ``steps``
    iterations (one ``J^T v`` and one ``J u`` each)."""

    name: ClassVar[str] = "cg"
    uses_jvp: ClassVar[bool] = True

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        return adjoint.cg(vjp, jvp(), g, self.steps, self.tol)


@dataclass(frozen=True)
class FixedPoint(_Solved):
    r"""The original RBP: :math:`z_i = J^\top z_{i-1} + g` from ``init``
    (``'random'``: uniform, rescaled to :math:`\|g\|`, as Algorithm 1;
    ``'zeros'``; ``'grad'``: :math:`z_0 = g`)."""

    init: str = "random"
    name: ClassVar[str] = "fixed_point"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("init", self.init, FIXED_POINT_INITS)

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        return adjoint.fixed_point(vjp, g, self.steps, self.tol, self.init)


@dataclass(frozen=True)
class BPTT(GradientMethod):
    """Back-propagation through every forward step (memory grows with the
    number of steps)."""

    name: ClassVar[str] = "bptt"


@dataclass(frozen=True)
class TBPTT(GradientMethod):
    """Back-propagation through the last ``steps`` forward steps only."""

    steps: int = DEFAULT_STEPS
    name: ClassVar[str] = "tbptt"

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)

    @classmethod
    def from_options(cls, steps: int, tol: float) -> "GradientMethod":
        return cls(steps=steps)


#: The one registry: name -> class. :data:`METHODS` and
#: :data:`IMPLICIT_METHODS` are read from it.
REGISTRY: Dict[str, Type[GradientMethod]] = {
    cls.name: cls for cls in (Neumann, CG, FixedPoint, BPTT, TBPTT)}
METHODS: Tuple[str, ...] = tuple(REGISTRY)
IMPLICIT_METHODS: Tuple[str, ...] = tuple(
    name for name, cls in REGISTRY.items() if cls.implicit)

#: What ``method=`` accepts: a name from :data:`METHODS` or a value.
MethodLike = Union[str, GradientMethod]


def resolve_method(method: MethodLike, steps: Optional[int] = None,
                   tol: Optional[float] = None) -> GradientMethod:
    """The :class:`GradientMethod` that ``method`` names.

    Args:
        method: A value (returned as it is) or a name from :data:`METHODS`.
        steps: ``backward_steps`` for a name (default
            :data:`DEFAULT_STEPS`); must be ``None`` with a value.
        tol: ``backward_tol`` for a name (default :data:`DEFAULT_TOL`);
            must be ``None`` with a value.

    Raises:
        ValueError: an unknown name, bad settings, or ``steps``/``tol``
            given beside a value (which already carries them).
        TypeError: ``method`` is neither a string nor a value.
    """
    if isinstance(method, GradientMethod):
        if steps is not None or tol is not None:
            raise ValueError(
                f"'backward_steps' / 'backward_tol' are for a method given "
                f"by name; {method!r} carries its own settings (got "
                f"backward_steps={steps!r}, backward_tol={tol!r})")
        return method
    if not isinstance(method, str):
        raise TypeError(f"'method' must be a name from {METHODS} or a "
                        f"pyg_rbp.implicit method value such as "
                        f"Neumann(steps=10) (got {type(method).__name__})")
    check_choice("method", method, METHODS)
    steps = check_int("backward_steps",
                      DEFAULT_STEPS if steps is None else steps, 1)
    tol = check_tol("backward_tol", DEFAULT_TOL if tol is None else tol)
    return REGISTRY[method].from_options(steps, tol)
