"""The benchmarks as a package: one harness (options, where results go,
reuse with a message), no path edits, no example importing them."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from benchmarks import harness

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                    if p.stem != "__init__")


def test_new_runs_go_to_an_untracked_folder() -> None:
    a = harness.parser("doc", output="results", name="babi").parse_args([])
    assert Path(a.results) == ROOT / "outputs" / "benchmarks" / "babi"
    assert not a.rerun and a.threads == 1
    assert "/outputs/" in (ROOT / ".gitignore").read_text().split()
    a = harness.parser("doc").parse_args([])
    assert a.output_json is None  # only printed unless a file is named
    assert a.data_root == harness.DEFAULT_DATA_ROOT
    assert not hasattr(harness.parser("doc", data=False).parse_args([]),
                       "data_root")


def test_a_stored_result_is_reused_only_with_a_message(tmp_path,
                                                       capsys) -> None:
    path = tmp_path / "r.json"
    assert not harness.reuse(path)
    assert capsys.readouterr().out == ""
    path.write_text("{}")
    assert harness.reuse(path)
    assert f"reusing the stored result {path}" in capsys.readouterr().out
    assert not harness.reuse(path, rerun=True)
    path.write_text('[{"seed": 0}]')
    assert harness.stored_records(path) == [{"seed": 0}]
    assert harness.stored_records(path, rerun=True) == []
    assert harness.stored_records(tmp_path / "none.json") == []
    a = harness.parser("doc", output="records", name="scale").parse_args([])
    assert Path(a.output_json) == ROOT / "outputs" / "benchmarks" / \
        "scale.json" and not a.rerun
    assert harness.shown(ROOT / "benchmarks" / "results" / "x.json") == \
        "benchmarks/results/x.json"


def test_timed_returns_the_result_and_the_seconds() -> None:
    out, seconds = harness.timed(lambda: 7)
    assert out == 7 and 0 <= seconds < 1


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_imports_as_a_module_without_path_edits(
        name: str) -> None:
    text = (ROOT / "benchmarks" / f"{name}.py").read_text()
    assert "sys.path" not in text
    assert not re.search(r"^(import|from) (harness|baselines|run)\b", text,
                         re.M), "import the package's modules as benchmarks.X"
    module = importlib.import_module(f"benchmarks.{name}")
    if name not in ("harness", "baselines"):
        assert callable(getattr(module, "main")), name


def test_no_example_imports_the_benchmarks() -> None:
    for path in (ROOT / "examples").glob("*.py"):
        text = path.read_text()
        assert "benchmarks" not in re.findall(r"^\s*(?:from|import) (\w+)",
                                              text, re.M), path.name
        assert "sys.path" not in text, path.name


def test_the_docs_run_benchmarks_as_modules() -> None:
    """The docs' commands are ``python -m benchmarks.X`` (a script path
    would not find the package) and name modules that exist."""
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        text = path.read_text()
        assert not re.search(r"python benchmarks/\w+\.py", text), path.name
        for name in re.findall(r"python -m benchmarks\.([a-z_]+)", text):
            assert name in BENCHMARKS, (path.name, name)
