"""RBPGatedGraphConv: a drop-in GatedGraphConv trained by recurrent back-prop."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.inits import uniform
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import spmm

from .._checks import (check_choice, check_finite, check_float_tensor,
                       check_int, check_tol)
from ..implicit import MethodLike, RBPStats, SolverLike, rbp
from ..implicit.precision import autocast_dtype, full_precision
from ..implicit.methods import DEFAULT_TOL
from ..implicit.penalties import PENALTIES
from ._options import ImplicitOptions
from .adjacency import (MATRIX_AGGRS, NONEXPANSIVE_AGGRS, SparseMatrix,
                        build_aggregate, nonexpansive_weights)
from .call_caches import CallCaches
from .contractive_step import (ContractiveStep, bounded_message_weight,
                               carry_gate)
from .eager import eager
from .ggnn_step import GGNNStep
from .graph_input import check_edge_type, standardise_graph
from .warm_start import WarmStarts, graph_key


#: Scale of the state-acting weights at initialisation (see reset_parameters).
INIT_STATE_SCALE = 0.5
#: The default contraction safeguard (see :func:`pyg_rbp.rbp`): a training
#: call whose propagation did not reach ``tol`` adds
#: ``CONTRACTION_WEIGHT * max(0, rho^2 - CONTRACTION_BOUND^2)`` to the loss.
CONTRACTION_BOUND = 0.99
CONTRACTION_WEIGHT = 10.0
#: The initialisations of reset_parameters (``cell='gru'``).
STATE_INITS = ("contractive", "identity")
#: The steps: the contractive gated step (a contraction for every weight
#: value, :mod:`pyg_rbp.nn.contractive_step`) or PyG's GRU step.
CELLS = ("contractive", "gru")
#: The contractive step's carry gate: one per channel, or a function of the
#: layer input per node and channel.
GATES = ("channel", "input")
#: The contractive step's default carry (the gate's value at the start and
#: where weight decay pulls it; APPNP's 1 - alpha).
CARRY = 0.9
#: The bound gamma on the message weights' largest absolute column sum.
MESSAGE_BOUND = 0.9
#: Each cell's forward solver where ``solver`` is left unset; the hybrid's
#: adjoint (``method='hybrid'`` by name) follows it: Anderson-RBP for the
#: contractive step, whose carry makes rho(J) close to 1, where the Neumann
#: series needs several times the terms.
CELL_SOLVERS = {"contractive": "anderson", "gru": "fixed_point"}
#: ``contraction_bound``'s default: the safeguard for the GRU step only
#: (the contractive step cannot stop contracting).
AUTO = "auto"


def max_carry(carry: float) -> float:
    r""":math:`z_{\max} = (1 + \mathrm{carry}) / 2`: the gate starts at
    ``carry`` and may grow half-way to 1."""
    return (1.0 + carry) / 2.0


def _carry_gate(contractive: bool, gate: str, carry: Any,
                aggr: Any) -> Tuple[str, float]:
    """The contractive step's carry gate options, checked: ``(gate,
    carry)``; the GRU step takes neither, and the contractive one only an
    aggregation whose non-expansive form it can build."""
    gate = check_choice("gate", gate, GATES)
    if isinstance(carry, bool) or not isinstance(carry, (int, float)) \
            or not 0 < carry < 1:
        raise ValueError(f"'carry' must be a number in (0, 1) "
                         f"(got {carry!r})")
    if not contractive and (gate != "channel" or carry != CARRY):
        raise ValueError(
            f"'gate' and 'carry' set the contractive step's carry gate; "
            f"the GRU step has its own gates (got gate={gate!r}, "
            f"carry={carry!r} with cell='gru')")
    if contractive and (not isinstance(aggr, str) or
                        aggr not in NONEXPANSIVE_AGGRS):
        raise ValueError(
            f"'RBPGatedGraphConv' with cell='contractive' supports aggr in "
            f"{NONEXPANSIVE_AGGRS}, whose non-expansive form it can "
            f"build (got aggr={aggr!r}); use cell='gru' for others")
    return gate, float(carry)


def _gru_start(contractive: bool, state_init: str,
               identity_gain: Any) -> Tuple[str, float]:
    """The GRU step's initialisation options, checked: ``(state_init,
    identity_gain)``; the contractive step takes neither."""
    state_init = check_choice("state_init", state_init, STATE_INITS)
    if isinstance(identity_gain, bool) or \
            not isinstance(identity_gain, (int, float)) or \
            not 0 < identity_gain < float("inf"):
        raise ValueError(f"'identity_gain' must be a positive number "
                         f"(got {identity_gain!r})")
    if contractive and (state_init != "contractive" or
                        identity_gain != 2.0):
        raise ValueError(
            f"'state_init' and 'identity_gain' set the GRU step's start; "
            f"the contractive step has neither (got state_init="
            f"{state_init!r}, identity_gain={identity_gain!r}): pass "
            f"cell='gru' to use them")
    return state_init, float(identity_gain)


def _contraction_bound(contractive: bool,
                       bound: Union[float, str, None]) -> Optional[float]:
    """The GRU step's safeguard bound (``'auto'``: 0.99 for the GRU step,
    none for the contractive one, which cannot stop contracting)."""
    if bound == AUTO:
        return None if contractive else CONTRACTION_BOUND
    if bound is None:
        return None
    if contractive:
        raise ValueError(
            f"'contraction_bound' is the GRU step's safeguard; the "
            f"contractive step is a contraction for every weight "
            f"value (got contraction_bound={bound!r} "
            f"with cell='contractive'): pass cell='gru', or leave "
            f"it unset")
    check_tol("contraction_bound", bound)
    if not 0 < bound < 1:
        raise ValueError(f"'contraction_bound' must be in (0, 1) "
                         f"or None (got {bound})")
    return bound


class RBPGatedGraphConv(ImplicitOptions, CallCaches, MessagePassing):
    r"""The gated graph convolution of `"Gated Graph Sequence Neural Networks"
    <https://arxiv.org/abs/1511.05493>`_, run to a fixed point and trained
    with recurrent back-propagation (`"Reviving and Improving Recurrent
    Back-Propagation" <https://arxiv.org/abs/1803.06396>`_).

    The default step (``cell="contractive"``) is a GRU-style gated update
    that is a contraction for every value of its weights, so the fixed point
    exists, is unique and is reached:

    .. math::
        \mathbf{m}_i &= \bigoplus_{j \in \mathcal{N}(i)} p_{j,i}\,
        \mathbf{h}_j, \qquad
        \mathbf{u}_i = \bigoplus_{j \in \mathcal{N}(i)} p_{j,i}\,
        \mathbf{h}_j \tilde{\mathbf{\Theta}}_{t(j,i)}

        \mathbf{h}_i^{(l+1)} &= \mathbf{z} \odot \mathbf{m}_i
        + (1 - \mathbf{z}) \odot \big(\mathbf{W}_c \mathbf{x}_i
        + \mathbf{b}_c + \tanh(\mathbf{r}_i \odot \mathbf{u}_i)\big)

    with the reset gate :math:`\mathbf{r}_i = \sigma(\mathbf{W}_r
    \mathbf{x}_i + \mathbf{b}_r)` and the carry (update) gate
    :math:`\mathbf{z} \in (0, z_{\max})^C` computed from the input, not the
    state; the message weights rescaled to :math:`\|\tilde{\mathbf{\Theta}}
    \|_1 \le \gamma = 0.9`; the weights :math:`p_{j,i}` made
    non-expansive (each node's incoming weights sum to at most 1 in absolute
    value, or the symmetric normalisation with ``normalize``; see
    :func:`pyg_rbp.nn.adjacency.nonexpansive_weights`). The step is then a
    contraction with constant :math:`L = z_{\max} + (1 - z_{\max})\gamma <
    1`, and its fixed point generalises APPNP's propagation
    (:math:`\mathbf{z} = 1 - \alpha`, :math:`\mathbf{\Theta} = 0`); see
    :mod:`pyg_rbp.nn.contractive_step` and docs/methods.md.

    ``cell="gru"`` is PyG's step (the layer's default before version 0.2):

    .. math::
        \mathbf{m}_i^{(l+1)} &= \bigoplus_{j \in \mathcal{N}(i)} e_{j,i}
        \cdot \mathbf{\Theta}_{t(j,i)} \cdot \mathbf{h}_j^{(l)}

        \mathbf{h}_i^{(l+1)} &= \textrm{GRU} \big( \mathbf{m}_i^{(l+1)}
        \, \Vert \, \mathbf{h}_i^{(0)}, \mathbf{h}_i^{(l)} \big)

    whose trained map may stop contracting (the ``hybrid`` method then
    back-propagates through the steps; the safeguard ``contraction_bound``
    pulls it back).

    Either step is iterated (from :math:`\mathbf{h}^{(0)} = \mathbf{x} \Vert
    \mathbf{0}` for the GRU step; from the candidate without messages for
    the contractive step, whose fixed point does not depend on the start)
    until :math:`\|\mathbf{h}^{(l+1)} - \mathbf{h}^{(l)}\| \le
    \mathrm{tol} \cdot \|\mathbf{h}^{(l)}\|` or for at most ``num_layers``
    steps. Gradients come from the implicit function theorem at the fixed
    point :math:`\mathbf{h}^* = F(\mathbf{x}, \mathbf{w}, \mathbf{h}^*)`
    (see :func:`pyg_rbp.rbp`), so training memory does not grow with the
    number of steps. There is one :math:`\mathbf{\Theta}_t` per edge type
    :math:`t(j,i)` when ``num_edge_types > 1`` (the typed edges of the
    original GGNN: bond types, AST and data-flow edge kinds), else a single
    :math:`\mathbf{\Theta}`.

    Two differences from :class:`torch_geometric.nn.conv.GatedGraphConv`, both
    needed for a fixed point to exist and to depend on the input:

    * one weight :math:`\mathbf{\Theta}` is shared by every step (a fixed
      point needs a stationary map), where GatedGraphConv learns one per
      layer;
    * the input :math:`\mathbf{x}` enters every step (the contractive
      step's gates and candidate; the GRU's input is ``2 * out_channels``
      wide, message and input), so that :math:`\mathbf{h}^*` depends on
      :math:`\mathbf{x}` and gradients reach upstream layers.

    Args:
        out_channels (int): Size of each output sample.
        num_layers (int, optional): The most propagation steps :math:`L`.
            (default: :obj:`100`)
        aggr (str, optional): The aggregation scheme to use
            (:obj:`"add"`, :obj:`"mean"`, :obj:`"max"`, ...). ``"add"`` and
            ``"mean"`` run as one sparse-matrix product per step. The
            contractive step takes ``"add"``, ``"sum"``, ``"mean"``,
            ``"max"`` and ``"min"`` (with ``"add"``, a node whose incoming
            weights sum to more than 1 averages them).
            (default: :obj:`"add"`)
        bias (bool, optional): If set to :obj:`False`, the layer will not learn
            an additive bias. (default: :obj:`True`)
        num_edge_types (int, optional): Number of edge types :math:`k`; with
            :math:`k > 1`, ``forward`` needs ``edge_type`` and the layer
            learns one :math:`\mathbf{\Theta}_t` per type (``weight`` has
            shape ``[k, C, C]``, or ``[k + 1, C, C]`` with ``normalize``,
            whose added self-loops get a weight of their own). :math:`k = 1`
            is the untyped layer (``weight`` ``[C, C]``). (default: :obj:`1`)
        cell (str, optional): The step: :obj:`"contractive"` (a contraction
            by construction, above) or :obj:`"gru"` (PyG's GRU step, the
            default before version 0.2; checkpoints saved with it need
            ``cell="gru"``). (default: :obj:`"contractive"`)
        gate (str, optional): The contractive step's carry gate:
            :obj:`"channel"` (one learned value per channel) or
            :obj:`"input"` (a function of each node's input as well).
            (default: :obj:`"channel"`)
        carry (float, optional): The contractive step's carry gate at the
            start (and where weight decay pulls it): how much of each step
            comes from the neighbours' states rather than the candidate,
            APPNP's :math:`1 - \alpha`; the gate stays below
            :math:`z_{\max} = (1 + \mathrm{carry}) / 2`. Larger values carry
            information further and converge more slowly.
            (default: :obj:`0.9`)
        method (str or GradientMethod, optional): Gradient method, as a
            value carrying its settings (``Hybrid(...)``,
            ``Neumann(steps=5)``, ``CG(...)``, ``FixedPoint(...)``,
            ``BPTT()``, ``TBPTT(steps)``, from :mod:`pyg_rbp`) or by name:
            :obj:`"hybrid"`, :obj:`"neumann"`, :obj:`"cg"`,
            :obj:`"gmres"`, :obj:`"fixed_point"`, :obj:`"bptt"` or
            :obj:`"tbptt"`. The default, :class:`~pyg_rbp.Hybrid`, takes
            the implicit gradient (Anderson-RBP with the contractive step,
            Neumann-RBP with the GRU) for calls whose propagation
            converged (the adjoint solved to ``backward_tol``) and
            back-propagates through the steps for calls that did not (while
            they fit 1 GiB), since the implicit gradient holds only at a
            fixed point; ``stats`` says which ran, :attr:`monitor` counts
            them. (default: :obj:`"hybrid"`)
        tol (float, optional): Relative residual at which propagation stops;
            ``0`` runs exactly ``num_layers`` steps. (default: :obj:`1e-5`)
        solver (str or ForwardSolver, optional): Forward solver, by name
            (:obj:`"fixed_point"`, :obj:`"anderson"`, :obj:`"broyden"`) or
            as a value with its settings (``Anderson(memory=8)``,
            ``Broyden(memory=10)``, from :mod:`pyg_rbp`).
            (default: :obj:`None`: ``"anderson"`` with the contractive
            step, ``"fixed_point"`` with the GRU)
        backward_steps (int, optional): With ``method`` by name: most
            adjoint iterations (or the truncation of ``"tbptt"``); leave
            ``None`` with a method value. (default: :obj:`None`, meaning 20)
        backward_tol (float, optional): With ``method`` by name: relative
            residual at which the adjoint solve stops.
            (default: :obj:`None`, meaning ``tol`` with the contractive
            step (1e-6 if ``tol`` is 0) and 1e-6 with the GRU)
        normalize (bool, optional): If set to :obj:`True`, aggregate with
            :math:`\mathbf{D}^{-1/2}(\mathbf{A} + \mathbf{I})\mathbf{D}^{-1/2}`
            (self-loops added), which keeps the map better conditioned on
            graphs with high degrees. Needs ``aggr="add"``.
            (default: :obj:`False`)
        state_init (str, optional): The GRU step's start:
            :obj:`"contractive"` (the state-acting weights at half PyG's
            scale) or :obj:`"identity"` (start from propagation that keeps
            every channel: :math:`\mathbf{\Theta} = \mathbf{I}` and the
            message gain ``identity_gain``; for long-range tasks on directed
            acyclic graphs, see :meth:`reset_parameters`).
            (default: :obj:`"contractive"`)
        identity_gain (float, optional): The gain of ``"identity"``.
            (default: :obj:`2.0`)
        jacobian_penalty (str, optional): :obj:`"spectral"` or
            :obj:`"frobenius"`: each training call also puts a differentiable
            estimate of :math:`\rho(J)^2` (``'spectral'``) or
            :math:`\|J\|_F^2 / n` in ``stats.jacobian_penalty``; add a
            multiple of it to the loss to keep the map contractive (see
            :func:`pyg_rbp.rbp`). (default: :obj:`None`)
        contraction_bound (float, optional): The GRU step's automatic
            safeguard: when a training call's propagation does not reach
            ``tol`` within ``num_layers`` steps, the output carries the
            penalty :math:`w \max(0, \hat\rho(J)^2 - b^2)`, whose gradient
            joins the backward pass as if it were in the loss, so a map that
            drifted to :math:`\rho(J) \ge 1` (no unique fixed point: the
            implicit gradient is then wrong) is pulled back to a
            contraction. Calls that converge are untouched. ``None``
            switches it off (see :func:`pyg_rbp.rbp` and docs/methods.md).
            The contractive step needs none. (default: :obj:`"auto"`: 0.99
            with ``cell="gru"``, none with ``cell="contractive"``)
        contraction_weight (float, optional): Its weight :math:`w`.
            (default: :obj:`10.0`)
        warm_start (bool, optional): Start each call's propagation at the
            previous call's fixed point on the same graph (the same
            ``edge_index`` tensor, unchanged), instead of at ``x``; a few
            graphs are remembered. Safe where :math:`F` contracts (the fixed
            point is unique, so the RBP gradient is unchanged and only steps
            are saved); see :mod:`pyg_rbp.nn.warm_start`.
            (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` with
          :math:`F_{in} \le` ``out_channels``,
          edge indices :math:`(2, |\mathcal{E}|)` or a sparse adjacency,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*,
          edge types :math:`(|\mathcal{E}|)` *(integers; needed when*
          ``num_edge_types > 1``, *with edge indices as a* ``[2, E]``
          *tensor)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`

    After each call, :attr:`stats` holds that call's
    :class:`pyg_rbp.RBPStats` (its backward fields fill in on backward), and
    :attr:`monitor` (a :class:`pyg_rbp.ConvergenceMonitor`) counts the
    training calls whose propagation converged, whose adjoint met its
    tolerance and which were unrolled; the first miss of each kind raises
    one :class:`pyg_rbp.ConvergenceWarning` per layer instance.
    """

    #: Reset in copies and pickles (see :mod:`pyg_rbp.nn.call_caches`).
    call_caches = {"stats": lambda: None, "_adjacency": lambda: None,
                   "_warm": WarmStarts}

    def __init__(self, out_channels: int, num_layers: int = 100,
                 aggr: str = "add", bias: bool = True, *,
                 num_edge_types: int = 1,
                 cell: str = "contractive", gate: str = "channel",
                 carry: float = CARRY,
                 method: MethodLike = "hybrid", tol: float = 1e-5,
                 solver: Optional[SolverLike] = None,
                 backward_steps: Optional[int] = None,
                 backward_tol: Optional[float] = None,
                 normalize: bool = False,
                 state_init: str = "contractive", identity_gain: float = 2.0,
                 jacobian_penalty: Optional[str] = None,
                 contraction_bound: Union[float, str, None] = AUTO,
                 contraction_weight: float = CONTRACTION_WEIGHT,
                 warm_start: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(aggr=aggr, **kwargs)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.num_layers = check_int("num_layers", num_layers, 1)
        self.num_edge_types = check_int("num_edge_types", num_edge_types, 1)
        self.cell = check_choice("cell", cell, CELLS)
        contractive = self.cell == "contractive"
        self.gate, self.carry = _carry_gate(contractive, gate, carry, aggr)
        # the contractive step's adjoint is solved to the forward's own
        # tol by default (SolverSettings.default_tol): a tighter one cost a
        # MUTAG batch 45 adjoint products instead of 32 and bought nothing
        self._set_solver_options(
            method=method, tol=tol,
            solver=CELL_SOLVERS[self.cell] if solver is None else solver,
            backward_steps=backward_steps, backward_tol=backward_tol,
            default_tol=None if contractive else DEFAULT_TOL,
            hybrid_adjoint="anderson" if contractive else "neumann")
        if normalize and aggr not in ("add", "sum"):
            raise ValueError(f"'{type(self).__name__}' supports "
                             f"normalize=True only with aggr='add' "
                             f"(got aggr={aggr!r})")
        self.normalize = bool(normalize)
        self.state_init, self.identity_gain = _gru_start(
            contractive, state_init, identity_gain)
        self.jacobian_penalty = None if jacobian_penalty is None else \
            check_choice("jacobian_penalty", jacobian_penalty, PENALTIES)
        self.contraction_bound = _contraction_bound(contractive,
                                                    contraction_bound)
        self.contraction_weight = check_tol("contraction_weight",
                                            contraction_weight)
        self.stats: Optional[RBPStats] = None
        self._adjacency: Optional[SparseMatrix] = None
        if not isinstance(warm_start, bool):
            raise TypeError(f"'warm_start' must be a bool (got "
                            f"{type(warm_start).__name__})")
        self.warm_start = warm_start
        self._warm = WarmStarts()
        self._make_parameters(bias)
        self.reset_parameters()

    def _make_parameters(self, bias: bool) -> None:
        """The step's parameters: ``weight`` (one Theta per edge type), and
        the contractive step's ``lin``, ``gate_bias`` (and ``gate_weight``)
        or the GRU step's ``rnn``."""
        out_channels = self.out_channels
        num_weights = self._num_weights()
        self.weight = Parameter(torch.empty(out_channels, out_channels)
                                if num_weights == 1 else
                                torch.empty(num_weights, out_channels,
                                            out_channels))
        if self.cell == "contractive":
            # reset gate and candidate input, from x: [W_r; W_c]
            self.lin = torch.nn.Linear(out_channels, 2 * out_channels,
                                       bias=bias)
            self.gate_bias = Parameter(torch.empty(out_channels)) \
                if bias else None
            self.gate_weight = Parameter(torch.empty(out_channels,
                                                     out_channels)) \
                if self.gate == "input" else None
        else:
            self.rnn = torch.nn.GRUCell(2 * out_channels, out_channels,
                                        bias=bias)

    def _num_weights(self) -> int:
        """One Theta per edge type, plus one for the self-loops that
        ``normalize`` adds when there are several types."""
        k = self.num_edge_types
        return k + 1 if k > 1 and self.normalize else k

    @property
    def lipschitz_bound(self) -> Optional[float]:
        r"""The contractive step's Lipschitz constant bound :math:`L =
        z_{\max} + (1 - z_{\max})\gamma` (in the weighted max-norm of
        :mod:`pyg_rbp.nn.contractive_step`), valid for every weight value;
        ``None`` for the GRU step, which has none."""
        if self.cell != "contractive":
            return None
        z_max = max_carry(self.carry)
        return z_max + (1.0 - z_max) * MESSAGE_BOUND

    def reset_parameters(self) -> None:
        r"""Re-draw :math:`\mathbf{\Theta}` and the step's weights.

        Contractive step: :math:`\mathbf{\Theta}` and the input weights as
        PyG's layers draw them (uniform in :math:`\pm 1/\sqrt{C}`), the carry
        gate's bias and input weights at zero (the gate at ``carry``).

        GRU step, ``state_init="contractive"``: as GatedGraphConv (uniform in
        :math:`\pm 1/\sqrt{C}`), except that the weights acting on the state
        (:math:`\mathbf{\Theta}`, the GRU's hidden weights and the message
        half of its input weights) start at half that scale, so that
        :math:`F` starts out contractive.

        GRU step, ``state_init="identity"``: :math:`\mathbf{\Theta}_t =
        \mathbf{I}`,
        the candidate's message weights :math:`W_{i,n,m} = g\mathbf{I}`
        (:math:`g` = ``identity_gain``), and the gates' message weights and
        all hidden weights at a tenth of PyG's scale. One hop then maps a
        neighbour's state to about :math:`\tanh(g\,\mathbf{h}_j)` channel
        by channel: for :math:`g > 1` each channel has two stable values, so
        a pattern of signs travels any distance along a directed path instead
        of fading (the contractive start loses it geometrically with the
        distance; see docs/long_range.md). On a directed acyclic graph the
        forward iteration still converges (the propagation part of the
        Jacobian is nilpotent there); on graphs with cycles :math:`g > 1`
        can make :math:`F` expansive, so pair it with the Jacobian penalty.
        """
        self._warm.clear()  # stored fixed points belong to old weights
        super().reset_parameters()
        uniform(self.out_channels, self.weight)
        if self.cell == "contractive":
            self.lin.reset_parameters()
            with torch.no_grad():
                if self.gate_bias is not None:
                    self.gate_bias.zero_()
                if self.gate_weight is not None:
                    self.gate_weight.zero_()
            return
        self.rnn.reset_parameters()
        c = self.out_channels
        with torch.no_grad():
            if self.state_init == "identity":
                self.weight.copy_(torch.eye(c).expand_as(self.weight))
                self.rnn.weight_ih[2 * c:, :c].copy_(
                    self.identity_gain * torch.eye(c))
                self.rnn.weight_ih[:2 * c, :c].mul_(0.1)
                self.rnn.weight_hh.mul_(0.1)
                return
            self.weight.mul_(INIT_STATE_SCALE)
            self.rnn.weight_hh.mul_(INIT_STATE_SCALE)
            self.rnn.weight_ih[:, :c].mul_(INIT_STATE_SCALE)

    def _load_from_state_dict(self, state_dict: dict, prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        # A checkpoint of the other step would fail with a list of missing
        # and unexpected keys; say what it is and what to pass instead.
        has_gru = any(k.startswith(prefix + "rnn.") for k in state_dict)
        has_contractive = prefix + "lin.weight" in state_dict
        saved = "gru" if has_gru else "contractive" if has_contractive \
            else None
        if saved is not None and saved != self.cell:
            raise ValueError(
                f"'{self.__class__.__name__}': this state dict holds the "
                f"weights of the {saved!r} step (keys '{prefix}"
                f"{'rnn.*' if saved == 'gru' else 'lin.*'}'), but the layer "
                f"was built with cell={self.cell!r}; build it with "
                f"cell={saved!r} to load it (the default step is "
                f"'contractive' since version 0.2; checkpoints from before "
                f"hold the GRU step)")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @eager
    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None,
                batch: OptTensor = None,
                edge_type: OptTensor = None) -> Tensor:
        """Propagate to the fixed point; see the class docstring."""
        step, h0 = self.fixed_point_map(x, edge_index, edge_weight,
                                        edge_type)
        # training and evaluation calls keep separate states: dropout
        # makes their inputs, and so their fixed points, differ
        key = graph_key(edge_index, h0.size(0), h0.size(1), h0.dtype,
                        h0.device) if self.warm_start else None
        key = None if key is None else (self.training, key)
        warm = self._warm.get(key)
        if warm is not None:
            h0 = warm
        h, self.stats = rbp(step, h0, method=self.settings.gradient,
                            max_iter=self.num_layers, tol=self.tol,
                            solver=self.settings.forward, batch=batch,
                            jacobian_penalty=self.jacobian_penalty,
                            contraction_bound=self.contraction_bound,
                            contraction_weight=self.contraction_weight,
                            monitor=self.monitor)
        self._warm.put(key, h)
        return h

    def fixed_point_map(
        self,
        x: Tensor,
        edge_index: Adj,
        edge_weight: OptTensor = None,
        edge_type: OptTensor = None,
    ) -> Tuple[Callable[[Tensor], Tensor], Tensor]:
        r"""Check the inputs and return the map :math:`F` and :math:`h^{(0)}`.

        ``F(h)`` is one propagation step for this graph and input; ``forward``
        hands it to :func:`pyg_rbp.rbp`. Useful to inspect the dynamics
        (e.g. the Jacobian at the fixed point) or to drive your own solver.
        :math:`h^{(0)}` is :math:`\mathbf{x}` (zero-padded) for the GRU
        step, as in GatedGraphConv, and the candidate without messages,
        :math:`\mathbf{W}_c \mathbf{x} + \mathbf{b}_c`, for the
        contractive step, whose fixed point does not depend on the start
        (see :meth:`ContractiveStep.start`).
        """
        name = self.__class__.__name__
        check_float_tensor("x", x)
        if x.dim() != 2:
            raise ValueError(f"'x' must have shape [num_nodes, channels] "
                             f"(got {x.dim()} dimensions: {list(x.shape)})")
        if x.size(-1) > self.out_channels:
            raise ValueError(
                f"'{name}' needs at most out_channels={self.out_channels} "
                f"input channels (got x with {x.size(-1)}); put a Linear "
                f"layer in front")
        if x.dtype == autocast_dtype(x.device.type) and \
                x.dtype != self.weight.dtype:
            x = x.to(self.weight.dtype)  # autocast: the state stays float32
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            raise TypeError(
                f"'x' must match the parameters' dtype and device "
                f"({self.weight.dtype}, {self.weight.device}) "
                f"(got {x.dtype}, {x.device})")
        check_finite("x", x)
        num_nodes = x.size(0)
        edge_type = check_edge_type(edge_type, edge_index,
                                    self.num_edge_types, name)
        edge_index, edge_weight = standardise_graph(
            edge_index, edge_weight, num_nodes, x.device, name)
        if x.size(-1) < self.out_channels:
            zero = x.new_zeros(num_nodes, self.out_channels - x.size(-1))
            x = torch.cat([x, zero], dim=1)
        if self.cell == "contractive":
            step = self._contractive_step(x, edge_index, edge_weight,
                                          edge_type)
            return step, step.start().to(x.dtype)

        aggregate = build_aggregate(edge_index, edge_weight, num_nodes,
                                    self.aggr, self.normalize, x.dtype,
                                    self._propagate_step, edge_type,
                                    self._num_weights(),
                                    scatter=bool(self.explain))
        self._adjacency = aggregate if isinstance(aggregate, SparseMatrix) \
            else None
        step = GGNNStep(x, self.weight, self.rnn, aggregate,
                        linear_aggregate=self.aggr in MATRIX_AGGRS)
        return step, x

    def _contractive_step(self, x: Tensor, edge_index: Tensor,
                          edge_weight: OptTensor,
                          edge_type: OptTensor) -> ContractiveStep:
        """The contractive step for a checked, padded ``x`` and a
        standardised graph (see :mod:`pyg_rbp.nn.contractive_step`)."""
        num_nodes, c = x.size(0), self.out_channels
        types = self._num_weights()
        edge_index, edge_weight, edge_type = nonexpansive_weights(
            edge_index, edge_weight, num_nodes, self.aggr, self.normalize,
            x.dtype, edge_type if types > 1 else None, types - 1)
        aggr = "add" if self.normalize else self.aggr
        scatter = bool(self.explain)
        carry = build_aggregate(edge_index, edge_weight, num_nodes, aggr,
                                False, x.dtype, self._propagate_step,
                                scatter=scatter)
        message = None
        if types > 1 or aggr not in MATRIX_AGGRS:
            message = build_aggregate(edge_index, edge_weight, num_nodes,
                                      aggr, False, x.dtype,
                                      self._propagate_step, edge_type,
                                      types, scatter=scatter)
        self._adjacency = carry if isinstance(carry, SparseMatrix) else None
        z_max = max_carry(self.carry)
        offset = math.log(self.carry / (z_max - self.carry))
        with full_precision(x.device.type):  # constants in full precision
            rc = self.lin(x)
            reset = torch.sigmoid(rc[:, :c])
            logits = torch.full((c, ), offset, dtype=x.dtype,
                                device=x.device)
            if self.gate_bias is not None:
                logits = logits + self.gate_bias
            if self.gate_weight is not None:
                logits = torch.addmm(logits, x, self.gate_weight.t())
            weight = bounded_message_weight(self.weight, MESSAGE_BOUND)
        return ContractiveStep(reset, rc[:, c:], carry_gate(logits, z_max),
                               weight, carry, message,
                               float(self.lipschitz_bound))

    @property
    def adjacency(self) -> Optional[SparseMatrix]:
        r"""The aggregation matrix of the last call (with ``normalize=True``
        and one edge type, :math:`D^{-1/2}(A + I)D^{-1/2}`), for a model to
        reuse instead of building it again; ``None`` before the first call
        or where the call aggregated by gather/scatter."""
        return self._adjacency

    def _propagate_step(self, edge_index: Tensor, h: Tensor,
                        edge_weight: OptTensor,
                        edge_type: OptTensor = None) -> Tensor:
        # propagate_type: (x: Tensor, edge_weight: OptTensor,
        #                  edge_type: OptTensor)
        return self.propagate(edge_index, x=h, edge_weight=edge_weight,
                              edge_type=edge_type)

    def message(self, x_j: Tensor, edge_weight: OptTensor,
                edge_type: OptTensor = None) -> Tensor:
        if edge_type is not None:  # x_j: [E, k C], every type's transform
            x_j = x_j.view(x_j.size(0), -1, self.out_channels)[
                torch.arange(x_j.size(0), device=x_j.device), edge_type]
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        types = "" if self.num_edge_types == 1 else \
            f", num_edge_types={self.num_edge_types}"
        cell = "" if self.cell == "contractive" else f", cell={self.cell}"
        return (f"{self.__class__.__name__}({self.out_channels}, "
                f"num_layers={self.num_layers}{types}{cell}, "
                f"method={self.method})")

