"""The chains benchmark: accuracy and memory against chain length, every
contender side by side, and the Neumann truncation K each length needs.

Each (length, classes, contender) runs ``examples/chains.py`` in its own
process under an address-space cap (``--memory-cap-gib``), so a contender
that does not fit is recorded as out of memory instead of taking the machine
down. JSON per run (one already there is reused, with a message: the sweep
resumes; ``--rerun`` runs it again), then the tables of docs/long_range.md
and a plot. New runs go to ``outputs/benchmarks/chains`` unless
``--results`` names a folder (the committed ones: benchmarks/results/chains):

    python -m benchmarks.chains --classes 2 --lengths 10 20 50 100 200 500 1000
    python -m benchmarks.chains --classes 3 --lengths 100 200 --contenders neumann
    python -m benchmarks.chains --k-sweep --classes 3 --lengths 100 200 \
        --backward-steps 5 10 20 50 100
    python -m benchmarks.chains --table-only --results benchmarks/results/chains
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from pyg_rbp.utils import write_json

from benchmarks import harness

ROOT = harness.ROOT
RESULTS = harness.RUNS / "chains"  # --results changes it

#: contender -> flags of examples/chains.py
CONTENDERS: Dict[str, List[str]] = {
    "neumann": ["--model", "rbp", "--method", "neumann"],
    "cg": ["--model", "rbp", "--method", "cg"],
    "bptt": ["--model", "rbp", "--method", "bptt"],
    "pyg": ["--model", "pyg"],
    "ignn": ["--model", "ignn", "--method", "neumann"],
}


def _cap(gib: float):
    limit = int(gib * 2**30)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_one(name: str, flags: List[str], a: argparse.Namespace) -> Dict:
    out = RESULTS / f"{name}.json"
    if harness.reuse(out, a.rerun):
        return json.loads(out.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, str(ROOT / "examples" / "chains.py"), *flags,
            "--seeds", str(a.seeds), "--threads", str(a.threads),
            "--max-epochs", str(a.max_epochs), "--output-json", str(out)]
    print("running:", name, " ".join(flags), flush=True)
    run = subprocess.run(args, capture_output=True, text=True,
                         preexec_fn=_cap(a.memory_cap_gib),
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if run.returncode != 0:
        text = run.stderr[-2000:]
        oom = any(s in text for s in ("MemoryError", "can't allocate memory",
                                      "DefaultCPUAllocator",
                                      "std::bad_alloc"))
        record = {"failed": True, "out_of_memory": oom,
                  "memory_cap_gib": a.memory_cap_gib, "stderr": text,
                  "flags": flags}
        write_json(out, record)
        print("  failed" + (" (out of memory)" if oom else ""), flush=True)
        return record
    print(" ", run.stdout.strip().splitlines()[-1], flush=True)
    return json.loads(out.read_text())


def sweep(a: argparse.Namespace) -> None:
    for classes in a.classes:
        for length in a.lengths:
            if a.k_sweep:
                for k in a.backward_steps:
                    run_one(f"k_c{classes}_L{length}_K{k}",
                            ["--length", str(length), "--classes",
                             str(classes), "--backward-steps", str(k),
                             *CONTENDERS["neumann"], *a.extra], a)
                continue
            for contender in a.contenders:
                if contender == "pyg" and length > a.pyg_max_length:
                    continue
                run_one(f"c{classes}_L{length}_{contender}",
                        ["--length", str(length), "--classes", str(classes),
                         *CONTENDERS[contender], *a.extra], a)


def _load_all() -> Dict[str, Dict]:
    return {p.stem: json.loads(p.read_text())
            for p in sorted(RESULTS.glob("*.json"))}


def _cell(r: Optional[Dict]) -> str:
    if r is None:
        return "-"
    if r.get("failed"):
        return "OOM" if r.get("out_of_memory") else "failed"
    partial = r.get("seeds_run", r["config"]["seeds"]) < r["config"]["seeds"]
    return f"{100 * r['test_acc']:.1f}" + (
        f" ({r['seeds_run']} seed{'s' if r['seeds_run'] > 1 else ''})"
        if partial else "")


def _by_length(title: str, lengths: List[int],
               cell: Callable[[str, int], str]) -> List[str]:
    """A markdown table: one row per contender that has a result, one column
    per chain length; ``cell(contender, L)`` gives each entry."""
    lines = [f"\n**{title}**\n",
             "| contender | " + " | ".join(f"L={n}" for n in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for name in CONTENDERS:
        row = [cell(name, n) for n in lengths]
        if any(x != "-" for x in row):
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def _memory_cell(runs: Dict[str, Dict], per_node: bool
                 ) -> Callable[[str, int], str]:
    def cell(name: str, n: int) -> str:
        r = runs.get(f"c2_L{n}_{name}")
        if r is None or r.get("failed"):
            return "-" if r is None else "OOM"
        if per_node:
            nodes = 2 * r["config"]["chains_per_class"] * n
            return f"{r['saved_bytes'] / nodes:,.0f}"
        return f"{r['saved_bytes'] / 2**20:.1f}"
    return cell


def tables() -> str:
    runs = _load_all()
    lines: List[str] = []
    keys = [k for k in runs if not k.startswith("k_")]
    classes = sorted({int(k.split("_")[0][1:]) for k in keys})
    lengths = sorted({int(k.split("_")[1][1:]) for k in keys})
    for c in classes:
        lines += _by_length(
            f"{c} classes: test accuracy (%), mean over seeds", lengths,
            lambda name, n: _cell(runs.get(f"c{c}_L{n}_{name}")))
    lines += _by_length(
        "Autograd-saved memory of one training step (MiB), 2 classes",
        lengths, _memory_cell(runs, per_node=False))
    lines += _by_length(
        "The same per node (bytes): flat in L means memory does not grow "
        "with the number of steps", lengths, _memory_cell(runs, per_node=True))
    ks = [k for k in runs if k.startswith("k_")]
    if ks:
        lines += ["\n**Neumann truncation K against length: test accuracy "
                  "(%)**\n", "| classes | L | K | test acc | forward steps |",
                  "|---|---|---|---|---|"]
        for k in sorted(ks, key=lambda s: [int(p[1:]) for p in
                                           s.split("_")[1:]]):
            _, c, n, kk = k.split("_")
            r = runs[k]
            lines.append(f"| {c[1:]} | {n[1:]} | {kk[1:]} | {_cell(r)} | "
                         f"{r.get('forward_steps', 0):.0f} |")
    return "\n".join(lines)


def plot(out_dir: str) -> None:
    runs = _load_all()
    keys = [k for k in runs if not k.startswith("k_")]
    classes = sorted({int(k.split("_")[0][1:]) for k in keys})
    fig, axes = harness.subplots(1, len(classes) + 1,
                                 figsize=(4.5 * (len(classes) + 1), 4))

    def points(c: int, value: Callable[[Dict], float]
               ) -> Dict[str, List[Tuple[float, float]]]:
        """contender -> (L, value) of its runs with c classes."""
        return {name: [(int(k.split("_")[1][1:]), value(r))
                       for k, r in runs.items()
                       if k.startswith(f"c{c}_") and
                       k.endswith(f"_{name}") and not r.get("failed")]
                for name in CONTENDERS}
    for ax, c in zip(axes, classes):
        harness.draw_curves(ax, points(c, lambda r: r["test_acc"]),
                            xscale="log", ylim=(0, 1.05),
                            title=f"{c} classes", xlabel="chain length L",
                            ylabel="test accuracy")
    harness.draw_curves(axes[-1],
                        points(2, lambda r: r["saved_bytes"] / 2**20),
                        xscale="log", yscale="log",
                        title="memory of one training step (2 classes)",
                        xlabel="chain length L", ylabel="autograd-saved MiB")
    harness.save_figure(fig, out_dir, "chains.png")


def main() -> int:
    global RESULTS
    p = harness.parser(__doc__, output="results", name="chains",
                       data=False)
    p.add_argument("--classes", type=int, nargs="+", default=[2])
    p.add_argument("--lengths", type=int, nargs="+",
                   default=[10, 20, 50, 100, 200, 500, 1000])
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS),
                   choices=list(CONTENDERS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--memory-cap-gib", type=float, default=16.0)
    p.add_argument("--pyg-max-length", type=int, default=1000)
    p.add_argument("--k-sweep", action="store_true")
    p.add_argument("--backward-steps", type=int, nargs="+",
                   default=[5, 10, 20, 50, 100])
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--plot", default=None, metavar="DIR")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --: more flags for examples/chains.py")
    a = p.parse_args()
    a.extra = [x for x in a.extra if x != "--"]
    RESULTS = Path(a.results)
    if not a.table_only:
        sweep(a)
    print(tables())
    if a.plot:
        plot(a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
