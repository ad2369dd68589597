"""The per-graph reductions every per-graph path shares, against loops
over the graphs."""
from __future__ import annotations

import torch

from pyg_rbp.implicit.forward import graph_residual
from pyg_rbp.implicit.groups import group_dot, group_sum, per_row

GROUPS = torch.tensor([0, 0, 2, 2, 2, 1, 0])


def test_group_sum_and_dot_are_sums_over_each_groups_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 7, 3, generator=gen, dtype=torch.double)
    b = torch.randn(7, 3, generator=gen, dtype=torch.double)
    dots = group_dot(a, b, GROUPS, 3)
    assert dots.shape == (4, 3)
    for g in range(3):
        rows = GROUPS == g
        torch.testing.assert_close(
            dots[:, g], (a[:, rows] * b[rows]).sum((1, 2)))
    whole = group_dot(a, b, None, 1)
    torch.testing.assert_close(whole[:, 0], (a * b).sum((1, 2)))
    assert group_dot(b, b, None, 1).shape == (1, )
    torch.testing.assert_close(group_sum(b[:, 0], GROUPS, 3),
                               torch.stack([b[GROUPS == g, 0].sum()
                                            for g in range(3)]))
    coef = torch.tensor([1.0, 2.0, 3.0], dtype=torch.double)
    torch.testing.assert_close(per_row(coef, GROUPS, b) * b,
                               coef[GROUPS][:, None] * b)


def test_graph_residual_per_graph() -> None:
    gen = torch.Generator().manual_seed(1)
    old = torch.randn(7, 3, generator=gen, dtype=torch.double)
    new = old + 0.1 * torch.randn(7, 3, generator=gen, dtype=torch.double)
    res = graph_residual(new, old, GROUPS, 3)
    for g in range(3):
        rows = GROUPS == g
        want = (new[rows] - old[rows]).norm() / old[rows].norm()
        torch.testing.assert_close(res[g], want)
    torch.testing.assert_close(graph_residual(new, old, None, 1)[0],
                               (new - old).norm() / old.norm())
