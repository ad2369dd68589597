"""bAbI with Lightning: task 4 learns on one fold in seconds, the example
runs as documented and reports what it says."""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

from pyg_rbp.lightning import BabiTrainConfig, train_babi
from tests.conftest import shared_data_root
from tests.data.test_babi import needs_babi

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@needs_babi
def test_task_4_reaches_100_percent_on_one_fold(tmp_path) -> None:
    result = train_babi(BabiTrainConfig(
        task=4, fold=[1], question_types=[1], hidden=8, max_epochs=40,
        data_root=str(shared_data_root()), accelerator="cpu",
        download=False, output_dir=str(tmp_path)))
    (run, ) = result["runs"]
    # the layer's defaults; 50 training stories; ~233 test questions
    assert run["test_acc"] == 1.0 and run["val_acc"] == 1.0
    assert run["test_examples"] == 233 and run["train_examples"] == 50
    assert run["forward_steps"] > 1 and run["backward_steps"] >= 1


@needs_babi
def test_example_prints_the_table_and_writes_json(tmp_path) -> None:
    out_json = tmp_path / "b.json"
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "examples/babi.py", "--task", "18", "--method",
         "bptt", "--folds", "2", "--max-epochs", "3", "--num-layers", "5",
         "--hidden", "4", "--data-root", str(shared_data_root()),
         "--output-json", str(out_json), "--output-dir", str(tmp_path),
         "--accelerator", "cpu", "--offline"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "| 2 | 1 |" in proc.stdout and "test acc (val-selected)" in \
        proc.stdout
    saved = json.loads(out_json.read_text())
    assert saved["task"] == 18 and saved["method"] == "bptt"
    assert 0.0 <= saved["test_acc"] <= 1.0
    (run, ) = saved["runs"]
    assert run["fold"] == 2 and len(run["history"]) == 3
    assert saved["forward_steps"] == 5  # --num-layers 5, bptt runs them all


def test_example_refuses_bad_options_with_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "examples/babi.py", "--task", "4", "--data-root",
         str(tmp_path), "--offline", "--max-epochs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bAbI task 4: 2 raw file(s) "
                                  "missing")
