r"""Forward solvers as values: how the forward loop moves from one iterate
to the next.

The loop (:func:`pyg_rbp.implicit.forward.iterate`) evaluates
:math:`F(h_k)` and hands :math:`(h_k, F(h_k))` to the solver's *mixer*,
which returns :math:`h_{k+1}`. Every solver is a frozen value carrying its
settings, named by a string (``solver='anderson'`` and
``solver=Anderson(memory=8)`` are the same kind of thing); one registry,
:data:`SOLVER_REGISTRY`, lists them:

* :class:`FixedPointIteration` (``'fixed_point'``): :math:`h_{k+1} =
  F(h_k)`, the paper's; no mixer.
* :class:`Anderson` (``'anderson'``): Anderson acceleration over the last
  ``memory`` iterates (:class:`~pyg_rbp.implicit.mixing.AndersonMixer`).
* :class:`Broyden` (``'broyden'``): a limited-memory quasi-Newton method
  on :math:`g(h) = F(h) - h = 0`
  (:class:`~pyg_rbp.implicit.mixing.BroydenMixer`).

A mixer gets PyG's node-to-graph vector (``groups``) where the loop stops
per graph: the graphs of a batch are separate problems, and each gets
coefficients of its own. Under autograd (BPTT through the forward, the
hybrid's fallback) the mixers record their operations like any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, Optional, Tuple, Type, Union

from torch import Tensor

from .._checks import check_int, check_tol
from .mixing import AndersonMixer, BroydenMixer

#: ``mixer(h, F(h)) -> next iterate``; one per call of the forward loop.
Mixer = Callable[[Tensor, Tensor], Tensor]


class ForwardSolver:
    """Base of the forward solvers; see the module docstring."""

    #: The string that names the solver (``solver='anderson'``).
    name: ClassVar[str] = ""

    def mixer(self, groups: Optional[Tensor], num_groups: int
              ) -> Optional[Mixer]:
        """A fresh mixer for one forward loop (``None``: the plain step,
        :math:`h_{k+1} = F(h_k)`)."""
        return None

    def recorded_states(self, steps: int) -> int:
        """States of the size of :math:`h` that the mixer's history keeps
        alive under autograd over ``steps`` recorded steps, beyond what the
        steps themselves save (the hybrid's memory estimate)."""
        return 0


@dataclass(frozen=True)
class FixedPointIteration(ForwardSolver):
    r"""Plain iteration :math:`h_{k+1} = F(h_k)`: converges wherever
    :math:`F` contracts, at the contraction's rate; nothing is stored.

    ``compact_share``: with per-graph stopping and no grad, once the graphs
    still running hold at most this share of the state's nodes the loop
    evaluates :math:`F` on their rows only (0: never; the result is the
    same either way, see :func:`~pyg_rbp.implicit.forward.iterate`)."""

    compact_share: float = 0.5
    name: ClassVar[str] = "fixed_point"

    def __post_init__(self) -> None:
        share = self.compact_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) \
                or not 0.0 <= share <= 1.0:
            raise ValueError(f"'compact_share' must be a number in [0, 1] "
                             f"(got {share!r})")
        object.__setattr__(self, "compact_share", float(share))


@dataclass(frozen=True)
class Anderson(ForwardSolver):
    r"""Anderson acceleration (type II, Walker & Ni 2011): with the last
    ``memory`` iterates :math:`h_i` and residuals :math:`g_i = F(h_i) -
    h_i`, solve :math:`\min_\alpha \|\sum_i \alpha_i g_i\|^2 +
    \lambda\|\alpha\|^2` subject to :math:`\sum_i \alpha_i = 1` and take
    :math:`h_{k+1} = \sum_i \alpha_i F(h_i)`. ``lam``: the ridge
    :math:`\lambda` relative to the window's largest squared residual.
    Holds ``2 * memory`` states."""

    memory: int = 5
    lam: float = 1e-4
    name: ClassVar[str] = "anderson"

    def __post_init__(self) -> None:
        check_int("memory", self.memory, 1)
        object.__setattr__(self, "lam", check_tol("lam", self.lam))

    def mixer(self, groups: Optional[Tensor], num_groups: int
              ) -> Optional[Mixer]:
        return AndersonMixer(memory=self.memory, lam=self.lam,
                             groups=groups, num_groups=num_groups)

    def recorded_states(self, steps: int) -> int:
        # the stacked values of F and the residuals, per recorded step
        return 2 * sum(min(k, self.memory) for k in range(2, steps + 1))


@dataclass(frozen=True)
class Broyden(ForwardSolver):
    r"""Limited-memory "good" Broyden on :math:`g(h) = F(h) - h = 0`:
    :math:`h_{k+1} = h_k - H_k g_k` with :math:`H_0 = -I` (so the first
    step is :math:`F(h_0)`) and, after each step :math:`s = h_{k+1} - h_k`,
    :math:`y = g_{k+1} - g_k`, the rank-one update

    .. math::
        H \leftarrow H + \frac{(s - H y)\, s^\top H}{s^\top H y}

    that makes :math:`H y = s` (the secant condition), kept as
    :math:`H = -I + \sum_i u_i v_i^\top`, restarted from :math:`-I` once
    it holds ``memory`` pairs. Without restarts it terminates on a linear
    :math:`F` of dimension :math:`n` within :math:`2n` steps (Gay 1979).
    Holds ``2 * memory`` states."""

    memory: int = 10
    name: ClassVar[str] = "broyden"

    def __post_init__(self) -> None:
        check_int("memory", self.memory, 1)

    def mixer(self, groups: Optional[Tensor], num_groups: int
              ) -> Optional[Mixer]:
        return BroydenMixer(memory=self.memory, groups=groups,
                            num_groups=num_groups)

    def recorded_states(self, steps: int) -> int:
        # per step after the first, autograd keeps six new states: the
        # residual g, the secant pair s and y, H^T s, s - H y and the new u
        # (the older u_i, v_i are storages already counted)
        return 6 * max(steps - 1, 0)


#: The one registry of forward solvers: name -> class.
SOLVER_REGISTRY: Dict[str, Type[ForwardSolver]] = {
    cls.name: cls for cls in (FixedPointIteration, Anderson, Broyden)}
#: The names ``solver=`` accepts.
SOLVERS: Tuple[str, ...] = tuple(SOLVER_REGISTRY)

#: What ``solver=`` accepts: a name from :data:`SOLVERS` or a value.
SolverLike = Union[str, ForwardSolver]


def resolve_solver(solver: SolverLike) -> ForwardSolver:
    """The :class:`ForwardSolver` that ``solver`` names (a value is
    returned as it is; a name gets the class's default settings).

    Raises:
        ValueError: an unknown name.
        TypeError: neither a string nor a :class:`ForwardSolver`.
    """
    if isinstance(solver, ForwardSolver):
        return solver
    if not isinstance(solver, str):
        raise TypeError(f"'solver' must be a name from {SOLVERS} or a "
                        f"pyg_rbp.implicit forward solver value such as "
                        f"Anderson(memory=8) (got {type(solver).__name__})")
    if solver not in SOLVER_REGISTRY:
        valid = ", ".join(repr(c) for c in SOLVERS)
        raise ValueError(f"'solver' must be one of {valid} or a forward "
                         f"solver value (got {solver!r})")
    return SOLVER_REGISTRY[solver]()
