"""Hyperparameter optimisation by RBP: the RBP paper's third experiment.

An MLP 784-50-50-50-10 (tanh) is trained by ``--inner-steps`` steps of SGD
with momentum (Maclaurin et al.'s form) on MNIST; one log learning rate and
one logit momentum per parameter tensor are learned by Adam on the
hypergradient of the training loss after the inner steps, computed by BPTT,
TBPTT, original RBP or Neumann-RBP (``--truncation`` steps / terms).

Data: the MNIST file under ``<data root>/MNIST/raw`` (``../shared/data``
holds the 10,000 test images): the first ``--train`` (5,000) images train the
inner model and give the meta-loss; the rest are held out and only
reported.

    python examples/hyperopt.py --method neumann --truncation 50 \\
        --data-root ../shared/data
    python examples/hyperopt.py --method bptt tbptt fixed_point neumann \\
        --meta-steps 100 --compare --output-json hyperopt.json --plot plots/
    python examples/hyperopt.py --method bptt tbptt neumann \\
        --truncation 10 50 100 --seed 1 2 3 --inner-steps 1500 \\
        --final-batch mini --compare --resume-dir runs/   # the paper's 1500

Several ``--truncation`` and ``--seed`` values run every (method,
truncation, seed) (BPTT, which has no truncation, once per seed); with
``--resume-dir`` each run's result is kept there and read back instead of
trained again, so an interrupted sweep continues where it stopped.
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from pyg_rbp.data.mnist import load_mnist
from pyg_rbp.hyperopt import HYPEROPT_METHODS, HyperoptConfig, meta_train
from pyg_rbp.utils import write_json
from pyg_rbp.utils.cli import (SweepOptions, Table, number, opt, run_main,
                               spread)

NAMES = {"bptt": "BPTT", "tbptt": "TBPTT", "fixed_point": "RBP",
         "neumann": "Neumann-RBP"}


def _figure(panels: List[tuple], path: Path) -> Path:
    """One row of panels, each ``(curves, axis settings)`` with ``curves``
    a list of ``(label, xs, ys, style)``, or ``(label, xs, ys, style, (lows,
    highs))`` drawn with a shaded band; saved to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (curves, settings) in zip(axes, panels):
        for label, xs, ys, style, *band in curves:
            line, = ax.plot(xs, ys, style, label=label)
            if band:
                ax.fill_between(xs, *band[0], color=line.get_color(),
                                alpha=0.2)
        ax.set(**settings)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot(results: Dict[str, dict], folder: Path) -> List[Path]:
    """The paper's figures: the training loss over the inner steps at the
    last meta-step, the meta-loss against the meta-step (one curve per
    method), and the learned learning rates and momenta per layer."""
    folder.mkdir(parents=True, exist_ok=True)
    inner, meta, rates, moms = [], [], [], []
    for method, r in results.items():
        name = NAMES[method]
        inner.append((name, range(len(r["inner_losses"])),
                      r["inner_losses"], "-"))
        meta.append((name, range(len(r["records"])),
                     [rec["meta_loss"] for rec in r["records"]], "-"))
        last = r["records"][-1]
        lr = torch.tensor(last["log_lr"]).exp().tolist()
        mom = torch.sigmoid(torch.tensor(last["logit_mom"])).tolist()
        tensors = range(1, len(lr) + 1)
        rates.append((name, tensors, lr, "o-"))
        moms.append((name, tensors, mom, "o-"))
    tensor_axis = "parameter tensor (W1, b1, ..., W4, b4)"
    return [
        _figure([(inner, dict(xlabel="inner step",
                              ylabel="training loss (mini-batch)",
                              title="(a) training loss, last meta-step",
                              yscale="log")),
                 (meta, dict(xlabel="meta-step", ylabel="meta training loss",
                             title="(b) meta training loss"))],
                folder / "hyperopt_losses.png"),
        _figure([(rates, dict(xlabel=tensor_axis, ylabel="learning rate",
                              title="learned learning rates", yscale="log")),
                 (moms, dict(xlabel=tensor_axis, ylabel="momentum",
                             title="learned momenta"))],
                folder / "hyperopt_hyperparameters.png")]


