r"""Solvers for the adjoint system of recurrent back-propagation.

At a fixed point :math:`h^* = F(h^*)` the gradient of a loss :math:`L` is

.. math::
    \frac{\partial L}{\partial w} = z^\top \frac{\partial F(h^*)}{\partial w},
    \qquad (I - J^\top) z = g, \quad J = \frac{\partial F}{\partial h}(h^*),
    \quad g = \Big(\frac{\partial L}{\partial h^*}\Big)^\top .

Each solver gets :math:`g` and a function ``vjp(v) = J^T v`` (CG also gets
``jvp(u) = J u``); none of them knows what :math:`F` is.

* :func:`neumann` (Algorithm 2): :math:`z \approx \sum_{k=0}^{K} (J^\top)^k g`.
* :func:`fixed_point` (Algorithm 1, original RBP): :math:`z \leftarrow J^\top z + g`
  from a random start.
* :func:`cg` (CG-RBP): conjugate gradient on the normal equations
  :math:`(I - J)(I - J^\top) z = (I - J) g`.
* :func:`gmres`: the residual-minimising Krylov solve of :math:`(I - J^\top)
  z = g`.
* :func:`anderson`: the fixed-point iteration :math:`z \leftarrow J^\top z +
  g` with Anderson mixing, as the forward solver of the same name.

A solve that diverges (non-finite values, or residuals grown
:data:`DIVERGENCE_RATIO` times above the best seen) stops and returns its best
finite estimate with ``diverged=True``. A ``g`` that is already non-finite
(an overflowed loss under a gradient scaler) is passed on unchanged, without
a solve and without ``diverged``: the scaler must see it to skip the step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import Tensor

from .forward import check_interval, host_dtype
from .mixing import AndersonMixer

#: A residual this many times above the smallest one seen counts as divergence.
DIVERGENCE_RATIO = 1e3

Op = Callable[[Tensor], Tensor]


@dataclass
class AdjointResult:
    """The adjoint estimate ``z`` and how the solve went."""

    z: Tensor
    steps: int
    residual: float
    diverged: bool


def _norm(t: Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a.reshape(-1) * b.reshape(-1)).sum()


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _passed_through(g: Tensor) -> AdjointResult:
    """The answer for a zero or non-finite ``g``: zero gives zero; an
    overflowed gradient (inf / NaN, as a gradient scaler provokes on
    purpose) goes on unchanged, so the scaler sees it and skips the step,
    with no solve and no divergence reported."""
    if _norm(g) == 0:
        return AdjointResult(torch.zeros_like(g), 0, 0.0, False)
    return AdjointResult(g.clone(), 0, float("nan"), False)


def _is_bad(res: float, best: float) -> bool:
    return not (res == res and res != float("inf")) or \
        (best > 0 and res > DIVERGENCE_RATIO * best)


def neumann(vjp: Op, g: Tensor, max_steps: int, tol: float,
            check_every: Optional[int] = None) -> AdjointResult:
    r"""Truncated Neumann series :math:`\sum_{k=0}^{K} (J^\top)^k g`.

    Stops after ``max_steps`` terms or once a term's norm relative to
    :math:`\|g\|` is below ``tol``. Holds two vectors (the sum and the
    current term), plus a copy of the sum only while the terms grow: the
    fallback if they go on growing into divergence. Where ``vjp`` has an
    attribute ``overwrite`` (``v -> J^T v`` written into ``v``'s storage),
    every term after the first is computed in place of the one before.

    ``check_every`` (default: 1 on the CPU, 8 on an accelerator, see
    :func:`~pyg_rbp.implicit.forward.check_interval`): read the terms'
    norms on the host once per this many terms. The stopping test runs on
    the device (terms after the first below ``tol`` are not added), so the
    result is the same; a block that holds a divergent term is solved
    again term by term, to return the same best estimate.
    """
    gnorm = _norm(g)
    if gnorm == 0 or not _finite(gnorm):
        return _passed_through(g)
    every = check_interval(g.device, check_every)
    if every > 1:
        result = _neumann_blocks(vjp, g, gnorm, max_steps, tol, every)
        if result is not None:
            return result
    overwrite = getattr(vjp, "overwrite", None)
    v, s = g, g.clone()
    snapshot = None  # the best partial sum, kept once the terms grow
    best, res, steps = 1.0, 1.0, 0
    for k in range(max_steps):
        # g belongs to the caller; later terms are ours to overwrite
        v = overwrite(v) if overwrite is not None and v is not g else vjp(v)
        res = _norm(v) / gnorm
        if _is_bad(res, best):
            return AdjointResult(s if snapshot is None else snapshot, k,
                                 best, True)
        if res <= best:
            best, snapshot = res, None
        elif snapshot is None:
            snapshot = s.clone()
        s.add_(v)
        steps = k + 1
        if res < tol:
            break
    return AdjointResult(s, steps, res, False)


def _neumann_blocks(vjp: Op, g: Tensor, gnorm: float, max_steps: int,
                    tol: float, every: int) -> Optional[AdjointResult]:
    """:func:`neumann` with one host read per ``every`` terms; ``None``
    when a term diverged (the caller then solves term by term)."""
    overwrite = getattr(vjp, "overwrite", None)
    v, s = g, g.clone()
    go = torch.ones((), dtype=torch.bool, device=g.device)
    zero = torch.zeros((), dtype=g.dtype, device=g.device)
    norms: List[Tensor] = []
    wide = host_dtype(g.device)
    best, res, steps = 1.0, 1.0, 0
    for k in range(max_steps):
        v = overwrite(v) if overwrite is not None and v is not g else vjp(v)
        norm = torch.linalg.vector_norm(v).to(wide)
        norms.append(norm)
        s.add_(torch.where(go, v, zero))
        # the host's test, in the host's (double) arithmetic
        go = go & (norm / gnorm >= tol)
        if (k + 1) % every and k + 1 < max_steps:
            continue
        base = k + 1 - len(norms)
        for i, value in enumerate(torch.stack(norms).tolist()):
            res = value / gnorm
            if _is_bad(res, best):
                return None
            best = min(best, res)
            steps = base + i + 1
            if res < tol:
                return AdjointResult(s, steps, res, False)
        norms.clear()
    return AdjointResult(s, steps, res, False)


def fixed_point(vjp: Op, g: Tensor, max_steps: int, tol: float,
                init: str = "random") -> AdjointResult:
    r"""Original RBP: iterate :math:`z_i = J^\top z_{i-1} + g`.

    ``init='random'`` draws :math:`z_0 \sim U(0, 1)` as in the paper
    (Algorithm 1), rescaled to the norm of :math:`g`, so that the result
    scales with :math:`g` (a loss scaled by :math:`s`, as under a gradient
    scaler, gives :math:`s` times the same gradient, not a different one);
    ``'uniform'`` is the paper's unscaled :math:`U(0, 1)` start (with few
    iterations its result depends on the scale of the loss); ``'zeros'``
    and ``'grad'`` (:math:`z_0 = g`) are the other choices.
    Stops when :math:`\|z_i - z_{i-1}\| / \|g\| <` ``tol``.
    """
    gnorm = _norm(g)
    if gnorm == 0 or not _finite(gnorm):
        return _passed_through(g)
    if init == "random":
        z = torch.rand_like(g)
        z.mul_(gnorm / max(_norm(z), 1e-30))
    elif init == "uniform":  # the paper's start, whatever the scale of g
        z = torch.rand_like(g)
    elif init == "zeros":
        z = torch.zeros_like(g)
    elif init == "grad":
        z = g.clone()
    else:
        raise ValueError(f"'init' must be one of 'random', 'uniform', "
                         f"'zeros', 'grad' (got {init!r})")
    best_z, best = z, float("inf")
    res, steps = float("inf"), 0
    for k in range(max_steps):
        z_new = vjp(z) + g
        res = _norm(z_new - z) / gnorm
        if _is_bad(res, best):
            return AdjointResult(best_z, k, best, True)
        z, steps = z_new, k + 1
        if res <= best:
            best, best_z = res, z
        if res < tol:
            break
    return AdjointResult(z, steps, res, False)


def cg(vjp: Op, jvp: Op, g: Tensor, max_steps: int,
       tol: float) -> AdjointResult:
    r"""Conjugate gradient on :math:`(I - J)(I - J^\top) z = (I - J) g`.

    Starts from :math:`z_0 = g` (the first Neumann term). Each iteration costs
    one ``vjp`` and one ``jvp``. Stops when the normal-equation residual
    relative to :math:`\|(I - J) g\|` is below ``tol``. The normal equations
    square the condition number of :math:`I - J^\top` (the paper's caveat).
    """
    gnorm = _norm(g)
    if gnorm == 0 or not _finite(gnorm):
        return _passed_through(g)

    def normal_op(u: Tensor) -> Tensor:
        q = u - vjp(u)
        return q - jvp(q)

    b = g - jvp(g)
    bnorm = _norm(b)
    if bnorm == 0:
        return AdjointResult(g.clone(), 0, 0.0, False)
    z = g.clone()
    r = b - normal_op(z)
    p = r
    rs = _dot(r, r)
    res = float(rs.sqrt()) / bnorm
    best_z, best = z, res
    steps = 0
    for k in range(max_steps):
        if res < tol:
            break
        ap = normal_op(p)
        pap = _dot(p, ap)
        if float(pap) == 0:  # p = 0: the residual is exactly zero, solved
            break
        if not bool(torch.isfinite(pap)) or float(pap) < 0:
            return AdjointResult(best_z, k, best, True)
        alpha = rs / pap
        z = z + alpha * p
        r = r - alpha * ap
        rs_new = _dot(r, r)
        res = float(rs_new.sqrt()) / bnorm
        if _is_bad(res, best):
            return AdjointResult(best_z, k, best, True)
        steps = k + 1
        if res <= best:
            best, best_z = res, z
        p = r + (rs_new / rs) * p
        rs = rs_new
    return AdjointResult(z, steps, res, False)


def gmres(vjp: Op, g: Tensor, max_steps: int, tol: float) -> AdjointResult:
    r"""GMRES on :math:`(I - J^\top) z = g`, without restarts.

    Builds an orthonormal Krylov basis of :math:`(I - J^\top)` from
    :math:`g` (Arnoldi) and takes the :math:`z` of the Krylov space that
    minimises the residual :math:`\|g - (I - J^\top) z\|`; one ``vjp`` per
    iteration, no ``jvp``. Unlike the Neumann series it converges for any
    invertible :math:`I - J^\top` (also where :math:`\rho(J) \ge 1` or a
    non-normal :math:`J` makes the series grow before it shrinks), in at
    most :math:`n` iterations in exact arithmetic; it holds up to
    ``max_steps + 1`` basis vectors of the size of the state. Stops once the
    residual relative to :math:`\|g\|` is below ``tol``.

    Each new vector is orthogonalised by classical Gram-Schmidt applied
    twice (CGS2: two products with the whole basis, no per-vector loop).
    One pass of modified Gram-Schmidt loses orthogonality in float32 on
    large states: on a PubMed-size state the residual stalled at 3e-5
    after 100 products, where the second pass reaches 1e-6 in 31.
    """
    gnorm = _norm(g)
    if gnorm == 0 or not _finite(gnorm):
        return _passed_through(g)
    flat = g.reshape(-1)
    # the basis as rows of one buffer, grown by doubling (so that a short
    # solve with a large cap holds only what it uses)
    basis = flat.new_empty(min(max_steps + 1, 16), flat.numel())
    basis[0] = flat / gnorm
    # the Hessenberg matrix in float64 on the host (small: steps^2)
    hess = torch.zeros(max_steps + 1, max_steps, dtype=torch.float64)
    res, steps = 1.0, 0
    y: Optional[Tensor] = None
    for k in range(max_steps):
        v = basis[k].view_as(g)
        w = (v - vjp(v)).reshape(-1)
        used = basis[:k + 1]
        coef = used @ w
        w = w - coef @ used
        again = used @ w  # the second pass: what the first left behind
        w = w - again @ used
        hess[:k + 1, k] = (coef + again).to(torch.float64).cpu()
        hess[k + 1, k] = _norm(w)
        rhs = torch.zeros(k + 2, dtype=torch.float64)
        rhs[0] = gnorm
        y = torch.linalg.lstsq(hess[:k + 2, :k + 1], rhs.unsqueeze(1)
                               ).solution.squeeze(1)
        res = float(torch.linalg.vector_norm(
            hess[:k + 2, :k + 1] @ y - rhs)) / gnorm
        steps = k + 1
        if not _finite(res):
            return AdjointResult(g.clone(), k, float("inf"), True)
        if res < tol or float(hess[k + 1, k]) <= 1e-14 * gnorm:
            break
        if k + 1 == basis.size(0):
            grown = basis.new_empty(min(2 * basis.size(0), max_steps + 1),
                                    basis.size(1))
            grown[:k + 1] = basis
            basis = grown
        basis[k + 1] = w / float(hess[k + 1, k])
    z = y.to(basis.dtype).to(basis.device) @ basis[:steps]
    return AdjointResult(z.view_as(g), steps, res, False)


#: The adjoint's Anderson ridge, relative to the largest residual of the
#: window: the adjoint system is linear, so the ridge only guards a singular
#: Gram matrix (the forward's 1e-4 cost the quick start's trained model 107
#: products where 1e-8 needs 30).
ADJOINT_ANDERSON_LAM = 1e-8


def anderson(vjp: Op, g: Tensor, max_steps: int, tol: float,
             memory: int = 5,
             lam: float = ADJOINT_ANDERSON_LAM) -> AdjointResult:
    r"""The iteration :math:`z \leftarrow J^\top z + g` from :math:`z_0 = g`,
    accelerated by Anderson mixing over the last ``memory`` iterates
    (:class:`~pyg_rbp.implicit.mixing.AndersonMixer`).

    For the linear map :math:`z \mapsto J^\top z + g` Anderson mixing is a
    Krylov method (it matches GMRES with a sliding window), so where
    :math:`\rho(J)` is close to 1 it needs far fewer products than the
    Neumann series (whose terms shrink as :math:`\rho(J)^k`), while it holds
    only ``2 * memory`` vectors of the size of the state. One ``vjp`` per
    iteration. Stops once the residual :math:`\|J^\top z + g - z\|`
    relative to :math:`\|g\|` is below ``tol``; the returned ``z`` is the
    last evaluated :math:`J^\top z + g`, whose residual is at most that.
    ``lam`` is the mixing's ridge relative to the window's largest squared
    residual; a window's residuals span a few orders of magnitude as the
    solve converges, so a large ridge turns the mixing into plain
    iteration.
    """
    gnorm = _norm(g)
    if gnorm == 0 or not _finite(gnorm):
        return _passed_through(g)
    mixer = AndersonMixer(memory=memory, lam=lam)
    z = g
    best_z, best = g, float("inf")
    res, steps = float("inf"), 0
    for k in range(max_steps):
        fz = vjp(z).add_(g)
        res = _norm(fz - z) / gnorm
        if _is_bad(res, best):
            return AdjointResult(best_z, k, best, True)
        steps = k + 1
        if res <= best:
            best, best_z = res, fz
        if res < tol:
            return AdjointResult(fz, steps, res, False)
        z = mixer(z, fz)
    return AdjointResult(best_z, steps, best, False)
