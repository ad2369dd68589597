"""Small helpers shared by the package, examples and benchmarks."""
from .memory import SavedTensorMeter, tensor_bytes
from .records import portable, write_json

__all__ = ["SavedTensorMeter", "tensor_bytes", "portable", "write_json"]
