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
* :class:`GMRES`: the residual-minimising Krylov solve of
  :math:`(I - J^\top) z = g` (one ``J^T v`` per iteration).
* :class:`AndersonRBP`: the original RBP's iteration
  :math:`z \leftarrow J^\top z + g` with Anderson mixing (a few stored
  vectors; one ``J^T v`` per iteration).
* :class:`BPTT`: back-propagation through every forward step.
* :class:`TBPTT`: back-propagation through the last ``steps`` steps only.
* :class:`Hybrid` (the layers' default): the implicit gradient of its
  ``adjoint`` (Neumann-RBP) for a call whose forward reached its tolerance,
  with the adjoint solved to its own tolerance; for a call that did not,
  exact back-propagation through the steps it ran, while they fit a memory
  budget. The implicit gradient is right only at a fixed point: this
  method never uses it where there is none, unless memory forces it (and
  then says so).

The first three are *implicit*: they solve :math:`(I - J^\top) z = g` at the
fixed point and keep one step in memory. The strings ``'neumann'``,
``'cg'``, ``'fixed_point'``, ``'bptt'``, ``'tbptt'`` with the flat options
``'hybrid'`` with the flat options ``backward_steps`` / ``backward_tol`` name the same values
(:func:`resolve_method`); :data:`METHODS` is built from the one registry
here, so a new method is one class added to :data:`REGISTRY`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Dict, Optional, Tuple, Type, Union

import torch
from torch import Tensor

from .._checks import check_choice, check_int, check_tol
from . import adjoint
from .adjoint import AdjointResult, Op
from .implicit_grad import implicit_gradient
from .problem import Problem, all_converged
from .stats import RBPStats

#: The adjoint solve's settings when a string names the method.
DEFAULT_STEPS = 20
DEFAULT_TOL = 1e-6
#: Starts of the original RBP's iteration.
FIXED_POINT_INITS = ("random", "uniform", "zeros", "grad")


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

    @property
    def runs_itself(self) -> bool:
        """Whether :meth:`run` is this method's own (else it needs
        :meth:`solve`: an implicit method)."""
        return type(self).run is not GradientMethod.run

    def run(self, problem: Problem) -> Tuple[Tensor, RBPStats]:
        """One call of :func:`pyg_rbp.rbp` with this method: what runs with
        and without autograd, and what autograd sees. The base: the forward
        loop without grad, then one recorded step whose gradient is the
        implicit one (:meth:`solve`); without grad, only that step."""
        return implicit_gradient(problem, self, problem.converge())


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

    #: The adjoint solver of :mod:`pyg_rbp.implicit.adjoint` that takes
    #: ``(vjp, g, steps, tol)``, for the methods that need nothing more.
    plain_solve: ClassVar[Optional[Callable[..., AdjointResult]]] = None

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        if self.plain_solve is None:
            return super().solve(vjp, g, jvp)
        return type(self).plain_solve(vjp, g, self.steps, self.tol)


@dataclass(frozen=True)
class Neumann(_Solved):
    r"""Neumann-RBP: :math:`z = \sum_{k=0}^{K} (J^\top)^k g`, :math:`K` =
    ``steps`` terms at most; stops once a term's norm relative to
    :math:`\|g\|` is below ``tol``."""

    name: ClassVar[str] = "neumann"
    plain_solve = staticmethod(adjoint.neumann)


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
    (``'random'``: uniform, rescaled to :math:`\|g\|`, so that the
    gradient scales with the loss; ``'uniform'``: :math:`z_0 \sim U(0, 1)`
    unscaled, the paper's Algorithm 1, not scale-invariant; ``'zeros'``;
    ``'grad'``: :math:`z_0 = g`)."""

    init: str = "random"
    name: ClassVar[str] = "fixed_point"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("init", self.init, FIXED_POINT_INITS)

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        return adjoint.fixed_point(vjp, g, self.steps, self.tol, self.init)


@dataclass(frozen=True)
class GMRES(_Solved):
    r"""GMRES-RBP: the residual-minimising Krylov solve of
    :math:`(I - J^\top) z = g`, at most ``steps`` iterations (one
    ``J^T v`` each, ``steps + 1`` stored vectors). It converges where the
    Neumann series does not (:math:`\rho(J) \ge 1` with :math:`I - J`
    invertible, or transient growth of a non-normal :math:`J`), and
    without CG's squared condition number."""

    name: ClassVar[str] = "gmres"
    plain_solve = staticmethod(adjoint.gmres)


@dataclass(frozen=True)
class AndersonRBP(_Solved):
    r"""Anderson-RBP: the original RBP's iteration :math:`z \leftarrow
    J^\top z + g` from :math:`z_0 = g`, accelerated by Anderson mixing over
    the last ``memory`` iterates, at most ``steps`` iterations (one
    ``J^T v`` each, ``2 * memory`` stored vectors). The forward solver
    ``'anderson'``'s counterpart: where :math:`\rho(J)` is close to 1 it
    needs a fraction of the Neumann series' terms (the contractive step's
    default adjoint in the hybrid). ``lam``: the mixing's ridge, relative
    to the window's largest squared residual (the system is linear, so it
    only guards a singular small solve; the forward solver's 1e-4 tripled
    the products on the trained quick start)."""

    memory: int = 5
    lam: float = adjoint.ADJOINT_ANDERSON_LAM
    name: ClassVar[str] = "anderson"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("memory", self.memory, 1)
        check_tol("lam", self.lam)

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        return adjoint.anderson(vjp, g, self.steps, self.tol, self.memory,
                                self.lam)


@dataclass(frozen=True)
class BPTT(GradientMethod):
    """Back-propagation through every forward step (memory grows with the
    number of steps)."""

    name: ClassVar[str] = "bptt"

    def run(self, problem: Problem) -> Tuple[Tensor, RBPStats]:
        if not torch.is_grad_enabled():  # evaluation: no steps to record
            return super().run(problem)
        return problem.unrolled()


@dataclass(frozen=True)
class _RecordedTail(GradientMethod):
    """What :class:`TBPTT` and :class:`Phantom` share: the forward runs
    without grad, then its last ``steps`` steps (damped by ``damping``)
    are recorded and back-propagated through; ``steps`` count in
    ``max_iter``."""

    steps: int
    #: The recorded steps' damping (1: plain steps; see :class:`Phantom`).
    damping: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)

    @classmethod
    def from_options(cls, steps: int, tol: float) -> "GradientMethod":
        return cls(steps=steps)

    def run(self, problem: Problem) -> Tuple[Tensor, RBPStats]:
        if not torch.is_grad_enabled():
            return super().run(problem)
        k = min(self.steps, problem.max_iter)
        return problem.recorded_after(problem.converge(steps_after=k), k,
                                      self.name, self.damping)


