r"""Survival criteria: time-to-event losses on bag outputs, with the risk
score each one implies (see :doc:`/math`, survival heads).

A bag (a slide, or a patient's slides as one bag) has a time :math:`t
\geq 0` and an event indicator :math:`e` (1: the event was observed at
:math:`t`, 0: censored at :math:`t`); the targets of a batch are a
:math:`(B, 2)` tensor of :math:`(t, e)` rows."""
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``survival_loss`` choices, by name.
SURVIVAL_LOSSES = ('nll', 'cox')


def _at_least_float32(logits: Tensor) -> Tensor:
    # Half-precision logits (autocast) are computed in float32; float64
    # stays float64.
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def check_survival_targets(Y, num_bags: int) -> None:
    r"""One :math:`(t, e)` row per bag: :math:`t` finite and
    non-negative, :math:`e` 0 or 1."""
    if not isinstance(Y, Tensor) or tuple(Y.shape) != (num_bags, 2):
        raise ValueError(f"'Y' must have shape (batch_size, 2) = "
                         f"({num_bags}, 2), a (time, event) row per bag "
                         f"(got {tuple(getattr(Y, 'shape', ()))})")
    times, events = Y[:, 0], Y[:, 1]
    bad = times[~(torch.isfinite(times) & (times >= 0))]
    if bad.numel():
        raise ValueError(f"'Y' times must be finite and non-negative (got "
                         f"{sorted(set(bad.tolist()))[:5]})")
    bad = events[(events != 0) & (events != 1)]
    if bad.numel():
        raise ValueError(f"'Y' events must be 0 (censored) or 1 (observed) "
                         f"(got {sorted(set(bad.tolist()))[:5]})")


class SurvivalLoss(torch.nn.Module):
    r"""Base class of the survival criteria: a loss on the bag outputs
    and the targets :math:`(B, 2)`, the number of outputs per bag it needs
    (:attr:`num_outputs`) and the risk score of the outputs
    (:meth:`risk`, higher means shorter expected survival)."""
    #: The name ``--survival-loss`` gives it.
    name = ''

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def risk(self, logits: Tensor) -> Tensor:
        r"""The risk of each bag :math:`(B,)`."""
        raise NotImplementedError

    def baseline(self, times: Sequence[float],
                 events: Sequence[int]) -> Tensor:
        r"""The outputs :math:`(K,)` of a bag of average risk among bags
        with outcomes :obj:`times` and :obj:`events` (the training bags):
        where a :class:`SurvivalHead`'s biases start."""
        return torch.zeros(self.num_outputs)

    def options(self) -> dict:
        r"""What rebuilds the criterion (checkpoints record it)."""
        return {'survival_loss': self.name}


class CoxPHLoss(SurvivalLoss):
    r"""The negative Cox partial log-likelihood of a batch, with Breslow's
    handling of tied times. Each bag has one output, its log-risk
    :math:`r`:

    .. math::
        \mathcal{L} = -\frac{1}{E} \sum_{i:\, e_i = 1} \Big[ r_i - \log
        \sum_{j:\, t_j \geq t_i} \exp(r_j) \Big],

    with :math:`E` the number of events in the batch; a batch without an
    event contributes 0 (with a zero gradient). The risk is :math:`r`.

    The partial likelihood compares the bags of a batch with each other:
    it needs batches of at least two bags, and larger batches estimate it
    better.

    Shapes:
        - **input:** logits :math:`(B,)` or :math:`(B, 1)` (or
          :math:`(B, M)`: :math:`M` samples of each risk, the loss averaged
          over them), targets :math:`(B, 2)`
        - **output:** a scalar
    """
    name = 'cox'

    @property
    def num_outputs(self) -> int:
        return 1

    def forward(self, logits: Tensor, Y: Tensor) -> Tensor:
        # (B, M): M samples of every bag's risk (a probabilistic model's),
        # the loss averaged over the samples; (B,) and (B, 1) are one.
        r = _at_least_float32(logits).reshape(Y.size(0), -1)
        times, events = Y[:, 0], Y[:, 1].to(r.dtype)
        if not bool(events.any()):
            return (r * 0).sum()
        order = torch.argsort(times, descending=True, stable=True)
        r, times, events = r[order], times[order].contiguous(), events[order]
        # After the descending sort, the risk set of bag i ({j: t_j >= t_i})
        # ends at the last bag tied with it (Breslow).
        ends = torch.searchsorted(-times, -times, right=True) - 1
        log_risk_set = torch.logcumsumexp(r, dim=0)[ends]
        per_bag = (r - log_risk_set) * events.unsqueeze(-1)
        return -per_bag.sum() / (events.sum() * r.size(1))

    def risk(self, logits: Tensor) -> Tensor:
        return _at_least_float32(logits).reshape(-1)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


