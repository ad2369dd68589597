"""Warm starts: fewer steps on the same graph, the same fixed point and
RBP gradient as a cold start, and a cold start whenever the graph changes."""
from __future__ import annotations

import warnings

import pytest
import torch

from pyg_rbp import RBPGatedGraphConv

from ..conftest import random_graph


def _pair(seed: int = 1):
    torch.manual_seed(seed)
    cold = RBPGatedGraphConv(8, num_layers=300, tol=1e-7).double()
    warm = RBPGatedGraphConv(8, num_layers=300, tol=1e-7,
                             warm_start=True).double()
    warm.load_state_dict(cold.state_dict())
    return cold, warm


def test_warm_start_saves_steps_not_accuracy() -> None:
    x = torch.randn(40, 8, dtype=torch.float64)
    ei = random_graph(40, 160)
    cold, warm = _pair()
    warm(x, ei)  # the first call starts cold and stores h*
    first = warm.stats.forward_steps
    # a small parameter change, as one optimiser step makes
    with torch.no_grad():
        for c, w in zip(cold.parameters(), warm.parameters()):
            noise = 1e-3 * torch.randn_like(c)
            c.add_(noise)
            w.add_(noise)
    hc, hw = cold(x, ei), warm(x, ei)
    assert warm.stats.forward_steps < cold.stats.forward_steps == first
    assert cold.stats.converged and warm.stats.converged
    torch.testing.assert_close(hw, hc, rtol=0, atol=1e-5)
    gc = torch.autograd.grad(hc.pow(2).sum(), list(cold.parameters()))
    gw = torch.autograd.grad(hw.pow(2).sum(), list(warm.parameters()))
    for a, b in zip(gc, gw):  # the implicit gradient needs only h*
        assert float((a - b).norm() / a.norm()) < 1e-4


@pytest.mark.slow
def test_a_changed_graph_starts_cold() -> None:
    x = torch.randn(30, 8, dtype=torch.float64)
    ei = random_graph(30, 100)
    cold, warm = _pair()
    cold(x, ei)
    cold_steps = cold.stats.forward_steps
    warm(x, ei)
    warm(x, ei)
    assert warm.stats.forward_steps < cold_steps
    warm(x, ei.clone())  # another tensor: another graph
    assert warm.stats.forward_steps == cold_steps
    ei2 = ei.clone()
    warm(x, ei2)
    ei2[0, 0] = (ei2[0, 0] + 1) % 30  # changed in place
    warm(x, ei2)
    cold(x, ei2)
    assert warm.stats.forward_steps == cold.stats.forward_steps
    adj = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)),
                                  (30, 30))
    warm(x, adj)  # no stable identity: always cold
    warm(x, adj)
    cold(x, adj)
    assert warm.stats.forward_steps == cold.stats.forward_steps
    warm.reset_parameters()
    assert len(warm._warm) == 0


@pytest.mark.slow
def test_training_with_warm_starts() -> None:
    """Ten optimiser steps: warm starts cut the steps per call and end at
    the same loss to a few digits. With the default (contractive step,
    Anderson) the cut is about a third here (28 steps against 41): Anderson
    already gains most of what a better start gives."""
    x = torch.randn(50, 8, dtype=torch.float64)
    ei = random_graph(50, 200)
    losses, steps = {}, {}
    for name, conv in zip(("cold", "warm"), _pair(3)):
        opt = torch.optim.SGD(conv.parameters(), lr=0.05)
        steps[name] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(10):
                opt.zero_grad()
                loss = conv(x, ei).pow(2).mean()
                loss.backward()
                opt.step()
                steps[name].append(conv.stats.forward_steps)
        losses[name] = float(loss)
    assert sum(steps["warm"][1:]) < 0.75 * sum(steps["cold"][1:])
    assert abs(losses["warm"] - losses["cold"]) < 1e-4 * losses["cold"]
