"""Graph layers built on the implicit engine."""
from .gated_graph_conv import RBPGatedGraphConv

__all__ = ["RBPGatedGraphConv"]