def _groups(results: Dict[str, dict]) -> Dict[Tuple[str, Optional[int]],
                                             List[dict]]:
    """(method, K; None for BPTT) -> its runs over the seeds."""
    groups: Dict[Tuple[str, Optional[int]], List[dict]] = {}
    for r in results.values():
        method = r["config"]["method"]
        k = None if method == "bptt" else r["config"]["truncation"]
        groups.setdefault((method, k), []).append(r)
    return groups


def _cosines(run: dict) -> List[Tuple[int, float]]:
    return [(rec["meta_step"], rec["cosine_bptt"]) for rec in run["records"]
            if rec.get("cosine_bptt") is not None]


def summary(results: Dict[str, dict]) -> Table:
    """Per (method, K), over its seeds: the last meta-step's meta and
    held-out losses (mean ± std), time and memory of a meta-step, and the
    cosine to BPTT's hypergradient (each seed's mean over the meta-steps
    where it was taken, then mean ± std over seeds; and the lowest)."""
    table = Table("method", "K", "seeds", "final meta loss",
                  "final held-out loss", "s / meta-step", "saved MiB",
                  "cosine to BPTT", "lowest cosine")
    for (method, k), runs in _groups(results).items():
        last = [r["records"][-1] for r in runs]
        cos = [[c for _, c in _cosines(r)] for r in runs]
        table.add(NAMES[method], k, len(runs),
                  spread([x["meta_loss"] for x in last], ".4f"),
                  spread([x["heldout_loss"] for x in last], ".4f"),
                  number(statistics.mean(rec["seconds"] for r in runs
                                         for rec in r["records"]), ".2f"),
                  number(max(rec["saved_bytes"] for r in runs
                             for rec in r["records"]) / 2**20, ".0f"),
                  spread([statistics.mean(c) for c in cos if c], ".3f"),
                  number(min((v for c in cos for v in c), default=None),
                         ".3f"))
    return table


def plot_seeds(results: Dict[str, dict], folder: Path) -> Path:
    """The meta-loss and the cosine to BPTT against the meta-step, per
    (method, K): the mean over seeds with the band from the lowest to the
    highest seed."""
    losses, cosines = [], []
    for i, ((method, k), runs) in enumerate(_groups(results).items()):
        label = NAMES[method] + ("" if k is None else f" K={k}")
        steps = min(len(r["records"]) for r in runs)
        curves = [[rec["meta_loss"] for rec in r["records"][:steps]]
                  for r in runs]
        losses.append((label, range(steps),
                       [statistics.mean(v) for v in zip(*curves)], f"C{i}-",
                       ([min(v) for v in zip(*curves)],
                        [max(v) for v in zip(*curves)])))
        per_step: Dict[int, List[float]] = {}
        for r in runs:
            for step, c in _cosines(r):
                per_step.setdefault(step, []).append(c)
        if per_step:
            xs = sorted(per_step)
            cosines.append((label, xs,
                            [statistics.mean(per_step[x]) for x in xs],
                            f"C{i}o-",
                            ([min(per_step[x]) for x in xs],
                             [max(per_step[x]) for x in xs])))
    folder.mkdir(parents=True, exist_ok=True)
    return _figure([(losses, dict(xlabel="meta-step",
                                  ylabel="meta training loss",
                                  title="meta-loss (mean, band: seeds)")),
                    (cosines, dict(xlabel="meta-step",
                                   ylabel="cosine to BPTT's hypergradient",
                                   title="hypergradient quality"))],
                   folder / "hyperopt_seeds.png")


def run_name(method: str, truncation: int, seed: int) -> str:
    """The key of one run in the results (and its file in --resume-dir)."""
    return f"{method}_s{seed}" if method == "bptt" else \
        f"{method}_K{truncation}_s{seed}"


