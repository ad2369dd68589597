r"""States made of several tensors: a tuple, a list or a dict of tensors.

Some recurrences carry more than one tensor: an optimiser's inner loop
iterates on (weights, momenta), a hyperparameter problem differentiates
through it. :func:`pyg_rbp.rbp` takes such a state as it is: the leaves are
laid end to end in one vector :math:`s = [\mathrm{vec}(h_1); \dots;
\mathrm{vec}(h_k)]`, the map becomes :math:`s \mapsto
\mathrm{vec}(F(\mathrm{unvec}(s)))`, and every gradient method works on
that vector unchanged: the adjoint system of the joint state is

.. math::
    (I - J^\top) z = g, \qquad J = \frac{\partial F}{\partial s}, \quad
    g = \Big(\frac{\partial L}{\partial h_1^*}; \dots;
    \frac{\partial L}{\partial h_k^*}\Big)^\top,

with every cross-term :math:`\partial F_i / \partial h_j` in it. The result
is returned in the structure of the input (views of one vector, so that
autograd routes each leaf's gradient to its slice).
"""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Sequence, \
    Tuple, Union

import torch
from torch import Tensor

from .._checks import check_float_tensor
from .maps import closed_form_vjp, promises_closed_form, release

#: What ``rbp`` accepts as a state besides a tensor.
State = Union[Tensor, Sequence[Tensor], Mapping[str, Tensor]]


class TreeSpec:
    """The structure of a tuple / list / dict state: its kind, keys, leaf
    shapes, dtype and device."""

    def __init__(self, state: Any, name: str = "h0") -> None:
        if isinstance(state, Mapping):
            self.kind: type = dict
            self.keys: List[Any] = list(state.keys())
            leaves = [state[k] for k in self.keys]
        elif isinstance(state, (tuple, list)):
            self.kind = type(state)
            self.keys = list(range(len(state)))
            leaves = list(state)
        else:
            raise TypeError(f"'{name}' must be a torch.Tensor, or a tuple, "
                            f"list or dict of tensors (got "
                            f"{type(state).__name__})")
        if not leaves:
            raise ValueError(f"'{name}' must hold at least one tensor (got "
                             f"an empty {type(state).__name__})")
        for key, leaf in zip(self.keys, leaves):
            check_float_tensor(f"{name}[{key!r}]", leaf)
        first = leaves[0]
        for key, leaf in zip(self.keys, leaves):
            if leaf.dtype != first.dtype or leaf.device != first.device:
                raise TypeError(
                    f"every tensor of '{name}' must have one dtype and "
                    f"device ({first.dtype}, {first.device} for "
                    f"'{name}[{self.keys[0]!r}]'; got {leaf.dtype}, "
                    f"{leaf.device} for '{name}[{key!r}]')")
        self.shapes = [tuple(leaf.shape) for leaf in leaves]
        self.numels = [leaf.numel() for leaf in leaves]
        self.dtype, self.device = first.dtype, first.device

    def leaves(self, state: Any, name: str) -> List[Tensor]:
        """The leaves of ``state`` in this order, checked against the
        structure (``name`` says whose state it is in errors)."""
        if self.kind is dict:
            if not isinstance(state, Mapping) or \
                    set(state.keys()) != set(self.keys):
                got = sorted(map(str, state.keys())) \
                    if isinstance(state, Mapping) else type(state).__name__
                raise ValueError(f"{name} must be a dict with the keys "
                                 f"{sorted(map(str, self.keys))} (got {got})")
            leaves = [state[k] for k in self.keys]
        else:
            if not isinstance(state, (tuple, list)) or \
                    len(state) != len(self.keys):
                got = f"{type(state).__name__} of {len(state)}" \
                    if isinstance(state, (tuple, list)) else \
                    type(state).__name__
                raise ValueError(f"{name} must be a {self.kind.__name__} of "
                                 f"{len(self.keys)} tensors, as the initial "
                                 f"state (got {got})")
            leaves = list(state)
        for key, shape, leaf in zip(self.keys, self.shapes, leaves):
            if not isinstance(leaf, Tensor) or tuple(leaf.shape) != shape:
                got = list(leaf.shape) if isinstance(leaf, Tensor) else \
                    type(leaf).__name__
                raise ValueError(f"{name}[{key!r}] must have the shape of "
                                 f"the initial state's {list(shape)} "
                                 f"(got {got})")
        return leaves

    def flatten(self, state: Any, name: str) -> Tensor:
        """One vector of the leaves, end to end."""
        return torch.cat([leaf.reshape(-1).to(self.dtype)
                          for leaf in self.leaves(state, name)])

    def unflatten(self, vector: Tensor) -> Any:
        """The structure again, its leaves views of ``vector``."""
        parts = [piece.view(shape) for piece, shape in
                 zip(torch.split(vector, self.numels), self.shapes)]
        if self.kind is dict:
            return dict(zip(self.keys, parts))
        return self.kind(parts)

    def leaf_residuals(self, new: Tensor, old: Tensor) -> Any:
        r"""Per leaf, :math:`\|new_i - old_i\| / (\|old_i\| + \epsilon)`, as
        floats in the structure of the state."""
        with torch.no_grad():
            values = [float(torch.linalg.vector_norm(a - b) /
                            (torch.linalg.vector_norm(b) + 1e-12))
                      for a, b in zip(torch.split(new, self.numels),
                                      torch.split(old, self.numels))]
        if self.kind is dict:
            return dict(zip(self.keys, values))
        return self.kind(values)


class FlatMap:
    """``s -> vec(F(unvec(s)))`` for a map on a structured state; remembers
    its last input and output (detached) for the per-leaf residuals.

    A structured map that offers its transposed Jacobian
    (:class:`~pyg_rbp.implicit.ClosedFormMap` on the structure: ``vjp_at``
    takes the state and returns a function from a cotangent of the state's
    structure to one) keeps doing so through the flat vector; otherwise the
    products go by autograd through the recorded step."""

    def __init__(self, f: Callable[[Any], Any], spec: TreeSpec) -> None:
        self.f = f
        self.spec = spec
        self.last: Optional[Tuple[Tensor, Tensor]] = None

    @property
    def has_closed_form_vjp(self) -> bool:
        """Whether the structured map promises a closed form."""
        return promises_closed_form(self.f)

    def __call__(self, vector: Tensor) -> Tensor:
        out = self.spec.flatten(self.f(self.spec.unflatten(vector)),
                                "the output of 'f'")
        self.last = (vector.detach(), out.detach())
        return out

    def vjp_at(self, h: Tensor) -> Optional[Callable[[Tensor], Tensor]]:
        """The structured map's product, on flat vectors; ``None`` where it
        has none."""
        inner = closed_form_vjp(self.f, self.spec.unflatten(h))
        if inner is None:
            return None
        spec = self.spec

        def vjp(v: Tensor) -> Tensor:
            return spec.flatten(inner(spec.unflatten(v)),
                                "the output of 'f.vjp_at'")
        return vjp

    def release(self) -> None:
        """Let the structured map drop what its ``vjp_at`` kept."""
        release(self.f)
