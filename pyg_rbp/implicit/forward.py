r"""The forward loop: iterate :math:`h \leftarrow F(h)` towards a fixed point.

One loop serves every forward solver (:mod:`pyg_rbp.implicit.solvers`): it
evaluates :math:`F(h_k)`, measures the residual and hands
:math:`(h_k, F(h_k))` to the solver's mixer for the next iterate (plain
iteration has none: :math:`h_{k+1} = F(h_k)`).

Convergence is measured by the relative residual
:math:`r = \|F(h) - h\| / (\|h\| + \epsilon)`. With ``batch`` (PyG's node-to-
graph vector) it is measured per graph; a graph whose residual falls below
``tol`` takes :math:`F(h)` once more and then stops changing, while the others
go on. The loop knows nothing about graphs beyond that vector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from .groups import EPS, group_sum
from .maps import restrict
from .precision import STALL_STEPS, autocast_dtype, full_precision, \
    switch_tol
from .solvers import SolverLike, resolve_solver


#: ``check_every``'s default on an accelerator: steps between reads of the
#: residuals (see :func:`iterate`); the CPU reads after every step.
DEVICE_CHECK_EVERY = 8



def graph_residual(new: Tensor, old: Tensor, batch: Optional[Tensor],
                   num_graphs: int) -> Tensor:
    r"""Relative residual :math:`\|new - old\| / (\|old\| + \epsilon)`.

    Returns a tensor of shape ``[num_graphs]`` (``[1]`` without ``batch``),
    computed without building an autograd graph.
    """
    with torch.no_grad():
        if batch is None:  # two norms, no squared copies
            num = torch.linalg.vector_norm(new - old).reshape(1)
            den = torch.linalg.vector_norm(old).reshape(1)
            return num / (den + EPS)
        diff = (new - old).reshape(new.size(0), -1) if new.dim() else \
            (new - old).reshape(1, -1)
        ref = old.reshape(diff.size(0), -1)
        num = group_sum(diff.pow(2).sum(-1), batch, num_graphs)
        den = group_sum(ref.pow(2).sum(-1), batch, num_graphs)
        return num.sqrt() / (den.sqrt() + EPS)


@dataclass
class IterationResult:
    """What :func:`iterate` returns."""

    h: Tensor
    steps: int
    trace: List[float]
    done: Tensor  # bool, [num_graphs]
    graph_steps: Tensor  # long, [num_graphs]
    graph_residual: Tensor  # [num_graphs]
    nonfinite: bool
    #: Steps taken in the autocast dtype before the full-precision finish.
    low_precision_steps: int = 0
    #: Evaluations of F the loop ran: ``steps``, plus up to
    #: ``check_every - 1`` whose results were frozen out (see
    #: :func:`iterate`).
    evaluations: int = 0


def check_interval(device: torch.device,
                   check_every: Optional[int] = None) -> int:
    """Steps between the loop's reads of its residuals on the host.

    ``check_every`` if given, else 1 on the CPU (where a read costs nothing)
    and :data:`DEVICE_CHECK_EVERY` on an accelerator.
    """
    if check_every is not None:
        return check_every
    return 1 if device.type == "cpu" else DEVICE_CHECK_EVERY


def host_dtype(device: torch.device) -> torch.dtype:
    """The dtype in which values are gathered for one host read: float64
    (exact for any float32 or float64 value and step count), float32 on
    Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


class _Trace:
    """The host-side record of the loop: residual trace, the first
    non-finite step and the low-precision switch, fed in step order."""

    def __init__(self, low: Optional[torch.dtype], tol: float) -> None:
        self.values: List[float] = []
        self.nonfinite_at = 0
        self.low = low
        self.switch_at = max(tol, switch_tol(low)) if low is not None else 0.
        self.best, self.since_best = float("inf"), 0

    def add(self, worst: float) -> bool:
        """Record one step's worst residual; ``False`` if it is not finite."""
        self.values.append(worst)
        if not math.isfinite(worst):
            self.nonfinite_at = len(self.values)
            return False
        if self.low is not None:  # leave low precision once it stops paying
            self.best, self.since_best = (worst, 0) if worst < self.best \
                else (self.best, self.since_best + 1)
            if worst <= self.switch_at or self.since_best >= STALL_STEPS:
                self.low = None
        return True


