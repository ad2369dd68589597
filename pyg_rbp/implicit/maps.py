r"""The optional protocol of a map :math:`F` with a closed-form transposed
Jacobian.

:func:`pyg_rbp.rbp` takes any callable ``f(h) -> h``. By default the adjoint
solvers get :math:`v \mapsto J^\top v` by autograd through the one recorded
step, which keeps a gradient path to the state :math:`h^*` (memory of the
size of the state, and a backward through the whole step per product). A
map that knows :math:`J^\top v` in closed form declares it by implementing
:class:`ClosedFormMap`; :class:`pyg_rbp.nn.GGNNStep` is the library's own.
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

Op = Callable[[Tensor], Tensor]


@runtime_checkable
class ClosedFormMap(Protocol):
    r"""A map :math:`F` that offers :math:`v \mapsto J(h)^\top v`.

    Members:
        __call__(h): :math:`F(h)`, a tensor of ``h``'s shape.
        vjp_at(h): a function :math:`v \mapsto J(h)^\top v`,
            :math:`J = \partial F / \partial h`, computing the same product
            as autograd would (to rounding); or ``None`` where it has none
            at this call, in which case :attr:`has_closed_form_vjp` must be
            ``False``. The returned function may carry an attribute
            ``overwrite(v)`` that writes :math:`J^\top v` into ``v``'s
            storage (the Neumann solve then holds one vector less).
        has_closed_form_vjp: whether :meth:`vjp_at` returns a product for
            this call. When ``True``, the recorded step keeps no gradient
            path to the state (only to the parameters), unless CG or a
            Jacobian penalty needs one. A map without this attribute is
            taken as ``True``.
        release(): *(optional)* drop the references :meth:`vjp_at` kept;
            called once the backward pass is done with them.

    A map on a structured state (a tuple, list or dict of tensors, see
    :mod:`pyg_rbp.implicit.tree`) implements the protocol on that
    structure: ``vjp_at(state)`` returns a function from a cotangent in the
    state's structure to one (``overwrite`` is not used there);
    :class:`pyg_rbp.hyperopt.SGDMomentumStep` is the library's own.

    Example::

        class Linear:                        # F(h) = A h + b
            def __init__(self, A, b):
                self.A, self.b = A, b
            has_closed_form_vjp = True
            def __call__(self, h):
                return self.A @ h + self.b
            def vjp_at(self, h):
                return lambda v: self.A.T @ v
    """

    def __call__(self, h: Tensor) -> Tensor: ...

    def vjp_at(self, h: Tensor) -> Optional[Op]: ...


def promises_closed_form(f: object) -> bool:
    """Whether ``f`` implements :class:`ClosedFormMap` and says that
    :meth:`~ClosedFormMap.vjp_at` returns a product for this call."""
    return callable(getattr(f, "vjp_at", None)) and \
        bool(getattr(f, "has_closed_form_vjp", True))


def closed_form_vjp(f: object, h: Tensor) -> Optional[Op]:
    """``f.vjp_at(h)`` where ``f`` offers one, else ``None``."""
    vjp_at = getattr(f, "vjp_at", None)
    return vjp_at(h) if callable(vjp_at) else None


def autograd_vjp(h_out: Tensor, h_in: Tensor) -> Callable[[Tensor], Tensor]:
    """``v -> J^T v`` through the recorded step ``h_out = F(h_in)``."""
    def vjp(v: Tensor) -> Tensor:
        (out, ) = torch.autograd.grad(h_out, h_in, v, retain_graph=True)
        return out
    return vjp


def release(f: object) -> None:
    """Call ``f.release()`` where ``f`` has one."""
    done = getattr(f, "release", None)
    if callable(done):
        done()


@runtime_checkable
class RestrictableMap(Protocol):
    r"""A map that can evaluate :math:`F` on part of the state.

    ``restrict(nodes)`` returns the map on the rows ``nodes`` of the state
    (renumbered in that order), or ``None`` where it cannot. The forward
    loop calls it with whole graphs of a batch (the graphs still running,
    once enough have converged), which no edge links to the rest, so the
    restricted map computes exactly those rows of :math:`F`:
    :class:`pyg_rbp.nn.GGNNStep` implements it.
    """

    def __call__(self, h: Tensor) -> Tensor: ...

    def restrict(self, nodes: Tensor) -> Optional[Callable[[Tensor], Tensor]]:
        ...


def restrict(f: object, nodes: Tensor
             ) -> Optional[Callable[[Tensor], Tensor]]:
    """``f.restrict(nodes)`` where ``f`` offers it, else ``None``."""
    method = getattr(f, "restrict", None)
    return method(nodes) if callable(method) else None
