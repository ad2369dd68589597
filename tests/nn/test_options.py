"""The layers' solver options: checked once, resolved once into one frozen
SolverSettings, and every documented spelling still works."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pyg_rbp import (CG, Anderson, HopfieldConv, Neumann,
                     RBPGatedGraphConv)
from pyg_rbp.implicit import FixedPointIteration, Hybrid
from pyg_rbp.nn import IGNNConv, SolverSettings
from tests.conftest import random_graph


def _graph(n: int, e: int, c: int, seed: int):
    x = torch.randn(n, c, generator=torch.Generator().manual_seed(seed))
    return x, random_graph(n, e, seed=seed)


def _grad(conv: torch.nn.Module, x: torch.Tensor,
          edge_index: torch.Tensor) -> torch.Tensor:
    conv.zero_grad()
    (conv(x, edge_index) ** 2).sum().backward()
    return conv.weight.grad.clone()


def test_options_resolve_once_into_values() -> None:
    conv = RBPGatedGraphConv(8)
    s = conv.settings
    assert isinstance(s.gradient, Hybrid) and isinstance(s.forward, Anderson)
    x, edge_index = _graph(20, 60, 8, seed=0)
    conv(x, edge_index)
    assert conv.settings is s  # a call resolves nothing again
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tol = 1.0  # type: ignore[misc]
    # the defaults as the layer documents them
    assert (conv.method, conv.tol, conv.solver) == ("hybrid", 1e-5,
                                                    "anderson")
    assert (conv.backward_steps, conv.backward_tol) == (20, 1e-5)
    gru = RBPGatedGraphConv(8, cell="gru")
    assert gru.backward_tol == 1e-6 and gru.solver == "fixed_point"
    assert isinstance(gru.settings.forward, FixedPointIteration)


def test_setting_an_option_later_equals_giving_it_at_construction() -> None:
    """``conv.method = 'cg'`` then ``conv.backward_steps = 40``: the same
    gradient (to rounding) as a layer built with those options."""
    x, edge_index = _graph(30, 90, 8, seed=1)
    torch.manual_seed(0)
    built = RBPGatedGraphConv(8, method="cg", backward_steps=40,
                              backward_tol=1e-9)
    torch.manual_seed(0)
    later = RBPGatedGraphConv(8)
    later.method = "cg"
    later.backward_steps = 40
    later.backward_tol = 1e-9
    assert later.settings.gradient == CG(steps=40, tol=1e-9) == \
        built.settings.gradient
    torch.testing.assert_close(_grad(later, x, edge_index),
                               _grad(built, x, edge_index),
                               rtol=1e-6, atol=1e-8)


def test_a_value_carries_its_settings() -> None:
    conv = RBPGatedGraphConv(8, backward_steps=7)
    conv.method = Neumann(steps=5)  # drops the name's backward_steps
    assert conv.settings.gradient == Neumann(steps=5)
    assert conv.backward_steps is None and conv.backward_tol is None
    with pytest.raises(ValueError, match="carries its own settings"):
        conv.backward_steps = 3
    with pytest.raises(ValueError, match="carries its own settings"):
        RBPGatedGraphConv(8, method=Neumann(steps=5), backward_steps=3)


def test_a_bad_setting_is_refused_and_loses_nothing() -> None:
    conv = RBPGatedGraphConv(8, method="neumann", backward_steps=9)
    before = conv.settings
    with pytest.raises(ValueError, match="'method' must be one of"):
        conv.method = "newton"
    with pytest.raises(ValueError, match="'backward_steps' must be >= 1"):
        conv.backward_steps = 0
    with pytest.raises(TypeError, match="'solver' must be a name"):
        conv.solver = 3
    with pytest.raises(ValueError, match="'tol'"):
        conv.tol = -1.0
    assert conv.settings is before and conv.backward_steps == 9


def test_the_contractive_adjoint_follows_the_forward_tol() -> None:
    """Its adjoint tolerance is the forward's ``tol`` until given (1e-6
    where tol is 0); the GRU step keeps 1e-6."""
    conv = RBPGatedGraphConv(8, tol=1e-4)
    assert conv.backward_tol == 1e-4
    conv.tol = 1e-3
    assert conv.backward_tol == 1e-3
    assert conv.settings.gradient.adjoint.tol == 1e-3
    conv.tol = 0.0
    assert conv.backward_tol == 1e-6
    conv.backward_tol = 1e-7
    conv.tol = 1e-2
    assert conv.backward_tol == 1e-7
    assert RBPGatedGraphConv(8, cell="gru", tol=1e-3).backward_tol == 1e-6


@pytest.mark.parametrize("make", [
    lambda: HopfieldConv(6),
    lambda: IGNNConv(4, 6),
    lambda: RBPGatedGraphConv(6),
])
def test_every_layer_takes_every_spelling(make) -> None:
    conv = make()
    conv.method = "cg"
    conv.backward_steps = 11
    assert conv.settings.gradient == CG(steps=11,
                                        tol=conv.backward_tol)
    conv.method = Neumann(steps=4)
    assert conv.settings.gradient == Neumann(steps=4)
    conv.solver = Anderson(memory=3)
    assert conv.settings.forward == Anderson(memory=3)
    assert conv.solver == Anderson(memory=3)


def test_settings_alone() -> None:
    s = SolverSettings(method="hybrid", hybrid_adjoint="cg", tol=0.0)
    assert s.gradient == Hybrid(adjoint=CG(steps=20, tol=1e-6))
    with pytest.raises(ValueError, match="'hybrid_adjoint' must be one of"):
        SolverSettings(hybrid_adjoint="newton")
    assert s.replace(tol=1e-3).tol == 1e-3 and s.tol == 0.0
