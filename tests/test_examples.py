"""The examples the README points to run as written."""
from __future__ import annotations

import pytest

import os
import subprocess
import sys
from pathlib import Path

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_quickstart_runs_and_learns() -> None:
    out = _run("examples/quickstart.py", "--method", "neumann", "--epochs",
               "30", "--no-baselines")
    row = [line for line in out.splitlines()
           if line.startswith("method=neumann")]
    assert len(row) == 1
    acc = float(row[0].split()[1])
    assert acc > 0.5  # 4 balanced classes: chance is 0.25


def test_quickstart_reports_what_the_gradient_was() -> None:
    """The default's row: every call converges and takes the implicit
    gradient with its adjoint solved, none is unrolled, nothing is warned;
    the GRU step's row (the 0.1 default, at most 30 steps): no call
    converges, every call is unrolled, and its one warning is printed; the
    PyG baselines have no such columns."""
    out = _run("examples/quickstart.py", "--method", "hybrid", "--epochs",
               "3", "--seeds", "0", "1")
    rows = {line[:22].strip(): line[22:].split() for line in out.splitlines()
            if line.startswith(("method=", "cell=", "PyG "))}
    # acc, min, fwd conv, adj ok, unrolled, ...
    assert rows["method=hybrid"][2:5] == ["100%", "100%", "0%"]
    assert rows["cell='gru' (0.1)"][2:5] == ["0%", "-", "100%"]
    assert rows["PyG APPNP(10, 0.1)"][2:5] == ["-", "-", "-"]
    assert {"PyG GatedGraphConv(3)", "PyG GCNConv"} <= set(rows)
    notes = [line for line in out.splitlines() if line.startswith("[")]
    assert len(notes) == 1 and notes[0].startswith("[cell='gru' (0.1)]")
    assert "did not reach tol=1e-05 within 30 steps" in notes[0] and \
        "back-propagation through the steps" in notes[0]


def test_chains_reports_converged_and_unrolled_shares(tmp_path) -> None:
    """The chains report counts its training calls: at the default (the
    contractive step) every call reaches tol and none is unrolled; with the
    GRU step and tol=0 (never converged) every call is back-propagated
    through its steps, and the saved memory shows it."""
    import json
    reports = {}
    for name, extra in (("default", []),
                        ("gru", ["--cell", "gru", "--tol", "0"])):
        path = tmp_path / f"{name}.json"
        out = _run("examples/chains.py", "--length", "10", "--max-epochs",
                   "4", "--seeds", "1", "--output-json", str(path), *extra)
        reports[name] = json.loads(path.read_text())
        assert "of training calls converged" in out
    default, gru = reports["default"], reports["gru"]
    assert default["forward_converged"] == 1.0 and default["unrolled"] == 0.0
    assert gru["forward_converged"] == 0.0 and gru["unrolled"] == 1.0
    assert [s["forward_converged"] for s in default["seeds"]] == [1.0]
    assert gru["saved_bytes"] > 10 * default["saved_bytes"]
