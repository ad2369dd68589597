"""Solver diagnostics: a small record per call, a per-layer tally, and the
warning we raise."""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Union

from torch import Tensor


class ConvergenceWarning(UserWarning):
    """The forward iteration or the backward (adjoint) solve did not converge.

    Raised at most once per forward call and once per backward call, never
    once per step. The result is still returned; :class:`RBPStats` says how
    far it got.
    """


@dataclass
class RBPStats:
    r"""What one call of :func:`pyg_rbp.rbp` did.

    The forward fields are set when the forward pass returns; the backward
    fields are set when the backward pass has run (they stay ``None`` until
    then, and for ``'bptt'``/``'tbptt'`` they are set in the forward pass,
    since the backward is ordinary autograd through the unrolled steps).

    Attributes:
        method: The backward method (``'neumann'``, ``'cg'``,
            ``'fixed_point'``, ``'bptt'`` or ``'tbptt'``).
        solver: The forward solver (``'fixed_point'`` or ``'anderson'``).
        forward_steps: Number of evaluations of :math:`F`, the final
            differentiable one included.
        low_precision_steps: How many of them ran in the autocast dtype
            (0 outside :func:`torch.autocast`; see
            :mod:`pyg_rbp.implicit.precision`).
        forward_residual: Final relative residual
            :math:`\|F(h) - h\| / (\|h\| + \epsilon)`; with ``batch``, the
            largest over the graphs.
        converged: Whether ``forward_residual <= tol``; a bool, or a bool
            tensor with one entry per graph when ``batch`` was given.
        residual_trace: The relative residual after every step (with
            ``batch``, the largest over the graphs not yet converged).
        graph_steps: With ``batch``, the step at which each graph converged
            (``forward_steps`` for those that did not), else ``None``.
        graph_residual: With ``batch``, each graph's final residual.
        backward_steps: Number of vector-Jacobian products (``'neumann'``,
            ``'fixed_point'``), CG iterations (``'cg'``) or differentiable
            unrolled steps (``'bptt'``, ``'tbptt'``).
        backward_residual: Final relative residual of the adjoint solve:
            the norm of the last Neumann term over :math:`\|g\|`; for
            ``'fixed_point'`` :math:`\|z_i - z_{i-1}\| / \|g\|`; for
            ``'cg'`` the residual of the normal equations over the norm of
            their right-hand side; ``None`` for ``'bptt'``/``'tbptt'``.
        backward_diverged: Whether the adjoint solve was stopped because it
            diverged (then the last finite, best estimate was used).
        backward_converged: Whether the adjoint solve met its tolerance
            (``backward_residual <= tol`` of the method, without
            divergence); ``None`` for unrolled gradients and for a method
            with ``tol=0`` (a fixed number of iterations by request).
        backward_method: The method whose gradient this call's backward
            computes: the method's own name, except for ``'hybrid'``, which
            names what it chose (``'neumann'`` when the forward converged,
            ``'bptt'`` when it fell back to back-propagation through the
            steps; see :class:`~pyg_rbp.implicit.Hybrid`).
        unrolled: Whether that gradient back-propagates through recorded
            forward steps (all of them: BPTT and the hybrid's fallback; the
            last ones: TBPTT; damped ones from the fixed point: the phantom
            gradient) rather than solving the adjoint system.
        jacobian_penalty: With ``jacobian_penalty`` set and grad enabled, a
            differentiable estimate of :math:`\sigma_{\max}(J)^2`
            (``'spectral'``) or :math:`\|J\|_F^2 / n` (``'frobenius'``) at
            the returned state (add a multiple of it to the loss), else
            ``None``.
        leaf_residuals: For a tuple / list / dict state, each part's
            relative residual after the last step, in the state's structure
            (``forward_residual`` is that of the joint state); else
            ``None``.
        contraction_penalty: The value of the automatic contraction
            safeguard's hinge penalty (see ``contraction_bound`` of
            :func:`pyg_rbp.rbp`) when the call computed it (a training call
            whose forward did not reach ``tol``; ``0.0`` when the estimate
            was below the bound), else ``None``.
    """

    method: str
    solver: str
    forward_steps: int = 0
    low_precision_steps: int = 0
    forward_residual: float = float("nan")
    converged: Union[bool, Tensor] = False
    residual_trace: List[float] = field(default_factory=list, repr=False)
    graph_steps: Optional[Tensor] = None
    graph_residual: Optional[Tensor] = None
    backward_steps: Optional[int] = None
    backward_residual: Optional[float] = None
    backward_diverged: bool = False
    backward_converged: Optional[bool] = None
    backward_method: Optional[str] = None
    unrolled: bool = False
    jacobian_penalty: Optional[Tensor] = field(default=None, repr=False)
    contraction_penalty: Optional[float] = None
    leaf_residuals: Any = None


