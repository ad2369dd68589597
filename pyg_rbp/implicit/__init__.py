"""The implicit-differentiation engine. It knows nothing about graphs."""
from .forward import SOLVERS
from .maps import ClosedFormMap
from .methods import (BPTT, CG, IMPLICIT_METHODS, METHODS, REGISTRY, TBPTT,
                      AndersonRBP, FixedPoint, GMRES, GradientMethod, Hybrid,
                      MethodLike, Neumann, resolve_method)
from .rbp import rbp
from .stats import ConvergenceMonitor, ConvergenceWarning, RBPStats

__all__ = ["rbp", "RBPStats", "ConvergenceWarning", "METHODS", "SOLVERS",
           "IMPLICIT_METHODS", "REGISTRY", "GradientMethod", "MethodLike",
           "Neumann", "CG", "FixedPoint", "BPTT", "TBPTT", "Hybrid", "GMRES",
           "AndersonRBP",
           "resolve_method", "ConvergenceMonitor",
           "ClosedFormMap"]
