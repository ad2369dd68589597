"""The options every training run shares, in one dataclass.

:class:`RunConfig` holds the fields that node classification
(:class:`~pyg_rbp.lightning.TrainConfig`), graph classification
(:class:`~pyg_rbp.lightning.GraphTrainConfig`) and bAbI
(:class:`~pyg_rbp.lightning.BabiTrainConfig`) have in common, their checks
and their help text. A subclass adds its own fields and may redeclare a
shared field to change its default. The examples' command lines are built
from these fields (:mod:`pyg_rbp.utils.cli`; :func:`run_example`): every
field is a flag (``num_layers`` -> ``--num-layers``), ``--config
FILE.yaml`` reads options from a YAML file and ``--print-config`` prints
them as one.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Type

from ..implicit import METHODS, SOLVERS, ConvergenceWarning
from ..nn.gated_graph_conv import CELLS
from ..utils.cli import (Options, build_parser, field_help, opt,
                         parse_config, print_config, print_rows, run_main)

__all__ = ["RunConfig", "run_example", "default_jacobian_weight", "opt",
           "field_help", "build_parser", "parse_config", "print_config",
           "print_rows", "PRECISIONS", "LAYER_FIELDS"]

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


@dataclass
class RunConfig(Options):
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
    tol: Optional[float] = opt(1e-5, nonnegative=True,
                               help="forward tolerance: stop when "
                                    "||F(h) - h|| <= tol ||h||")
    solver: Optional[str] = opt(None, choices=SOLVERS,
                                help="forward solver (unset: the layer's: "
                                     "anderson for the contractive step, "
                                     "fixed_point for --cell gru)")
    backward_tol: Optional[float] = opt(
        None, help="stop the adjoint solve at this relative residual "
                   "(unset: the layer's: --tol with the contractive step, "
                   "1e-6 with --cell gru)", nonnegative=True)
    hidden: int = opt(64, minimum=1, help="hidden channels C")
    max_epochs: int = opt(200, minimum=1, help="training epochs")
    seed: int = opt(0, help="random seed")
    lr: float = opt(0.01, nonnegative=True, help="Adam's learning rate")
    weight_decay: float = opt(5e-4, nonnegative=True,
                              help="Adam's weight decay")
    jacobian_weight: Optional[float] = opt(
        None, help="weight of the spectral penalty (an estimate of "
                   "rho(J)^2) that keeps the GRU step contractive (0: off; "
                   "unset: 1 with --cell gru, 0 with the contractive step, "
                   "which needs none)", nonnegative=True)
    gradient_clip: Optional[float] = opt(
        None, help="clip the gradient norm at this value (0 or unset: no "
                   "clip)", nonnegative=True)
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
        super().check()
        if self.carry is not None and not 0 < self.carry < 1:
            raise ValueError(f"'carry' must be in (0, 1) (got {self.carry})")
        if self.plot:
            from .plots import check_plotting
            check_plotting()

    def layer_options(self) -> Dict[str, Any]:
        """The options of :class:`pyg_rbp.RBPGatedGraphConv` this run sets
        (those left ``None`` keep the layer's defaults)."""
        return {name: getattr(self, name) for name in LAYER_FIELDS
                if getattr(self, name) is not None}


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
    def main(cfg: RunConfig) -> None:
        # One warning per place is plenty in a training loop.
        warnings.simplefilter("once", ConvergenceWarning)
        result = train(cfg)
        if result["is_global_zero"]:
            report(result)

    return run_main(cls, main, argv, description, epilog)
