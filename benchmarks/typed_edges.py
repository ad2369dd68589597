"""Typed edges: which layout of the per-type message is faster.

The message of a GGNN step with k edge types,
m_i W^T = sum over edges j -> i of e_ji h_j Theta_type(j,i) W^T, has two
natural layouts, each one sparse product per step:

* ``wide``: h @ [Theta_1 | ... | Theta_k] gives [N, kC]; seen as [kN, C] it is
  multiplied by the [N, kN] matrix A_wide (column j*k + t for an edge j -> i of
  type t), giving [N, C]; then one [C, 3C] GEMM. Per node: (k + 3) C^2 flops.
* ``stacked``: the [kN, N] matrix B (row i*k + t) times h gives [kN, C], seen
  as [N, kC]; then one [kC, 3C] GEMM with the Thetas folded into W^T.
  Per node: 3 k C^2 flops.

Both do nnz * C sparse work. The script times the message (forward, and the
transposed product the adjoint uses) for each layout on a batch of MUTAG-size
graphs and on a large random graph, prints a table and writes JSON:

    python -m benchmarks.typed_edges --output-json outputs/typed_edges.json
"""
from __future__ import annotations

import statistics
import sys
import warnings
from typing import Callable, Dict, List

import torch

from pyg_rbp.utils.cli import Table

from benchmarks import harness


def _times(fns: Dict[str, Callable[[], torch.Tensor]],
           reps: int) -> Dict[str, float]:
    """Median time of each function, timed round-robin so that drift in the
    machine's speed falls on all of them alike."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(harness.timed(fn)[1])
    return {name: statistics.median(t) for name, t in times.items()}


def _csr(rows: torch.Tensor, cols: torch.Tensor, shape) -> torch.Tensor:
    value = torch.ones(rows.numel())
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), value, shape,
                                   check_invariants=False
                                   ).coalesce().to_sparse_csr()


def measure(name: str, n: int, e: int, k: int, c: int, reps: int,
            seed: int = 0) -> List[Dict]:
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (e, ), generator=gen)
    dst = torch.randint(0, n, (e, ), generator=gen)
    etype = torch.randint(0, k, (e, ), generator=gen)
    h = torch.randn(n, c, generator=gen)
    theta = torch.randn(k, c, c, generator=gen) / c ** 0.5
    w_t = torch.randn(c, 3 * c, generator=gen) / c ** 0.5  # W_msg^T
    g = torch.randn(n, 3 * c, generator=gen)

    a_wide = _csr(dst, src * k + etype, (n, n * k))
    a_wide_t = a_wide.t().to_sparse_csr()
    pre = theta.permute(1, 0, 2).reshape(c, k * c)  # [Theta_1 | ... ]
    b = _csr(dst * k + etype, src, (n * k, n))
    b_t = b.t().to_sparse_csr()
    w_fold = theta.reshape(k * c, c) @ w_t  # [kC, 3C]

    def wide() -> torch.Tensor:
        return (a_wide @ (h @ pre).view(n * k, c)) @ w_t

    def wide_t() -> torch.Tensor:
        return (a_wide_t @ (g @ w_t.t())).view(n, k * c) @ pre.t()

    def stacked() -> torch.Tensor:
        return (b @ h).view(n, k * c) @ w_fold

    def stacked_t() -> torch.Tensor:
        return b_t @ (g @ w_fold.t()).view(n * k, c)

    a_plain = _csr(dst, src, (n, n))
    a_plain_t = a_plain.t().to_sparse_csr()
    w_plain = theta[0] @ w_t

    def untyped() -> torch.Tensor:  # the k = 1 layer, for reference
        return (a_plain @ h) @ w_plain

    def untyped_t() -> torch.Tensor:
        return a_plain_t @ (g @ w_plain.t())

    torch.testing.assert_close(wide(), stacked(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(wide_t(), stacked_t(), rtol=1e-4, atol=1e-3)
    layouts = {"wide": (wide, wide_t), "stacked": (stacked, stacked_t),
               "untyped (reference)": (untyped, untyped_t)}
    fns = {}
    for layout, (fwd, bwd) in layouts.items():
        fns[(layout, "message")] = fwd
        fns[(layout, "transposed")] = bwd
    t = _times(fns, reps)
    return [{"graph": name, "nodes": n, "edges": e, "types": k,
             "channels": c, "layout": layout,
             "message_ms": 1e3 * t[(layout, "message")],
             "transposed_ms": 1e3 * t[(layout, "transposed")]}
            for layout in layouts]


def main() -> int:
    p = harness.parser(__doc__, threads=2, data=False)
    p.add_argument("--reps", type=int, default=40)
    a = p.parse_args()
    harness.start(a.threads)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
    cases = [
        # a MUTAG mini-batch: 32 graphs of ~18 atoms, ~40 directed bonds each
        ("MUTAG batch (32 graphs)", 575, 1270, 4, 64),
        ("MUTAG batch, k=2", 575, 1270, 2, 64),
        ("random, N=100k, deg 10", 100_000, 1_000_000, 4, 64),
        ("random, N=100k, deg 10, k=2", 100_000, 1_000_000, 2, 64),
        ("random, N=100k, deg 10, k=8", 100_000, 1_000_000, 8, 64),
    ]
    records = []
    for name, n, e, k, c in cases:
        records += measure(name, n, e, k, c, a.reps)
    table = Table("graph", "k", "layout", "message ms", "transposed ms")
    for r in records:
        table.add(r["graph"], r["types"], r["layout"],
                  f"{r['message_ms']:.3f}", f"{r['transposed_ms']:.3f}")
    return harness.finish(a, records, table)


if __name__ == "__main__":
    sys.exit(main())
