"""Every gradient method and every forward solver on one training step:
time, memory, gradient error and steps, side by side in one process.

Two workloads, the layer at its defaults otherwise
(``RBPGatedGraphConv(64, normalize=True)``, contractive step):

* ``pubmed``: a random graph of PubMed's size (19,717 nodes, 88,648 edges)
  with random 64-wide inputs;
* ``cora``: Cora's graph (2,708 nodes) with its features projected to 64
  channels by a fixed random matrix.

A step is forward, ``loss = <h, r>`` (fixed random ``r``) and backward at
the layer's initial weights. Rows: each method by name with the layer's
default solver (Anderson), and the default method (hybrid) with each
forward solver. Per row: the median step time over ``--reps`` steps, the
autograd-saved bytes of a step, the forward and backward steps, and the
relative error of the parameter gradient against a float64 reference (the
same layer in double precision, forward and adjoint solved to 1e-12 by
Anderson and GMRES).

    python -m benchmarks.methods_solvers --output-json benchmarks/results/v02/methods_solvers.json
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Dict, List, Tuple

import torch

from pyg_rbp import GMRES, METHODS, SOLVERS, RBPGatedGraphConv
from pyg_rbp.utils import SavedTensorMeter, write_json

from benchmarks import harness

#: (row name, layer options): every method with the default solver, then
#: the default method with every solver.
ROWS: List[Tuple[str, Dict[str, Any]]] = \
    [(f"method={m}", dict(method=m)) for m in METHODS] + \
    [(f"hybrid, solver={s}", dict(solver=s)) for s in SOLVERS
     if s != "anderson"]


def workload(name: str, data_root: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x, edge_index)`` of a workload (see the module docstring)."""
    gen = torch.Generator().manual_seed(0)
    if name == "pubmed":
        n, e = 19717, 88648
        return torch.randn(n, 64, generator=gen), \
            torch.randint(0, n, (2, e), generator=gen)
    from pyg_rbp.data import load_planetoid
    data = load_planetoid("Cora", data_root, download=False)
    proj = torch.randn(data.num_features, 64, generator=gen) / \
        data.num_features ** 0.5
    return data.x @ proj, data.edge_index


def grads(conv: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1).double() for p in conv.parameters()
                      if p.grad is not None])


def reference(x: torch.Tensor, edge_index: torch.Tensor,
              r: torch.Tensor) -> torch.Tensor:
    """The parameter gradient in float64, solved to 1e-12."""
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(64, normalize=True, num_layers=2000, tol=1e-12,
                             method=GMRES(steps=400, tol=1e-12)).double()
    (conv(x.double(), edge_index) * r.double()).sum().backward()
    assert conv.stats.converged and conv.stats.backward_converged
    return grads(conv)


def measure(x: torch.Tensor, edge_index: torch.Tensor, r: torch.Tensor,
            options: Dict[str, Any], reps: int,
            ref: torch.Tensor) -> Dict[str, Any]:
    times: List[float] = []
    rec: Dict[str, Any] = {}
    for i in range(reps + 1):  # the first is a warm-up
        torch.manual_seed(0)
        conv = RBPGatedGraphConv(64, normalize=True, **options)
        start = time.perf_counter()
        with SavedTensorMeter() as meter:
            h = conv(x, edge_index)
        (h * r).sum().backward()
        elapsed = time.perf_counter() - start
        if i == 0:
            continue
        times.append(elapsed)
        s = conv.stats
        err = float((grads(conv) - ref).norm() / ref.norm())
        rec = {"forward_steps": s.forward_steps,
               "backward_steps": s.backward_steps,
               "backward_method": s.backward_method,
               "converged": bool(s.converged),
               "saved_mib": meter.bytes / 2 ** 20,
               "gradient_error": err}
    rec["median_ms"] = 1e3 * statistics.median(times)
    return rec


def main() -> int:
    p = harness.parser(__doc__)
    p.add_argument("--workloads", nargs="+", default=["cora", "pubmed"],
                   choices=("cora", "pubmed"))
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    harness.start(a.threads)
    results: Dict[str, Any] = {"threads": a.threads, "reps": a.reps}
    for name in a.workloads:
        x, edge_index = workload(name, a.data_root)
        r = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
        ref = reference(x, edge_index, r)
        rows = {}
        for row, options in ROWS:
            rows[row] = measure(x, edge_index, r, options, a.reps, ref)
            v = rows[row]
            print(f"{name:7} {row:28} {v['median_ms']:8.1f} ms  fwd "
                  f"{v['forward_steps']:4d}  bwd {v['backward_steps'] or 0:4d}"
                  f" ({v['backward_method']})  saved {v['saved_mib']:7.1f} "
                  f"MiB  grad err {v['gradient_error']:.1e}", flush=True)
        results[name] = rows
        if a.output_json:  # after each workload: a long run keeps its part
            write_json(a.output_json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
