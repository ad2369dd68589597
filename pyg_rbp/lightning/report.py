"""The end every training driver shares: write the JSON report and the
figures, from the global-zero process only."""
from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional

from ..utils.records import write_json


def write_report(result: Dict[str, Any], output_json: Optional[str],
                 plot_dir: Optional[str], plotter: str) -> None:
    """Write ``result`` to ``output_json`` and, with ``plot_dir``, call
    ``pyg_rbp.lightning.plots.<plotter>(result, plot_dir)`` (matplotlib is
    imported only then). Other ranks than global zero write nothing."""
    if not result.get("is_global_zero", True):
        return
    if output_json:
        write_json(output_json, result)
    if plot_dir:
        from . import plots
        getattr(plots, plotter)(result, plot_dir)


def pstd(values: List[float]) -> float:
    """The population standard deviation; 0 for a single value."""
    return statistics.pstdev(values) if len(values) > 1 else 0.0
