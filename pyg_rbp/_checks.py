"""Argument checks shared by the engine and the layers.

Every check raises :class:`ValueError` or :class:`TypeError` with a message
that names the argument, says what was expected and what was got.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import Tensor


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"'{name}' must be one of {valid} (got {value!r})")
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an integer ``>= minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int (got {type(value).__name__})")
    if value < minimum:
        raise ValueError(f"'{name}' must be >= {minimum} (got {value})")
    return value


def check_tol(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"'{name}' must be a float (got {type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{name}' must be a finite number >= 0 (got {value})")
    return float(value)


def check_float_tensor(name: str, value: Any) -> Tensor:
    """Return ``value`` if it is a floating-point tensor, else raise."""
    if not isinstance(value, Tensor):
        raise TypeError(
            f"'{name}' must be a torch.Tensor (got {type(value).__name__})")
    if not value.is_floating_point():
        raise TypeError(
            f"'{name}' must have a floating-point dtype (got {value.dtype})")
    return value


def check_finite(name: str, value: Tensor) -> Tensor:
    """Raise if ``value`` holds NaN or infinite entries."""
    if value.numel() > 0 and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(
            f"'{name}' must be finite (got {bad} NaN or infinite entries)")
    return value


def check_batch(batch: Any, num_nodes: int) -> Tensor:
    """Check PyG's node-to-graph assignment vector ``batch``."""
    if not isinstance(batch, Tensor):
        raise TypeError(
            f"'batch' must be a torch.Tensor (got {type(batch).__name__})")
    if batch.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"'batch' must have dtype torch.long (got {batch.dtype})")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' must have shape [{num_nodes}] "
                         f"(got {list(batch.shape)})")
    if num_nodes > 0 and int(batch.min()) < 0:
        raise ValueError(
            f"'batch' must hold graph indices >= 0 (got {int(batch.min())})")
    return batch.long()
