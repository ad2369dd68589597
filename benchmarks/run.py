"""Memory and time of one GGNN training step: RBP against BPTT, PyG's
GatedGraphConv and torchdeq.

Every configuration runs in a fresh process (so peak memory is its own):

    python -m benchmarks.run --quick --output-json outputs/quick.json
    python -m benchmarks.run --output-json outputs/full.json      # all T, K
    python -m benchmarks.run --graphs Cora --steps 5 --backward-steps 2 \
        --output-json /tmp/smallest.json                          # the test's form

A step is forward + backward of ``loss = <h, r>`` (fixed random ``r``)
through the recurrent layer on a graph with random 64-wide inputs. Contenders,
all with the same hidden size and exactly T forward steps (early stopping
off):

* ``pyg_rbp``: RBPGatedGraphConv with neumann, cg, fixed_point, tbptt, bptt;
* ``GatedGraphConv``: PyG's layer with num_layers=T (BPTT, untied weights);
* ``torchdeq``: torchdeq 0.1's DEQ (fixed-point forward, IFT backward with a
  fixed-point adjoint solver) around the *same* map F as pyg_rbp.

Per record: median step time over repetitions after a warm-up; peak memory
(CUDA max allocated on GPU; on CPU the process's peak RSS above its level
after a no-grad warm-up); the bytes autograd saved for backward; and the
gradient's relative error against a converged reference (CG-RBP after 4T
steps with 200 CG iterations), so speed is compared at equal accuracy
(``None`` for GatedGraphConv, which is a different model).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import warnings
from typing import Dict, List, Optional

import torch

from pyg_rbp import METHODS
from pyg_rbp.utils import write_json
from pyg_rbp.utils.cli import Table, number

from benchmarks import harness

GRAPHS = ("Cora", "CiteSeer", "PubMed")


# --------------------------------------------------------------------------
# one configuration (runs in its own process)
# --------------------------------------------------------------------------
def load_graph(name: str, data_root: Optional[str]):
    """Real edges; features are random (the layer's input width), so every
    contender sees the same input. PubMed's graph comes from
    ind.pubmed.graph alone, which is present even without allx.
    ``random:N`` is a random graph of N nodes and 10 N directed edges
    (average in-degree 10), seeded."""
    import pickle
    if name.startswith("random:"):
        n = int(name.split(":")[1])
        gen = torch.Generator().manual_seed(0)
        ei = torch.randint(0, n, (2, 10 * n), generator=gen)
        return ei, n, "random, 10 N edges"

    from pyg_rbp.data import load_node_dataset, resolve_data_root
    from torch_geometric.utils import to_undirected
    if name != "PubMed":
        data = load_node_dataset(name, data_root, download=False)
        return data.edge_index, data.num_nodes, "real graph"
    raw = resolve_data_root(data_root) / "Planetoid" / "PubMed" / "raw"
    with open(raw / "ind.pubmed.graph", "rb") as fh:
        adj = pickle.load(fh, encoding="latin1")
    src = [s for s, nbrs in adj.items() for _ in nbrs]
    dst = [d for nbrs in adj.values() for d in nbrs]
    n = max(max(adj), max(dst)) + 1
    ei = torch.tensor([src, dst])
    ei = ei[:, ei[0] != ei[1]]
    return to_undirected(ei, num_nodes=n), n, \
        "real graph (ind.pubmed.graph)"


def worker_env(threads: int, part: str) -> Dict[str, str]:
    """The environment of a measuring process.

    ``part='memory'``: glibc's malloc raises its mmap threshold as large
    blocks are freed, after which freed tensors stay in the heap and peak
    RSS reflects the heap's growth rather than live memory (the same
    Neumann step measured 142 to 219 MiB); a fixed threshold makes every
    tensor above 64 KiB its own mapping, returned when freed, so peak RSS is
    the peak of live memory (repeatable to 1 %).

    ``part='time'``: malloc as users run it. The fixed threshold makes every
    large allocation a fresh mapping (page faults, zeroing), which costs an
    allocation-heavy contender far more than a lean one: torchdeq's step
    took 2.83 s without it and much longer with it, so time is never
    measured under it (issue 19)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if part == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    return env


