"""Associative memory with a continuous Hopfield network trained by RBP.

Reproduces the first experiment of Liao et al. (ICML 2018): a Hopfield
network (input, hidden and output neurons on a complete graph with
symmetric weights) stores the first MNIST image of each digit; training
minimises the L1 distance between the output neurons' activations and the
image clamped on the input neurons. The paper's finding: Neumann-RBP,
CG-RBP and TBPTT train at every truncation, the original RBP fails at
short ones.

    python examples/hopfield.py --method neumann --truncation 20
    python examples/hopfield.py --method all --truncation 10 20 30 \
        --trials 10 --output-json hopfield.json --plot plots/
    python examples/hopfield.py --size 28 --hidden 1024    # the paper's size
    python examples/hopfield.py --method fixed_point --rbp-init uniform \
        --truncation 10 20 30 --trials 3 --resume-dir runs/   # resumable

Success (as in the paper): final training loss <= 50% of the initial one.
Retrieval: the input is a stored pattern with half of its on-pixels
switched off; we report the L1 error of the output against the pattern.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from pyg_rbp import METHODS, ConvergenceWarning, FixedPoint
from pyg_rbp.data.mnist import load_digit_patterns
from pyg_rbp.nn import HopfieldConv
from pyg_rbp.utils import write_json
from pyg_rbp.utils.cli import SweepOptions, opt, run_main

PAPER = {"tbptt": "TBPTT", "fixed_point": "RBP", "cg": "CG-RBP",
         "neumann": "Neumann-RBP", "bptt": "BPTT"}
#: ``--method all``: the paper's four methods that run a fixed number of
#: backward steps (BPTT through all 50 steps is not a truncation).
PAPERS_TRUNCATED = ("neumann", "cg", "fixed_point", "tbptt")


class HopfieldMemory(torch.nn.Module):
    """Input | hidden | output neurons; the input neurons are clamped."""

    def __init__(self, pixels: int, hidden: int, input_scale: float = 4.0,
                 **kwargs) -> None:
        super().__init__()
        self.pixels, self.hidden = pixels, hidden
        self.input_scale = input_scale
        n = 2 * pixels + hidden
        self.net = HopfieldConv(n, **kwargs)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[:pixels] = True
        self.register_buffer("clamp", mask)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, pixels]`` -> output activations ``[B, pixels]``."""
        n = self.net.num_neurons
        inputs = images.new_zeros(n, images.size(0))
        # Clamp pixel p to h = s (2p - 1): phi(b h) is then well apart for
        # on and off pixels (0.88 / 0.12 with s = 4, b = 0.5).
        inputs[:self.pixels] = self.input_scale * (2 * images.t() - 1)
        h = self.net(inputs, self.clamp)
        return self.net.phi(h[-self.pixels:]).t()


