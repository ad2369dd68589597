"""The architecture, read from the imports: the engine knows nothing about
graphs, layers use the engine, models use layers, Lightning uses models;
no import runs from a lower layer to a higher one."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "pyg_rbp"

#: Each subpackage and the ones it may import (``_checks`` / ``utils`` are
#: leaves every level may use).
ALLOWED: Dict[str, set] = {
    "implicit": {"utils"},
    "data": set(),
    "utils": set(),
    "nn": {"implicit"},
    "models": {"implicit", "nn"},
    "lightning": {"implicit", "nn", "models", "data", "utils"},
    # the third experiment uses the engine, nothing of the graph layers
    "hyperopt": {"implicit", "data", "utils"},
}


def _internal_imports(path: Path, root: Path = PACKAGE
                      ) -> List[Tuple[int, str]]:
    """``(line, top-level subpackage)`` of every import of pyg_rbp code."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(root).parts
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "pyg_rbp":
                    continue
                target = parts[1:]
            else:
                base = list(rel[:-1])[:len(rel) - node.level]
                target = base + (node.module or "").split(".")
            names = [a.name for a in node.names]
            top = target[0] if target and target[0] else names[0]
            out.append((node.lineno, top))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("pyg_rbp."):
                    out.append((node.lineno, a.name.split(".")[1]))
    return out


def test_no_import_runs_up_the_layers() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).parts
        if len(rel) < 2:
            continue  # pyg_rbp/__init__.py and the leaf _checks.py
        level = rel[0]
        for line, top in _internal_imports(path):
            if top in ("_checks", level) or top in ALLOWED.get(level, ()):
                continue
            if top in ALLOWED:
                bad.append(f"{'/'.join(rel)}:{line} imports {top}")
    assert not bad, bad


def test_the_check_sees_an_upward_import(tmp_path) -> None:
    """The parser behind the check finds relative and absolute imports."""
    bad = tmp_path / "implicit" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("from ..models import RBPModel\n"
                   "from . import adjoint\n"
                   "from pyg_rbp.lightning import make_trainer\n"
                   "import pyg_rbp.nn.adjacency\n")
    assert _internal_imports(bad, tmp_path) == [
        (1, "models"), (2, "implicit"), (3, "lightning"), (4, "nn")]