class _Compaction:
    """Per-graph stopping's compaction: once the graphs still running hold
    at most ``share`` of the current state's nodes, the loop goes on with
    ``f.restrict(nodes)`` on their rows; the full state is kept here and
    the rows written back by :meth:`restore`."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.full: Optional[Tensor] = None
        self.rows: Optional[Tensor] = None  # the full state's rows h holds

    def step(self, f: Callable[[Tensor], Tensor], h: Tensor, batch: Tensor,
             done: Tensor) -> Tuple[Callable[[Tensor], Tensor], Tensor,
                                    Tensor, bool]:
        """``(f, h, batch, still_compacting)`` after this step."""
        running = (~done)[batch]
        kept = int(running.sum())
        if kept > self.share * h.size(0):
            return f, h, batch, True
        nodes = running.nonzero().view(-1)
        sub = restrict(f, nodes)
        if sub is None:
            return f, h, batch, False
        if self.full is None:
            self.full, self.rows = h.clone(), nodes
        else:
            self.full.index_copy_(0, self.rows, h)
            self.rows = self.rows[nodes]
        return sub, h[nodes], batch[nodes], True

    def restore(self, h: Tensor) -> Tensor:
        """The full state with the running graphs' rows of ``h`` in place."""
        if self.rows is None:
            return h
        return self.full.index_copy_(0, self.rows, h)


def _read_block(pending: List[Tensor], done: Tensor, graph_steps: Tensor,
                steps: int, tol: float, record: _Trace,
                wide: torch.dtype) -> Optional[int]:
    """One host read for a block of steps: feed their worst residuals to
    ``record`` in order, up to the last convergence; the step count the
    loop ends at (the first non-finite step, or the step at which the last
    graph converged), or ``None`` to go on."""
    base = steps - len(pending)
    head = torch.stack(pending).to(wide)
    tail = torch.stack([done.all().to(wide), graph_steps.max().to(wide)])
    vals = torch.cat([head, tail]).tolist()
    pending.clear()
    all_done, last = bool(vals[-2]) and tol > 0, int(vals[-1])
    for i, worst in enumerate(vals[:-2]):
        if all_done and base + i + 1 > last:
            break  # frozen-out steps after the last convergence
        if not record.add(worst):
            return record.nonfinite_at
    return last if all_done else None


def _advance(h: Tensor, fh: Tensor, nxt: Tensor, res: Tensor, done: Tensor,
             batch: Optional[Tensor], mixer_used: bool, every: int,
             tol: float) -> Tuple[Tensor, Tensor]:
    """With ``tol > 0``: the next state and the newly converged graphs; a
    graph below ``tol`` takes :math:`F(h)` once more (not the mixer's step)
    and then stops changing."""
    newly = ~done & (res <= tol)
    if batch is None and every == 1:
        return (fh if bool(newly[0]) else nxt), newly
    if batch is None:  # (no mixer: nxt is fh)
        return torch.where(done[0], h, fh), newly
    shape = (-1, ) + (1, ) * (h.dim() - 1)
    step = torch.where(newly[batch].view(shape), fh, nxt) if mixer_used \
        else fh
    return torch.where(done[batch].view(shape), h, step), newly


