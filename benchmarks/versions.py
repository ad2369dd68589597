"""This checkout against an earlier commit, side by side in one process: the
PubMed-size Neumann step and the MUTAG training step.

The earlier commit's ``pyg_rbp`` is extracted (``git archive``) into a
temporary folder as the package ``pyg_rbp_base`` (its imports are relative),
so both versions run in the same process, on the same inputs, their steps
interleaved (the order alternating), and see the same machine state; a
restructuring that should not change the speed is checked so:

    python -m benchmarks.versions --base b2e57cc
    python -m benchmarks.versions --base HEAD~3 --workloads mutag --reps 200

Both versions get the options that give the same numerics in both (the GRU
step, which every version has): ``pubmed``: ``RBPGatedGraphConv(64,
num_layers=100, tol=0, method='neumann', backward_steps=20,
normalize=True)`` on a random graph of PubMed's size (forward, ``<h, r>``,
backward); ``mutag``: ``GraphClassificationModule`` with 30 steps and the
Jacobian penalty of weight 1 on MUTAG batches of 32 (zero_grad, training
step, backward, Adam). Per workload: the median step time of each version,
their ratio, the share of steps whose forward and backward step counts are
equal in both, and those counts' totals (the two trainings start equal;
rounding may move a step count later on).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Tuple

import torch

from benchmarks import harness

#: A workload's step and the stats of its last call (to compare the work).
Step = Tuple[Callable[[], None], Callable[[], Tuple[Any, ...]]]


def extract(rev: str, into: Path) -> ModuleType:
    """The package ``pyg_rbp`` of commit ``rev`` as ``pyg_rbp_base``."""
    archive = subprocess.run(["git", "archive", rev, "pyg_rbp"],
                             cwd=harness.ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into), "--transform",
                    "s/^pyg_rbp/pyg_rbp_base/"], input=archive, check=True)
    package = into / "pyg_rbp_base"
    spec = importlib.util.spec_from_file_location(
        "pyg_rbp_base", package / "__init__.py",
        submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pyg_rbp_base"] = module  # its relative imports find it
    spec.loader.exec_module(module)
    return module


def _gru(package: ModuleType) -> Dict[str, Any]:
    """The options that select the GRU step (none where it is the only)."""
    params = inspect.signature(package.RBPGatedGraphConv).parameters
    return {"cell": "gru"} if "cell" in params else {}


def pubmed(package: ModuleType) -> Step:
    gen = torch.Generator().manual_seed(0)
    n, e, c = 19717, 88648, 64
    edge_index = torch.randint(0, n, (2, e), generator=gen)
    x = torch.randn(n, c, generator=gen)
    r = torch.randn(n, c, generator=gen)
    torch.manual_seed(0)
    conv = package.RBPGatedGraphConv(c, num_layers=100, tol=0.0,
                                     method="neumann", backward_steps=20,
                                     normalize=True, **_gru(package))

    def step() -> None:
        conv.zero_grad(set_to_none=True)
        (conv(x, edge_index) * r).sum().backward()
    return step, lambda: (conv.stats.forward_steps,
                          conv.stats.backward_steps)


def mutag(package: ModuleType, data_root: str) -> Step:
    from torch_geometric.loader import DataLoader
    lightning = importlib.import_module(package.__name__ + ".lightning")
    data = importlib.import_module(package.__name__ + ".data")
    ds = data.load_tu_dataset("MUTAG", data_root, download=False)
    torch.manual_seed(0)
    batches = list(DataLoader(ds, batch_size=32, shuffle=True))
    torch.manual_seed(0)
    module = lightning.GraphClassificationModule(
        ds.num_features, ds.num_classes, num_edge_types=ds.num_edge_types,
        jacobian_weight=1.0, num_layers=30, **_gru(package))
    module.log = lambda *args, **kwargs: None
    opt = torch.optim.Adam(module.parameters(), lr=0.005, weight_decay=5e-4)
    calls = [0]

    def step() -> None:
        batch = batches[calls[0] % len(batches)]
        calls[0] += 1
        opt.zero_grad()
        module.training_step(batch, 0).backward()
        opt.step()
    return step, lambda: (module.model.stats.forward_steps,
                          module.model.stats.backward_steps)


def side_by_side(steps: Dict[str, Step], reps: int,
                 warmup: int) -> Dict[str, Any]:
    """Median seconds per version over ``reps`` interleaved steps, and
    whether each pair of steps did the same work."""
    names = list(steps)
    times: Dict[str, List[float]] = {k: [] for k in names}
    work: Dict[str, List[Tuple[Any, ...]]] = {k: [] for k in names}
    # each version draws from its own random stream (the power iterations
    # of the Jacobian penalty draw), as if it ran alone
    rng = {k: torch.get_rng_state() for k in names}
    for i in range(warmup + reps):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            torch.set_rng_state(rng[name])
            _, seconds = harness.timed(steps[name][0])
            rng[name] = torch.get_rng_state()
            if i >= warmup:
                times[name].append(seconds)
                work[name].append(steps[name][1]())
    med = {k: statistics.median(v) for k, v in times.items()}
    same = sum(a == b for a, b in zip(work["base"], work["this"])) / reps
    return {"median_ms": {k: 1e3 * v for k, v in med.items()},
            "ratio": med["this"] / med["base"],
            "same_work_share": same,
            "steps": {k: [sum(w[j] or 0 for w in v) for j in range(2)]
                      for k, v in work.items()},
            "reps": reps}


def main() -> int:
    p = harness.parser(__doc__)
    p.add_argument("--base", required=True,
                   help="the earlier commit (any git revision)")
    p.add_argument("--workloads", nargs="+", default=["pubmed", "mutag"],
                   choices=("pubmed", "mutag"))
    p.add_argument("--reps", type=int, default=None,
                   help="measured steps per version (default: pubmed 12, "
                        "mutag 120)")
    a = p.parse_args()
    harness.start(a.threads)
    import pyg_rbp
    out: Dict[str, Any] = {"base": a.base, "threads": a.threads}
    with tempfile.TemporaryDirectory() as tmp:
        base = extract(a.base, Path(tmp))
        for workload in a.workloads:
            if workload == "pubmed":
                steps = {"base": pubmed(base), "this": pubmed(pyg_rbp)}
                r = side_by_side(steps, a.reps or 12, 2)
            else:
                steps = {"base": mutag(base, a.data_root),
                         "this": mutag(pyg_rbp, a.data_root)}
                r = side_by_side(steps, a.reps or 120, 20)
            out[workload] = r
            ms = r["median_ms"]
            print(f"{workload}: base {ms['base']:.1f} ms, this "
                  f"{ms['this']:.1f} ms, this / base {r['ratio']:.3f}; "
                  f"steps with the same forward / backward counts "
                  f"{100 * r['same_work_share']:.0f} %, totals "
                  f"{r['steps']}", flush=True)
    return harness.finish(a, out)


if __name__ == "__main__":
    sys.exit(main())
