"""pyg_rbp: convergent graph networks trained by recurrent back-propagation.

Propagate messages until node states reach a fixed point
:math:`h^* = F(x, w, h^*)`, then get :math:`\\partial L/\\partial w` from the
implicit function theorem (Neumann, CG or fixed-point RBP) instead of
unrolling through time (Liao et al., ICML 2018).
"""
from .implicit import (BPTT, CG, METHODS, SOLVERS, TBPTT, Anderson,
                       AndersonRBP, Broyden, ClosedFormMap,
                       ConvergenceMonitor, ConvergenceWarning, FixedPoint,
                       FixedPointIteration, ForwardSolver, GMRES,
                       GradientMethod, Hybrid, Neumann, Phantom, RBPStats,
                       rbp)
from .nn import HopfieldConv, RBPGatedGraphConv

__version__ = "0.2.0"

__all__ = ["rbp", "RBPStats", "ConvergenceWarning", "RBPGatedGraphConv",
           "HopfieldConv", "Neumann", "CG", "FixedPoint", "BPTT", "TBPTT",
           "Hybrid", "GMRES", "AndersonRBP", "Phantom", "ConvergenceMonitor",
           "GradientMethod", "ClosedFormMap", "ForwardSolver",
           "FixedPointIteration", "Anderson", "Broyden",
           "METHODS", "SOLVERS", "__version__"]