def iterate(f: Callable[[Tensor], Tensor], h: Tensor, max_steps: int,
            tol: float, solver: SolverLike, batch: Optional[Tensor],
            num_graphs: int, check_every: int = 1) -> IterationResult:
    """Run at most ``max_steps`` evaluations of ``f`` from ``h``.

    Runs under the caller's grad mode: under :func:`torch.no_grad` it builds
    no graph (RBP), with grad enabled every step is recorded (BPTT). With
    ``tol == 0`` it runs exactly ``max_steps`` steps. Under autocast, steps
    run in the low-precision dtype until the residual reaches
    :func:`~pyg_rbp.implicit.precision.switch_tol` or stalls, then with
    autocast off (see :mod:`pyg_rbp.implicit.precision`); the state keeps
    ``h``'s dtype throughout.

    With ``batch`` (per-graph stopping), no grad, plain iteration and a map
    that implements :class:`~pyg_rbp.implicit.maps.RestrictableMap`, the
    converged graphs leave the computation: once the graphs still running
    hold at most the solver's ``compact_share``
    (:class:`~pyg_rbp.implicit.FixedPointIteration`) of the current state's
    nodes, the loop goes on with ``f.restrict(nodes)`` on their rows only
    (again each time the share halves), and writes them back at the end.
    The converged graphs' rows were frozen anyway, so the result is the
    same; the saved evaluations of F become time.

    ``check_every`` (no grad, plain iteration only; else 1): the loop
    reads its residuals on the host once every this many steps, not after
    every step, so that an accelerator runs the steps without waiting for
    the host. Everything that decides the result stays on the device: a
    converged graph's rows (the whole state without ``batch``) stop
    changing at the step they converged, and each graph's converged step
    is recorded there, so ``h``, ``steps``, ``trace`` and the per-graph
    fields are those of ``check_every=1``; only up to ``check_every - 1``
    further evaluations of F run, whose results are frozen out
    (``evaluations``). What still reads per block: the switch out of low
    precision under autocast (at most ``check_every - 1`` more low-precision
    steps) and, after a non-finite step, the state (non-finite either way).
    """
    device = h.device
    done = torch.zeros(num_graphs, dtype=torch.bool, device=device)
    graph_steps = torch.full((num_graphs,), max_steps, dtype=torch.long,
                             device=device)
    graph_res = torch.full((num_graphs,), float("inf"), device=device,
                           dtype=h.dtype)
    solver = resolve_solver(solver)
    mixer = solver.mixer(batch, num_graphs)
    steps = 0
    device_type = h.device.type
    record = _Trace(autocast_dtype(device_type), tol)
    low_steps = 0
    every = check_every if mixer is None and not torch.is_grad_enabled() \
        else 1
    pending: List[Tensor] = []  # worst residuals the host has not read
    wide = host_dtype(device)
    share = getattr(solver, "compact_share", 0.0)
    compact = tol > 0 and batch is not None and mixer is None and \
        share > 0 and not torch.is_grad_enabled() and \
        callable(getattr(f, "restrict", None))
    compaction = _Compaction(share)
    k = -1
    for k in range(max_steps):
        with full_precision(device_type, active=record.low is None):
            fh = f(h)
        if record.low is not None:
            low_steps += 1
        if fh.dtype != h.dtype:
            fh = fh.to(h.dtype)
        if fh.shape != h.shape:
            raise ValueError(f"'f' must return a tensor of the shape of its "
                             f"input {list(h.shape)} (got {list(fh.shape)})")
        steps = k + 1
        res = graph_residual(fh, h, batch, num_graphs)
        graph_res = torch.where(done, graph_res, res)
        if every == 1:
            worst = float(res[~done].max()) if num_graphs > 1 \
                else float(res[0])
            if not record.add(worst):
                h = fh
                break
        else:  # the largest residual of the graphs still running
            pending.append(res.masked_fill(done, -math.inf).max()
                           if num_graphs > 1 else res[0])
        if mixer is not None:
            with full_precision(device_type):  # its small solve in float32
                nxt = mixer(h, fh)
        else:
            nxt = fh
        if tol > 0:
            h, newly = _advance(h, fh, nxt, res, done, batch,
                                mixer is not None, every, tol)
            graph_steps = torch.where(
                newly, torch.full_like(graph_steps, steps), graph_steps)
            done = done | newly
        else:
            h = nxt
        if every == 1:
            if tol > 0 and bool(done.all()):
                break
        elif steps % every == 0 or steps == max_steps:
            end = _read_block(pending, done, graph_steps, steps, tol, record,
                              wide)
            if end is not None:
                steps = end
                break
        else:
            continue
        if compact:
            f, h, batch, compact = compaction.step(f, h, batch, done)
    return IterationResult(compaction.restore(h), steps, record.values, done,
                           graph_steps, graph_res, record.nonfinite_at > 0,
                           low_steps, k + 1)
