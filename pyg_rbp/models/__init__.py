"""Whole models built from the layers (plain ``torch.nn.Module``s)."""
from .node_classifier import RBPNodeClassifier

__all__ = ["RBPNodeClassifier"]
