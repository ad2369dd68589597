"""Whole models built from the layers (plain ``torch.nn.Module``s)."""
from .graph_classifier import READOUTS, GatedReadout, RBPGraphClassifier
from .node_classifier import RBPNodeClassifier

__all__ = ["RBPNodeClassifier", "RBPGraphClassifier", "GatedReadout",
           "READOUTS"]