@dataclass
class ConvergenceMonitor:
    """A layer's tally of its training calls, and its warnings, once each.

    :func:`pyg_rbp.rbp` updates it when given one (``monitor=``): every call
    with grad enabled counts in :attr:`calls`; those whose forward reached
    ``tol`` in :attr:`forward_converged`; those whose gradient was an
    adjoint solve in :attr:`adjoint_calls`, and of them those that met
    the adjoint's tolerance in :attr:`adjoint_solved`; those whose gradient
    was back-propagation through the steps (:class:`~pyg_rbp.implicit.BPTT`,
    or :class:`~pyg_rbp.implicit.Hybrid`'s fallback) in :attr:`unrolled`.
    The first call that misses the forward tolerance, and the first adjoint
    solve that misses its own, each raise one :class:`ConvergenceWarning`
    that names the numbers and the option to change; later ones are
    counted, not repeated (:meth:`reset` re-arms them).

    Attributes:
        owner: Who is warning (e.g. the layer's class name); two tallies
            compare by their counts alone.
    """

    owner: str = field(default="rbp", compare=False)
    calls: int = 0
    forward_converged: int = 0
    adjoint_calls: int = 0
    adjoint_solved: int = 0
    unrolled: int = 0
    warned: Set[str] = field(default_factory=set, repr=False)
    #: Set by :class:`~pyg_rbp.implicit.Hybrid` after a training call that
    #: did not converge and was unrolled: its recorded bytes per state
    #: element (0.0 without a budget), so that the next call records its
    #: steps from the start instead of running them twice; ``None`` after
    #: a call that converged.
    unrolled_rate: Optional[float] = field(default=None, repr=False)

    def reset(self) -> None:
        """Zero the counts and re-arm the warnings."""
        self.calls = self.forward_converged = self.adjoint_calls = 0
        self.adjoint_solved = self.unrolled = 0
        self.warned.clear()
        self.unrolled_rate = None

    def shares(self) -> Dict[str, float]:
        """The shares of training calls: forward converged, adjoint solved
        (of the calls with an adjoint solve) and unrolled (NaN where no call
        counts)."""
        def share(n: int, d: int) -> float:
            return n / d if d else float("nan")
        return {"forward_converged": share(self.forward_converged, self.calls),
                "adjoint_solved": share(self.adjoint_solved,
                                        self.adjoint_calls),
                "unrolled": share(self.unrolled, self.calls)}

    def warn_once(self, kind: str, message: str) -> None:
        """Raise ``message`` as a :class:`ConvergenceWarning` the first time
        ``kind`` is seen, attributed to the user's line that led here."""
        if kind in self.warned:
            return
        self.warned.add(kind)
        warnings.warn(f"{self.owner}: {message}", ConvergenceWarning,
                      stacklevel=user_stacklevel())


#: pyg_rbp's own folder: its frames are not the user's.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside pyg_rbp and torch (a
    layer's call, or ``loss.backward()``), seen from the caller of
    :func:`warnings.warn`."""
    import torch  # here: stats.py itself does not need torch at import
    skipped = (_PACKAGE, os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(skipped):
        frame, level = frame.f_back, level + 1
    return level
