"""Whole models built from the layers (plain ``torch.nn.Module``s)."""
from .base import RBPModel
from .babi import OUTPUTS, RBPGGNN, babi_loss
from .graph_classifier import READOUTS, GatedReadout, RBPGraphClassifier
from .no_graph import NoGraphConv, no_graph_factory
from .node_classifier import RBPNodeClassifier
from .pyg_gated import PygGatedGraphConv, pyg_gated_factory

__all__ = ["RBPModel", "RBPNodeClassifier", "RBPGraphClassifier",
           "GatedReadout",
           "READOUTS", "RBPGGNN", "babi_loss", "OUTPUTS",
           "PygGatedGraphConv", "pyg_gated_factory", "NoGraphConv",
           "no_graph_factory"]
