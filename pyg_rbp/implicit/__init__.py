"""The implicit-differentiation engine. It knows nothing about graphs."""
from .adjoint import ADJOINT_METHODS
from .forward import SOLVERS
from .rbp import METHODS, rbp
from .stats import ConvergenceWarning, RBPStats

__all__ = ["rbp", "RBPStats", "ConvergenceWarning", "METHODS", "SOLVERS",
           "ADJOINT_METHODS"]
