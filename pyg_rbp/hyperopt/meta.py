r"""The meta-loop: learn the inner optimiser's hyperparameters by the
hypergradient of the loss after the inner steps.

Per meta-step: the MLP starts from the same initial weights (zero momenta),
``inner_steps`` steps of :class:`~pyg_rbp.hyperopt.inner.SGDMomentumStep`
run through :func:`pyg_rbp.rbp` (``tol=0``: exactly that many), the
meta-loss :math:`L` is the training loss of the final weights on the whole
inner training set (as the authors' code), and Adam takes a step on the
hyperparameters with :math:`\partial L / \partial (a, b)` from the chosen
method:

* ``'bptt'``: back-propagation through every inner step;
* ``'tbptt'``: through the last ``truncation`` steps;
* ``'neumann'``: Neumann-RBP, ``truncation`` terms, at the final state,
  with the last inner step on the whole training set;
* ``'fixed_point'``: the original RBP, ``truncation`` iterations, the same.

The inner loop is not at a fixed point after 100 steps: RBP's hypergradient
is then an approximation, whose quality :func:`meta_train` can measure
against BPTT's (``compare=True``: the cosine at every meta-step, or every
``compare_every``-th).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .._checks import check_int
from ..implicit import BPTT, TBPTT, FixedPoint, GradientMethod, Neumann, rbp
from .inner import (LAYERS, SGDMomentumStep, batch_schedule, init_mlp,
                    mlp_loss)

#: The methods of the experiment.
HYPEROPT_METHODS = ("bptt", "tbptt", "neumann", "fixed_point")


@dataclass
class HyperoptConfig:
    """The experiment's settings (the authors' unless noted)."""

    #: the hypergradient's method (HYPEROPT_METHODS)
    method: str = "neumann"
    #: K: the steps of the inner run the hypergradient goes back through
    truncation: int = 50
    #: meta-steps (outer Adam steps on the hyperparameters)
    meta_steps: int = 100
    #: steps of SGD with momentum in one inner run
    inner_steps: int = 100
    #: images per inner step
    batch_size: int = 200
    #: the meta-optimiser's (Adam's) learning rate
    meta_lr: float = 0.05
    #: the MLP's widths, input to classes
    layers: Tuple[int, ...] = LAYERS
    #: per layer: log learning rate and momentum logit at the start
    init_log_lr: float = -1.0
    init_logit_mom: float = 0.0
    seed: int = 1234
    #: fixed_point's start: 'uniform' is the paper's, 'random' ours
    #: (scaled to ||g||); see pyg_rbp.implicit.FixedPoint
    rbp_init: str = "random"
    #: the RBP methods' last inner step: on the whole inner training set
    #: ('full', the authors' code) or on its mini-batch ('mini', as BPTT)
    final_batch: str = "full"

    def check(self) -> None:
        if self.method not in HYPEROPT_METHODS:
            raise ValueError(f"'method' must be one of "
                             f"{', '.join(HYPEROPT_METHODS)} (got "
                             f"{self.method!r})")
        for name in ("truncation", "meta_steps", "inner_steps",
                     "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or \
                    value < 1:
                raise ValueError(f"'{name}' must be an int >= 1 (got "
                                 f"{value!r})")
        if self.final_batch not in ("full", "mini"):
            raise ValueError(f"'final_batch' must be 'full' or 'mini' (got "
                             f"{self.final_batch!r})")
        if self.truncation > self.inner_steps:
            raise ValueError(f"'truncation' must be at most 'inner_steps' "
                             f"({self.inner_steps}) (got {self.truncation})")

    def gradient(self) -> GradientMethod:
        """The engine's method value for :attr:`method`."""
        k = self.truncation
        return {"bptt": BPTT(), "tbptt": TBPTT(steps=k),
                "neumann": Neumann(steps=k, tol=0.0),
                "fixed_point": FixedPoint(steps=k, tol=0.0,
                                          init=self.rbp_init)}[self.method]


@dataclass
class MetaRecord:
    """One meta-step."""

    meta_step: int
    meta_loss: float
    heldout_loss: float
    seconds: float
    #: the most bytes autograd held at once for the hypergradient
    saved_bytes: int
    log_lr: List[float]
    logit_mom: List[float]
    cosine_bptt: Optional[float] = None


@dataclass
class HyperoptResult:
    """What :func:`meta_train` returns (JSON-ready via :meth:`to_dict`)."""

    config: Dict[str, Any]
    records: List[MetaRecord] = field(default_factory=list)
    #: the mini-batch training loss of every inner step, last meta-step
    inner_losses: List[float] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"config": self.config,
                "records": [asdict(r) for r in self.records],
                "inner_losses": self.inner_losses}


