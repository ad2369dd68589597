"""README's Python blocks run as written, in order, as one session."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from pyg_rbp import ConvergenceWarning

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    with warnings.catch_warnings():
        # the quick start converges: it must not warn
        warnings.simplefilter("error", ConvergenceWarning)
        exec(compile(blocks[0], "README block 1", "exec"), namespace)
    assert namespace["conv"].stats.backward_method == "anderson"
    for i, block in enumerate(blocks[1:], start=2):
        exec(compile(block, f"README block {i}", "exec"), namespace)
    assert namespace["W"].grad is not None