def _median_time(step, reps: int, sync) -> float:
    step()  # warm-up
    sync()
    times = []
    for _ in range(reps):
        times.append(harness.timed(lambda: (step(), sync()))[1])
    return statistics.median(times)


def measure(cfg: Dict) -> Dict:
    warnings.simplefilter("ignore")
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    from torch_geometric.nn import GatedGraphConv

    from pyg_rbp import RBPGatedGraphConv
    from pyg_rbp.utils import SavedTensorMeter
    edge_index, n, source = load_graph(cfg["graph"], cfg["data_root"])
    edge_index = edge_index.to(device)
    gen = torch.Generator().manual_seed(0)
    hidden, steps, k = cfg["hidden"], cfg["steps"], cfg["backward_steps"]
    x = torch.randn(n, hidden, generator=gen).to(device)
    r = torch.randn(n, hidden, generator=gen).to(device)
    torch.manual_seed(0)
    contender, method = cfg["contender"], cfg["method"]
    if contender == "GatedGraphConv":
        layer = GatedGraphConv(hidden, num_layers=steps).to(device)
        params = list(layer.parameters())

        def forward():
            return layer(x, edge_index)
    else:
        layer = RBPGatedGraphConv(hidden, num_layers=steps, tol=0.0,
                                  method=method if contender == "pyg_rbp"
                                  else "neumann", backward_steps=k,
                                  backward_tol=0.0, normalize=True).to(device)
        params = list(layer.parameters())
        if contender == "pyg_rbp":
            def forward():
                return layer(x, edge_index)
        else:  # torchdeq around the same map F
            from torchdeq import get_deq
            deq = get_deq(ift=True, f_solver="fixed_point_iter",
                          b_solver="fixed_point_iter", f_max_iter=steps,
                          b_max_iter=k, f_tol=0.0, b_tol=0.0,
                          f_stop_mode="rel", b_stop_mode="rel")

            def forward():
                f, h0 = layer.fixed_point_map(x, edge_index)
                z, _ = deq(f, h0)
                return z[-1]

    def step() -> List[torch.Tensor]:
        for p in params:
            p.grad = None
        out = forward()
        (out * r).sum().backward()
        return [p.grad for p in params]

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if cfg.get("part") == "time":  # its own process, malloc as users have it
        return {"time_s": _median_time(step, cfg["reps"], sync)}
    with torch.no_grad():  # baseline: everything allocated but the graph
        forward()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with SavedTensorMeter() as meter:
        grads = step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 \
            - base_rss
    error = None
    if contender != "GatedGraphConv":
        ref_layer = RBPGatedGraphConv(hidden, num_layers=4 * steps, tol=0.0,
                                      method="cg", backward_steps=200,
                                      backward_tol=1e-10,
                                      normalize=True).to(device)
        ref_layer.load_state_dict(layer.state_dict())
        ref_out = ref_layer(x, edge_index)
        ref = torch.autograd.grad((ref_out * r).sum(),
                                  list(ref_layer.parameters()))
        num = sum(float((g - e).pow(2).sum()) for g, e in zip(grads, ref))
        den = sum(float(e.pow(2).sum()) for e in ref)
        error = (num / den) ** 0.5
    return {"graph": cfg["graph"], "graph_source": source,
            "features": "random, width = hidden", "num_nodes": n,
            "num_edges": int(edge_index.size(1)), "method": method,
            "contender": contender, "steps": steps, "backward_steps": k,
            "hidden": hidden, "peak_mem_bytes": int(peak),
            "saved_bytes": meter.bytes, "grad_rel_error": error,
            "device": str(device), "threads": cfg["threads"]}


# --------------------------------------------------------------------------
# the sweep (parent process)
# --------------------------------------------------------------------------
def configurations(a) -> List[Dict]:
    out = []
    base = dict(hidden=a.hidden, reps=a.reps, threads=a.threads,
                device=a.device, data_root=a.data_root)
    if a.quick:
        for method in ("bptt", "neumann"):
            out.append(dict(base, graph="PubMed", steps=100,
                            backward_steps=20, contender="pyg_rbp",
                            method=method))
        out.append(dict(base, graph="PubMed", steps=100, backward_steps=20,
                        contender="torchdeq", method="ift"))
        return out
    for graph in a.graphs:
        for steps in a.steps:
            for k in a.backward_steps:
                for method in a.methods:
                    if method in ("bptt", ) and k != a.backward_steps[0]:
                        continue  # BPTT does not depend on K
                    out.append(dict(base, graph=graph, steps=steps,
                                    backward_steps=k, contender="pyg_rbp",
                                    method=method))
                if a.torchdeq:
                    out.append(dict(base, graph=graph, steps=steps,
                                    backward_steps=k, contender="torchdeq",
                                    method="ift"))
            if a.gated_graph_conv:
                out.append(dict(base, graph=graph, steps=steps,
                                backward_steps=a.backward_steps[0],
                                contender="GatedGraphConv", method="bptt"))
    return out


