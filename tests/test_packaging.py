"""What each install path imports is what pyproject.toml declares for it.

PyG imports some packages only when a dataset is first read (scipy for
Planetoid's pickled sparse matrices), so `pip install` succeeds and the first
run fails. Here each code path runs in a fresh interpreter, and every
third-party module it ends up importing must belong to a distribution that the
package's requirements for that path (with their own requirements) bring in.
The test environment has every extra installed, so a package that is only
there by accident (pulled in by another extra) is caught, not hidden.
"""
from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable, Set

import pytest

from tests.conftest import needs_data, shared_data_root

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
from readme_command import command  # noqa: E402

# the slow tier: whole trainings, subprocesses (PYG_RBP_FULL_TESTS=1)
pytestmark = pytest.mark.slow

#: Modules that come with Python or with every venv (pip, setuptools).
_ALWAYS = {"pip", "setuptools", "_distutils_hack", "pkg_resources"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(dist: str, extras: Iterable[str] = ()) -> Set[str]:
    """Names of the distributions ``dist[extras]`` requires directly on this
    platform (environment markers evaluated)."""
    from packaging.requirements import Requirement
    names = set()
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            names.add(_norm(req.name))
            names |= {f"{_norm(req.name)}[{e}]" for e in req.extras}
    return names


def _closure(extras: Iterable[str]) -> Set[str]:
    """Every distribution ``pyg-rbp[extras]`` brings in, transitively."""
    todo = [(_norm("pyg-rbp"), tuple(extras))]
    seen: Set[str] = set()
    while todo:
        dist, ex = todo.pop()
        key = dist + str(sorted(ex))
        if key in seen:
            continue
        seen.add(key)
        try:
            reqs = _requirement_names(dist, ex)
        except metadata.PackageNotFoundError:
            continue
        for r in reqs:
            name, _, extra = r.partition("[")
            todo.append((name, (extra.rstrip("]"), ) if extra else ()))
    return {k.split("[")[0] for k in seen}


# ``None`` in sys.modules makes ``import m`` raise ModuleNotFoundError and
# ``importlib.util.find_spec(m)`` return None; hiding the distribution from
# importlib.metadata answers the packages (Lightning, torchmetrics) that ask
# for a version before importing. Together: "not installed".
_BLOCKER = """
import re, sys
import importlib.metadata as _md
for _name in BLOCKED:
    sys.modules[_name] = None
def _n(name):
    return re.sub(r"[-_.]+", "-", name or "").lower()
_from_name = _md.Distribution.from_name.__func__
def _blocked_from_name(cls, name):
    if _n(name) in BLOCKED_DISTS:
        raise _md.PackageNotFoundError(name)
    return _from_name(cls, name)
_md.Distribution.from_name = classmethod(_blocked_from_name)
_distributions = _md.distributions
_md.distributions = lambda **kw: (
    d for d in _distributions(**kw)
    if _n(d.metadata["Name"]) not in BLOCKED_DISTS)
"""


def _run_with_only(code: str, extras: Iterable[str] = ()) -> None:
    """Run ``code`` in a fresh interpreter in which every installed
    distribution outside ``pyg-rbp[extras]``'s requirements cannot be
    imported, as in a fresh venv with only that install; fail if it fails.

    Optional imports (``try: import pandas``) then fall back as they would
    there, and a needed but undeclared one raises ModuleNotFoundError.
    """
    allowed = _closure(extras) | {"pyg-rbp"}
    installed = {_norm(d.metadata["Name"]) for d in metadata.distributions()}
    blocked_dists = sorted(installed - allowed - _ALWAYS)
    blocked = sorted(
        mod for mod, dists in metadata.packages_distributions().items()
        if mod not in _ALWAYS and not mod.startswith("_")
        and not {_norm(d) for d in dists} & allowed)
    prefix = (f"BLOCKED = set({blocked!r})\n"
              f"BLOCKED_DISTS = set({blocked_dists!r})\n" + _BLOCKER)
    out = subprocess.run([sys.executable, "-c", prefix + code], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def test_closure_reads_the_installed_metadata() -> None:
    base = _closure(())
    assert {"torch", "torch-geometric", "numpy", "scipy"} <= base
    assert "pytorch-lightning" not in base  # an extra, not the base
    assert "pytorch-lightning" in _closure(("lightning", ))


@needs_data
def test_base_install_covers_the_dataset_loaders(tmp_path) -> None:
    root = shared_data_root()
    code = f"""
import os
os.environ["XDG_CACHE_HOME"] = {str(tmp_path)!r}
from pyg_rbp.data import chains, load_planetoid, load_tu_dataset
load_planetoid("Cora", {str(root)!r}, download=False)
load_tu_dataset("MUTAG", {str(root)!r}, download=False)
chains(length=5)
from examples.quickstart import make_data
make_data(0)
from pyg_rbp.data.mnist import load_mnist
from pyg_rbp.hyperopt import HyperoptConfig, meta_train
images, labels = load_mnist({str(root)!r})
meta_train(HyperoptConfig(meta_steps=1, inner_steps=2, truncation=1,
                          batch_size=50, layers=(784, 8, 10)),
           images[:300], labels[:300], train=200)
"""
    _run_with_only(code)


def test_lightning_extra_covers_training_and_plots(tmp_path) -> None:
    code = """
import pyg_rbp.lightning
from pyg_rbp.lightning.plots import check_plotting
check_plotting()
"""
    _run_with_only(code, ("lightning", ))


def test_missing_matplotlib_is_reported_before_training(monkeypatch) -> None:
    from pyg_rbp.lightning import TrainConfig
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(ModuleNotFoundError, match=r"pyg-rbp\[lightning\]"):
        TrainConfig(plot="plots").check()


def test_ci_runs_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    main, test = command(readme, "main"), command(readme, "test")
    assert "pip install torch==2.13.0" in main
    assert 'pip install -e ".[lightning]"' in main
    assert main.endswith("python examples/citation.py --method neumann")
    assert test.endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_command.py test" in ci and ".ci/main_job" in ci
