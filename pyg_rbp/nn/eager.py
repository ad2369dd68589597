"""The layers inside ``torch.compile``: they run eagerly, between the
compiled parts of a model.

A layer's forward iterates to a fixed point whose number of steps depends on
the data (a host read of the residual per step or per block), and its
backward solves the adjoint system with autograd calls of its own, some with
``create_graph=True`` (the contraction safeguard, the Jacobian penalty).
Neither can live inside a compiled graph: traced, the loop breaks the graph
at every host read (19 graphs per forward were measured), and a compiled
backward with donated buffers refuses the second-order calls. So the layers'
``forward`` is excluded from compilation as a whole (one graph break per
layer call); the model around it (encoders, heads, losses) is compiled as
usual, and the gradients are eager's. ``fullgraph=True`` and
``torch.export`` are refused with :data:`EAGER_REASON` in the message.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable)

#: Why the layers run eagerly (torch.compile shows it when it must refuse).
EAGER_REASON = (
    "pyg_rbp layers iterate to a data-dependent fixed point and solve their "
    "backward with autograd calls of their own, so torch.compile runs them "
    "eagerly between the compiled parts of the model (one graph break per "
    "layer call); fullgraph=True and torch.export cannot include them")


def eager(fn: F) -> F:
    """Exclude ``fn`` (a layer's ``forward``) from ``torch.compile``."""
    return torch.compiler.disable(fn, recursive=True,  # type: ignore
                                  reason=EAGER_REASON)
