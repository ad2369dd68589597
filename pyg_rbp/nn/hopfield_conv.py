"""HopfieldConv: a continuous Hopfield network as a message-passing layer."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing

from .._checks import check_choice, check_float_tensor, check_int
from ..implicit import MethodLike, RBPStats, SolverLike, rbp
from ._options import ImplicitOptions
from .call_caches import CallCaches
from .eager import eager


class HopfieldConv(ImplicitOptions, CallCaches, MessagePassing):
    r"""A continuous Hopfield network (Hopfield, 1984) as a graph layer: one
    node per neuron, the complete graph without self-loops, and symmetric
    learnable edge weights :math:`w_{ij} = w_{ji}`.

    .. math::
        \frac{d h_i}{d t} = -\frac{h_i}{a} + \sum_{j \ne i} w_{ij}\,
        \phi(b\, h_j) + l_i

    discretised with one Euler step of size :math:`\Delta t` (default
    :math:`a`, which gives :math:`F(h) = a\,(\sum_j w_{ij}\phi(b h_j) +
    l_i)`), run to its fixed point by :func:`pyg_rbp.rbp` and trained with
    recurrent back-propagation. Neurons in ``clamp_mask`` are held at
    ``clamp_values`` (the input image). The message :math:`w_{ij}\,
    \phi(b h_j)` is aggregated by sum; on the complete graph this is the
    matrix product :math:`W \phi(b h)` (the default, dense path), and with an
    explicit ``edge_index`` it runs as PyG message passing over those edges.

    The state has shape ``[num_neurons, B]``: neurons are nodes, and the B
    columns are independent patterns processed together.

    Args:
        num_neurons (int): Number of neurons :math:`N`.
        a (float, optional): Leak time constant. (default: :obj:`1.0`)
        b (float, optional): Gain of :math:`\phi`. (default: :obj:`0.5`)
        dt (float, optional): Euler step; ``None`` means :math:`a`.
        activation (str, optional): :math:`\phi`, ``'sigmoid'`` or
            ``'tanh'``. (default: :obj:`"sigmoid"`)
        num_steps (int, optional): Most forward steps. (default: :obj:`50`)
        method, tol, solver, backward_steps, backward_tol: as in
            :class:`pyg_rbp.RBPGatedGraphConv`.
    """

    #: Reset in copies and pickles (see :mod:`pyg_rbp.nn.call_caches`).
    call_caches = {"stats": lambda: None}

    def __init__(self, num_neurons: int, a: float = 1.0, b: float = 0.5,
                 dt: Optional[float] = None, activation: str = "sigmoid",
                 num_steps: int = 50, *, method: MethodLike = "neumann",
                 tol: float = 1e-5, solver: SolverLike = "fixed_point",
                 backward_steps: Optional[int] = None,
                 backward_tol: Optional[float] = None,
                 **kwargs: Any) -> None:
        super().__init__(aggr="add", **kwargs)
        self.num_neurons = check_int("num_neurons", num_neurons, 2)
        if a <= 0 or b <= 0 or (dt is not None and dt <= 0):
            raise ValueError(f"'a', 'b' and 'dt' must be > 0 (got a={a}, "
                             f"b={b}, dt={dt})")
        self.a, self.b = float(a), float(b)
        self.dt = self.a if dt is None else float(dt)
        self.activation = check_choice("activation", activation,
                                       ("sigmoid", "tanh"))
        self.num_steps = check_int("num_steps", num_steps, 1)
        self._set_solver_options(method=method, tol=tol, solver=solver,
                                 backward_steps=backward_steps,
                                 backward_tol=backward_tol)
        self.weight = Parameter(torch.empty(num_neurons, num_neurons))
        self.stats: Optional[RBPStats] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights uniform in :math:`\\pm 1/\\sqrt{N}`."""
        super().reset_parameters()
        bound = 1.0 / self.num_neurons ** 0.5
        torch.nn.init.uniform_(self.weight, -bound, bound)

    def symmetric_weight(self) -> Tensor:
        r""":math:`W = (W_0 + W_0^\top) / 2` with a zero diagonal."""
        w = 0.5 * (self.weight + self.weight.t())
        return w - torch.diag_embed(torch.diagonal(w))

    def phi(self, h: Tensor) -> Tensor:
        """The activation :math:`\\phi(b h)`."""
        z = self.b * h
        return torch.sigmoid(z) if self.activation == "sigmoid" else \
            torch.tanh(z)

    def fixed_point_map(self, inputs: Tensor, clamp_mask: Optional[Tensor],
                        edge_index: Optional[Tensor] = None
                        ) -> Tuple[Callable[[Tensor], Tensor], Tensor]:
        """Check the inputs; return the map :math:`F` and the start state.

        Args:
            inputs: ``[N, B]``: the external input :math:`l`, and the value
                of clamped neurons.
            clamp_mask: ``[N]`` bool: neurons held at ``inputs``.
            edge_index: ``[2, E]``: message passing over these edges instead
                of the dense complete graph.
        """
        check_float_tensor("inputs", inputs)
        if inputs.dim() == 1:
            inputs = inputs.unsqueeze(-1)
        if inputs.dim() != 2 or inputs.size(0) != self.num_neurons:
            raise ValueError(f"'inputs' must have shape [{self.num_neurons}, "
                             f"B] (got {list(inputs.shape)})")
        if clamp_mask is not None and (clamp_mask.dtype != torch.bool or
                                       clamp_mask.shape !=
                                       (self.num_neurons, )):
            raise ValueError(f"'clamp_mask' must be a bool tensor of shape "
                             f"[{self.num_neurons}] (got {clamp_mask.dtype}, "
                             f"{list(clamp_mask.shape)})")
        w = self.symmetric_weight()
        if edge_index is not None:
            src, dst = edge_index
            edge_weight = w[dst, src]

            def aggregate(s: Tensor) -> Tensor:
                return self._propagate(edge_index, s, edge_weight)
        else:
            def aggregate(s: Tensor) -> Tensor:
                # W s as (s^T W)^T: W is symmetric to the bit (the mean of
                # W_0 and its transpose), and CPU BLAS multiplies the few
                # pattern rows from the left 2-6x faster than a skinny
                # right factor (2592 neurons: 7.7 ms against 14.3).
                return (s.t() @ w).t()

        free = None if clamp_mask is None else \
            (~clamp_mask).to(inputs.dtype).unsqueeze(-1)
        clamped = None if clamp_mask is None else inputs * (1 - free)

        def step(h: Tensor) -> Tensor:
            drive = -h / self.a + aggregate(self.phi(h)) + inputs
            h_new = h + self.dt * drive
            if free is not None:
                h_new = h_new * free + clamped
            return h_new

        return step, inputs.clone() if clamp_mask is not None else \
            torch.zeros_like(inputs)

    @eager
    def forward(self, inputs: Tensor, clamp_mask: Optional[Tensor] = None,
                edge_index: Optional[Tensor] = None) -> Tensor:
        """Run to the fixed point; returns the state ``[N, B]``."""
        step, h0 = self.fixed_point_map(inputs, clamp_mask, edge_index)
        h, self.stats = rbp(step, h0, method=self.settings.gradient,
                            max_iter=self.num_steps, tol=self.tol,
                            solver=self.settings.forward,
                            monitor=self.monitor)
        return h

    def _propagate(self, edge_index: Tensor, s: Tensor,
                   edge_weight: Tensor) -> Tensor:
        # propagate_type: (x: Tensor, edge_weight: Tensor)
        return self.propagate(edge_index, x=s, edge_weight=edge_weight)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_neurons}, "
                f"a={self.a}, b={self.b}, method={self.method})")
