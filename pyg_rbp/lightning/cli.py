"""The examples' command lines, generated from the config dataclasses.

Every field of a :class:`~pyg_rbp.lightning.config.RunConfig` subclass is a
flag (``num_layers`` -> ``--num-layers``, help from the field's
documentation, bools as ``--x/--no-x``), so a flag means the same thing in
every example and none can be forgotten. As Lightning's CLI users expect,
``--config FILE.yaml`` reads options from a YAML file (field names as keys;
flags on the command line win) and ``--print-config`` prints the resolved
options as YAML and exits (the output is a valid ``--config`` file).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from ..data import DatasetNotFoundError
from ..implicit import ConvergenceWarning
from .config import PRECISIONS, RunConfig, field_help

__all__ = ["build_parser", "parse_config", "run_example", "print_rows",
           "PRECISIONS"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(hint: Any) -> Tuple[Any, bool]:
    """``(element type, is a sequence)`` of a field's type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    origin = typing.get_origin(hint)
    if origin in (list, tuple, Sequence, typing.Sequence) or \
            origin is not None and issubclass(origin, Sequence):
        return typing.get_args(hint)[0], True
    return hint, False


def build_parser(cls: Type[RunConfig], description: str,
                 epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one flag per field of ``cls`` (defaults
    from the dataclass), plus ``--config`` and ``--print-config``."""
    p = argparse.ArgumentParser(
        description=description, epilog=epilog,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml", default=None,
                   help="read options from this YAML file (keys: the "
                        "option names, with _ or -); flags given here win")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved options as YAML and exit")
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        meta = field_help(cls, f.name)
        flag = meta.get("flag", _flag(f.name))
        default = getattr(defaults, f.name)
        kw: Dict[str, Any] = dict(dest=f.name, help=meta.get("help"))
        kind, many = _base_type(hints[f.name])
        if kind is bool:
            p.add_argument(flag, default=default,
                           action=argparse.BooleanOptionalAction, **kw)
            if "negative" in meta:
                p.add_argument(meta["negative"], dest=f.name,
                               action="store_false",
                               default=argparse.SUPPRESS,
                               help=f"same as --no-{flag[2:]}")
            continue
        kw["type"] = kind
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        if many:
            kw["nargs"] = "+"
            default = None if default is None else list(default)
        p.add_argument(flag, default=default, **kw)
    return p


def _read_yaml(path: str, cls: Type[RunConfig]) -> Dict[str, Any]:
    import yaml
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--config: no file at {path}")
    loaded = yaml.safe_load(file.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"--config {path}: expected a mapping of option "
                         f"names to values (got {type(loaded).__name__})")
    names = {f.name for f in dataclasses.fields(cls)}
    out = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    unknown = sorted(set(out) - names)
    if unknown:
        raise ValueError(f"--config {path}: unknown option(s) {unknown}; "
                         f"known: {sorted(names)}")
    return out


def parse_config(cls: Type[RunConfig], argv: Optional[List[str]],
                 description: str, epilog: Optional[str] = None
                 ) -> Tuple[RunConfig, bool]:
    """Parse ``argv`` into a ``cls``: defaults, then ``--config``, then the
    flags. Returns the config and whether ``--print-config`` was given."""
    p = build_parser(cls, description, epilog)
    first, _ = p.parse_known_args(argv)
    if first.config:
        p.set_defaults(**_read_yaml(first.config, cls))
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**values), bool(args.print_config)


def print_config(cfg: RunConfig) -> None:
    """The options as YAML (a valid ``--config`` file)."""
    import yaml
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")


def print_rows(rows: Sequence[Tuple[str, str]]) -> None:
    """The examples' closing summary: a two-column Markdown-style table."""
    width = max(len(k) for k, _ in rows)
    value_width = max([14] + [len(v) for _, v in rows])
    print()
    for key, value in rows:
        print(f"| {key:<{width}} | {value:>{value_width}} |")


def run_example(cls: Type[RunConfig],
                train: Callable[[Any], Dict[str, Any]],
                report: Callable[[Dict[str, Any]], None],
                argv: Optional[List[str]] = None,
                description: str = "", epilog: Optional[str] = None) -> int:
    """An example's ``main``: parse and check the options, train, report.

    Bad options and missing data end with one ``error:`` line on stderr and
    exit status 2; ``--print-config`` prints the checked options and exits
    0; the report is printed by the global-zero process only.
    """
    try:
        cfg, show = parse_config(cls, argv, description, epilog)
        cfg.check()
    except (ValueError, TypeError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if show:
        print_config(cfg)
        return 0
    # One warning per place is plenty in a training loop.
    warnings.simplefilter("once", ConvergenceWarning)
    try:
        result = train(cfg)
    except DatasetNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result["is_global_zero"]:
        report(result)
    return 0
