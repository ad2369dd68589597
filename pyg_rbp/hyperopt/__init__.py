"""Hyperparameter optimisation by RBP, the paper's third experiment: an
inner optimiser's step as a map on (weights, momenta), and the meta-loop
that learns its learning rates and momenta (it uses the engine, nothing of
the graph layers)."""
from .inner import (LAYERS, SGDMomentumStep, batch_schedule, init_mlp,
                    mlp_hvp, mlp_logits, mlp_loss, mlp_loss_and_grad)
from .meta import (HYPEROPT_METHODS, HyperoptConfig, HyperoptResult,
                   MetaRecord, hypergradient, meta_train, split_mnist)

__all__ = ["LAYERS", "SGDMomentumStep", "batch_schedule", "init_mlp",
           "mlp_hvp", "mlp_logits", "mlp_loss", "mlp_loss_and_grad",
           "HYPEROPT_METHODS", "HyperoptConfig", "HyperoptResult", "MetaRecord", "hypergradient",
           "meta_train", "split_mnist"]
