"""A program's options declared once, as dataclass fields, and its command
line built from them.

A field made with :func:`opt` carries its flag's help, choices and bounds;
:func:`build_parser` turns every field of an :class:`Options` subclass into
a flag (``num_layers`` -> ``--num-layers``, help from the field, bools as
``--x/--no-x``, list fields as ``nargs='+'``), so a flag means the same in
every script that shares the field and none can be forgotten. As
Lightning's CLI users expect, ``--config FILE.yaml`` reads options from a
YAML file (field names as keys; flags on the command line win) and
``--print-config`` prints the resolved options as YAML and exits (the
output is a valid ``--config`` file). :func:`run_main` is a script's
``main``: parse, check, run, and one ``error:`` line with exit status 2 for
bad options or missing data.

The training runs' shared options (:class:`pyg_rbp.lightning.RunConfig`)
and the examples that do not use Lightning (Hopfield, chains, the quick
start, hyperparameter optimisation) are declared this way.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from .._checks import check_choice, check_int, check_tol

__all__ = ["Options", "SweepOptions", "opt", "field_help", "build_parser",
           "parse_config", "print_config", "print_rows", "run_main",
           "Table", "number", "share", "spread"]


def opt(default: Any = dataclasses.MISSING, help: Optional[str] = None,
        choices: Optional[Sequence[Any]] = None,
        metavar: Optional[str] = None, flag: Optional[str] = None,
        negative: Optional[str] = None, factory: Any = None,
        minimum: Optional[int] = None,
        nonnegative: Optional[bool] = None) -> Any:
    """A config field with what its command-line flag needs.

    Args:
        default: The default value.
        help: The flag's help (the field's documentation).
        choices: The allowed values (checked by the parser and by
            :meth:`Options.check`).
        metavar: The flag's metavar.
        flag: The flag's name, when not ``--`` + the field name with dashes.
        negative: For a bool: a flag that sets it ``False`` (e.g.
            ``--offline`` for ``download``), kept beside ``--no-<name>``.
        factory: A default factory (for list defaults).
        minimum: For an int (or a list of ints): the smallest value
            allowed (checked by :meth:`Options.check`).
        nonnegative: For a float: it must be finite and ``>= 0`` (checked
            by :meth:`Options.check`).
    """
    meta = {k: v for k, v in dict(help=help, choices=choices,
                                  metavar=metavar, flag=flag,
                                  negative=negative, minimum=minimum,
                                  nonnegative=nonnegative).items()
            if v is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_help(cls: type, name: str) -> Dict[str, Any]:
    """The metadata of field ``name``, from ``cls`` or the nearest base that
    documents it (a subclass that only changes a default keeps the help)."""
    for klass in cls.__mro__:
        fields = getattr(klass, "__dataclass_fields__", {})
        if name in fields and fields[name].metadata:
            return dict(fields[name].metadata)
    return {}


def _values(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class Options:
    """Base of the option dataclasses: checks the bounds and choices that
    the fields declare. A subclass adds fields with :func:`opt` and may
    redeclare a base's field to change its default (dataclasses keep the
    field's place and :func:`field_help` finds the base's help)."""

    def check(self) -> None:
        """Refuse a value outside its field's ``minimum``, ``nonnegative``
        or ``choices`` (``None`` is always allowed: "unset")."""
        for f in dataclasses.fields(self):
            meta = field_help(type(self), f.name)
            value = getattr(self, f.name)
            if value is None:
                continue
            for v in _values(value):
                if "minimum" in meta:
                    check_int(f.name, v, meta["minimum"])
                if meta.get("nonnegative"):
                    check_tol(f.name, v)
            choices = meta.get("choices")
            if choices is None:
                continue
            if isinstance(value, str):
                check_choice(f.name, value, choices)
                continue
            for v in _values(value):
                if v not in choices:
                    raise ValueError(f"'{f.name}' must be one of "
                                     f"{tuple(choices)} (got {v!r})")

    def to_dict(self) -> Dict[str, Any]:
        """Every field, as plain values (a report's ``config``)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclass
class SweepOptions(Options):
    """The options of a script that sweeps methods x truncations x seeds
    and keeps each run (the Hopfield and hyperparameter experiments):
    threads, data, where the results, figures and finished runs go."""

    threads: int = opt(1, minimum=1, help="torch threads")
    data_root: Optional[str] = opt(
        None, help="data folder (MNIST/raw/ below it); default "
                   "$PYG_RBP_DATA_ROOT, then ~/.cache/pyg_rbp")
    output_json: Optional[str] = opt(None, metavar="PATH",
                                     help="write the results as JSON here")
    plot: Optional[str] = opt(None, metavar="DIR",
                              help="write the figures here")
    resume_dir: Optional[str] = opt(
        None, metavar="DIR",
        help="keep each run's record here; a run whose record exists is "
             "read back, not trained again")


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


def _add_bool(p: argparse.ArgumentParser, flag: str, default: Any,
              meta: Dict[str, Any], kw: Dict[str, Any]) -> None:
    p.add_argument(flag, default=default,
                   action=argparse.BooleanOptionalAction, **kw)
    if "negative" in meta:
        p.add_argument(meta["negative"], dest=kw["dest"],
                       action="store_false", default=argparse.SUPPRESS,
                       help=f"same as --no-{flag[2:]}")


def build_parser(cls: Type[Options], description: str,
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
            _add_bool(p, flag, default, meta, kw)
            continue
        kw["type"] = kind
        kw.update({k: meta[k] for k in ("choices", "metavar") if k in meta})
        if many:
            kw["nargs"] = "+"
            default = None if default is None else list(default)
        p.add_argument(flag, default=default, **kw)
    return p


def _read_yaml(path: str, cls: Type[Options]) -> Dict[str, Any]:
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


def parse_config(cls: Type[Options], argv: Optional[List[str]],
                 description: str, epilog: Optional[str] = None
                 ) -> Tuple[Options, bool]:
    """Parse ``argv`` into a ``cls``: defaults, then ``--config``, then the
    flags. Returns the config and whether ``--print-config`` was given."""
    p = build_parser(cls, description, epilog)
    first, _ = p.parse_known_args(argv)
    if first.config:
        p.set_defaults(**_read_yaml(first.config, cls))
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**values), bool(args.print_config)


def print_config(cfg: Options) -> None:
    """The options as YAML (a valid ``--config`` file)."""
    import yaml
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")


def number(value: Optional[float], spec: str = ".1f",
           scale: float = 1.0) -> str:
    """``format(scale * value, spec)``, or ``'-'`` where there is none."""
    return "-" if value is None else format(scale * value, spec)


def share(value: Optional[float]) -> str:
    """A share (0..1) as a whole percentage, ``'-'`` where none counts."""
    return "-" if value is None or value != value else f"{100 * value:.0f} %"


def spread(values: Sequence[float], spec: str = ".1f",
           scale: float = 1.0) -> str:
    """``mean ± std`` of ``values`` (the population standard deviation,
    0 for one value), each scaled and formatted; ``'-'`` for none."""
    if not values:
        return "-"
    xs = [scale * v for v in values]
    return (f"{format(statistics.mean(xs), spec)} ± "
            f"{format(statistics.pstdev(xs), spec)}")


class Table:
    """A Markdown table built a row at a time: ``Table('a', 'b')``, then
    ``add(x, y)`` per row (``None`` shows as ``'-'``); ``str()`` renders
    the header, the rule and the rows."""

    def __init__(self, *header: str) -> None:
        self.header = header
        self.rows: List[Tuple[str, ...]] = []

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"a row of {len(self.header)} cells "
                             f"({', '.join(self.header)}) was expected "
                             f"(got {len(cells)})")
        self.rows.append(tuple("-" if c is None else str(c) for c in cells))

    def __str__(self) -> str:
        rule = "|" + "---|" * len(self.header)
        rows = ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(["| " + " | ".join(self.header) + " |", rule, *rows])


def print_rows(rows: Sequence[Tuple[str, str]]) -> None:
    """A closing summary: a two-column Markdown-style table."""
    width = max(len(k) for k, _ in rows)
    value_width = max([14] + [len(v) for _, v in rows])
    print()
    for key, value in rows:
        print(f"| {key:<{width}} | {value:>{value_width}} |")


def run_main(cls: Type[Options], main: Callable[[Any], Optional[int]],
             argv: Optional[List[str]] = None, description: str = "",
             epilog: Optional[str] = None) -> int:
    """A script's ``main``: parse and check the options, then ``main(cfg)``.

    Bad options (:class:`ValueError`, :class:`TypeError`, a missing
    optional package) and missing data (:class:`FileNotFoundError`, e.g.
    :class:`pyg_rbp.data.DatasetNotFoundError`) end with one ``error:``
    line on stderr and exit status 2; ``--print-config`` prints the checked
    options and exits 0. Returns ``main``'s status (``None``: 0).
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
    try:
        return main(cfg) or 0
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