def ratio_table(records: List[Dict]) -> str:
    out = Table("graph", "T", "K", "contender", "method", "time s",
                "time vs BPTT", "peak MiB", "BPTT / this (memory)",
                "saved MiB", "grad rel err")
    for r in records:
        bptt = next((b for b in records if b["graph"] == r["graph"] and
                     b["steps"] == r["steps"] and b["method"] == "bptt" and
                     b["contender"] == "pyg_rbp"), None)
        t_ratio = f"{bptt['time_s'] / r['time_s']:.2f}x" if bptt else "-"
        m_ratio = (f"{bptt['peak_mem_bytes'] / r['peak_mem_bytes']:.1f}x"
                   if bptt and r["peak_mem_bytes"] > 0 else "-")
        out.add(r["graph"], r["steps"], r["backward_steps"], r["contender"],
                r["method"], number(r["time_s"], ".2f"), t_ratio,
                number(r["peak_mem_bytes"] / 2**20, ".0f"), m_ratio,
                number(r["saved_bytes"] / 2**20, ".0f"),
                number(r["grad_rel_error"], ".1e"))
    return str(out)


def main() -> int:
    p = harness.parser(__doc__, threads=2, output=None)
    p.add_argument("--quick", action="store_true",
                   help="PubMed-size, T=100, K=20: pyg_rbp bptt and neumann, "
                        "torchdeq")
    p.add_argument("--graphs", nargs="+", default=list(GRAPHS),
                   choices=GRAPHS)
    p.add_argument("--steps", nargs="+", type=int, default=[10, 50, 100, 200])
    p.add_argument("--backward-steps", nargs="+", type=int,
                   default=[5, 20, 50])
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   choices=METHODS)
    p.add_argument("--no-torchdeq", dest="torchdeq", action="store_false")
    p.add_argument("--no-gated-graph-conv", dest="gated_graph_conv",
                   action="store_false")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available()
                   else "cpu")
    p.add_argument("--output-json",
                   default=str(harness.RUNS / "run.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker is not None:
        print(json.dumps(measure(json.loads(a.worker))))
        return 0
    if a.torchdeq:
        try:
            import torchdeq  # noqa: F401
        except ModuleNotFoundError:
            print("torchdeq not installed (pip install 'pyg-rbp[bench]'); "
                  "skipping it", file=sys.stderr)
            a.torchdeq = False
    records = []
    for cfg in configurations(a):
        if cfg["contender"] == "torchdeq" and not a.torchdeq:
            continue
        # memory (and the gradient's error) under a fixed mmap threshold,
        # time in a separate process without it: see worker_env
        rec: Dict = {}
        for part in ("memory", "time"):
            run = harness.worker(
                "run", ["--worker", json.dumps(dict(cfg, part=part))],
                a.threads, capture=True, check=False,
                env=worker_env(a.threads, part))
            if run.returncode != 0:
                print(f"failed: {cfg} ({part})\n{run.stderr[-2000:]}",
                      file=sys.stderr)
                return 1
            rec.update(json.loads(run.stdout.strip().splitlines()[-1]))
        rec["timing"] = "separate process, default malloc"
        records.append(rec)
        print(f"{rec['graph']:8} T={rec['steps']:<4} K={rec['backward_steps']:<3}"
              f" {rec['contender']:>14} {rec['method']:<11} "
              f"{rec['time_s']:7.3f} s  peak {rec['peak_mem_bytes'] / 2**20:8.1f}"
              f" MiB  saved {rec['saved_bytes'] / 2**20:8.1f} MiB", flush=True)
    write_json(a.output_json, records)
    print(ratio_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
