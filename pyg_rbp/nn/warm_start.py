r"""Warm starts: begin a call's propagation at the previous call's fixed
point on the same graph.

When is that safe? The implicit gradient (Neumann, CG, original RBP) only
needs :math:`h^*`, not the path to it, and where :math:`F` contracts the
fixed point is unique: any start reaches the same :math:`h^*` (to ``tol``),
so a start near it only saves steps. Full-batch training changes
:math:`F` a little per optimiser step (and per dropout mask), so the last
fixed point is a close start. Where :math:`F` does not contract (several
fixed points), a warm start may pick a different one than a cold start
would: keep it off there. With BPTT / TBPTT the gradient follows the path
from the start, so a warm start changes it (the start itself is treated as
a constant).

The key of a graph is the identity of its ``edge_index`` storage (data
pointer, shape, in-place version), the number of nodes, the channel count,
dtype and device: a new graph, or the same tensor changed in place, starts
cold. A few graphs are remembered (the training graph and the evaluation
graphs of full-batch node classification, bAbI's training and validation
batches).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable, Optional

import torch
from torch import Tensor

#: How many graphs' fixed points are kept.
WARM_START_GRAPHS = 4


def graph_key(edge_index: Any, num_nodes: int, channels: int,
              dtype: torch.dtype, device: torch.device,
              content: bool = False) -> Optional[Hashable]:
    """The key of a graph, or ``None`` for a form without a stable identity
    (sparse adjacencies: those start cold).

    The storage identity alone can repeat when a freed tensor's memory is
    reused for another graph of the same shape; ``content=True`` adds a
    checksum of the indices (one pass over them and one host sync), for
    caches that must not confuse two graphs."""
    if not isinstance(edge_index, Tensor) or edge_index.layout != \
            torch.strided:
        return None
    key = (edge_index.data_ptr(), tuple(edge_index.shape),
           edge_index._version, num_nodes, channels, dtype, str(device))
    if content and edge_index.numel() > 0:
        e = edge_index.long()
        key += (int((e[0] * 1000003 + e[-1] * 7919 +
                     torch.arange(e.size(-1), device=e.device)).sum()), )
    return key


class WarmStarts:
    """The last fixed point of each of the :data:`WARM_START_GRAPHS` most
    recently seen graphs (detached; one ``[N, C]`` tensor each)."""

    def __init__(self, size: int = WARM_START_GRAPHS) -> None:
        self.size = size
        self._states: "OrderedDict[Hashable, Tensor]" = OrderedDict()

    def get(self, key: Optional[Hashable]) -> Optional[Tensor]:
        """The stored state of ``key``'s graph, if any."""
        if key is None or key not in self._states:
            return None
        self._states.move_to_end(key)
        return self._states[key]

    def put(self, key: Optional[Hashable], state: Tensor) -> None:
        """Remember ``state`` (detached) for ``key``'s graph."""
        if key is None or not bool(torch.isfinite(state).all()):
            return
        self._states[key] = state.detach()
        self._states.move_to_end(key)
        while len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)
