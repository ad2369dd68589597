r"""Mixed precision in the engine: what runs in the autocast dtype and what
stays in the state's own precision.

Under :func:`torch.autocast` (CPU bfloat16, CUDA float16 / bfloat16) the map's
dense products run in the low-precision dtype, but a fixed point cannot be
resolved below that dtype's rounding: a bfloat16 product is good to about
:math:`2^{-9}` relative, so the residual of an iteration evaluated in
bfloat16 stalls near :math:`10^{-3}`. The engine therefore

* keeps the state in its own dtype (float32 for a float32 model): every
  step's output is cast back, and residual norms are taken there;
* iterates in the low-precision dtype until the residual reaches
  :func:`switch_tol` (or stops improving), then, if ``tol`` is smaller,
  finishes the iteration with autocast switched off (a float32 "polish");
* records the one differentiable step with autocast off, so the Jacobian of
  the adjoint solve is that of the float32 map at the float32 fixed point;
  the adjoint itself runs in the backward pass, outside autocast.

Setting ``tol`` at or above :func:`switch_tol` (about ``4e-3`` for
bfloat16, ``5e-4`` for float16) skips the polish and keeps every step in low
precision.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch

#: Switch to full precision at this many units of the low dtype's eps.
SWITCH_EPS = 0.5
#: ... or after this many steps without a new best residual.
STALL_STEPS = 3


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype active for ``device_type``, else ``None``."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (RuntimeError, TypeError):  # a device type autocast lacks
        return None
    return None


def switch_tol(dtype: torch.dtype) -> float:
    """The residual at which iterating in ``dtype`` stops paying off."""
    return SWITCH_EPS * float(torch.finfo(dtype).eps)


@contextmanager
def no_tf32() -> Iterator[None]:
    """CUDA float32 matrix products in full float32 inside the block, not
    TF32 (10-bit mantissa, which the float32 finish exists to avoid);
    the previous settings come back afterwards."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        old = (matmul.fp32_precision, torch.backends.cudnn.fp32_precision)
        matmul.fp32_precision = "ieee"
        torch.backends.cudnn.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, torch.backends.cudnn.fp32_precision = old
        return
    old_flags = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_flags


@contextmanager
def full_precision(device_type: str, active: bool = True) -> Iterator[None]:
    """Switch autocast off for ``device_type`` inside the block (if it is on
    and ``active``); on CUDA also TF32 (see :func:`no_tf32`)."""
    if active and autocast_dtype(device_type) is not None:
        with torch.autocast(device_type, enabled=False):
            if device_type == "cuda":
                with no_tf32():
                    yield
            else:
                yield
    else:
        yield
