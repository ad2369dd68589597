"""Small helpers shared by the package, examples and benchmarks (the
command-line and report helpers are in :mod:`pyg_rbp.utils.cli`)."""
from .memory import SavedTensorMeter, tensor_bytes
from .records import portable, write_json

__all__ = ["SavedTensorMeter", "tensor_bytes", "portable", "write_json"]
