"""Graph layers built on the implicit engine."""
from ._options import SolverSettings
from .gated_graph_conv import RBPGatedGraphConv
from .ggnn_step import GGNNStep
from .hopfield_conv import HopfieldConv
from .ignn_conv import IGNNConv

__all__ = ["RBPGatedGraphConv", "GGNNStep", "HopfieldConv", "IGNNConv",
           "SolverSettings"]
