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

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@needs_data
def test_harness_smallest_form(tmp_path) -> None:
    out = tmp_path / "bench.json"
    args = [sys.executable, "-m", "benchmarks.run", "--graphs", "Cora",
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


def test_time_is_never_measured_under_the_mmap_threshold(monkeypatch) -> None:
    """Memory runs fix malloc's mmap threshold (peak RSS = live memory);
    timing runs get malloc as users have it, even if the caller set it."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    from benchmarks import run
    assert "MALLOC_MMAP_THRESHOLD_" not in run.worker_env(1, "time")
    assert run.worker_env(1, "memory")["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert run.worker_env(3, "time")["OMP_NUM_THREADS"] == "3"


def test_babi_harness_smallest_form(tmp_path) -> None:
    """Two contenders, one fold, two epochs: each writes its compact JSON
    and the table has their cells."""
    data = shared_data_root()
    if data is None or not (data / "bAbI" / "processed_1").is_dir():
        pytest.skip("../shared/data/bAbI not found")
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.babi", "--tasks", "18",
         "--contenders", "neumann", "pyg", "--fold", "1", "--max-epochs", "2",
         "--results", str(tmp_path), "--data-root", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert run.returncode == 0, run.stderr[-3000:]
    for contender in ("neumann", "pyg"):
        saved = json.loads((tmp_path / f"18_{contender}.json").read_text())
        assert len(saved["runs"]) == 1 and "history" not in saved["runs"][0]
        assert 0.0 <= saved["test_acc"] <= 1.0
    row = [line for line in run.stdout.splitlines()
           if line.startswith("| 18 | 50 |")]
    assert len(row) == 1 and row[0].count("(1 folds)") == 2
    # again: both results are reused, each with a message
    again = subprocess.run(
        run.args, cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing the stored result") == 2
    assert "--rerun runs it again" in again.stdout
    assert row[0] in again.stdout


def test_small_batches_smallest_form(tmp_path) -> None:
    """Both contenders train on the same MUTAG batches; the record holds
    their times, their ratio and our forward steps."""
    data = shared_data_root()
    if data is None or not (data / "TUDataset" / "MUTAG").is_dir():
        pytest.skip("../shared/data/TUDataset/MUTAG not found")
    out = tmp_path / "small.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.small_batches", "--dataset", "MUTAG",
         "--batch-size", "64", "--epochs", "1", "--warmup", "0",
         "--data-root", str(data), "--output-json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["ours_ms"] > 0 and rec["pyg_ms"] > 0
    assert rec["ratio"] == pytest.approx(rec["ours_ms"] / rec["pyg_ms"])
    assert 1 <= rec["ours_forward_steps"] <= 30  # the example's T
    assert "PyG GatedGraphConv (8 steps)" in run.stdout


def test_host_syncs_smallest_form(tmp_path) -> None:
    """The GPU check's host-read timing runs on the CPU too."""
    out = tmp_path / "syncs.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.host_syncs", "--nodes", "300",
         "--steps", "12", "--backward-steps", "3", "--reps", "1",
         "--tol", "1e-5", "--output-json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["check_every_1_s"] > 0 and rec["check_every_8_s"] > 0
    assert rec["speedup"] == pytest.approx(rec["check_every_1_s"]
                                           / rec["check_every_8_s"])


def test_graph_sweep_resumes_per_fold(tmp_path) -> None:
    """Each fold is its own run with its own JSON; an interrupted sweep
    reruns only the missing fold, and the joined report is the mean of
    the folds."""
    data = shared_data_root()
    if data is None or not (data / "TUDataset" / "MUTAG").is_dir():
        pytest.skip("../shared/data/TUDataset/MUTAG not found")
    args = [sys.executable, "-m", "benchmarks.graph_classification",
            "--datasets", "MUTAG", "--contenders", "neumann", "--folds", "2",
            "--max-epochs", "1", "--threads", "1", "--data-root", str(data),
            "--results", str(tmp_path), "--", "--num-layers", "4",
            "--hidden", "8"]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                           timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("running:") == 2
    joined = json.loads((tmp_path / "MUTAG_neumann.json").read_text())
    folds = [json.loads((tmp_path / "parts" / "MUTAG_neumann" /
                         f"fold{i}.json").read_text()) for i in range(2)]
    assert joined["folds_run"] == 2
    assert joined["test_acc"] == pytest.approx(
        sum(f["test_acc"] for f in folds) / 2)
    assert "stratified k-fold" in joined["protocol"]
    # interrupted after fold 0: only fold 1 runs again
    (tmp_path / "MUTAG_neumann.json").unlink()
    (tmp_path / "parts" / "MUTAG_neumann" / "fold1.json").unlink()
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                           timeout=900, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("running:") == 1
    assert "--fold 1" in again.stdout
    assert again.stdout.count("reusing the stored result") == 1  # fold 0


@needs_data
def test_methods_and_solvers_side_by_side(tmp_path) -> None:
    """Every method and solver on one Cora step against a float64
    reference: the default (hybrid) and BPTT give the gradient to float32's
    accuracy, BPTT at many times the memory; every solver gives the
    hybrid the same gradient."""
    out = tmp_path / "ms.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.methods_solvers", "--workloads",
         "cora", "--reps", "1", "--data-root", str(shared_data_root()),
         "--output-json", str(out)], cwd=ROOT, capture_output=True,
        text=True, timeout=900,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())["cora"]
    from pyg_rbp import METHODS, SOLVERS
    assert {f"method={m}" for m in METHODS} <= set(rows)
    assert len(rows) == len(METHODS) + len(SOLVERS) - 1
    hybrid = rows["method=hybrid"]
    assert hybrid["converged"] and hybrid["gradient_error"] < 1e-3
    assert rows["method=bptt"]["gradient_error"] < 1e-3
    assert rows["method=bptt"]["saved_mib"] > 20 * hybrid["saved_mib"]
    for s in SOLVERS:
        row = rows.get(f"hybrid, solver={s}", hybrid)
        assert row["gradient_error"] < 1e-3 and row["converged"]


def test_versions_side_by_side_of_a_commit_with_itself(tmp_path) -> None:
    """The speed check against an earlier commit, here HEAD against the
    committed tree: both versions load in one process and, being the same
    code, do the same work on every step."""
    data = shared_data_root()
    if data is None or not (data / "TUDataset" / "MUTAG").is_dir():
        pytest.skip("../shared/data/TUDataset/MUTAG not found")
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "pyg_rbp"],
                      cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout, or pyg_rbp/ differs from HEAD")
    out = tmp_path / "versions.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.versions", "--base", "HEAD",
         "--workloads", "mutag", "--reps", "4", "--data-root", str(data),
         "--output-json", str(out)], cwd=ROOT, capture_output=True,
        text=True, timeout=900,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]
    rec = json.loads(out.read_text())["mutag"]
    assert rec["same_work_share"] == 1.0
    assert rec["steps"]["base"] == rec["steps"]["this"]
    assert rec["ratio"] > 0
