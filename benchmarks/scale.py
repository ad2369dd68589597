"""Scale: the largest random graph whose training step fits a memory cap, per
contender, with its time per step, and memory against the number of nodes.

Random graphs with N nodes and 10 N directed edges (average in-degree 10),
hidden 64, T = 100 forward steps (K = 20 backward), symmetric normalisation.
Each (contender, N) is one training step (forward + backward of
``loss = <h, r>``) in a fresh process under an address-space cap; the peak
RSS it adds over the process after its inputs exist is the memory figure
(glibc's mmap threshold fixed, as in benchmarks/run.py). Sizes double from
``--start`` until a step fails (out of memory) or ``--max-nodes``:

    python -m benchmarks.scale                  # -> outputs/benchmarks/scale.json
    python -m benchmarks.scale --contenders neumann --sizes 1000000   # one step
    python -m benchmarks.scale --table-only \
        --output-json benchmarks/results/scale_cpu.json --plot outputs/img

Steps already in ``--output-json`` are reused, with a message (``--rerun``
runs them again).

Contenders: ``neumann`` and ``bptt`` (RBPGatedGraphConv), ``torchdeq``
(torchdeq 0.1's DEQ around the same map F, IFT backward), ``GatedGraphConv``
(PyG's layer with num_layers = T, untied, BPTT).
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from pyg_rbp.utils import write_json
from pyg_rbp.utils.cli import Table, number

from benchmarks import harness
from benchmarks.run import load_graph, worker_env

CONTENDERS = ("neumann", "bptt", "torchdeq", "GatedGraphConv")


def _rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(cfg: Dict) -> Dict:
    """One training step of one contender on ``random:N``."""
    harness.start(cfg["threads"])
    from torch_geometric.nn import GatedGraphConv

    from pyg_rbp import RBPGatedGraphConv
    device = torch.device(cfg["device"])
    n, hidden, steps = cfg["nodes"], cfg["hidden"], cfg["steps"]
    edge_index, _, _ = load_graph(f"random:{n}", None)
    edge_index = edge_index.to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, hidden, generator=gen).to(device)
    r = torch.randn(n, hidden, generator=gen).to(device)
    torch.manual_seed(0)
    name = cfg["contender"]
    if name == "GatedGraphConv":
        layer = GatedGraphConv(hidden, num_layers=steps).to(device)

        def forward(x=x, edge_index=edge_index):
            return layer(x, edge_index)
    else:
        layer = RBPGatedGraphConv(
            hidden, num_layers=steps, tol=0.0,
            method="bptt" if name == "bptt" else "neumann",
            backward_steps=cfg["backward_steps"], backward_tol=0.0,
            normalize=True).to(device)
        if name == "torchdeq":
            from torchdeq import get_deq
            deq = get_deq(ift=True, f_solver="fixed_point_iter",
                          b_solver="fixed_point_iter", f_max_iter=steps,
                          b_max_iter=cfg["backward_steps"], f_tol=0.0,
                          b_tol=0.0)

            def forward(x=x, edge_index=edge_index):
                f, h0 = layer.fixed_point_map(x, edge_index)
                return deq(f, h0)[0][-1]
        else:
            def forward(x=x, edge_index=edge_index):
                return layer(x, edge_index)
    cuda = device.type == "cuda"
    if cuda:
        # warm-up on a 64-node piece: CUDA context, cuBLAS/cuSPARSE handles
        # and kernels load here, not inside the timed step
        keep = (edge_index < 64).all(0)
        (forward(x[:64], edge_index[:, keep]) * r[:64]).sum().backward()
        layer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_peak()
    start = time.perf_counter()
    (forward() * r).sum().backward()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() - base if cuda else \
        _rss_peak() - base
    return {"contender": name, "nodes": n, "edges": 10 * n,
            "hidden": hidden, "steps": steps,
            "backward_steps": cfg["backward_steps"], "time_s": elapsed,
            "peak_mem_bytes": int(peak), "device": str(device),
            "threads": cfg["threads"],
            "memory": "CUDA max allocated above the inputs" if cuda else
                      "peak RSS above the process with its inputs"}


def run_one(cfg: Dict, cap_gib: float) -> Dict:
    limit = int(cap_gib * 2**30)

    def apply_cap() -> None:
        if cfg["device"] == "cpu":  # CUDA reserves address space up front
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proc = harness.worker("scale", ["--worker", json.dumps(cfg)],
                          cfg["threads"], capture=True, check=False,
                          env=worker_env(cfg["threads"], "memory"),
                          preexec_fn=apply_cap)
    if proc.returncode != 0:
        text = proc.stderr[-1500:]
        return {"contender": cfg["contender"], "nodes": cfg["nodes"],
                "failed": True, "memory_cap_gib": cap_gib,
                "out_of_memory": any(s in text for s in (
                    "can't allocate memory", "MemoryError", "bad_alloc",
                    "out of memory")), "stderr": text}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def growth_exponent(records: List[Dict]) -> Optional[float]:
    """Least-squares slope of log(peak memory) against log(N)."""
    pts = [(math.log(r["nodes"]), math.log(r["peak_mem_bytes"]))
           for r in records if not r.get("failed") and
           r["peak_mem_bytes"] > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    num = sum((p[0] - mx) * (p[1] - my) for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return num / den if den else None


def table(records: List[Dict], cap_gib: float) -> str:
    steps = Table("contender", "nodes", "time s / step", "peak MiB")
    for r in records:
        if r.get("failed"):
            why = "out of memory" if r.get("out_of_memory") else "failed"
            steps.add(r["contender"], f"{r['nodes']:,}",
                      f"{why} (cap {r['memory_cap_gib']:g} GiB)", None)
        else:
            steps.add(r["contender"], f"{r['nodes']:,}",
                      f"{r['time_s']:.1f}",
                      f"{r['peak_mem_bytes'] / 2**20:,.0f}")
    largest = Table("contender", f"largest N that fit ({cap_gib:g} GiB)",
                    "time s / step there", "memory growth exponent in N")
    for name in CONTENDERS:
        ok = [r for r in records if r["contender"] == name and
              not r.get("failed")]
        if not ok:
            continue
        best = max(ok, key=lambda r: r["nodes"])
        failed = any(r.get("failed") for r in records
                     if r["contender"] == name)
        largest.add(name, f"{best['nodes']:,}"
                    f"{'' if failed else ' (largest tried)'}",
                    f"{best['time_s']:.1f}",
                    number(growth_exponent(ok), ".2f"))
    return f"{steps}\n\n{largest}"


def plot(records: List[Dict], out_dir: str) -> None:
    fig, ax = harness.subplots(figsize=(6, 4.5))
    peaks = {name: [(r["nodes"], r["peak_mem_bytes"] / 2**20)
                    for r in records if r["contender"] == name and
                    not r.get("failed")] for name in CONTENDERS}
    harness.draw_curves(ax, peaks, xscale="log", yscale="log",
                        xlabel="nodes (10 edges per node)",
                        ylabel="peak memory of one training step (MiB)",
                        title="hidden 64, T = 100, K = 20")
    harness.save_figure(fig, out_dir, "scale_memory.png")


def main() -> int:
    p = harness.parser(__doc__, threads=2, output="records", name="scale",
                       data=False)
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS),
                   choices=CONTENDERS)
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="exact sizes instead of doubling")
    p.add_argument("--start", type=int, default=25_000)
    p.add_argument("--max-nodes", type=int, default=2_000_000)
    p.add_argument("--memory-cap-gib", type=float, default=16.0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--backward-steps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available()
                   else "cpu")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--plot", default=None, metavar="DIR")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker is not None:
        print(json.dumps(measure(json.loads(a.worker))))
        return 0
    out = Path(a.output_json)
    records: List[Dict] = harness.stored_records(
        out, a.rerun and not a.table_only)
    if not a.table_only:
        for name in a.contenders:
            sizes = a.sizes or []
            if not sizes:
                n = a.start
                while n <= a.max_nodes:
                    sizes.append(n)
                    n *= 2
            for n in sizes:
                done = [r for r in records if r["contender"] == name and
                        r["nodes"] == n]
                if done:
                    rec = done[0]
                else:
                    cfg = dict(contender=name, nodes=n, hidden=a.hidden,
                               steps=a.steps,
                               backward_steps=a.backward_steps,
                               threads=a.threads, device=a.device)
                    rec = run_one(cfg, a.memory_cap_gib)
                    records.append(rec)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    write_json(out, records)
                print(f"{name:15} N={n:>9,}: " + (
                    "failed" if rec.get("failed") else
                    f"{rec['time_s']:7.1f} s, peak "
                    f"{rec['peak_mem_bytes'] / 2**20:9.1f} MiB"), flush=True)
                if rec.get("failed"):
                    break
    records.sort(key=lambda r: (CONTENDERS.index(r["contender"]),
                                r["nodes"]))
    print(table(records, a.memory_cap_gib))
    if a.plot:
        plot(records, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
