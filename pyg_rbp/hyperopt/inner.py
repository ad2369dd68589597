r"""The inner problem of the paper's third experiment: an MLP trained by SGD
with momentum, as a map on the state (weights, momenta).

The model (Liao et al., 2018, after Maclaurin et al., 2015): an MLP
784-50-50-50-10 with tanh hidden layers, weights and biases drawn
:math:`\mathcal{N}(0, 1)` and scaled by :math:`e^{-3}`, cross-entropy loss.
One inner step, per parameter tensor :math:`i`,

.. math::
    v_i \leftarrow \beta_i v_i - (1 - \beta_i) \nabla_{w_i} \ell(w; B_t),
    \qquad w_i \leftarrow w_i + \alpha_i v_i,

with :math:`\alpha_i = e^{a_i}` (a log learning rate) and
:math:`\beta_i = \sigma(b_i)` (a logit momentum), the hyperparameters
:math:`a, b` that the meta-loop learns, and :math:`B_t` the step's
mini-batch. :class:`SGDMomentumStep` is this step as a map
:math:`F(w, v) \to (w', v')` for :func:`pyg_rbp.rbp`: a tuple state, the
hyperparameters closed over, so the engine's gradient methods give the
hypergradient.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: The paper's MLP.
LAYERS = (784, 50, 50, 50, 10)
#: Scale of the initial weights and biases.
INIT_SCALE = math.exp(-3)


def init_mlp(layers: Sequence[int], generator: torch.Generator,
             dtype: torch.dtype = torch.float32,
             device: Optional[torch.device] = None) -> List[Tensor]:
    """``[W_1, b_1, ..., W_L, b_L]`` (``W_l`` is ``[out, in]``), every entry
    :math:`\\mathcal{N}(0, 1) e^{-3}`."""
    params = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:]):
        for shape in ((fan_out, fan_in), (fan_out, )):
            params.append(INIT_SCALE * torch.randn(
                shape, generator=generator, dtype=dtype).to(device))
    return params


def mlp_logits(params: Sequence[Tensor], x: Tensor) -> Tensor:
    """The MLP's logits: tanh hidden layers, a linear output layer."""
    h = x
    last = len(params) - 2
    for i in range(0, len(params), 2):
        h = h @ params[i].t() + params[i + 1]
        if i < last:
            h = torch.tanh(h)
    return h


