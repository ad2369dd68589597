"""Anderson acceleration against plain fixed-point iteration on Cora's GGNN.

Counts the evaluations of F each forward solver needs to reach the relative
residual ``--tol`` (default 1e-5) for RBPGatedGraphConv on the Cora graph
(64 channels, random inputs as in ``run.py``, normalised aggregation), at the
initial weights and with the state weights scaled up, which makes F less
contractive (trained models drift that way), and times both.

    python -m benchmarks.forward_solvers --output-json outputs/solvers.json
"""
from __future__ import annotations

import json

import torch

from pyg_rbp import RBPGatedGraphConv
from pyg_rbp.utils.cli import Table

from benchmarks import harness
from benchmarks.run import load_graph


def main() -> int:
    p = harness.parser(__doc__)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--max-iter", type=int, default=2000)
    p.add_argument("--scales", nargs="+", type=float, default=[1, 2, 3, 4])
    a = p.parse_args()
    harness.start(a.threads)
    edge_index, n, _ = load_graph("Cora", a.data_root)
    x = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
    records = []
    for scale in a.scales:
        for solver in ("fixed_point", "anderson"):
            torch.manual_seed(0)
            conv = RBPGatedGraphConv(64, num_layers=a.max_iter, tol=a.tol,
                                     solver=solver, normalize=True)
            with torch.no_grad():
                conv.weight.mul_(scale)
                conv.rnn.weight_hh.mul_(scale)
                conv.rnn.weight_ih[:, :64].mul_(scale)
                conv(x, edge_index)  # warm-up
                _, wall = harness.timed(lambda: conv(x, edge_index))
            s = conv.stats
            rec = {"graph": "Cora", "scale": scale, "solver": solver,
                   "tol": a.tol, "f_evaluations": s.forward_steps,
                   "residual": s.forward_residual,
                   "converged": bool(s.converged), "time_s": wall}
            records.append(rec)
            print(json.dumps(rec), flush=True)
    table = Table("state-weight scale", "plain F evals", "Anderson F evals",
                  "ratio")
    for scale in a.scales:
        fp, an = (next(r for r in records if r["scale"] == scale and
                       r["solver"] == s) for s in ("fixed_point", "anderson"))
        table.add(f"{scale:g}", f"{fp['f_evaluations']}"
                  f"{'' if fp['converged'] else ' (not converged)'}",
                  f"{an['f_evaluations']}{'' if an['converged'] else ' (nc)'}",
                  f"{an['f_evaluations'] / fp['f_evaluations']:.2f}")
    return harness.finish(a, records, table)


if __name__ == "__main__":
    raise SystemExit(main())
