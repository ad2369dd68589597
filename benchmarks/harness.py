"""What every benchmark script shares: the options every one takes (threads,
data root, output JSON) and the process set-up they need (one thread count,
denormals flushed, warnings quiet). Imported by the scripts beside it
(``python benchmarks/X.py`` puts this folder on the path)."""
from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import torch

#: ``../shared/data`` beside the checkout, unless $PYG_RBP_DATA_ROOT says.
DEFAULT_DATA_ROOT = os.environ.get(
    "PYG_RBP_DATA_ROOT",
    str(Path(__file__).resolve().parents[2] / "shared" / "data"))


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the script's docstring's first line,
    with ``--threads``, ``--data-root`` and ``--output-json``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: timings comparable across runs)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    p.add_argument("--output-json", default=None,
                   help="write the results here (paths in them relative)")
    return p


def start(a: argparse.Namespace) -> None:
    """Set the process up as the options say: ``a.threads`` torch threads,
    denormal floats flushed (a GEMM on them runs up to 100x slower on x86),
    warnings quiet (the scripts report what they measure)."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
