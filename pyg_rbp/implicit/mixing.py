r"""The forward solvers' mixers: given the current iterate :math:`h_k`
and :math:`F(h_k)`, the next iterate. :class:`AndersonMixer` (Anderson
acceleration, also the adjoint method ``'anderson'``'s) and
:class:`BroydenMixer` (limited-memory good Broyden); the solver values that
make them are in :mod:`pyg_rbp.implicit.solvers`.

With ``groups`` (PyG's node-to-graph vector: the state's first dimension
indexes nodes) each graph gets coefficients of its own, from its own rows:
the graphs of a batch are separate problems, so a graph's iterates do not
depend on the graphs it is batched with.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .groups import EPS, group_dot, per_row


class AndersonMixer:
    """Anderson mixing with a bounded history: given :math:`x_k` and
    :math:`f(x_k)`, the next iterate is the combination of the last
    ``memory`` values of :math:`f` whose residuals :math:`f(x_i) - x_i`
    combine to the smallest norm (weights summing to 1, a relative ridge
    ``lam``). Used by the forward solver ``'anderson'`` and the adjoint
    method of the same name.

    With ``groups`` (PyG's node-to-graph vector: the state's first dimension
    indexes nodes) each graph gets weights of its own, from its own rows:
    the graphs of a batch are separate problems, so a graph's iterates do
    not depend on the graphs it is batched with, and each graph's few slow
    modes are what its small history has to capture (one shared history
    for a whole batch converged in about as many steps as plain iteration's
    third on MUTAG batches of 32).

    Without autograd the history lives in two ``[memory, n]`` ring buffers
    (the values of :math:`f` and the residuals) and the Gram matrices of the
    residuals are updated by one row per step: a step costs about
    ``2 * memory`` products of length ``n``, instead of re-stacking the
    history and forming whole Gram matrices each time; the buffers are
    mixed in slot order, never re-ordered (the weights do not depend on the
    order). With autograd (BPTT
    through the mixing) the history is kept as a list of tensors and
    stacked out of place, so that autograd can record it; both paths take
    the same steps.
    """

    def __init__(self, memory: int = 5, lam: float = 1e-4,
                 groups: Optional[Tensor] = None,
                 num_groups: int = 1) -> None:
        self.memory = memory
        self.lam = lam
        self.groups = groups
        self.num_groups = num_groups if groups is not None else 1
        self.xs: List[Tensor] = []
        self.fs: List[Tensor] = []
        self._f: Optional[Tensor] = None  # ring buffers (no grad)
        self._g: Optional[Tensor] = None
        self._gram: Optional[Tensor] = None
        self._count = 0

    def __call__(self, h: Tensor, fh: Tensor) -> Tensor:
        if torch.is_grad_enabled() and (h.requires_grad or fh.requires_grad):
            return self._recorded(h, fh)
        return self._ring(h, fh)

    def _dots(self, history: Tensor, g: Tensor) -> Tensor:
        """``[used, groups]``: each history row's product with ``g``, per
        group (one group without ``groups``)."""
        history = history.reshape((history.size(0), ) + g.shape)
        return group_dot(history, g, self.groups, self.num_groups)

    def _weights(self, gram: Tensor, newest: int = -1) -> Tensor:
        """``[groups, used]`` mixing weights from the residuals' Gram
        matrices ``[groups, used, used]``; a group whose small solve fails
        or is not finite takes the plain step (all weight on the history's
        entry ``newest``). The weights do not depend on the order of the
        history (the ridge is on the diagonal, the constraint symmetric),
        so the ring buffers are used in slot order."""
        used = gram.size(-1)
        dtype = gram.dtype
        # a few numbers: solved in double precision (float32 where the
        # device has no float64), whatever the state's dtype
        gram = gram.to(torch.float32 if gram.device.type == "mps"
                       else torch.float64)
        # Scale the regulariser with the residual size so it stays relative.
        reg = self.lam * gram.diagonal(dim1=-2, dim2=-1).amax(-1) \
            .clamp_min(EPS)
        eye = torch.eye(used, dtype=gram.dtype, device=gram.device)
        ones = gram.new_ones(gram.size(0), used, 1)
        alpha, info = torch.linalg.solve_ex(gram + reg[:, None, None] * eye,
                                            ones)
        alpha = alpha.squeeze(-1)
        alpha = alpha / alpha.sum(-1, keepdim=True)
        bad = (info != 0) | ~torch.isfinite(alpha).all(-1)
        return torch.where(bad[:, None], eye[newest], alpha).to(dtype)

    def _mix(self, alpha: Tensor, values: Tensor, like: Tensor) -> Tensor:
        """``sum_i alpha[group, i] values[i]``, shaped like ``like``."""
        used = values.size(0)
        if self.groups is None:
            return (alpha[0] @ values.reshape(used, -1)).reshape(like.shape)
        rows = like.size(0)
        weights = alpha.t()[:, self.groups].unsqueeze(-1)  # [used, rows, 1]
        values = values.reshape(used, rows, -1)
        mixed = values[0] * weights[0]
        for i in range(1, used):  # a few row-scaled sums, no batched GEMM
            mixed.addcmul_(values[i], weights[i])
        return mixed.reshape(like.shape)

    def _recorded(self, h: Tensor, fh: Tensor) -> Tensor:
        self.xs.append(h)
        self.fs.append(fh)
        if len(self.xs) > self.memory:
            self.xs.pop(0)
            self.fs.pop(0)
        if len(self.xs) == 1:
            return fh
        F = torch.stack(self.fs)
        G = F - torch.stack(self.xs)
        gram = torch.stack([self._dots(G, G[i]) for i in range(G.size(0))],
                           dim=1)  # [used, used, groups]
        alpha = self._weights(gram.permute(2, 0, 1))
        return self._mix(alpha, F, fh)

    def _ring(self, h: Tensor, fh: Tensor) -> Tensor:
        f = fh.reshape(-1)
        m = self.memory
        if self._f is None:
            self._f = f.new_empty(m, f.numel())
            self._g = f.new_empty(m, f.numel())
            self._gram = f.new_zeros(self.num_groups, m, m)
        slot = self._count % m
        self._count += 1
        self._f[slot].copy_(f)
        g = torch.sub(f, h.reshape(-1), out=self._g[slot])
        used = min(self._count, m)
        row = self._dots(self._g[:used], g.view(fh.shape)).t()  # [B, used]
        self._gram[:, slot, :used] = row
        self._gram[:, :used, slot] = row
        if used == 1:
            return fh
        alpha = self._weights(self._gram[:, :used, :used], newest=slot)
        return self._mix(alpha, self._f[:used], fh)


class BroydenMixer:
    r"""Limited-memory good Broyden on :math:`g(h) = F(h) - h = 0` (see
    :class:`~pyg_rbp.implicit.solvers.Broyden`): the inverse Jacobian
    estimate :math:`H = -I + \sum_i u_i v_i^\top` over the last ``memory``
    secant pairs, the step :math:`h_{k+1} = h_k - H g_k`. A full history
    restarts from :math:`H = -I` (dropping only the oldest pair breaks the
    secant conditions the newer pairs were built on: with 6 pairs, the
    contractive step of a 30-node graph stalled at a residual of 0.2, where
    restarts converge in 76 steps).

    Each call takes the secant pair from the iterate it is given (not the
    one it returned), so a graph the loop froze adds nothing (its
    :math:`s = 0`). A pair whose denominator :math:`s^\top H y` vanishes
    relative to :math:`\|s\|\|y\|` is skipped for its graph. Out-of-place
    throughout, so autograd can record it (BPTT through the forward).
    """

    #: A secant pair is used only where |s^T H y| > this * ||s|| ||y||.
    SKIP = 1e-10

    def __init__(self, memory: int = 10, groups: Optional[Tensor] = None,
                 num_groups: int = 1) -> None:
        self.memory = memory
        self.groups = groups
        self.num_groups = num_groups if groups is not None else 1
        self.us: List[Tensor] = []
        self.vs: List[Tensor] = []
        self.prev: Optional[Tuple[Tensor, Tensor]] = None

    def _dot(self, a: Tensor, b: Tensor) -> Tensor:
        return group_dot(a, b, self.groups, self.num_groups)

    def _rows(self, coef: Tensor, like: Tensor) -> Tensor:
        return per_row(coef, self.groups, like)

    def _product(self, x: Tensor, transposed: bool = False) -> Tensor:
        r""":math:`H x = -x + \sum_i u_i (v_i \cdot x)`, or with
        ``transposed`` :math:`H^\top x = -x + \sum_i v_i (u_i \cdot x)`."""
        out = -x
        for u, v in zip(self.us, self.vs):
            left, right = (v, u) if transposed else (u, v)
            out = out + left * self._rows(self._dot(right, x), x)
        return out

    def _secant(self, s: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
        """The new pair :math:`u = (s - H y) / (s^\top H y)`, :math:`v =
        H^\top s`; :math:`u = 0` for a graph whose denominator vanishes."""
        hy, w = self._product(y), self._product(s, transposed=True)
        den = self._dot(w, y)
        scale = (self._dot(s, s) * self._dot(y, y)).sqrt()
        ok = torch.isfinite(den) & (den.abs() > self.SKIP * scale) & \
            (scale > 0)
        coef = torch.where(ok, 1.0 / torch.where(ok, den,
                                                  torch.ones_like(den)),
                           torch.zeros_like(den))
        return (s - hy) * self._rows(coef, s), w

    def __call__(self, h: Tensor, fh: Tensor) -> Tensor:
        g = fh - h
        if self.prev is not None:
            if len(self.us) == self.memory:  # full: restart from H = -I
                self.us, self.vs = [], []
            u, v = self._secant(h - self.prev[0], g - self.prev[1])
            self.us.append(u)
            self.vs.append(v)
        self.prev = (h, g)
        return h - self._product(g)
