"""The options every training run shares, in one dataclass.

:class:`RunConfig` holds the fields that node classification
(:class:`~pyg_rbp.lightning.TrainConfig`), graph classification
(:class:`~pyg_rbp.lightning.GraphTrainConfig`) and bAbI
(:class:`~pyg_rbp.lightning.BabiTrainConfig`) have in common, their checks
and their help text. A subclass adds its own fields and may redeclare a
shared field to change its default (dataclasses keep the field's place and
:func:`field_help` finds the base's help). The examples' parsers are built
from these fields (:func:`build_parser`, :func:`run_example`): every field
is a flag (``num_layers`` -> ``--num-layers``), ``--config FILE.yaml`` reads
options from a YAML file and ``--print-config`` prints them as one.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from .._checks import check_choice, check_int, check_tol
from ..data import DatasetNotFoundError
from ..implicit import METHODS, SOLVERS, ConvergenceWarning
from ..nn.gated_graph_conv import CELLS

#: Lightning's ``Trainer(precision=...)`` values the runs accept.
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "64")

#: The fields that configure :class:`pyg_rbp.RBPGatedGraphConv`; ``None``
#: keeps the layer's own default.
LAYER_FIELDS = ("method", "cell", "carry", "num_layers", "tol", "solver",
                "backward_steps", "backward_tol")


def default_jacobian_weight(cell: Optional[str]) -> float:
    """The Jacobian penalty's weight where none is given: 1 for the GRU
    step, which may stop contracting; 0 for the contractive step (the
    layer's default), which contracts for every weight value."""
    return 1.0 if cell == "gru" else 0.0


def opt(default: Any = dataclasses.MISSING, help: Optional[str] = None,
        choices: Optional[Sequence[Any]] = None,
        metavar: Optional[str] = None, flag: Optional[str] = None,
        negative: Optional[str] = None, factory: Any = None,
        minimum: Optional[int] = None) -> Any:
    """A config field with what its command-line flag needs.

    Args:
        default: The default value.
        help: The flag's help (the field's documentation).
        choices: The allowed values (checked by the parser and by
            :meth:`RunConfig.check`).
        metavar: The flag's metavar.
        flag: The flag's name, when not ``--`` + the field name with dashes.
        negative: For a bool: a flag that sets it ``False`` (e.g.
            ``--offline`` for ``download``), kept beside ``--no-<name>``.
        factory: A default factory (for list defaults).
        minimum: For an int (or a list of ints): the smallest value
            allowed (checked by :meth:`RunConfig.check`).
    """
    meta = {k: v for k, v in dict(help=help, choices=choices,
                                  metavar=metavar, flag=flag,
                                  negative=negative,
                                  minimum=minimum).items() if v is not None}
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


@dataclass
class RunConfig:
    """The options every run shares; see the subclasses for the rest."""

    method: str = opt("hybrid", choices=METHODS,
                      help="gradient method: hybrid (implicit where the "
                           "forward converged, BPTT where not), neumann / "
                           "cg / fixed_point (RBP), bptt, tbptt")
    cell: Optional[str] = opt(
        None, choices=CELLS,
        help="the layer's step: contractive (a contraction for every weight "
             "value; the layer's default) or gru (PyG's GRU step, the "
             "default before 0.2)")
    carry: Optional[float] = opt(
        None, help="the contractive step's carry gate, APPNP's 1 - alpha "
                   "(unset: the layer's 0.9)")
    num_layers: Optional[int] = opt(100, minimum=1,
                                    help="most propagation steps T (the "
                                         "propagation stops at --tol)")
    backward_steps: Optional[int] = opt(
        10, minimum=1, help="K: Neumann terms / CG or fixed-point "
                            "iterations / TBPTT truncation")
    tol: Optional[float] = opt(1e-5, help="forward tolerance: stop when "
                                          "||F(h) - h|| <= tol ||h||")
    solver: Optional[str] = opt(None, choices=SOLVERS,
                                help="forward solver (unset: the layer's: "
                                     "anderson for the contractive step, "
                                     "fixed_point for --cell gru)")
    backward_tol: Optional[float] = opt(
        None, help="stop the adjoint solve at this relative residual "
                   "(unset: the layer's: --tol with the contractive step, "
                   "1e-6 with --cell gru)")
    hidden: int = opt(64, minimum=1, help="hidden channels C")
    max_epochs: int = opt(200, minimum=1, help="training epochs")
    seed: int = opt(0, help="random seed")
    lr: float = opt(0.01, help="Adam's learning rate")
    weight_decay: float = opt(5e-4, help="Adam's weight decay")
    jacobian_weight: Optional[float] = opt(
        None, help="weight of the spectral penalty (an estimate of "
                   "rho(J)^2) that keeps the GRU step contractive (0: off; "
                   "unset: 1 with --cell gru, 0 with the contractive step, "
                   "which needs none)")
    gradient_clip: Optional[float] = opt(
        None, help="clip the gradient norm at this value (0 or unset: no "
                   "clip)")
    accelerator: str = opt("auto", help="cpu, gpu or auto")
    devices: int = opt(1, minimum=1, help="devices (processes) to train on")
    strategy: str = opt("auto", help="auto, ddp, ddp_spawn, ...")
    precision: Optional[str] = opt(
        None, choices=PRECISIONS,
        help="Lightning's Trainer precision (unset: 32-true)")
    data_root: Optional[str] = opt(
        None, help="data folder (Planetoid/, TUDataset/, ogb/, bAbI/ below "
                   "it); default $PYG_RBP_DATA_ROOT, then ~/.cache/pyg_rbp")
    download: bool = opt(True, negative="--offline",
                         help="download missing files (--offline: never)")
    plot: Optional[str] = opt(None, metavar="DIR",
                              help="write PNG figures of the run here")
    output_json: Optional[str] = opt(None, metavar="PATH",
                                     help="write the report as JSON here")
    output_dir: str = opt("outputs", help="checkpoints and CSV logs")
    progress_bar: bool = opt(True, help="show Lightning's progress bar")

    def check(self) -> None:
        """Refuse bad or incompatible options before anything starts: the
        one place the shared options are checked (the parser and the
        layers trust a checked config)."""
        for f in dataclasses.fields(self):
            meta = field_help(type(self), f.name)
            value = getattr(self, f.name)
            if "minimum" in meta and value is not None:
                for v in value if isinstance(value, (list, tuple)) \
                        else [value]:
                    check_int(f.name, v, meta["minimum"])
            choices = meta.get("choices")
            if choices is None or value is None:
                continue
            if isinstance(value, str):
                check_choice(f.name, value, choices)
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if v not in choices:
                    raise ValueError(f"'{f.name}' must be one of "
                                     f"{tuple(choices)} (got {v!r})")
        if self.carry is not None and not 0 < self.carry < 1:
            raise ValueError(f"'carry' must be in (0, 1) (got {self.carry})")
        for name in ("tol", "backward_tol", "lr", "weight_decay",
                     "jacobian_weight"):
            if getattr(self, name) is not None:
                check_tol(name, getattr(self, name))
        if self.gradient_clip is not None:
            check_tol("gradient_clip", self.gradient_clip)
        if self.plot:
            from .plots import check_plotting
            check_plotting()

    def layer_options(self) -> Dict[str, Any]:
        """The options of :class:`pyg_rbp.RBPGatedGraphConv` this run sets
        (those left ``None`` keep the layer's defaults)."""
        return {name: getattr(self, name) for name in LAYER_FIELDS
                if getattr(self, name) is not None}

    def to_dict(self) -> Dict[str, Any]:
        """Every field, as plain values (the report's ``config``)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


# -- the command line --------------------------------------------------------
#
# Every field of a RunConfig subclass is a flag (``num_layers`` ->
# ``--num-layers``, help from the field's documentation, bools as
# ``--x/--no-x``), so a flag means the same thing in every example and none
# can be forgotten. As Lightning's CLI users expect, ``--config FILE.yaml``
# reads options from a YAML file (field names as keys; flags on the command
# line win) and ``--print-config`` prints the resolved options as YAML and
# exits (the output is a valid ``--config`` file).

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