def one_run(a: "HyperoptOptions", method: str, truncation: int, seed: int,
            images: torch.Tensor,
            labels: torch.Tensor) -> Dict[str, Any]:
    """Meta-train one (method, truncation, seed), or read its result from
    ``--resume-dir`` where an earlier run finished it."""
    name = run_name(method, truncation, seed)
    path = None if a.resume_dir is None else \
        Path(a.resume_dir) / (f"{name}_inner{a.inner_steps}_meta"
                              f"{a.meta_steps}_{a.final_batch}.json")
    if path is not None and path.is_file():
        print(f"{name}: read from {path}", flush=True)
        return json.loads(path.read_text())
    cfg = a.run_config(method, truncation, seed)
    every = max(1, a.meta_steps // 10)

    def show(rec) -> None:
        if rec.meta_step % every == 0 or rec.meta_step == a.meta_steps - 1:
            cos = "-" if rec.cosine_bptt is None else \
                f"{rec.cosine_bptt:.3f}"
            print(f"{name:<22}{rec.meta_step:>10}{rec.meta_loss:>11.4f}"
                  f"{rec.heldout_loss:>10.4f}{rec.seconds:>8.2f}"
                  f"{rec.saved_bytes / 2**20:>10.1f}{cos:>9}", flush=True)
    result = meta_train(cfg, images, labels, train=a.train,
                        compare=a.compare and method != "bptt",
                        progress=show, compare_every=a.compare_every).to_dict()
    if path is not None:  # whole or not at all
        write_json(path.with_suffix(".tmp"), result)
        path.with_suffix(".tmp").replace(path)
    return result


@dataclass
class HyperoptOptions(SweepOptions):
    """The experiment's options (each a flag: ``--meta-steps`` ...)."""

    method: List[str] = opt(factory=lambda: ["neumann"],
                            choices=HYPEROPT_METHODS,
                            help="hypergradient methods")
    truncation: List[int] = opt(
        factory=lambda: [50], minimum=1,
        help="TBPTT steps / RBP iterations / Neumann terms")
    meta_steps: int = opt(100, minimum=1, help="Adam steps on the "
                                               "hyperparameters")
    inner_steps: int = opt(100, minimum=1, help="SGD steps of the inner "
                                                "training")
    batch_size: int = opt(200, minimum=1, help="inner mini-batch size")
    meta_lr: float = opt(0.05, nonnegative=True, help="meta Adam's step")
    train: int = opt(5000, minimum=1,
                     help="images that train the inner model (the rest "
                          "are held out)")
    final_batch: str = opt("full", choices=("full", "mini"),
                           help="the RBP methods' last inner step on the "
                                "whole training set (the authors') or its "
                                "mini-batch")
    rbp_init: str = opt("random", choices=("random", "uniform"),
                        help="original RBP's start (uniform: the paper's)")
    compare: bool = opt(False, help="also compute BPTT's hypergradient at "
                                    "every meta-step and record the cosine")
    compare_every: int = opt(1, minimum=1,
                             help="with --compare: only at every N-th "
                                  "meta-step (and the last)")
    seed: List[int] = opt(factory=lambda: [1234],
                          help="seeds (the initial weights and "
                               "mini-batches)")
    def check(self) -> None:
        super().check()
        for method in self.method:  # every run's settings, before any runs
            for k in self.truncation:
                self.run_config(method, k, self.seed[0]).check()

    def run_config(self, method: str, truncation: int,
                   seed: int) -> HyperoptConfig:
        """The library's settings of one (method, truncation, seed)."""
        return HyperoptConfig(
            method=method, truncation=truncation,
            meta_steps=self.meta_steps, inner_steps=self.inner_steps,
            batch_size=self.batch_size, meta_lr=self.meta_lr, seed=seed,
            rbp_init=self.rbp_init, final_batch=self.final_batch)


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(HyperoptOptions, run, argv, __doc__.split("\n")[0])


def run(a: HyperoptOptions) -> int:
    """Every (method, truncation, seed); the table, JSON and figures."""
    torch.set_num_threads(a.threads)
    images, labels = load_mnist(a.data_root)
    results: Dict[str, Dict[str, Any]] = {}
    print(f"{'run':<22}{'meta-step':>10}{'meta loss':>11}{'held out':>10}"
          f"{'s/step':>8}{'saved MiB':>10}{'cos BPTT':>9}")
    for k in a.truncation:
        for method in a.method:
            for seed in a.seed:
                name = run_name(method, k, seed)
                if method == "bptt" and k != a.truncation[0]:
                    continue  # BPTT has no truncation: once per seed
                results[name] = one_run(a, method, k, seed, images,
                                        labels)
    if a.output_json:
        write_json(a.output_json, {"args": a.to_dict(),
                                   "results": results})
    print(f"\n{summary(results)}")
    if a.plot:  # the first truncation and seed of each method
        first = {}
        for r in results.values():
            first.setdefault(r["config"]["method"], r)
        for path in [*plot(first, Path(a.plot)),
                     plot_seeds(results, Path(a.plot))]:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
