"""The implicit-differentiation engine. It knows nothing about graphs."""
from .maps import ClosedFormMap
from .methods import (BPTT, CG, IMPLICIT_METHODS, METHODS, REGISTRY, TBPTT,
                      AndersonRBP, FixedPoint, GMRES, GradientMethod, Hybrid,
                      MethodLike, Neumann, Phantom, resolve_method)
from .rbp import rbp
from .solvers import (SOLVER_REGISTRY, SOLVERS, Anderson, Broyden,
                      FixedPointIteration, ForwardSolver, SolverLike,
                      resolve_solver)
from .stats import ConvergenceMonitor, ConvergenceWarning, RBPStats

__all__ = ["rbp", "RBPStats", "ConvergenceWarning", "METHODS", "SOLVERS",
           "IMPLICIT_METHODS", "REGISTRY", "GradientMethod", "MethodLike",
           "Neumann", "CG", "FixedPoint", "BPTT", "TBPTT", "Hybrid", "GMRES",
           "AndersonRBP", "Phantom",
           "resolve_method", "SOLVER_REGISTRY", "ForwardSolver", "SolverLike",
           "FixedPointIteration", "Anderson", "Broyden", "resolve_solver", "ConvergenceMonitor",
           "ClosedFormMap"]