@dataclass(frozen=True)
class TBPTT(_RecordedTail):
    """Back-propagation through the last ``steps`` forward steps only."""

    steps: int = DEFAULT_STEPS
    name: ClassVar[str] = "tbptt"


@dataclass(frozen=True)
class Phantom(_RecordedTail):
    r"""The phantom gradient (Geng et al., 2021): the forward converges
    without grad, then ``steps`` damped steps :math:`h \leftarrow h +
    \lambda (F(h) - h)` (:math:`\lambda` = ``damping``) are recorded from
    :math:`h^*` and back-propagated through. At a fixed point those steps
    keep the value, and the gradient they give is

    .. math::
        \lambda \sum_{i=0}^{k-1} \big((1 - \lambda) I + \lambda J\big)^{i}
        \frac{\partial F}{\partial w},

    a truncated series for :math:`(I - J)^{-1} \partial F / \partial w`:
    approximate (its error shrinks as :math:`\|(1-\lambda) I + \lambda
    J\|^k`), cheap (``steps`` step backwards, no adjoint solve) and with
    the memory of ``steps`` steps. Not an implicit method: no tolerance, no
    ``solve``. :class:`TBPTT` is the undamped case (:math:`\lambda = 1`);
    both record their steps as :class:`_RecordedTail` does."""

    steps: int = 5
    damping: float = 0.5  # type: ignore[misc]  # a field here
    name: ClassVar[str] = "phantom"

    def __post_init__(self) -> None:
        super().__post_init__()
        damping = check_tol("damping", self.damping)
        if not 0 < damping <= 1:
            raise ValueError(f"'damping' must be in (0, 1] (got {damping})")
        object.__setattr__(self, "damping", damping)


#: The hybrid's default memory budget: bytes autograd may keep for the
#: unrolled steps of a call whose forward did not converge (1 GiB).
HYBRID_BUDGET = 2 ** 30