class DiscreteTimeNLLLoss(SurvivalLoss):
    r"""The negative log-likelihood of discrete-time hazards (Zadeh and
    Schmid, 2020), as Patch-GCN trains survival models. The cut points
    :math:`c_1 < \dots < c_{K-1}` (:func:`survival_cut_points` takes the
    quantiles of the training set's event times) make :math:`K` intervals
    :math:`[c_{k-1}, c_k)` with :math:`c_0 = 0`, :math:`c_K = \infty`;
    :math:`y` is the interval that holds :math:`t`. A bag's :math:`K`
    outputs are hazard logits: :math:`h_k = \sigma(\mathrm{logit}_k)`,
    :math:`S_k = \prod_{j \leq k} (1 - h_j)`, :math:`S_0 = 1`, and

    .. math::
        \mathcal{L} = \begin{cases}
            -\log S_{y-1} - \log h_y & e = 1 \\
            -\log S_y & e = 0
        \end{cases}

    averaged over the batch. The risk is :math:`-\sum_k S_k`.

    Args:
        cut_points (sequence of float or Tensor): :math:`c_1, \dots,
            c_{K-1}`, strictly increasing (none: one interval).

    Shapes:
        - **input:** logits :math:`(B, K)`, targets :math:`(B, 2)`
        - **output:** a scalar
    """
    name = 'nll'

    def __init__(self, cut_points: Union[Sequence[float], Tensor]):
        super().__init__()
        cuts = torch.as_tensor(cut_points, dtype=torch.float64).reshape(-1)
        if not bool(torch.isfinite(cuts).all()) or \
                bool((cuts.diff() <= 0).any()) or bool((cuts <= 0).any()):
            raise ValueError(f"'cut_points' must be positive, finite and "
                             f"strictly increasing (got {cuts.tolist()})")
        # Not in the state dict: checkpoints record the cut points with the
        # task, and a model's weights load without them.
        self.register_buffer('cut_points', cuts, persistent=False)

    @property
    def num_outputs(self) -> int:
        return self.cut_points.numel() + 1

    def interval(self, times: Tensor) -> Tensor:
        r"""The interval (0-based) that holds each time."""
        return torch.searchsorted(self.cut_points,
                                  times.to(self.cut_points).contiguous(),
                                  right=True)

    def forward(self, logits: Tensor, Y: Tensor) -> Tensor:
        logits = _at_least_float32(logits).reshape(Y.size(0), -1)
        y = self.interval(Y[:, 0]).unsqueeze(1)
        events = Y[:, 1]
        log_survive = F.logsigmoid(-logits)        # log(1 - h_k)
        log_s = log_survive.cumsum(dim=1).gather(1, y).squeeze(1)
        log_h = F.logsigmoid(logits).gather(1, y).squeeze(1)
        # log S_{y-1} = log S_y - log(1 - h_y)
        log_before = log_s - log_survive.gather(1, y).squeeze(1)
        loss = torch.where(events > 0, -(log_before + log_h), -log_s)
        return loss.mean()

    def baseline(self, times: Sequence[float],
                 events: Sequence[int]) -> Tensor:
        r"""The logits of the discrete hazards of :obj:`times` and
        :obj:`events`: in each interval, the events in it over the bags at
        risk at its start (smoothed by :math:`\frac{1}{2}` and 1, so that
        an interval without events or bags stays finite)."""
        times = torch.as_tensor(times, dtype=torch.float64)
        events = torch.as_tensor(events, dtype=torch.float64)
        y = self.interval(times)
        bins = torch.arange(self.num_outputs)
        at_risk = (y.unsqueeze(0) >= bins.unsqueeze(1)).sum(1)
        died = ((y.unsqueeze(0) == bins.unsqueeze(1)) *
                events.unsqueeze(0)).sum(1)
        return torch.logit((died + 0.5) / (at_risk + 1.0)).float()

    def survival(self, logits: Tensor) -> Tensor:
        r"""The survival probabilities :math:`S_1, \dots, S_K`
        :math:`(B, K)`: :math:`S_k` is the probability of surviving past
        interval :math:`k` (past :math:`c_k`)."""
        return torch.exp(F.logsigmoid(-_at_least_float32(logits)).cumsum(
            dim=-1))

    def risk(self, logits: Tensor) -> Tensor:
        return -self.survival(logits).sum(dim=-1)

    def options(self) -> dict:
        return {'survival_loss': self.name,
                'cut_points': self.cut_points.tolist()}

    def __repr__(self) -> str:
        cuts = ', '.join(f'{c:g}' for c in self.cut_points.tolist())
        return f'{self.__class__.__name__}(cut_points=[{cuts}])'


