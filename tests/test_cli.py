"""pyg_rbp.utils.cli: options declared once as dataclass fields, the
command line built from them, and the reports' tables."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

from pyg_rbp.utils.cli import (SweepOptions, Table, build_parser,
                               number, opt, parse_config, run_main, share,
                               spread)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Toy(SweepOptions):
    """A sweep's options."""

    method: List[str] = opt(factory=lambda: ["neumann"],
                            choices=("neumann", "cg"), help="methods")
    steps: int = opt(5, minimum=1, help="steps")
    lr: float = opt(0.1, nonnegative=True, help="the step size")
    name: Optional[str] = opt(None, choices=("a", "b"), help="a name")
    quick: bool = opt(False, help="quick")
    threads: int = opt(2)  # a base field with another default


def test_every_field_is_a_flag_and_defaults_come_from_the_dataclass() -> None:
    cfg, show = parse_config(Toy, [], "toy")
    assert cfg == Toy() and not show
    assert cfg.threads == 2 and cfg.method == ["neumann"]
    cfg, _ = parse_config(Toy, ["--method", "cg", "neumann", "--steps", "3",
                                "--quick", "--data-root", "d",
                                "--resume-dir", "r", "--threads", "4"], "toy")
    assert (cfg.method, cfg.steps, cfg.quick, cfg.data_root, cfg.resume_dir,
            cfg.threads) == (["cg", "neumann"], 3, True, "d", "r", 4)
    text = build_parser(Toy, "toy").format_help()
    for flag in ("--method", "--steps", "--lr", "--name", "--quick",
                 "--no-quick", "--threads", "--data-root", "--output-json",
                 "--plot", "--resume-dir", "--config", "--print-config"):
        assert flag in text
    assert "torch threads" in text  # the redeclared field keeps its help


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(steps=0), ValueError, "'steps' must be >= 1 \\(got 0\\)"),
    (dict(steps=1.5), TypeError, "'steps' must be an int"),
    (dict(threads=0), ValueError, "'threads' must be >= 1"),  # base's bound
    (dict(lr=-1.0), ValueError, "'lr' must be a finite number >= 0"),
    (dict(lr=float("nan")), ValueError, "'lr' must be a finite number"),
    (dict(name="c"), ValueError, "'name' must be one of 'a', 'b'"),
    (dict(method=["neumann", "gmres"]), ValueError,
     "'method' must be one of \\('neumann', 'cg'\\) \\(got 'gmres'\\)"),
])
def test_check_refuses_each_bad_value_with_its_name(kwargs, error,
                                                    match) -> None:
    with pytest.raises(error, match=match):
        Toy(**kwargs).check()
    Toy(name=None).check()  # None is "unset"


def test_run_main_errors_print_config_and_status(tmp_path, capsys) -> None:
    seen = []
    assert run_main(Toy, seen.append, ["--steps", "2"], "toy") == 0
    assert seen == [Toy(steps=2)]
    assert run_main(Toy, seen.append, ["--steps", "0"], "toy") == 2
    assert "error: 'steps' must be >= 1" in capsys.readouterr().err
    assert run_main(Toy, seen.append, ["--print-config"], "toy") == 0
    assert "steps: 5" in capsys.readouterr().out and len(seen) == 1

    def missing(cfg: Toy) -> int:
        raise FileNotFoundError(f"no data in {cfg.data_root}")
    assert run_main(Toy, missing, ["--data-root", "nowhere"], "toy") == 2
    assert "error: no data in nowhere" in capsys.readouterr().err
    assert run_main(Toy, lambda cfg: 3, [], "toy") == 3
    config = tmp_path / "c.yaml"
    config.write_text("steps: 7\nlr: 0.5\n")
    assert run_main(Toy, seen.append, ["--config", str(config), "--lr",
                                       "0.25"], "toy") == 0
    assert (seen[-1].steps, seen[-1].lr) == (7, 0.25)  # flags win


def test_table_and_cells() -> None:
    t = Table("a", "b")
    t.add(1, None)
    t.add("x", 2.5)
    assert str(t) == "| a | b |\n|---|---|\n| 1 | - |\n| x | 2.5 |"
    with pytest.raises(ValueError, match="a row of 2 cells"):
        t.add(1, 2, 3)
    assert number(None) == "-" and number(0.123, scale=100) == "12.3"
    assert number(3.14159, ".2f") == "3.14"
    assert share(None) == "-" and share(float("nan")) == "-"
    assert share(0.5) == "50 %"
    assert spread([]) == "-" and spread([0.5]) == "0.5 ± 0.0"
    assert spread([0.1, 0.3], ".1f", scale=100) == "20.0 ± 10.0"  # pstdev


@pytest.mark.slow
@pytest.mark.parametrize("script", ["hopfield", "chains", "quickstart",
                                    "hyperopt"])
def test_plain_examples_share_the_command_line(script: str) -> None:
    """The examples without Lightning parse as the Lightning ones do:
    --print-config, and a bad value ends in one error line, status 2."""
    run = subprocess.run([sys.executable, f"examples/{script}.py",
                          "--print-config"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "output_json: null" in run.stdout
    bad = subprocess.run([sys.executable, f"examples/{script}.py",
                          "--method", "nonsense"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nonsense" in bad.stderr


def test_chains_options_resolve_the_length_defaults() -> None:
    from benchmarks import harness
    chains = harness.example("chains")
    a = chains.parse_args(["--length", "30", "--model", "pyg"])
    assert (a.num_layers, a.backward_steps, a.method) == (80, 20, "bptt")
    with pytest.raises(ValueError, match="--model pyg trains by BPTT"):
        chains.parse_args(["--model", "pyg", "--method", "cg"])
    with pytest.raises(ValueError, match="'classes' must be >= 2"):
        chains.parse_args(["--classes", "1"])


def test_hopfield_all_is_the_papers_four_methods() -> None:
    from benchmarks import harness
    hopfield = harness.example("hopfield")
    options = hopfield.HopfieldOptions(method=["cg", "all", "hybrid"])
    assert options.methods() == ["cg", "neumann", "fixed_point", "tbptt",
                                 "hybrid"]
    with pytest.raises(ValueError, match="'size' must be in \\[1, 28\\]"):
        hopfield.HopfieldOptions(size=29).check()