def split_mnist(images: Tensor, labels: Tensor, train: int
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean-centred images; the first ``train`` examples train the inner
    model, the rest are held out (reported, never used for training)."""
    if not 0 < train < images.size(0):
        raise ValueError(f"'train' must be in (0, {images.size(0)}) "
                         f"(got {train})")
    x = images - images[:train].mean(0, keepdim=True)
    return x[:train], labels[:train], x[train:], labels[train:]


def hypergradient(cfg: HyperoptConfig, method: GradientMethod,
                  hyper: Tuple[Tensor, Tensor], init: List[Tensor],
                  batches: List[Tensor], x: Tensor, y: Tensor
                  ) -> Tuple[Tensor, Tuple[Tensor, Tensor], SGDMomentumStep,
                             List[Tensor]]:
    """The meta-loss after the inner steps and its gradient with respect
    to ``hyper = (log_lr, logit_mom)`` by ``method``; also the step map
    (its per-step losses) and the final weights."""
    log_lr, logit_mom = hyper
    full = method.implicit and cfg.final_batch == "full"
    step = SGDMomentumStep(x, y, log_lr, logit_mom, batches, last_full=full)
    state = tuple([p.clone() for p in init] +
                  [torch.zeros_like(p) for p in init])
    out, _ = rbp(step, state, method=method, max_iter=cfg.inner_steps,
                 tol=0.0)
    weights = list(out[:len(init)])
    loss = mlp_loss(weights, x, y)
    grads = torch.autograd.grad(loss, [log_lr, logit_mom])
    return loss.detach(), grads, step, [w.detach() for w in weights]


def _cosine(a: Tuple[Tensor, ...], b: Tuple[Tensor, ...]) -> float:
    u = torch.cat([t.reshape(-1) for t in a])
    v = torch.cat([t.reshape(-1) for t in b])
    return float(u @ v / (u.norm() * v.norm()).clamp_min(1e-30))


def meta_train(cfg: HyperoptConfig, images: Tensor, labels: Tensor,
               train: int = 5000, compare: bool = False,
               progress: Optional[Any] = None,
               compare_every: int = 1) -> HyperoptResult:
    """Learn the hyperparameters for ``cfg.meta_steps`` meta-steps.

    Args:
        cfg: The settings.
        images, labels: MNIST (:func:`pyg_rbp.data.mnist.load_mnist`).
        train: How many of the examples (the first) train the inner model;
            the rest are the held-out set.
        compare: Also compute BPTT's hypergradient and record the cosine
            (costs a BPTT hypergradient each time).
        progress: Called with each :class:`MetaRecord`.
        compare_every: With ``compare``: at every this many meta-steps
            (the first and the last always); the others record ``None``.
            At 1500 inner steps BPTT's hypergradient costs 2-3 of the
            other methods', so comparing every 10th meta-step makes a
            run about 2.5x shorter.
    """
    from ..utils import SavedTensorMeter
    cfg.check()
    check_int("compare_every", compare_every, 1)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y, x_out, y_out = split_mnist(images, labels, train)
    init = init_mlp(cfg.layers, gen)
    num = len(init)
    log_lr = torch.full((num, ), cfg.init_log_lr, requires_grad=True)
    logit_mom = torch.full((num, ), cfg.init_logit_mom, requires_grad=True)
    opt = torch.optim.Adam([log_lr, logit_mom], lr=cfg.meta_lr)
    method = cfg.gradient()
    result = HyperoptResult(config=asdict(cfg))
    for meta_step in range(cfg.meta_steps):
        batches = batch_schedule(x.size(0), cfg.batch_size, cfg.inner_steps,
                                 gen)
        start = time.perf_counter()
        with SavedTensorMeter(track_peak=True) as meter:
            loss, grads, step, weights = hypergradient(
                cfg, method, (log_lr, logit_mom), init, batches, x, y)
        seconds = time.perf_counter() - start
        cosine = None
        if compare and (meta_step % compare_every == 0
                        or meta_step == cfg.meta_steps - 1):
            _, ref, _, _ = hypergradient(cfg, BPTT(), (log_lr, logit_mom),
                                         init, batches, x, y)
            cosine = _cosine(grads, ref)
        with torch.no_grad():
            heldout = float(mlp_loss(weights, x_out, y_out))
        record = MetaRecord(meta_step, float(loss), heldout, seconds,
                            meter.peak_bytes, log_lr.detach().tolist(),
                            logit_mom.detach().tolist(), cosine)
        result.records.append(record)
        result.inner_losses = step.losses
        if progress is not None:
            progress(record)
        if not all(math.isfinite(float(g.abs().max())) for g in grads):
            break  # a diverged hypergradient: stop, the record says so
        opt.zero_grad()
        log_lr.grad, logit_mom.grad = grads[0].clone(), grads[1].clone()
        opt.step()
    return result