class SurvivalHead(torch.nn.Linear):
    r"""The bag head of a survival model: a linear layer on the bag
    representation centred by the running mean of the training bags'
    representations,

    .. math::
        \mathbf{o} = \mathbf{W} (\mathbf{z} - \bar{\mathbf{z}}) +
        \mathbf{b},

    where :math:`\bar{\mathbf{z}}` follows the batches in training
    (:math:`\bar{\mathbf{z}} \leftarrow (1 - m) \bar{\mathbf{z}} + m
    \, \mathrm{mean}_B(\mathbf{z})`, the first batch's mean to start, no
    gradient) and is fixed in evaluation.

    The centring is a reparametrization (the same functions of
    :math:`\mathbf{z}`), but it is what lets the discrete-time NLL learn:
    an encoder's features are far from zero on average, and without it the
    gradient that should rank the bags is swamped by the one that moves
    every bag's hazards towards the baseline, along the mean
    representation (a Cox loss is blind to that shift and does not
    suffer). Batches of one bag are centred as well as larger ones. Its
    biases start at the training bags' baseline
    (:meth:`MILModel.start_at_baseline
    <pyg_sm.models.MILModel.start_at_baseline>`, the criterion's
    :meth:`SurvivalLoss.baseline`): on centred representations, a bag of
    average risk then starts with the baseline hazards, and the gradient
    goes to ranking the bags from the first step.

    Args:
        in_features (int): :math:`D`.
        out_features (int): The outputs the criterion needs.
        momentum (float, optional): :math:`m`. (default: :obj:`0.1`)

    Shapes:
        - **input:** :math:`(B, D)`
        - **output:** :math:`(B, K)`
    """
    def __init__(self, in_features: int, out_features: int,
                 momentum: float = 0.1):
        super().__init__(in_features, out_features)
        if not 0 < momentum <= 1:
            raise ValueError(f"'momentum' must lie in (0, 1] (got "
                             f"{momentum})")
        self.momentum = momentum
        self.register_buffer('running_mean', torch.zeros(in_features))
        self.register_buffer('num_batches_tracked',
                             torch.zeros((), dtype=torch.long))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, 'running_mean'):
            self.running_mean.zero_()
            self.num_batches_tracked.zero_()

    def forward(self, z: Tensor) -> Tensor:
        self.track(z)
        return super().forward(z - self.running_mean.to(z.dtype))

    def track(self, z: Tensor) -> None:
        r"""Moves :math:`\bar{\mathbf{z}}` towards the mean of the bag
        representations :obj:`z` :math:`(B, D)`, in training."""
        if self.training and z.size(0) > 0:
            with torch.no_grad():
                mean = z.detach().mean(0).to(self.running_mean.dtype)
                weight = torch.where(self.num_batches_tracked > 0,
                                     self.momentum, 1.0)
                self.running_mean.lerp_(mean, weight)
                self.num_batches_tracked += 1

    def offset(self) -> Tensor:
        r"""The head's constant term :math:`\mathbf{b} - \mathbf{W}
        \bar{\mathbf{z}}` :math:`(K,)`: the output is
        :math:`\mathbf{W}\mathbf{z}` plus it (what a model applies to
        many attention samples without forming their
        :math:`\mathbf{z}`)."""
        return self.bias - self.weight @ self.running_mean.to(self.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A survival head saved before the centring (pyg-sm 0.2) is a plain
        # linear layer: it loads uncentred, computing what it computed.
        for name in ('running_mean', 'num_batches_tracked'):
            state_dict.setdefault(prefix + name, getattr(self, name).new_zeros(
                getattr(self, name).shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, momentum={self.momentum}'


def survival_cut_points(times: Sequence[float], events: Sequence[int],
                        num_bins: int) -> list:
    r"""The :obj:`num_bins` - 1 cut points of
    :class:`DiscreteTimeNLLLoss`: the quantiles of the event times (of
    the bags whose event was observed), as Patch-GCN cuts them."""
    observed = torch.tensor([t for t, e in zip(times, events) if e],
                            dtype=torch.float64)
    if observed.numel() == 0:
        raise ValueError('the cut points need at least one observed event')
    if num_bins == 1:
        return []
    levels = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64)[1:-1]
    cuts = torch.quantile(observed, levels)
    if bool((cuts.diff() <= 0).any()) or bool((cuts <= 0).any()):
        raise ValueError(f"{num_bins} intervals at the quantiles of "
                         f"{observed.numel()} event times give tied or zero "
                         f"cut points ({[round(c, 4) for c in cuts.tolist()]}"
                         f"); use fewer intervals (--num-bins)")
    return cuts.tolist()


def make_survival_loss(survival_loss: str = 'nll',
                       cut_points: Sequence[float] = ()) -> SurvivalLoss:
    r"""The criterion named :obj:`survival_loss` (``'nll'`` with its
    :obj:`cut_points`, or ``'cox'``)."""
    if survival_loss == 'cox':
        return CoxPHLoss()
    if survival_loss == 'nll':
        return DiscreteTimeNLLLoss(cut_points)
    raise ValueError(f"'survival_loss' must be one of {list(SURVIVAL_LOSSES)}"
                     f" (got {survival_loss!r})")