def mlp_loss(params: Sequence[Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of the MLP on ``(x, y)``."""
    return F.cross_entropy(mlp_logits(params, x), y)


class _Passes(NamedTuple):
    r"""The MLP's forward and backward passes at one point, without a graph:
    ``hidden[l]`` is :math:`h_l` (``hidden[0]`` the input), ``slopes[l]``
    :math:`1 - h_l^2` (``slopes[0]`` unused), ``deltas[l]`` the loss
    gradient at :math:`z_{l+1}`, ``back[l]`` :math:`\delta_{l+1}
    W_{l+1}` (``back[0]`` unused), ``log_p`` the output log-probabilities."""

    hidden: List[Tensor]
    slopes: List[Tensor]
    deltas: List[Tensor]
    back: List[Tensor]
    log_p: Tensor
    rows: Tensor


def _passes(params: Sequence[Tensor], x: Tensor, y: Tensor) -> _Passes:
    """Forward through the MLP, then the loss gradient back to every layer's
    pre-activation (the passes :func:`mlp_loss_and_grad` and
    :func:`mlp_hvp` are built on)."""
    with torch.no_grad():
        hidden = [x]
        last = len(params) - 2
        for i in range(0, len(params), 2):
            z = torch.addmm(params[i + 1], hidden[-1], params[i].t())
            if i < last:
                hidden.append(torch.tanh(z))
        log_p = torch.log_softmax(z, dim=1)
        rows = torch.arange(y.numel(), device=y.device)
        delta = log_p.exp()
        delta[rows, y] -= 1.0
        delta /= y.numel()
        # slopes[0] is a placeholder (the input has no tanh)
        slopes = [x] + [1.0 - h * h for h in hidden[1:]]
        deltas: List[Tensor] = [delta] * len(hidden)
        back: List[Tensor] = [delta] * len(hidden)
        for i in range(last, 0, -2):
            back[i // 2] = delta @ params[i]
            delta = back[i // 2] * slopes[i // 2]
            deltas[i // 2 - 1] = delta
        return _Passes(hidden, slopes, deltas, back, log_p, rows)


def mlp_loss_and_grad(params: Sequence[Tensor], x: Tensor, y: Tensor
                      ) -> Tuple[Tensor, List[Tensor]]:
    r"""Mean cross-entropy of the MLP on ``(x, y)`` and its gradient with
    respect to ``params``, by hand (no autograd graph).

    With :math:`h_0 = x`, :math:`z_l = h_{l-1} W_l^\top + b_l`,
    :math:`h_l = \tanh z_l` (:math:`l < L`) and :math:`n` examples,

    .. math::
        \delta_L = (\mathrm{softmax}(z_L) - \mathrm{onehot}(y)) / n,
        \quad \nabla W_l = \delta_l^\top h_{l-1},
        \quad \nabla b_l = \textstyle\sum_n \delta_l,
        \quad \delta_{l-1} = (\delta_l W_l) \odot (1 - h_{l-1}^2).

    The same numbers as :func:`torch.autograd.grad` of :func:`mlp_loss` (to
    rounding), at less cost: the inner steps that RBP and TBPTT do not
    record run through here. Always without a graph, whatever the grad
    mode.
    """
    with torch.no_grad():
        run = _passes(params, x, y)
        loss = -run.log_p[run.rows, y].mean()
        grads: List[Tensor] = []
        for h, delta in zip(run.hidden, run.deltas):
            grads += [delta.t() @ h, delta.sum(0)]
        return loss, grads


def mlp_hvp(params: Sequence[Tensor], x: Tensor, y: Tensor
            ) -> Callable[[Sequence[Tensor]], List[Tensor]]:
    r"""Hessian-vector products of :func:`mlp_loss` at ``params``, by hand
    (no autograd graph): returns :math:`v \mapsto H v`,
    :math:`H = \nabla^2_w \ell(w; x, y)`, with ``v`` and the result in the
    layout of ``params``.

    Pearlmutter's :math:`\mathcal{R}` operator,
    :math:`\mathcal{R}\{f\} = \frac{d}{dr} f(w + r v)|_{r=0}`, through
    :func:`mlp_loss_and_grad`'s passes. With :math:`V_l, c_l` the
    directions of :math:`W_l, b_l`, :math:`s_l = 1 - h_l^2` and
    :math:`p = \mathrm{softmax}(z_L)`, forward

    .. math::
        \mathcal{R} z_l = \mathcal{R} h_{l-1} W_l^\top + h_{l-1} V_l^\top
        + c_l, \qquad \mathcal{R} h_l = s_l \odot \mathcal{R} z_l,
        \qquad \mathcal{R} h_0 = 0,

    then backward from :math:`\mathcal{R}\delta_L = (p \odot
    \mathcal{R}z_L - p \, (p^\top \mathcal{R} z_L)) / n`:

    .. math::
        (Hv)_{W_l} = \mathcal{R}\delta_l^\top h_{l-1} + \delta_l^\top
        \mathcal{R} h_{l-1}, \quad (Hv)_{b_l} = \textstyle\sum_n
        \mathcal{R}\delta_l,

        \mathcal{R}\delta_{l-1} = (\mathcal{R}\delta_l W_l + \delta_l V_l)
        \odot s_{l-1} - 2\, (\delta_l W_l) \odot h_{l-1} \odot
        \mathcal{R} h_{l-1}.

    The activations and the :math:`\delta_l` are computed once, here; each
    product then costs two passes of the MLP's size (about a gradient).
    The numbers are autograd's double backward (to rounding), at about its
    time, without its graph (only the activations are kept); it serves the
    inner step's transposed Jacobian (:meth:`SGDMomentumStep.vjp_at`).
    """
    last = len(params) - 2
    hidden, slopes, deltas, back, log_p, _ = _passes(params, x, y)
    p = log_p.exp()
    n = y.numel()

    def product(v: Sequence[Tensor]) -> List[Tensor]:
        if len(v) != len(params):
            raise ValueError(f"'v' must hold {len(params)} tensors, one per "
                             f"parameter (got {len(v)})")
        with torch.no_grad():
            r_hidden: List[Optional[Tensor]] = [None]
            for i in range(0, len(params), 2):
                r_z = torch.addmm(v[i + 1], hidden[i // 2], v[i].t())
                if r_hidden[-1] is not None:
                    r_z.addmm_(r_hidden[-1], params[i].t())
                if i < last:
                    r_hidden.append(r_z.mul_(slopes[i // 2 + 1]))
            r_delta = p * r_z
            r_delta.sub_(p * r_delta.sum(1, keepdim=True)).div_(n)
            out: List[Tensor] = list(v)
            for i in range(last, -1, -2):
                layer = i // 2
                r_h = r_hidden[layer]
                out[i] = r_delta.t() @ hidden[layer]
                if r_h is not None:
                    out[i].addmm_(deltas[layer].t(), r_h)
                out[i + 1] = r_delta.sum(0)
                if i > 0:
                    h = hidden[layer]
                    r_delta = (r_delta @ params[i]).addmm_(
                        deltas[layer], v[i]).mul_(slopes[layer]).sub_(
                        back[layer] * h * r_h * 2.0)
            return out
    return product


def batch_schedule(num_examples: int, batch_size: int, steps: int,
                   generator: torch.Generator) -> List[Tensor]:
    """Index sets of ``steps`` mini-batches: the examples reshuffled each
    epoch, consecutive batches of ``batch_size`` (a last short one
    dropped)."""
    if not 1 <= batch_size <= num_examples:
        raise ValueError(f"'batch_size' must be in [1, {num_examples}] "
                         f"(got {batch_size})")
    out: List[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(num_examples, generator=generator)
        for start in range(0, num_examples - batch_size + 1, batch_size):
            out.append(perm[start:start + batch_size])
            if len(out) == steps:
                break
    return out


class SGDMomentumStep:
    r"""One inner step, :math:`(w, v) \mapsto (w', v')`, on the state
    ``(w_1, ..., w_L, v_1, ..., v_L)``.

    The ``t``-th call uses mini-batch ``batches[t]``; with ``last_full``,
    the last one (``t = len(batches) - 1``) uses all of ``(x, y)``: the
    paper's RBP runs differentiate that full-batch step at their final
    state. Where the weights carry a graph (BPTT, TBPTT, CG's products), a
    call differentiates the loss by autograd and keeps that graph
    (``create_graph=True``), so gradients reach the state through
    :math:`\nabla \ell` (Hessian-vector products). Otherwise it computes
    the loss gradient by hand (:func:`mlp_loss_and_grad`); with grad
    enabled the update still records the hyperparameters' part,
    :math:`\partial (w', v') / \partial (\alpha, \beta)`, which needs
    :math:`\nabla \ell` only as a value. :attr:`losses` holds each call's
    mini-batch loss (read from the device only when asked for).

    The step offers its transposed Jacobian in closed form
    (:class:`~pyg_rbp.implicit.ClosedFormMap`, :meth:`vjp_at`), so the
    RBP methods' adjoint products take Hessian-vector products by hand
    (:func:`mlp_hvp`) instead of autograd's double backward, and their
    recorded step keeps no graph of the gradient.

    Args:
        x, y: The inner training set.
        log_lr, logit_mom: The hyperparameters, one entry per parameter
            tensor (``[2 L]``).
        batches: Index sets, one per step (:func:`batch_schedule`).
        last_full: The last step on the whole training set.
    """

    #: :meth:`vjp_at` always returns a product
    has_closed_form_vjp = True

    def __init__(self, x: Tensor, y: Tensor, log_lr: Tensor,
                 logit_mom: Tensor, batches: Sequence[Tensor],
                 last_full: bool = False) -> None:
        if log_lr.shape != logit_mom.shape or log_lr.dim() != 1:
            raise ValueError(f"'log_lr' and 'logit_mom' must be vectors of "
                             f"one shape (got {list(log_lr.shape)} and "
                             f"{list(logit_mom.shape)})")
        self.x, self.y = x, y
        self.log_lr, self.logit_mom = log_lr, logit_mom
        self.batches = list(batches)
        self.last_full = last_full
        self.t = 0
        self._losses: List[Tensor] = []
        #: the examples of the latest call (what vjp_at differentiates)
        self._last: Optional[Tuple[Tensor, Tensor]] = None

    @property
    def losses(self) -> List[float]:
        """Each call's mini-batch loss, in order."""
        if not self._losses:
            return []
        return torch.stack(self._losses).tolist()

    def _batch(self) -> Tuple[Tensor, Tensor]:
        t = min(self.t, len(self.batches) - 1)
        self.t += 1
        if self.last_full and t == len(self.batches) - 1:
            return self.x, self.y
        index = self.batches[t].to(self.x.device)
        return self.x.index_select(0, index), self.y.index_select(0, index)

    def __call__(self, state: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        k = len(state) // 2
        if len(state) != 2 * k or k != self.log_lr.numel():
            raise ValueError(f"the state must hold {self.log_lr.numel()} "
                             f"weights and as many momenta (got "
                             f"{len(state)} tensors)")
        weights, momenta = list(state[:k]), list(state[k:])
        xb, yb = self._batch()
        self._last = (xb, yb)
        alpha = self.log_lr.exp()
        beta = torch.sigmoid(self.logit_mom)
        if torch.is_grad_enabled() and any(p.requires_grad for p in weights):
            # a weight without a graph gets a fresh leaf to differentiate
            # the loss by
            w = [p if p.requires_grad else p.detach().requires_grad_(True)
                 for p in weights]
            loss = mlp_loss(w, xb, yb)
            grads = torch.autograd.grad(loss, w, create_graph=True)
            new_v = [beta[i] * v - (1 - beta[i]) * g
                     for i, (v, g) in enumerate(zip(momenta, grads))]
            new_w = [p + alpha[i] * v for i, (p, v) in
                     enumerate(zip(weights, new_v))]
        else:  # the same step: gradient by hand, update in fewer kernels
            loss, grads = mlp_loss_and_grad(weights, xb, yb)
            new_v = [torch.addcmul(v * b, g, c) for v, g, b, c in
                     zip(momenta, grads, beta.unbind(), (beta - 1).unbind())]
            new_w = [torch.addcmul(p, v, a) for p, v, a in
                     zip(weights, new_v, alpha.unbind())]
        self._losses.append(loss.detach())
        return tuple(new_w + new_v)

    def vjp_at(self, state: Sequence[Tensor]
               ) -> Callable[[Sequence[Tensor]], Tuple[Tensor, ...]]:
        r"""The transposed Jacobian of the latest call's step at ``state``:
        :math:`(\bar w', \bar v') \mapsto (\bar w, \bar v)`,

        .. math::
            u_i = \bar v'_i + \alpha_i \bar w'_i, \qquad
            \bar v_i = \beta_i u_i, \qquad
            \bar w = \bar w' - H\,[(1 - \beta) \odot u],

        with :math:`H` the loss's Hessian on that call's examples at the
        weights of ``state`` (:func:`mlp_hvp`, one product per call of the
        returned function)."""
        if self._last is None:
            raise RuntimeError("SGDMomentumStep.vjp_at: the step has not "
                               "been called yet (it differentiates the "
                               "latest call's examples)")
        k = self.log_lr.numel()
        hvp = mlp_hvp(list(state[:k]), *self._last)
        alpha = self.log_lr.detach().exp().unbind()
        beta = torch.sigmoid(self.logit_mom.detach()).unbind()

        def vjp(cotangent: Sequence[Tensor]) -> Tuple[Tensor, ...]:
            bar_w, bar_v = cotangent[:k], cotangent[k:]
            u = [cv + a * cw for cw, cv, a in zip(bar_w, bar_v, alpha)]
            hu = hvp([(1 - b) * ui for ui, b in zip(u, beta)])
            return tuple([cw - h for cw, h in zip(bar_w, hu)] +
                         [b * ui for ui, b in zip(u, beta)])
        return vjp

    def release(self) -> None:
        """Drop the latest call's examples (after the backward pass)."""
        self._last = None
