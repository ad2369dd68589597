"""What every benchmark shares: its options, its process set-up, where its
results go, the timing of one call, and its worker processes.

The benchmarks are a package; run each from the repository root as
``python -m benchmarks.NAME [options]`` (``--help`` lists the options).

* **Options** (:func:`parser`): ``--threads``, ``--data-root`` (default:
  ``$PYG_RBP_DATA_ROOT``, else ``../shared/data`` beside the checkout where
  it exists, else the library's cache folder) and the script's output, a
  JSON file or a results folder.
* **Where results go**: a new run writes under ``outputs/benchmarks/``
  (untracked) unless its options name another place; the committed results
  the docs quote are in ``benchmarks/results/`` and are rewritten only when
  a command names them. Sweeps resume: a result already on disk is reused,
  and :func:`reuse` says so (``--rerun`` runs it again).
* **One vocabulary**, the examples': ``--max-epochs`` caps a Lightning
  training (``--epochs`` is the older spelling), ``--epochs`` counts the
  epochs of a fixed loop; ``--folds`` is the k of k-fold, ``--fold`` which
  folds run (bAbI's: the dataset's folds 1..10); ``--threads``,
  ``--data-root``, ``--output-json`` / ``--results`` as above.
* **Set-up** (:func:`start`): one torch thread count, denormal floats
  flushed (a GEMM on them runs up to 100x slower on x86), warnings quiet.
* **Reports**: tables are :class:`pyg_rbp.utils.cli.Table` (Markdown, as
  the docs quote them); :func:`finish` prints them and writes the JSON;
  :func:`subplots`, :func:`draw_curves` and :func:`save_figure` draw the
  figures (one colour per contender in every panel).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from pyg_rbp.utils import write_json

#: The repository root (the benchmarks' commands run from here).
ROOT = Path(__file__).resolve().parents[1]
#: The committed results the docs quote.
STORED = ROOT / "benchmarks" / "results"
#: Where new runs write unless told otherwise (ignored by git).
RUNS = ROOT / "outputs" / "benchmarks"
def _default_data_root() -> Optional[str]:
    """$PYG_RBP_DATA_ROOT, else ``../shared/data`` beside the checkout where
    it exists, else ``None``: the library's own rule (its cache folder;
    :func:`pyg_rbp.data.resolve_data_root`)."""
    if os.environ.get("PYG_RBP_DATA_ROOT"):
        return os.environ["PYG_RBP_DATA_ROOT"]
    shared = ROOT.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


#: Where the benchmarks read datasets unless ``--data-root`` says.
DEFAULT_DATA_ROOT = _default_data_root()


def parser(doc: str, *, threads: int = 1, output: Optional[str] = "json",
           name: str = "", data: bool = True) -> argparse.ArgumentParser:
    """An argument parser described by the script's docstring's first line,
    with ``--threads``, ``--data-root`` and the script's output.

    Args:
        doc: The script's docstring.
        threads: ``--threads``' default.
        output: ``"json"``: ``--output-json`` (default none: only print);
            ``"results"``: ``--results FOLDER`` (default
            ``outputs/benchmarks/<name>``) and ``--rerun`` for sweeps that
            keep one file per part; ``"records"``: ``--output-json``
            (default ``outputs/benchmarks/<name>.json``) and ``--rerun`` for
            sweeps that keep their parts as records of one file
            (:func:`stored_records`); ``None``: neither.
        name: The script's name (the default results folder).
        data: Whether it reads datasets (``--data-root``).
    """
    p = argparse.ArgumentParser(
        description=doc.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=threads,
                   help="torch threads (1: timings comparable across runs)")
    if data:
        p.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                       help="folder of the datasets (nothing is downloaded)")
    if output == "json":
        p.add_argument("--output-json", default=None,
                       help="write the results here (paths in them "
                            "relative to the repository)")
    elif output == "results":
        p.add_argument("--results", default=str(RUNS / name),
                       help="folder of the result files; the committed ones "
                            "are in benchmarks/results/")
    elif output == "records":
        p.add_argument("--output-json", default=str(RUNS / f"{name}.json"),
                       help="the parts' records (those already there are "
                            "reused); the committed ones are in "
                            "benchmarks/results/")
    if output in ("results", "records"):
        p.add_argument("--rerun", action="store_true",
                       help="run the parts whose result is already there "
                            "again instead of reusing it")
    return p


def start(threads: int) -> None:
    """Set the process up: ``threads`` torch threads, denormal floats
    flushed, warnings quiet (the scripts report what they measure)."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def reuse(path: Path, rerun: bool = False) -> bool:
    """Whether to reuse the result at ``path`` instead of running it: true
    when it exists and ``rerun`` is false, and then it says so."""
    if rerun or not Path(path).exists():
        return False
    print(f"reusing the stored result {shown(path)} (--rerun runs it again)",
          flush=True)
    return True


