"""The end every training driver shares: write the JSON report and the
figures, from the global-zero process only."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional


def write_report(result: Dict[str, Any], output_json: Optional[str],
                 plot_dir: Optional[str], plotter: str) -> None:
    """Write ``result`` to ``output_json`` and, with ``plot_dir``, call
    ``pyg_rbp.lightning.plots.<plotter>(result, plot_dir)`` (matplotlib is
    imported only then). Other ranks than global zero write nothing."""
    if not result.get("is_global_zero", True):
        return
    if output_json:
        path = Path(output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=str))
    if plot_dir:
        from . import plots
        getattr(plots, plotter)(result, plot_dir)


def pstd(values: List[float]) -> float:
    """The population standard deviation; 0 for a single value."""
    return statistics.pstdev(values) if len(values) > 1 else 0.0
