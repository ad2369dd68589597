"""PNG figures of a training run (needs matplotlib)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple


def check_plotting() -> None:
    """Raise the ``ModuleNotFoundError`` of :func:`_pyplot` now, before a run
    whose ``--plot`` would otherwise fail only after training."""
    _pyplot()


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "--plot needs matplotlib; install it with pip install "
            "'pyg-rbp[lightning]' (or pip install matplotlib)") from exc
    return plt


def plot_run(result: Dict[str, Any], out_dir: str) -> list:
    """Write ``curves.png`` (loss, accuracy per epoch) and ``residual.png``
    (hidden-state residual per propagation step, first and last forward, as
    in the paper's figure) into ``out_dir``; return their paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hist = result["history"]
    title = f"{result['dataset']}, {result['method']}"
    epochs = [h["epoch"] + 1 for h in hist]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        ax_loss.plot(epochs, [h.get(key, float("nan")) for h in hist],
                     label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    for key in ("train_acc", "val_acc", "test_acc"):
        ax_acc.plot(epochs, [h.get(key, float("nan")) for h in hist],
                    label=key)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    curves = out / "curves.png"
    fig.savefig(curves, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for key, label in (("residual_trace_first", "first training step"),
                       ("residual_trace_final", "trained model (test)")):
        trace = result.get(key) or []
        if trace:
            ax.semilogy(range(1, len(trace) + 1), trace, label=label)
    ax.set_xlabel("propagation step")
    ax.set_ylabel(r"$\|h_{t+1} - h_t\| / \|h_t\|$")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    residual = out / "residual.png"
    fig.savefig(residual, dpi=120)
    plt.close(fig)
    return [curves, residual]


def _history_panels(hists: List[List[Dict[str, float]]], unit: str,
                    acc_keys: Sequence[str],
                    steps: Sequence[Tuple[str, str]], title: str,
                    path: Path) -> Path:
    """Three panels of per-epoch means over runs: losses, accuracies and
    forward/backward steps; written to ``path``."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = min(len(h) for h in hists)

    def mean(key: str) -> list:
        return [sum(h[e].get(key, float("nan")) for h in hists) / len(hists)
                for e in range(epochs)]

    x = list(range(1, epochs + 1))
    fig, (ax_loss, ax_acc, ax_steps) = plt.subplots(1, 3, figsize=(14, 4))
    for key in ("train_loss", "val_loss"):
        ax_loss.plot(x, mean(key), label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel(f"loss (mean over {unit})")
    ax_loss.legend()
    for key in acc_keys:
        ax_acc.plot(x, mean(key), label=key)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel(f"accuracy (mean over {unit})")
    ax_acc.legend()
    for key, label in steps:
        ax_steps.plot(x, mean(key), label=label)
    ax_steps.set_xlabel("epoch")
    ax_steps.set_ylabel("steps per training call")
    ax_steps.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_folds(result: Dict[str, Any], out_dir: str) -> list:
    """Write ``folds.png``: per epoch, the mean over folds of the training
    loss, validation and test accuracy, and of the steps each graph took;
    return its path."""
    title = (f"{result['dataset']}, {result['conv']} / {result['method']}"
             f": {100 * result['test_acc']:.1f} ± "
             f"{100 * result['test_acc_std']:.1f} % "
             f"({result['folds_run']} folds)")
    return [_history_panels(
        [f["history"] for f in result["folds"]], "folds",
        ("train_acc", "val_acc", "test_acc"),
        (("graph_steps", "forward, per graph"),
         ("fwd_steps", "forward, per mini-batch")),
        title, Path(out_dir) / "folds.png")]


def plot_babi(result: Dict[str, Any], out_dir: str) -> list:
    """Write ``babi.png``: per epoch, the mean over the runs (folds and
    question types) of the training and validation loss and accuracy and of
    the forward and backward steps; return its path."""
    title = (f"bAbI task {result['task']}, {result['method']}: "
             f"{100 * result['test_acc']:.1f} % ({len(result['runs'])} runs)")
    return [_history_panels(
        [r["history"] for r in result["runs"]], "runs",
        ("train_acc", "val_acc"),
        (("fwd_steps", "forward"), ("bwd_steps", "backward")),
        title, Path(out_dir) / "babi.png")]
