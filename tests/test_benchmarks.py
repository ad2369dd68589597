"""The benchmark harness in its smallest form: it runs and its records hold
what docs/benchmarks.md is built from."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_data, shared_data_root

ROOT = Path(__file__).resolve().parents[1]


@needs_data
def test_harness_smallest_form(tmp_path) -> None:
    out = tmp_path / "bench.json"
    args = [sys.executable, "benchmarks/run.py", "--graphs", "Cora",
            "--steps", "4", "--backward-steps", "2", "--methods", "neumann",
            "bptt", "--reps", "1", "--threads", "1", "--data-root",
            str(shared_data_root()), "--output-json", str(out)]
    try:
        import torchdeq  # noqa: F401
    except ModuleNotFoundError:
        args.append("--no-torchdeq")
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                         timeout=900, env=dict(os.environ,
                                               XDG_CACHE_HOME=str(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]
    records = json.loads(out.read_text())
    keys = {"graph", "method", "contender", "steps", "backward_steps",
            "time_s", "peak_mem_bytes", "saved_bytes", "grad_rel_error"}
    assert all(keys <= set(r) for r in records)
    by = {(r["contender"], r["method"]): r for r in records}
    assert ("GatedGraphConv", "bptt") in by
    assert by[("pyg_rbp", "bptt")]["saved_bytes"] > \
        3 * by[("pyg_rbp", "neumann")]["saved_bytes"]
    assert all(r["time_s"] > 0 for r in records)
    assert by[("GatedGraphConv", "bptt")]["grad_rel_error"] is None
    assert 0 <= by[("pyg_rbp", "neumann")]["grad_rel_error"] < 1
    assert "| Cora | 4 | 2 | pyg_rbp | neumann |" in run.stdout
