"""What every model holding an RBP layer shares."""
from __future__ import annotations

from typing import Optional

import torch

from ..implicit import RBPStats


class RBPModel(torch.nn.Module):
    """A model whose recurrent layer is ``self.conv``.

    :attr:`stats` is the one way to read the solver statistics of a model's
    last call, whatever the model (the Lightning modules and callbacks read
    ``module.model.stats``).
    """

    conv: torch.nn.Module

    @property
    def stats(self) -> Optional[RBPStats]:
        """The layer's :class:`pyg_rbp.RBPStats` of the last call (``None``
        for a layer without them, such as PyG's ``GatedGraphConv``)."""
        return getattr(self.conv, "stats", None)