@dataclass(frozen=True)
class Hybrid(GradientMethod):
    r"""The implicit gradient where it is right, the exact one elsewhere.

    The implicit function theorem gives the gradient of the fixed point
    :math:`h^*` only if the forward reached it and the adjoint system
    :math:`(I - J^\top) z = g` is solved. Per training call:

    * forward converged (every graph within ``tol``): the ``adjoint``
      method's implicit gradient (memory of one step), its iteration cap
      raised to ``max(adjoint.steps, step_factor * max_iter)``: a map whose forward
      reaches ``tol`` within ``max_iter`` steps contracts at about
      :math:`\mathrm{tol}^{1/\mathrm{max\_iter}}` per step or faster, and
      the powers of :math:`J^\top` decay as those of :math:`J` do, so the
      adjoint meets its own (tighter) tolerance within a comparable number
      of terms (the forward's own count is no guide after a warm start);
    * forward not converged: the forward is run again from :math:`h^{(0)}`
      with autograd recording (the same steps, so the same state) and the
      gradient is exact back-propagation through what was computed, as
      :class:`BPTT` -- provided the recorded steps' memory, measured on two
      recorded steps and multiplied by the number of steps, is at most
      ``memory_budget`` bytes (``None``: no limit). Above it, the implicit
      gradient is used anyway and the call is reported
      (``stats.backward_method``, a :class:`ConvergenceWarning`). The
      probe and the second run evaluate ``f`` again: a map with state of
      its own (one that counts its calls) sees those calls too; the
      layers' maps have none. ``memory_budget=None`` skips the probe.

    ``stats.backward_method`` names what ran (``'neumann'``, ``'bptt'``,
    ...). Memory is that of one step whenever the forward converges; a call
    that does not costs the no-grad forward again and BPTT's memory.

    With ``predict`` (and a :class:`~pyg_rbp.implicit.ConvergenceMonitor`,
    which the layers pass), a training call that follows an unrolled one
    records its steps from the start instead of running them twice (the
    budget checked on the last call's bytes per state element); its
    gradient is then BPTT's even if it converges, and the call after a
    converged one goes back to the no-grad forward first.

    Args:
        adjoint: The implicit method for converged calls.
            (default: ``Neumann(steps=20, tol=1e-6)``)
        memory_budget: Bytes for the unrolled fallback, or ``None``.
            (default: :data:`HYBRID_BUDGET`, 1 GiB)
        predict: Record from the start after an unrolled call.
            (default: :obj:`True`)
        step_factor: The adjoint's cap is at least this many times the
            forward's ``max_iter`` (``0``: the adjoint's own cap).
            (default: ``2``)
    """

    adjoint: GradientMethod = field(default_factory=lambda: Neumann())
    memory_budget: Optional[int] = HYBRID_BUDGET
    predict: bool = True
    step_factor: int = 2
    name: ClassVar[str] = "hybrid"
    implicit: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.adjoint, GradientMethod) or \
                not self.adjoint.implicit or isinstance(self.adjoint, Hybrid):
            raise TypeError(f"'adjoint' must be an implicit method value "
                            f"such as Neumann(steps=20) or CG() (got "
                            f"{self.adjoint!r})")
        if self.memory_budget is not None:
            check_int("memory_budget", self.memory_budget, 0)
        if not isinstance(self.predict, bool):
            raise TypeError(f"'predict' must be a bool (got "
                            f"{type(self.predict).__name__})")
        check_int("step_factor", self.step_factor, 0)

    @property  # type: ignore[override]
    def uses_jvp(self) -> bool:  # noqa: D102 - the adjoint's
        return self.adjoint.uses_jvp

    @classmethod
    def from_options(cls, steps: int, tol: float) -> "GradientMethod":
        return cls(adjoint=Neumann(steps=steps, tol=tol))

    def for_forward(self, max_iter: int) -> GradientMethod:
        """The adjoint with its cap raised for a forward of at most
        ``max_iter`` steps (see the class docstring)."""
        steps = getattr(self.adjoint, "steps", None)
        wanted = self.step_factor * max_iter
        if steps is None or steps >= wanted:
            return self.adjoint
        return replace(self.adjoint, steps=wanted)

    def solve(self, vjp: Op, g: Tensor,
              jvp: Callable[[], Op]) -> AdjointResult:
        return self.adjoint.solve(vjp, g, jvp)

    def _fits(self, need: int) -> bool:
        return self.memory_budget is None or need <= self.memory_budget

    def run(self, problem: Problem) -> Tuple[Tensor, RBPStats]:
        grad, monitor = torch.is_grad_enabled(), problem.monitor
        if grad and self.predict and monitor is not None and \
                monitor.unrolled_rate is not None and \
                self._fits(monitor.unrolled_rate * problem.h0.numel()):
            # the last training call did not converge: record from the start
            out, stats = problem.unrolled()
            if all_converged(stats):
                monitor.unrolled_rate = None  # the next call tries RBP again
            return out, stats
        it = problem.converge()
        if grad and not bool(it.done.all()):
            need = 0 if self.memory_budget is None else \
                problem.unrolled_bytes(it.h)
            if self._fits(need):
                # not at a fixed point: the exact gradient of what is
                # computed, by recording the same steps again
                if monitor is not None:
                    monitor.unrolled_rate = need / max(problem.h0.numel(), 1)
                return problem.unrolled()
        elif grad and monitor is not None:
            monitor.unrolled_rate = None
        return implicit_gradient(problem, self.for_forward(problem.max_iter),
                                 it)


#: The one registry: name -> class. :data:`METHODS` and
#: :data:`IMPLICIT_METHODS` are read from it.
REGISTRY: Dict[str, Type[GradientMethod]] = {
    cls.name: cls for cls in (Neumann, CG, FixedPoint, BPTT, TBPTT, Hybrid,
                              GMRES, AndersonRBP, Phantom)}
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
