"""What a layer keeps from its last call is not part of the layer.

A layer remembers things between calls for speed or inspection: the last
call's :class:`~pyg_rbp.RBPStats` (with per-graph tensors), the aggregation
matrix it built (a sparse CSR tensor, which :func:`copy.deepcopy` cannot
copy), warm-start states, a per-graph spectral radius. None of it is the
model: a copy (``copy.deepcopy``, ``torch.optim.swa_utils.AveragedModel``,
the usual best-model copy for early stopping) or a pickle
(``torch.save(model)``, ``pickle``) of a layer after any number of calls
holds the parameters and settings only, and the copy gives the same
outputs, rebuilding what it needs on its first call.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict


class CallCaches:
    """Mixin for :class:`torch.nn.Module` layers: the attributes named in
    :attr:`call_caches` are reset to an empty value in every copy and
    pickle (:meth:`__getstate__`), never in the layer itself."""

    #: attribute name -> a function returning its empty value
    call_caches: ClassVar[Dict[str, Callable[[], Any]]] = {}

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        for name, empty in self.call_caches.items():
            if name in state:
                state[name] = empty()
        return state
