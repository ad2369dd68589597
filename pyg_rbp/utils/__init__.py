"""Small helpers shared by the package, examples and benchmarks."""
from .memory import SavedTensorMeter, tensor_bytes

__all__ = ["SavedTensorMeter", "tensor_bytes"]
