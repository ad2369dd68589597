"""What reading the residuals on the host once per block of steps saves:
one RBP training call (forward loop, recorded step, Neumann adjoint) of
``RBPGatedGraphConv`` on a random graph, with ``check_every`` 1 (a host read
after every step, what the CPU does) against 8 (the accelerator default),
interleaved, median over repetitions.

    python -m benchmarks.host_syncs --device cuda --nodes 20000 \
        --output-json host_syncs.json

The two give the same state and statistics (``tests/implicit/
test_check_every.py``); on the CPU the time is the same too, on a GPU each
read that is saved is one wait of the host for the device.
"""
from __future__ import annotations

import statistics
import sys

import torch

from pyg_rbp import Neumann, RBPGatedGraphConv, rbp
from pyg_rbp.utils import write_json

from benchmarks import harness


def main() -> int:
    p = harness.parser(__doc__, data=False)
    p.add_argument("--device", default="cpu")
    p.add_argument("--nodes", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=100,
                   help="forward steps T (tol 0: exactly T)")
    p.add_argument("--tol", type=float, default=0.0,
                   help="forward tolerance (0: run all T steps)")
    p.add_argument("--backward-steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    harness.start(a.threads)
    device = torch.device(a.device)
    gen = torch.Generator().manual_seed(0)
    n = a.nodes
    edge_index = torch.randint(0, n, (2, 10 * n), generator=gen).to(device)
    x = torch.randn(n, a.hidden, generator=gen).to(device)
    r = torch.randn(n, a.hidden, generator=gen).to(device)
    torch.manual_seed(0)
    conv = RBPGatedGraphConv(a.hidden, normalize=True).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call(every: int) -> float:
        conv.zero_grad(set_to_none=True)
        sync()

        def one() -> None:
            step, h0 = conv.fixed_point_map(x, edge_index)
            h, _ = rbp(step, h0, method=Neumann(steps=a.backward_steps,
                                                tol=0.0),
                       max_iter=a.steps, tol=a.tol, check_every=every)
            (h * r).sum().backward()
            sync()
        return harness.timed(one)[1]

    call(1)  # warm-up: kernels, handles, allocator
    times = {1: [], 8: []}
    for i in range(a.reps):
        for every in ((1, 8) if i % 2 == 0 else (8, 1)):
            times[every].append(call(every))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.device}, N={n}, T={a.steps}, K={a.backward_steps}: "
          f"check_every=1 {med[1] * 1e3:.1f} ms, check_every=8 "
          f"{med[8] * 1e3:.1f} ms ({med[1] / med[8]:.2f}x)")
    if a.output_json:
        write_json(a.output_json, {
            "device": str(device), "nodes": n, "steps": a.steps,
            "backward_steps": a.backward_steps, "tol": a.tol,
            "reps": a.reps, "check_every_1_s": med[1],
            "check_every_8_s": med[8],
            "speedup": med[1] / med[8]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