def corrupt(patterns: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Switch off half of each pattern's on-pixels (the paper's test)."""
    out = patterns.clone()
    for row in out:
        on = row.nonzero().view(-1)
        off = on[torch.randperm(on.numel(), generator=gen)[:on.numel() // 2]]
        row[off] = 0
    return out


#: --rbp-init -> FixedPoint's init: our start scaled to ||g||, or the
#: paper's unscaled U(0, 1) (not scale-invariant: with few iterations the
#: result depends on the size of the loss).
RBP_INITS = {"scaled": "random", "uniform": "uniform"}


def train_once(patterns: torch.Tensor, method: str, truncation: int,
               seed: int, args: "HopfieldOptions") -> Dict:
    torch.manual_seed(seed)
    if method == "fixed_point":  # the start is a setting of the value
        options = dict(method=FixedPoint(steps=truncation, tol=0.0,
                                         init=RBP_INITS[args.rbp_init]))
    else:
        options = dict(method=method, backward_steps=truncation,
                       backward_tol=0.0)
    model = HopfieldMemory(patterns.size(1), args.hidden,
                           input_scale=args.input_scale,
                           num_steps=args.steps, tol=0.0, a=1.0, b=0.5,
                           **options)
    with torch.no_grad():  # > 1 moves the dynamics towards instability
        model.net.weight.mul_(args.init_scale)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses: List[float] = []
    for _ in range(args.epochs):
        opt.zero_grad()
        loss = (model(patterns) - patterns).abs().mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    gen = torch.Generator().manual_seed(seed)
    noisy = corrupt(patterns, gen)
    with torch.no_grad():
        retrieved = model(noisy)
        final = float((model(patterns) - patterns).abs().mean())
    return {"method": method, "truncation": truncation, "seed": seed,
            "rbp_init": args.rbp_init if method == "fixed_point" else None,
            "initial_loss": losses[0], "final_loss": final,
            "success": final <= 0.5 * losses[0], "losses": losses,
            "retrieval_l1": float((retrieved - patterns).abs().mean()),
            "corrupted_l1": float((noisy - patterns).abs().mean()),
            "retrieved": retrieved.tolist(), "noisy": noisy.tolist()}


def trial(patterns: torch.Tensor, method: str, truncation: int, seed: int,
          args: "HopfieldOptions") -> Dict:
    """:func:`train_once`, or its record from ``--resume-dir`` when an
    earlier (interrupted) run finished it."""
    if args.resume_dir is None:
        return train_once(patterns, method, truncation, seed, args)
    folder = Path(args.resume_dir)
    folder.mkdir(parents=True, exist_ok=True)
    init = f"_{args.rbp_init}" if method == "fixed_point" else ""
    path = folder / (f"{method}{init}_K{truncation}_s{seed}_size{args.size}"
                     f"_h{args.hidden}.json")
    if path.is_file():
        return json.loads(path.read_text())
    record = train_once(patterns, method, truncation, seed, args)
    kept = dict(record)  # the images only for seed 0 (the plot's), rounded
    for key in ("retrieved", "noisy"):
        kept[key] = [[round(v, 3) for v in row] for row in record[key]] \
            if seed == 0 else None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept))
    tmp.replace(path)  # whole or not at all
    return record


def plot(records: List[Dict], patterns: torch.Tensor, size: int,
         out_dir: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = []
    for r in records:
        if r["method"] not in methods:
            methods.append(r["method"])
    first = {m: next(r for r in records
                     if r["method"] == m and r.get("retrieved"))
             for m in methods}
    cols = 1 + len(methods)
    fig, axes = plt.subplots(10, cols, figsize=(1.1 * cols, 11))
    for row in range(10):
        noisy = torch.tensor(first[methods[0]]["noisy"][row])
        axes[row][0].imshow(noisy.view(size, size), cmap="gray")
        for c, m in enumerate(methods, start=1):
            img = torch.tensor(first[m]["retrieved"][row]).view(size, size)
            axes[row][c].imshow(img, cmap="gray", vmin=0, vmax=1)
    titles = ["corrupted"] + [f"{PAPER.get(m, m)}\nK={first[m]['truncation']}"
                              for m in methods]
    for c, t in enumerate(titles):
        axes[0][c].set_title(t, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hopfield_retrieval.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class HopfieldOptions(SweepOptions):
    """The experiment's options (each a flag: ``--init-scale`` ...)."""

    method: List[str] = opt(factory=lambda: ["neumann"],
                            choices=METHODS + ("all", ),
                            help="gradient methods (all: the paper's four)")
    truncation: List[int] = opt(factory=lambda: [20], minimum=1,
                                help="K: backward steps / TBPTT truncation")
    trials: int = opt(1, minimum=1, help="trials (seeds 0 .. trials-1)")
    size: int = opt(10, minimum=1,
                    help="image side after downsampling (28: the paper's)")
    hidden: int = opt(100, minimum=1,
                      help="hidden neurons (the paper: 1024 at size 28)")
    steps: int = opt(50, minimum=1, help="forward steps (the paper: 50)")
    epochs: int = opt(200, minimum=1, help="training epochs (exactly)")
    lr: float = opt(1e-2, nonnegative=True, help="Adam's learning rate")
    init_scale: float = opt(
        10.0, nonnegative=True,
        help="multiply the initial weights (U(+-1/sqrt(N))) by this; large "
             "values make J's spectral radius near 1")
    input_scale: float = opt(4.0, help="pixel p is clamped to h = s (2p - 1)")
    rbp_init: str = opt("scaled", choices=tuple(RBP_INITS),
                        help="original RBP's start: scaled to ||g|| (ours) "
                             "or the paper's unscaled U(0, 1)")
    threads: int = opt(2)

    def methods(self) -> List[str]:
        """``--method`` with ``all`` as the paper's four, each once."""
        return list(dict.fromkeys(
            m for name in self.method
            for m in (PAPERS_TRUNCATED if name == "all" else (name, ))))

    def check(self) -> None:
        super().check()
        if self.size > 28:
            raise ValueError(f"'size' must be in [1, 28], MNIST's side "
                             f"(got {self.size})")


def main(argv: Optional[List[str]] = None) -> int:
    return run_main(HopfieldOptions, run, argv, __doc__.splitlines()[0])


def run(args: HopfieldOptions) -> int:
    """Train every (truncation, method, trial), print and save the table."""
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    methods = args.methods()
    patterns, _ = load_digit_patterns(args.data_root, args.size)
    records = []
    start = time.perf_counter()
    for k in args.truncation:
        for method in methods:
            for seed in range(args.trials):
                r = trial(patterns, method, k, seed, args)
                records.append(r)
                name = PAPER.get(method, method)
                print(f"{name:<12} K={k:<3} seed {seed}: loss "
                      f"{r['initial_loss']:.4f} -> {r['final_loss']:.4f} "
                      f"({'success' if r['success'] else 'failure'}), "
                      f"retrieval L1 {r['retrieval_l1']:.4f} (corrupted "
                      f"input {r['corrupted_l1']:.4f})", flush=True)
    print("\n| method | truncation | success rate | mean final loss |")
    print("|---|---|---|---|")
    table = []
    for k in args.truncation:
        for method in methods:
            rs = [r for r in records
                  if r["method"] == method and r["truncation"] == k]
            rate = sum(r["success"] for r in rs) / len(rs)
            mean = sum(r["final_loss"] for r in rs) / len(rs)
            table.append({"method": method, "truncation": k,
                          "success_rate": rate, "mean_final_loss": mean,
                          "trials": len(rs)})
            print(f"| {PAPER.get(method, method)} | {k} | {100 * rate:.0f}% | "
                  f"{mean:.4f} |")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.output_json:
        out = {"config": args.to_dict(), "results": table,
               "runs": [{k: v for k, v in r.items()
                         if k not in ("retrieved", "noisy")}
                        for r in records]}
        if len(table) == 1:
            out["success_rate"] = table[0]["success_rate"]
            out["final_losses"] = [r["final_loss"] for r in records]
        write_json(args.output_json, out)
    if args.plot:
        print("wrote", plot(records, patterns, args.size, args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
