"""Plots of a ``benchmarks.run`` JSON: memory vs T and time vs T.

    python -m benchmarks.plot benchmarks/results/cpu_sweep.json --out outputs/bench_cpu

writes ``<out>_<graph>.png`` per graph: peak memory (log scale) and step time
against the number of forward steps T, one line per contender and method (at
the first K found for each).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

from benchmarks import harness


def plot(records: List[Dict], out: str) -> List[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for graph in sorted({r["graph"] for r in records}):
        rs = [r for r in records if r["graph"] == graph]
        fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(10, 4))
        lines = sorted({(r["contender"], r["method"]) for r in rs})
        for contender, method in lines:
            mine = [r for r in rs if r["contender"] == contender and
                    r["method"] == method]
            k = min(r["backward_steps"] for r in mine)
            mine = sorted((r for r in mine if r["backward_steps"] == k),
                          key=lambda r: r["steps"])
            label = method if contender == "pyg_rbp" else \
                f"{contender} ({method})"
            if method not in ("bptt", ) and contender != "GatedGraphConv":
                label += f", K={k}"
            ts = [r["steps"] for r in mine]
            ax_m.plot(ts, [max(r["peak_mem_bytes"], 1) / 2**20 for r in mine],
                      marker="o", label=label)
            ax_t.plot(ts, [r["time_s"] for r in mine], marker="o",
                      label=label)
        device = rs[0]["device"]
        ax_m.set(xlabel="forward steps T", ylabel="peak memory (MiB)",
                 yscale="log", title=f"{graph}: memory of a training step")
        ax_t.set(xlabel="forward steps T", ylabel="seconds",
                 title=f"{graph}: time of a training step ({device})")
        ax_t.legend(fontsize=8)
        path = harness.save_figure(fig, str(Path(out).parent),
                                   f"{Path(out).name}_{graph}.png", dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--out", required=True, help="path prefix of the PNGs")
    a = p.parse_args()
    for path in plot(json.loads(Path(a.json).read_text()), a.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
