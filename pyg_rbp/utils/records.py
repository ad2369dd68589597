"""Result files that travel: paths recorded relative to where the run was
started (the repository root, for the documented commands), one writer for
every JSON record."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

#: Keys whose string values are paths of the machine that made the record.
PATH_KEYS = ("data_root", "output_json", "output_dir", "plot", "output",
             "resume", "results", "best_checkpoint")


def portable(record: Any, base: Optional[Union[str, Path]] = None) -> Any:
    """``record`` (dicts and lists, nested) with every absolute path under
    a key of :data:`PATH_KEYS` made relative to ``base`` (default: the
    working directory). Other values are returned as they are."""
    start = os.fspath(base) if base is not None else os.getcwd()
    if isinstance(record, dict):
        out = {}
        for key, value in record.items():
            if key in PATH_KEYS and isinstance(value, (str, Path)) and \
                    os.path.isabs(value):
                out[key] = os.path.relpath(value, start)
            else:
                out[key] = portable(value, start)
        return out
    if isinstance(record, (list, tuple)):
        return [portable(v, start) for v in record]
    return record


def write_json(path: Union[str, Path], record: Any) -> Path:
    """Write :func:`portable` ``(record)`` as indented JSON to ``path``
    (its folders made as needed); values JSON does not know are written as
    their ``str``. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(record), indent=1, default=str))
    return path
