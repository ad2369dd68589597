r"""IGNNConv: the implicit graph layer of IGNN, run through :func:`pyg_rbp.rbp`.

Written from the equation of Gu et al., "Implicit Graph Neural Networks"
(NeurIPS 2020), eq. (2), in PyG's node-per-row layout:

.. math::
    \mathbf{H} = \phi\big(\hat{\mathbf{A}} \mathbf{H} \mathbf{W}^\top
    + \hat{\mathbf{A}} \mathbf{X} \mathbf{U}^\top + \mathbf{b}\big),
    \qquad \hat{\mathbf{A}} = \mathbf{D}^{-1/2}(\mathbf{A} + \mathbf{I})
    \mathbf{D}^{-1/2},

with :math:`\phi = \mathrm{ReLU}`. The fixed point exists and is unique
(well-posedness, the paper's Theorem 4.1 with the Perron-Frobenius bound)
when :math:`\|\mathbf{W}\|_\infty\, \rho(\hat{\mathbf{A}}) < 1`; the paper
keeps it there by projecting :math:`\mathbf{W}` after every optimiser step
onto :math:`\{\|\mathbf{W}\|_\infty \le \kappa / \rho(\hat{\mathbf{A}})\}`
(:meth:`IGNNConv.project_`). It is here as a contender in the long-range
benchmark (``examples/chains.py``), sharing our engine, so only the model
differs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Optional

import torch
from torch import Tensor
from torch.nn import Parameter

from .._checks import check_float_tensor, check_int
from ..implicit import MethodLike, RBPStats, rbp
from ._options import ImplicitOptions
from .adjacency import SparseMatrix, normalized_adjacency
from .call_caches import CallCaches
from .eager import eager
from .graph_input import standardise_graph
from .warm_start import WARM_START_GRAPHS, graph_key


def project_rows_l1(weight: Tensor, radius: float) -> Tensor:
    r"""Euclidean projection of each row onto the :math:`\ell_1` ball of
    ``radius`` (Duchi et al., 2008), i.e. onto
    :math:`\{\mathbf{W}: \|\mathbf{W}\|_\infty \le r\}`. Rows already inside
    are unchanged."""
    absw = weight.abs()
    inside = absw.sum(-1) <= radius
    sorted_w, _ = absw.sort(dim=-1, descending=True)
    cums = sorted_w.cumsum(-1)
    ks = torch.arange(1, weight.size(-1) + 1, device=weight.device,
                      dtype=weight.dtype)
    cond = sorted_w - (cums - radius) / ks > 0
    rho = cond.to(weight.dtype).cumsum(-1).argmax(-1, keepdim=True)
    theta = ((cums.gather(-1, rho) - radius) / (rho + 1).to(weight.dtype))
    shrunk = weight.sign() * (absw - theta).clamp_min(0)
    return torch.where(inside.unsqueeze(-1), weight, shrunk)


def spectral_radius(adj: Tensor, iters: int = 500) -> float:
    r""":math:`\rho(\hat{\mathbf{A}})` of a non-negative sparse matrix by
    power iteration (its Perron root; exact enough for the projection)."""
    n = adj.size(0)
    if n == 0 or iters < 1:
        return 0.0
    v = torch.full((n, 1), n ** -0.5, dtype=torch.float64, device=adj.device)
    a = adj.to(torch.float64)
    for _ in range(iters):  # ||v|| = 1: ||A v|| is the estimate
        w = a @ v
        norm = torch.linalg.vector_norm(w)
        v = w / norm.clamp_min(1e-300)  # a zero matrix stays at 0
    return float(norm)  # the one host synchronisation


class IGNNConv(ImplicitOptions, CallCaches, torch.nn.Module):
    r"""The implicit layer of IGNN (see the module docstring).

    Args:
        in_channels (int): Input feature size.
        out_channels (int): State size.
        kappa (float, optional): The bound :math:`\kappa < 1` of
            :meth:`project_`. (default: :obj:`0.9`)
        num_layers (int, optional): The most forward iterations.
            (default: :obj:`300`)
        tol (float, optional): Forward tolerance. (default: :obj:`1e-6`)
        method (str or GradientMethod, optional): Gradient method of
            :func:`pyg_rbp.rbp`, by name or as a value such as
            ``Neumann(steps=300, tol=1e-8)``. (default: :obj:`"neumann"`)
        backward_steps (int, optional): With ``method`` by name.
            (default: :obj:`None`, meaning 300)
        backward_tol (float, optional): With ``method`` by name.
            (default: :obj:`None`, meaning 1e-8)
    """

    #: Reset in copies and pickles (see :mod:`pyg_rbp.nn.call_caches`).
    call_caches = {"stats": lambda: None, "_rho_cache": OrderedDict}

    def __init__(self, in_channels: int, out_channels: int,
                 kappa: float = 0.9, num_layers: int = 300,
                 tol: float = 1e-6, method: MethodLike = "neumann",
                 backward_steps: Optional[int] = None,
                 backward_tol: Optional[float] = None) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        if not 0.0 < kappa < 1.0:
            raise ValueError(f"'kappa' must be in (0, 1) (got {kappa})")
        self.kappa = float(kappa)
        self.num_layers = check_int("num_layers", num_layers, 1)
        self._set_solver_options(method=method, tol=tol,
                                 solver="fixed_point",
                                 backward_steps=backward_steps,
                                 backward_tol=backward_tol,
                                 default_steps=300, default_tol=1e-8)
        self.weight = Parameter(torch.empty(out_channels, out_channels))
        self.input_weight = Parameter(torch.empty(out_channels, in_channels))
        self.bias = Parameter(torch.empty(out_channels))
        self.stats: Optional[RBPStats] = None
        self._rho: Optional[float] = None
        #: rho(A_hat) per graph (the power iteration runs once per graph)
        self._rho_cache: "OrderedDict[Hashable, float]" = OrderedDict()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        torch.nn.init.kaiming_uniform_(self.input_weight, a=5 ** 0.5)
        torch.nn.init.zeros_(self.bias)

    def normalized_adjacency(self, edge_index: Tensor,
                             num_nodes: int, dtype: torch.dtype) -> Tensor:
        """:math:`\\hat{A}` as a CSR matrix (rows are targets)."""
        return normalized_adjacency(edge_index, num_nodes, dtype)

    @eager
    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        check_float_tensor("x", x)
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"'x' must have shape [N, {self.in_channels}] "
                             f"(got {list(x.shape)})")
        given = edge_index
        edge_index, _ = standardise_graph(edge_index, None, x.size(0),
                                          x.device, type(self).__name__)
        # the given tensor's identity (the checked copy is new every call)
        key = graph_key(given, x.size(0), 0, x.dtype, x.device, content=True)
        adj = SparseMatrix(self.normalized_adjacency(edge_index, x.size(0),
                                                     x.dtype))
        if key is not None and key in self._rho_cache:
            self._rho = self._rho_cache[key]
        else:
            self._rho = spectral_radius(adj.adj)
            if key is not None:
                self._rho_cache[key] = self._rho
                while len(self._rho_cache) > WARM_START_GRAPHS:
                    self._rho_cache.popitem(last=False)
        injected = adj(x @ self.input_weight.t()) + self.bias
        weight_t = self.weight.t()

        def f(h: Tensor) -> Tensor:
            return torch.relu(adj(h @ weight_t) + injected)

        h0 = x.new_zeros(x.size(0), self.out_channels)
        h, self.stats = rbp(f, h0, method=self.settings.gradient,
                            max_iter=self.num_layers, tol=self.tol,
                            solver=self.settings.forward,
                            monitor=self.monitor)
        return h

    @torch.no_grad()
    def project_(self, rho: Optional[float] = None) -> None:
        r"""Project :math:`\mathbf{W}` onto :math:`\|\mathbf{W}\|_\infty \le
        \kappa / \rho(\hat{\mathbf{A}})` (call after each optimiser step);
        ``rho`` defaults to that of the last graph seen."""
        rho = self._rho if rho is None else rho
        if rho is None:
            raise ValueError("IGNNConv.project_: call forward first or pass "
                             "rho (got neither)")
        if rho > 0:
            self.weight.copy_(project_rows_l1(self.weight, self.kappa / rho))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, kappa={self.kappa}, "
                f"method={self.method})")
