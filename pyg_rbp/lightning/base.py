"""What every Lightning module of pyg_rbp shares: logging, the Jacobian
penalty, the optimiser and exact resumption."""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor

from ..implicit import RBPStats
from ..utils import SavedTensorMeter
from .config import default_jacobian_weight


def _numpy_state_to_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos),
            int(has_gauss), float(cached))


def _numpy_state_from_plain(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and \
        dist.is_initialized() else 1


def _rng_state() -> Dict[str, Any]:
    """This process's random states, as plain types and tensors only
    (checkpoints load with ``torch.load(weights_only=True)``)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else [],
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "python": random.getstate(),
    }


def flush_denormals() -> None:
    """Flush denormal floats to zero on the CPU, process-wide.

    Saturated GRU gates (sigmoid of a pre-activation below about -87 in
    float32) produce denormal numbers, and products with them stay denormal;
    a GEMM on such inputs runs up to ~100x slower on x86 CPUs. Measured on a
    PROTEINS training epoch: 2.0x faster. The training entry points
    (:func:`train_node_classifier`, :func:`train_graph_classifier`, the
    examples) call this; the layers do not, since it changes a global
    setting: call ``torch.set_flush_denormal(True)`` in your own script.
    """
    torch.set_flush_denormal(True)


def check_jacobian_weight(jacobian_weight: Optional[float],
                          conv_kwargs: Dict[str, Any]) -> float:
    """Refuse a negative weight; switch the layer's penalty on (spectral, by
    default) or off to match it. ``None``: 1 for the GRU step
    (``cell='gru'``), 0 for the contractive step, which needs none."""
    if jacobian_weight is None:
        jacobian_weight = default_jacobian_weight(conv_kwargs.get("cell"))
    if jacobian_weight < 0:
        raise ValueError(f"'jacobian_weight' must be >= 0 "
                         f"(got {jacobian_weight})")
    conv_kwargs.setdefault("jacobian_penalty", "spectral")
    if jacobian_weight == 0:
        conv_kwargs["jacobian_penalty"] = None
    return float(jacobian_weight)


class RBPLightningModule(pl.LightningModule):
    """Base class: subclasses set ``self.jacobian_weight`` and provide
    ``hparams.lr`` / ``hparams.weight_decay`` (via ``save_hyperparameters``).
    """

    jacobian_weight: float = 0.0
    #: The most bytes autograd kept for one training step so far (the
    #: runs report it: a step that unrolled its propagation shows here).
    peak_saved_bytes: int = 0

    @contextmanager
    def _metered(self) -> Iterator[None]:
        """Meter the bytes autograd saves inside (the training forward),
        then log them as ``saved_mib`` and keep the peak. A meter around
        the whole training step sees nothing: the innermost autograd
        saved-tensor hooks take the tensors."""
        with SavedTensorMeter() as meter:
            yield
        self.peak_saved_bytes = max(self.peak_saved_bytes, meter.bytes)
        self._log("saved_mib", meter.bytes / 2**20)

    def _log(self, name: str, value: Any, batch_size: int = 1) -> None:
        # A tensor stays a tensor (on its device): float() would wait for
        # the GPU at every logged value; Lightning reduces it at epoch end.
        value = value.detach() if isinstance(value, Tensor) else float(value)
        self.log(name, value, on_step=False, on_epoch=True,
                 sync_dist=True, batch_size=batch_size,
                 add_dataloader_idx=False)

    #: Validation / test metrics summed per item over the epoch and logged
    #: once at its end (:meth:`_accumulate`), in this order on every rank.
    EVAL_METRICS: Tuple[str, ...] = ()

    def _record(self, prefix: str, loss: Tensor, correct: Tensor,
                count: int) -> None:
        """One batch of ``count`` items (graphs, questions) with mean
        ``loss`` and ``correct`` right answers: logged per epoch for
        training, accumulated exactly over the split otherwise (also under
        DDP; see :meth:`_accumulate`)."""
        if prefix == "train":
            self._log("train_loss", loss.detach(), count)
            self._log("train_acc", correct.float() / count, count)
        else:
            self._accumulate(f"{prefix}_loss", loss.detach() * count, count)
            self._accumulate(f"{prefix}_acc", correct.float(), count)

    def _accumulate(self, name: str, total: Tensor, count: int) -> None:
        """Add one batch's sum of metric ``name`` over its ``count`` items.

        At the end of the validation or test epoch the sums and counts of
        all ranks are added up and ``name`` is logged as their ratio: the
        exact mean over the split, whatever the batches and however the
        ranks divided it (a mean of per-rank means is not, when the ranks
        hold different numbers of items; see
        :class:`~pyg_rbp.lightning.UnpaddedDistributedSampler`).
        """
        if name not in self.EVAL_METRICS:
            raise ValueError(f"'{name}' is not one of the module's "
                             f"EVAL_METRICS {self.EVAL_METRICS}")
        sums = self.__dict__.setdefault("_eval_sums", {})
        value, items = sums.get(name, (0.0, 0))
        sums[name] = (total.detach().float() + value, items + count)

    def _log_accumulated(self) -> None:
        """Log each accumulated metric as (sum over ranks) / (count over
        ranks); one collective per epoch, the same on every rank."""
        sums = self.__dict__.pop("_eval_sums", {})
        names = self.EVAL_METRICS
        if not names:
            return
        vec = torch.zeros(2 * len(names), device=self.device)
        for i, name in enumerate(names):
            if name in sums:
                vec[2 * i] += sums[name][0].to(self.device)
                vec[2 * i + 1] += sums[name][1]
        if self._trainer is not None:
            vec = self.trainer.strategy.reduce(vec, reduce_op="sum")
        counts = vec[1::2].tolist()
        for i, name in enumerate(names):
            if counts[i] > 0:
                self.log(name, vec[2 * i] / counts[i], on_step=False,
                         on_epoch=True, sync_dist=False,
                         add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        self._log_accumulated()

    def on_test_epoch_end(self) -> None:
        self._log_accumulated()

    def _add_penalty(self, loss: Tensor, stats: Optional[RBPStats]) -> Tensor:
        """``loss + jacobian_weight * penalty`` (and log the penalty and the
        forward solver's statistics)."""
        if stats is None:
            return loss
        if stats.jacobian_penalty is not None:
            self._log("jac_penalty", stats.jacobian_penalty.detach())
            loss = loss + self.jacobian_weight * stats.jacobian_penalty
        self._log("fwd_steps", stats.forward_steps)
        self._log("fwd_residual", stats.forward_residual)
        # the share of calls whose forward reached tol (every graph of it)
        conv = stats.converged
        self._log("fwd_converged", conv.all().float()
                  if isinstance(conv, Tensor) else float(conv))
        # the layer's own safeguard: already in the backward pass, logged
        # here (0 for calls that converged and so did not compute it)
        self._log("contraction_penalty", stats.contraction_penalty or 0.0)
        return loss

    def _log_backward(self, stats: Optional[RBPStats]) -> None:
        """The backward fields, filled in once backward has run."""
        if stats is not None and stats.backward_steps is not None:
            self._log("bwd_steps", stats.backward_steps)
            if stats.backward_residual is not None:
                self._log("bwd_residual", stats.backward_residual)
            if stats.backward_converged is not None:  # an adjoint solve
                self._log("bwd_converged", float(stats.backward_converged))
            # the share of calls back-propagated through their steps
            self._log("unrolled", float(stats.unrolled))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)

    # -- exact resumption --------------------------------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Store the random states, so that a resumed run draws the same
        dropout masks and samples as an uninterrupted one. Under
        ``torch.distributed`` (DDP) every rank's states are gathered
        (Lightning builds the checkpoint on every rank, rank 0 writes it):
        ``pyg_rbp_rng_per_rank[r]`` is rank ``r``'s, ``pyg_rbp_rng`` rank
        0's, as a single-process checkpoint has it."""
        state = _rng_state()
        checkpoint["pyg_rbp_rng"] = state
        if _world_size() > 1:
            states: List[Any] = [None] * _world_size()
            dist.all_gather_object(states, state)
            checkpoint["pyg_rbp_rng"] = states[0]
            checkpoint["pyg_rbp_rng_per_rank"] = states

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Restore this rank's random states (rank 0's where the checkpoint
        holds no state for this rank: another world size)."""
        state = checkpoint.get("pyg_rbp_rng")
        per_rank = checkpoint.get("pyg_rbp_rng_per_rank")
        rank = dist.get_rank() if _world_size() > 1 else 0
        if per_rank is not None and rank < len(per_rank) and \
                len(per_rank) == _world_size():
            state = per_rank[rank]
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_numpy_state_from_plain(state["numpy"]))
        random.setstate(state["python"])
