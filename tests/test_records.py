"""Result files record paths relative to where the run started."""
from __future__ import annotations

import json
import os

from pyg_rbp.utils import portable, write_json


def test_paths_become_relative_and_the_rest_stays(tmp_path) -> None:
    repo = tmp_path / "repo"
    record = {"config": {"data_root": str(tmp_path / "shared" / "data"),
                         "output_json": str(repo / "results" / "a.json"),
                         "lr": 0.01, "name": "/not/a/path/key"},
              "runs": [{"best_checkpoint": str(repo / "out" / "b.ckpt"),
                        "test_acc": 0.8}],
              "plot": "figures"}
    out = portable(record, repo)
    assert out["config"]["data_root"] == os.path.join("..", "shared", "data")
    assert out["config"]["output_json"] == os.path.join("results", "a.json")
    assert out["config"]["name"] == "/not/a/path/key"  # not a path key
    assert out["runs"][0]["best_checkpoint"] == os.path.join("out", "b.ckpt")
    assert out["plot"] == "figures" and out["runs"][0]["test_acc"] == 0.8
    assert record["config"]["data_root"].startswith(str(tmp_path))  # copy


def test_write_json_writes_the_portable_record(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_json(tmp_path / "deep" / "r.json",
                      {"output_dir": str(tmp_path / "outputs"),
                       "where": tmp_path})
    got = json.loads(path.read_text())
    assert got == {"output_dir": "outputs", "where": str(tmp_path)}


def test_committed_results_record_no_absolute_paths() -> None:
    """Every result file in the repository: no path under a path key is
    absolute (they are read relative to the repository)."""
    from pathlib import Path
    from pyg_rbp.utils.records import PATH_KEYS
    root = Path(__file__).resolve().parents[1]
    bad = []

    def walk(value, where):
        if isinstance(value, dict):
            for k, v in value.items():
                if k in PATH_KEYS and isinstance(v, str) and os.path.isabs(v):
                    bad.append(f"{where}: {k}")
                walk(v, where)
        elif isinstance(value, list):
            for v in value:
                walk(v, where)
    for path in list((root / "benchmarks" / "results").rglob("*.json")):
        walk(json.loads(path.read_text()), path.relative_to(root))
    assert not bad, bad[:10]
