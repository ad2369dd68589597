r"""One GGNN propagation step as a callable, with fast paths.

.. math::
    m = A\,h\,\Theta \;\Big(\text{typed edges: } m = \textstyle\sum_t A_t\,h\,\Theta_t\Big),
    \qquad
    [r, z] = \sigma(W_{i,rz} [m, x] + b_{i,rz} + W_{h,rz} h + b_{h,rz}),

    n = \tanh(W_{i,n} [m, x] + b_{i,n} + r \odot (W_{h,n} h + b_{h,n})),
    \qquad F(h) = n + z \odot (h - n),

the step of PyG's ``GatedGraphConv`` (a ``GRUCell`` whose input is the message
and the layer input :math:`x`). Everything that does not depend on :math:`h`
is computed once per call: the input half of the GRU's input projection (with
the reset/update hidden biases folded in) and, for a linear aggregation,
:math:`\Theta W_{i,m}^\top`, so that a step aggregates the C-wide state and
skips the separate :math:`h\Theta` product (:math:`(A h)\Theta = A (h
\Theta)`). With :math:`k` edge types the state is first multiplied by
:math:`[\Theta_1 | \dots | \Theta_k]` (``[C, kC]``) and one sparse product
with the ``[N, kN]`` typed adjacency gives the message (the layout
``benchmarks/typed_edges.py`` measured fastest).

Three ways to evaluate it, all the same function:

* with autograd recording (BPTT, the one differentiable RBP step): plain
  out-of-place operations plus in-place ones only on fresh tensors autograd
  does not keep;
* without autograd (the RBP forward loop, evaluation): rows in cache-sized
  blocks, so each block's GEMM outputs are still in cache for the gates, and
  :math:`\tanh(a) = 2\sigma(2a) - 1` in place (PyTorch's CPU ``tanh`` is
  several times slower than its ``sigmoid``);
* :meth:`GGNNStep.vjp_at`: the transposed Jacobian at a fixed state as a
  closed-form linear map (the gates' derivatives are computed once), which
  the adjoint solvers of :func:`pyg_rbp.rbp` call K times; about half the cost
  of a vector-Jacobian product through autograd.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from ..implicit.precision import autocast_dtype, full_precision
from .adjacency import SparseMatrix

#: Rows per block x channels: about 2**17 floats per [rows, C] block.
_BLOCK_ELEMENTS = 2 ** 17
#: On CUDA the adjoint's row-local work runs as one block (kernel launches
#: dominate) unless the state has more elements than this; then 8 blocks
#: keep its two work buffers small.
_CUDA_ONE_BLOCK = 2 ** 24


def block_rows(num: int, channels: int, cuda: bool, adjoint: bool = False
               ) -> int:
    """Rows per block of the row-blocked loops, always at least 1 (a graph
    with no nodes has no blocks, but ``range`` needs a positive step).

    CPU: cache-sized blocks of about 2**17 elements. CUDA: one block, except
    for the adjoint of a state above ``_CUDA_ONE_BLOCK`` elements (8 blocks).
    """
    if not cuda:
        return max(1, _BLOCK_ELEMENTS // max(channels, 1))
    if adjoint and num * channels > _CUDA_ONE_BLOCK:
        return max(1, -(-num // 8))
    return max(1, num)


class GGNNStep:
    """The map :math:`F` of one call of :class:`pyg_rbp.RBPGatedGraphConv`.

    Args:
        x (Tensor): The layer input, padded to ``C`` channels, ``[N, C]``.
        weight (Tensor): :math:`\\Theta`, ``[C, C]``, or one per edge type,
            ``[k, C, C]``.
        rnn (torch.nn.GRUCell): The GRU, input size ``2C``.
        aggregate (callable): ``h -> A h`` (or ``h -> AGG(h)`` for a
            non-linear aggregation); with edge types it takes the
            ``[N, kC]`` transformed state (see
            :func:`pyg_rbp.nn.adjacency.build_aggregate`).
        linear_aggregate (bool): Whether ``aggregate`` is linear, so that
            :math:`\\Theta` can move behind it.
    """

    def __init__(self, x: Tensor, weight: Tensor, rnn: torch.nn.GRUCell,
                 aggregate: Callable[[Tensor], Tensor],
                 linear_aggregate: bool) -> None:
        self.aggregate = aggregate
        self.linear = linear_aggregate
        self._gates: Optional[tuple] = None
        # The constants are built in full precision even under autocast: the
        # map may finish in float32 (see pyg_rbp.implicit.precision).
        low = autocast_dtype(x.device.type)
        with full_precision(x.device.type):
            self._build(x, weight, rnn)
            # Under autocast, their low-precision copies once per call, not
            # once per step (autocast would cast these non-leaf tensors again
            # at every GEMM), for the steps without grad: the forward loop.
            # Recorded steps keep autocast's own casts, so that BPTT sums
            # its per-step weight gradients in float32, not in the copy's
            # low precision.
            self._low = None if low is None else self._cast(low)

    def _build(self, x: Tensor, weight: Tensor,
               rnn: torch.nn.GRUCell) -> None:
        c = weight.size(-1)
        self.c = c
        # The state goes through ``pre`` before the aggregation, or Theta is
        # folded into the message GEMM after it (untyped, linear).
        if weight.dim() == 3:  # [k, C, C] -> [Theta_1 | ... | Theta_k]
            self.pre: Optional[Tensor] = weight.permute(1, 0, 2) \
                .reshape(c, -1)
        else:
            self.pre = None if self.linear else weight
        w_msg, w_in = rnn.weight_ih[:, :c], rnn.weight_ih[:, c:]
        gi_x = x @ w_in.t()
        if rnn.bias_ih is not None:
            gi_x = gi_x + rnn.bias_ih
        if rnn.bias_hh is not None:  # reset/update gates see b_ih + b_hh
            gi_x = torch.cat([gi_x[:, :2 * c] + rnn.bias_hh[:2 * c],
                              gi_x[:, 2 * c:]], dim=1)
        self.gi_x_rz = gi_x[:, :2 * c].contiguous()
        self.gi_x_n = gi_x[:, 2 * c:].contiguous()
        w_m = w_msg.t() if self.pre is not None else weight @ w_msg.t()
        self.w_m = w_m  # [C, 3C]
        self.w_m_rz = w_m[:, :2 * c].contiguous()
        self.w_m_n = w_m[:, 2 * c:].contiguous()
        self.w_hh = rnn.weight_hh  # [3C, C]
        w_h = rnn.weight_hh.t()
        self.w_h_rz = w_h[:, :2 * c].contiguous()
        self.w_h_n = w_h[:, 2 * c:].contiguous()
        self.b_h_n = rnn.bias_hh[2 * c:] if rnn.bias_hh is not None \
            else None

    _CONSTANTS = ("gi_x_rz", "gi_x_n", "w_m_rz", "w_m_n", "w_h_rz", "w_h_n",
                  "b_h_n", "pre")

    def _cast(self, dtype: torch.dtype) -> dict:
        with torch.no_grad():
            return {"dtype": dtype, **{
                n: None if getattr(self, n) is None
                else getattr(self, n).to(dtype) for n in self._CONSTANTS}}

    # -- the map ------------------------------------------------------------
    def __call__(self, h: Tensor) -> Tensor:
        if autocast_dtype(h.device.type) is not None:
            return self._mixed(h)
        if torch.is_grad_enabled():
            return self._recorded(h)
        return self._fast(h)

    def _mixed(self, h: Tensor) -> Tensor:
        """Under autocast: the GEMMs in the autocast dtype, their sums, the
        gates and the new state in ``h``'s dtype (out-of-place, so autograd
        can record it too)."""
        f = h.dtype
        if torch.is_grad_enabled():  # autocast casts the float32 constants
            low = {"dtype": None, **{n: getattr(self, n)
                                     for n in self._CONSTANTS}}
        else:
            low = self._low
            if low is None or low["dtype"] != autocast_dtype(h.device.type):
                low = self._low = self._cast(autocast_dtype(h.device.type))
        m = self.aggregate(h) if low["pre"] is None else \
            self.aggregate(h @ low["pre"])
        rz = torch.sigmoid(torch.addmm(low["gi_x_rz"], m, low["w_m_rz"])
                           .to(f) + (h @ low["w_h_rz"]).to(f))
        r, z = rz.chunk(2, dim=1)
        h_n = h @ low["w_h_n"] if low["b_h_n"] is None else \
            torch.addmm(low["b_h_n"], h, low["w_h_n"])
        a = torch.addmm(low["gi_x_n"], m, low["w_m_n"]).to(f) + r * h_n.to(f)
        return torch.lerp(torch.tanh(a), h, z)

    def _message(self, h: Tensor) -> Tensor:
        return self.aggregate(h) if self.pre is None else \
            self.aggregate(h @ self.pre)

    def _recorded(self, h: Tensor) -> Tensor:
        m = self._message(h)
        rz = torch.addmm(self.gi_x_rz, m, self.w_m_rz) \
            .addmm_(h, self.w_h_rz).sigmoid_()
        r, z = rz.chunk(2, dim=1)  # backward concatenates; slices would
        # each scatter into a fresh zero [N, 2C] gradient
        h_n = self._h_n(h)
        n = torch.addmm(self.gi_x_n, m, self.w_m_n).addcmul_(r, h_n).tanh_()
        # The gates autograd keeps for this step anyway: vjp_at(h) reuses
        # them instead of recomputing the step into a second workspace.
        self._gates = (h, r, z, n, h_n)
        return torch.lerp(n, h, z)

    def _h_n(self, h: Tensor) -> Tensor:
        return h @ self.w_h_n if self.b_h_n is None else \
            torch.addmm(self.b_h_n, h, self.w_h_n)

    def _fast(self, h: Tensor) -> Tensor:
        c = self.c
        m = self._message(h)
        out = torch.empty_like(h)
        num = h.size(0)
        rows = block_rows(num, c, h.is_cuda)
        for i in range(0, num, rows):
            j = min(i + rows, num)
            hb, mb = h[i:j], m[i:j]
            rz = torch.addmm(self.gi_x_rz[i:j], mb, self.w_m_rz) \
                .addmm_(hb, self.w_h_rz).sigmoid_()
            a = torch.addmm(self.gi_x_n[i:j], mb, self.w_m_n) \
                .addcmul_(rz[:, :c], self._h_n(hb))
            # tanh(a): one kernel on CUDA; on the CPU 2 sigmoid(2a) - 1 is
            # several times faster than PyTorch's tanh
            n = a.tanh_() if h.is_cuda else \
                a.mul_(2).sigmoid_().mul_(2).sub_(1)
            torch.lerp(n, hb, rz[:, c:], out=out[i:j])
        return out

    def restrict(self, nodes: Tensor) -> Optional["GGNNStep"]:
        """:math:`F` on the rows ``nodes`` only, which must be whole graphs
        of the batch (the optional protocol of
        :class:`pyg_rbp.implicit.maps.RestrictableMap`: the forward loop
        stops evaluating graphs that have converged); ``None`` without a
        constant aggregation matrix."""
        if not isinstance(self.aggregate, SparseMatrix):
            return None
        sub = object.__new__(GGNNStep)
        sub.__dict__.update(self.__dict__)
        sub.aggregate = self.aggregate.restrict(nodes)
        sub.gi_x_rz = self.gi_x_rz.index_select(0, nodes)
        sub.gi_x_n = self.gi_x_n.index_select(0, nodes)
        if self._low is not None:
            sub._low = {**self._low,
                        "gi_x_rz": self._low["gi_x_rz"].index_select(0, nodes),
                        "gi_x_n": self._low["gi_x_n"].index_select(0, nodes)}
        sub._gates = None
        return sub

    # -- its transposed Jacobian ---------------------------------------------
    @property
    def has_closed_form_vjp(self) -> bool:
        """Whether :meth:`vjp_at` returns a product (a linear aggregation
        with a constant matrix), so that :func:`pyg_rbp.rbp` need not keep a
        gradient path to the state."""
        return self.linear and isinstance(self.aggregate, SparseMatrix)

    def release(self) -> None:
        """Drop the references to the recorded step's gates (called by
        :func:`pyg_rbp.rbp` once the backward pass is done with them)."""
        self._gates = None

    def vjp_at(self, h: Tensor) -> Optional[Callable[[Tensor], Tensor]]:
        r"""``v -> J(h)^T v`` in closed form, or ``None`` where it has none
        (a non-linear aggregation or one without a constant matrix).

        With :math:`s = \sigma'` and :math:`t = \tanh'` at the step's gates,

        .. math::
            g_a = v \odot (1 - z) \odot (1 - n^2), \quad
            g_{rz} = [g_a \odot h_n \odot r(1 - r),\;
                      v \odot (h - n) \odot z(1 - z)],

            J^\top v = v \odot z + [g_{rz}, g_a \odot r] W_{hh}
            + A^\top ([g_{rz}, g_a] W_m^\top)

        (for edge types, the last term is
        :math:`(A^\top ([g_{rz}, g_a] W_m^\top))\,[\Theta_1|\dots|\Theta_k]^\top`
        with the typed adjacency).

        Memory: at the state of the recorded step (the RBP case) the gates
        are those autograd already keeps for that step, so nothing of size
        ``[N, C]`` is added. Everything but the sparse product is row-local,
        so it runs in row blocks through two small reused buffers: a product
        holds its output and the message ``[N, C]`` only. The returned
        function has an attribute ``overwrite(v)`` that writes
        :math:`J^\top v` into ``v``'s own storage (for a caller that owns
        ``v``, as the Neumann series does after its first term), one
        ``[N, C]`` less. A product is about ten elementwise operations, six
        GEMMs with ``C``-wide weights and one sparse product.
        """
        if not self.has_closed_form_vjp:
            return None
        c = self.c
        device_type = h.device.type
        with torch.no_grad(), full_precision(device_type):
            saved = self._gates
            if saved is not None and saved[0] is h:
                h, r, z, n, h_n = (t.detach() for t in saved)
            else:
                h = h.detach()
                m = self._message(h)
                rz = torch.addmm(self.gi_x_rz, m, self.w_m_rz) \
                    .addmm_(h, self.w_h_rz).sigmoid_()
                r, z = rz[:, :c], rz[:, c:]
                h_n = self._h_n(h)
                n = torch.addmm(self.gi_x_n, m, self.w_m_n) \
                    .addcmul_(r, h_n).tanh_()
                del m
            w_hh = self.w_hh.detach()
            w_hh_r, w_hh_z, w_hh_n = w_hh[:c], w_hh[c:2 * c], w_hh[2 * c:]
            w_m_t = self.w_m.detach().t()
            w_m_r, w_m_z, w_m_a = w_m_t[:c], w_m_t[c:2 * c], w_m_t[2 * c:]
            pre_t = None if self.pre is None else self.pre.detach().t()
            aggregate = self.aggregate
            # Build A^T now, while no adjoint vector is alive yet: the
            # conversion's temporaries would otherwise add to the solve's peak.
            aggregate.transposed()
            num = h.size(0)
            # CUDA: one block unless large (launch overhead); CPU: cache-sized.
            rows = block_rows(num, c, h.is_cuda, adjoint=True)
            buf_a = h.new_empty(min(rows, num), c)
            buf_z = h.new_empty(min(rows, num), c)

        def product(v: Tensor, in_place: bool) -> Tensor:
            with torch.no_grad(), full_precision(device_type):
                out = v if in_place else torch.empty_like(v)
                msg = torch.empty_like(v)  # [g_r, g_z, g_a] W_m^T
                for i in range(0, num, rows):
                    j = min(i + rows, num)
                    vb, zb, nb, rb = v[i:j], z[i:j], n[i:j], r[i:j]
                    ga, gz = buf_a[:j - i], buf_z[:j - i]
                    # g_a = v (1 - n^2) (1 - z); g_z = v (h - n) z (1 - z)
                    torch.mul(nb, nb, out=ga).neg_().add_(1).mul_(vb)
                    ga.addcmul_(ga, zb, value=-1)
                    torch.sub(h[i:j], nb, out=gz).mul_(vb).mul_(zb)
                    gz.addcmul_(gz, zb, value=-1)
                    ob = out[i:j]  # v is not read below: out may be v
                    torch.mul(vb, zb, out=ob)
                    mb = msg[i:j]
                    torch.mm(ga, w_m_a, out=mb)
                    ga.mul_(rb)  # g_a r
                    ob.addmm_(ga, w_hh_n)
                    ga.mul_(h_n[i:j]).addcmul_(ga, rb, value=-1)  # g_r
                    mb.addmm_(ga, w_m_r)
                    ob.addmm_(ga, w_hh_r)
                    mb.addmm_(gz, w_m_z)
                    ob.addmm_(gz, w_hh_z)
                if pre_t is None:
                    return aggregate.add_transposed_(out, msg)
                return out.addmm_(aggregate.transposed_apply(msg), pre_t)

        def vjp(v: Tensor) -> Tensor:
            return product(v, in_place=False)

        vjp.overwrite = lambda v: product(v, in_place=True)  # type: ignore
        return vjp
