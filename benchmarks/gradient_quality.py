"""How right is each gradient along the quick start's training? (issue 26)

Trains the quick start's model (examples/quickstart.py: 4-community graph,
400 nodes, T = 30, K = 20) with one method and, every few epochs, measures at
that call's returned state:

* the forward's relative residual (did it reach tol = 1e-5?);
* the Neumann adjoint's relative residual after K = 20 and after 200 terms;
* the contraction safeguard's estimate (5 power iterations v <- J^T v, then
  ||J^T v||), the dominant eigenvalue's modulus rho(J) (400 power
  iterations) and sigma_max(J) (200 power iterations on J J^T), which a
  non-normal J separates;
* the cosine between each method's parameter gradient and BPTT's through
  the same 30 steps (the gradient of what the forward computed).

    python -m benchmarks.gradient_quality                  # neumann, seed 0
    python -m benchmarks.gradient_quality --method hybrid --seed 0

Prints a table and writes outputs/benchmarks/gradient_quality_<method>.json
(``--output-json``; the committed one: benchmarks/results/).
"""
from __future__ import annotations

import sys
import warnings
from typing import Dict, List

import torch
import torch.nn.functional as F

from pyg_rbp import BPTT, CG, ConvergenceWarning, Neumann
from pyg_rbp.implicit.adjoint import neumann
from pyg_rbp.utils import write_json

from benchmarks import harness


def _flat_grad(model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-30))


def diagnose(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor,
             y: torch.Tensor, train: torch.Tensor) -> Dict[str, float]:
    """The measurements at the current weights (see the module docstring)."""
    conv = model.conv
    out: Dict[str, float] = {}
    h_enc = model.encoder(x).relu()
    step, h0 = conv.fixed_point_map(h_enc, edge_index)
    with torch.no_grad():
        h = h0
        for _ in range(conv.num_layers - 1):
            prev, h = h, step(h)
        out["forward_residual"] = float((h - prev).norm() / prev.norm())
    hin = h.detach().requires_grad_(True)
    hout = step(hin)

    def vjp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(hout, hin, v, retain_graph=True)[0]

    def jvp(u: torch.Tensor) -> torch.Tensor:  # by the double-vjp trick
        d = torch.zeros_like(hout, requires_grad=True)
        w = torch.autograd.grad(hout, hin, d, create_graph=True)[0]
        return torch.autograd.grad(w, d, u)[0]

    g = torch.randn_like(hin)
    out["adjoint_residual_k20"] = neumann(vjp, g, 20, 0.0).residual
    out["adjoint_residual_k200"] = neumann(vjp, g, 200, 0.0).residual
    v = torch.randn_like(hin)
    for _ in range(5):  # the safeguard's estimate
        v = vjp(v / v.norm())
    out["safeguard_estimate"] = float(vjp(v / v.norm()).norm())
    v = torch.randn_like(hin)
    for _ in range(400):
        v = vjp(v / v.norm())
    out["rho"] = float(vjp(v / v.norm()).norm())
    v = torch.randn_like(hin)
    for _ in range(200):
        v = jvp(vjp(v / v.norm()))
    out["sigma_max"] = float(jvp(vjp(v / v.norm())).norm()) ** 0.5
    # gradients of the same loss at the same weights, every method
    grads = {}
    for name, method in (("bptt", BPTT()), ("neumann", Neumann(steps=20)),
                         ("neumann_k200", Neumann(steps=200, tol=1e-10)),
                         ("cg", CG(steps=20))):
        saved = conv.method, conv.backward_steps, conv.backward_tol
        conv.method, conv.backward_steps, conv.backward_tol = method, None, \
            None
        loss = F.cross_entropy(model(x, edge_index)[train], y[train])
        grads[name] = _flat_grad(model, loss)
        conv.method, conv.backward_steps, conv.backward_tol = saved
    for name in ("neumann", "neumann_k200", "cg"):
        out[f"cos_{name}_bptt"] = _cos(grads[name], grads["bptt"])
    return out


def main(argv: List[str] = None) -> int:
    p = harness.parser(__doc__, data=False)
    p.add_argument("--method", default="neumann")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--contraction-bound", type=float, default=0.99,
                   help="the layer's safeguard (0: off)")
    a = p.parse_args(argv)
    harness.start(a.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    quickstart = harness.example("quickstart")
    Net, make_data = quickstart.Net, quickstart.make_data
    x, edge_index, y, train, test = make_data(a.seed)
    torch.manual_seed(a.seed)
    model = Net(16, 32, 4, num_layers=30, method=a.method,
                backward_steps=20, normalize=True,
                contraction_bound=a.contraction_bound or None)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    rows = []
    cols = ("epoch", "forward_residual", "adjoint_residual_k20",
            "adjoint_residual_k200", "safeguard_estimate", "rho",
            "sigma_max", "cos_neumann_bptt", "cos_neumann_k200_bptt",
            "cos_cg_bptt", "test_acc")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for epoch in range(a.epochs + 1):
        if epoch % a.every == 0:
            model.eval()
            with torch.no_grad():
                acc = float((model(x, edge_index).argmax(-1)[test]
                             == y[test]).float().mean())
            model.train()
            row = {"epoch": epoch, **diagnose(model, x, edge_index, y,
                                              train), "test_acc": acc}
            rows.append(row)
            print("| " + " | ".join(f"{row[c]:.3g}" if isinstance(row[c],
                                                                    float)
                                    else str(row[c]) for c in cols) + " |",
                  flush=True)
        if epoch == a.epochs:
            break
        opt.zero_grad()
        F.cross_entropy(model(x, edge_index)[train], y[train]).backward()
        opt.step()
    write_json(a.output_json or harness.RUNS /
               f"gradient_quality_{a.method}.json", {"args": vars(a),
                                                     "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