def stored_records(path: Path, rerun: bool = False) -> List[Any]:
    """The records a sweep kept in ``path`` (reused, with :func:`reuse`'s
    message), or none where it has none or ``rerun`` is set."""
    return json.loads(Path(path).read_text()) if reuse(path, rerun) else []


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def timed(fn: Callable[[], Any]) -> Tuple[Any, float]:
    """``fn()``'s result and its wall-clock seconds."""
    begin = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - begin


def worker(module: str, args: List[str], threads: int, *,
           capture: bool = False, check: bool = True,
           env: Optional[Dict[str, str]] = None,
           preexec_fn: Optional[Callable[[], None]] = None
           ) -> subprocess.CompletedProcess:
    """Run ``python -m benchmarks.<module> <args>`` from the repository root
    with ``threads`` OpenMP threads (one part of a sweep per process: its
    peak memory its own, a crash loses one part).

    Args:
        capture: Return its stdout and stderr as text instead of showing
            them.
        check: Raise if it fails.
        env: Its environment (default: this one's, with the thread count
            and warnings off).
        preexec_fn: Run in the child before the benchmark (a memory cap).
    """
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT,
        check=check, capture_output=capture, text=capture,
        preexec_fn=preexec_fn,
        env=env or dict(os.environ, OMP_NUM_THREADS=str(threads),
                        PYTHONWARNINGS="ignore"))


def finish(a: argparse.Namespace, record: Any, *tables: Any) -> int:
    """A benchmark's end: print each table, write ``record`` to
    ``--output-json`` where one was given; the exit status 0."""
    for table in tables:
        print(table)
    if a.output_json:
        write_json(a.output_json, record)
    return 0


def subplots(*args: Any, **kwargs: Any) -> Tuple[Any, Any]:
    """``matplotlib.pyplot.subplots`` with the file-only (Agg) backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def draw_curves(ax: Any, curves: Dict[str, List[Tuple[float, float]]],
                **settings: Any) -> None:
    """One line with markers per named series of ``(x, y)`` points (sorted
    by x; an empty series is skipped but keeps its colour, so a contender
    has one colour in every panel), then ``ax.set(**settings)`` (e.g.
    ``xscale='log'``, ``title``, ``xlabel``) and the legend."""
    for i, (name, points) in enumerate(curves.items()):
        if points:
            ax.plot(*zip(*sorted(points)), marker="o", label=name,
                    color=f"C{i}")
    ax.set(**settings)
    ax.legend()


def save_figure(fig: Any, out_dir: str, name: str, dpi: int = 120) -> Path:
    """Lay ``fig`` out and write it as ``<out_dir>/<name>`` (the folder made
    as needed); returns the path."""
    fig.tight_layout()
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def example(name: str) -> ModuleType:
    """The module of ``examples/<name>.py`` (the examples are scripts, not a
    package; a benchmark that measures an example's model loads it so)."""
    spec = importlib.util.spec_from_file_location(
        f"examples_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
