r"""What every MIL model of pyg-sm shares: reading the feature size from
:obj:`feat_ext`, the two input forms, the bag head and the
``forward`` / ``compute_loss`` / ``predict`` contract of torchmil's models."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ..data.bags import Bags, as_bags
from ..nn.survival import (
    CoxPHLoss,
    SurvivalHead,
    SurvivalLoss,
    check_survival_targets,
)
from ..utils.checks import check_dim

#: The reference's default criterion (one logit per bag). A model given it
#: with ``num_classes > 1`` uses :class:`~torch.nn.CrossEntropyLoss`.
DEFAULT_CRITERION = torch.nn.BCEWithLogitsLoss()


def bag_loss(criterion: torch.nn.Module, logits: Tensor,
             Y: Tensor) -> Tensor:
    r"""The criterion on bag logits: float targets :math:`(B,)` for one logit
    per bag (binary), class indices :math:`(B,)` for :math:`(B, K)`, and
    :math:`(t, e)` rows :math:`(B, 2)` for a
    :class:`~pyg_sm.nn.SurvivalLoss`."""
    if isinstance(criterion, SurvivalLoss):
        return criterion(logits, Y)
    if logits.dim() == 1:
        return criterion(logits.float(), Y.float())
    return criterion(logits.float(), Y.long())


def sampled_bag_loss(criterion: torch.nn.Module, logits: Tensor,
                     Y: Tensor) -> Tensor:
    r"""The criterion averaged over :math:`M` samples of the bag logits
    :math:`(B, M)` or :math:`(B, M, K)`, each sample with the bag's label:
    per sample for a Cox loss (its risk sets couple the bags), over the
    flattened samples otherwise (the same mean for a loss that averages
    over bags)."""
    if isinstance(criterion, CoxPHLoss):
        return criterion(logits.reshape(logits.size(0), -1), Y)
    samples = logits.size(1)
    return bag_loss(criterion, logits.flatten(0, 1),
                    Y.repeat_interleave(samples, dim=0))


def bag_probabilities(logits: Tensor) -> Tensor:
    r"""Class probabilities :math:`(B, K)` of bag logits: the sigmoid as
    :math:`(1 - p, p)` for one logit per bag, else the softmax."""
    if logits.dim() == 1:
        p = torch.sigmoid(logits.float())
        return torch.stack([1 - p, p], dim=-1)
    return torch.softmax(logits.float(), dim=-1)


def probe_feature_dim(feat_ext: torch.nn.Module, in_shape: tuple) -> int:
    r"""The feature size :math:`D` that :obj:`feat_ext` gives instances of
    shape :obj:`in_shape`: the last dimension of its output on
    ``zeros(1, *in_shape)``, as torchmil reads it (so ``in_shape`` may be one
    instance's shape, or torchmil's ``(bag_size, feat_dim)``), in eval mode,
    without gradients, on the extractor's device."""
    training = feat_ext.training
    feat_ext.eval()
    try:
        with torch.no_grad():
            probe = next(feat_ext.parameters(), None)
            sample = torch.zeros((1, ) + in_shape,
                                 device=None if probe is None else
                                 probe.device)
            out = feat_ext(sample)
    except Exception as error:
        raise ValueError(f"'feat_ext' failed on an input of shape "
                         f"(1, *in_shape) = {(1, ) + in_shape}: "
                         f"{error}") from error
    finally:
        feat_ext.train(training)
    if out.dim() < 2:
        raise ValueError(f"'feat_ext' must give features along the last "
                         f"dimension (got an output of shape "
                         f"{tuple(out.shape)} for an input of shape "
                         f"(1, *in_shape) = {(1, ) + in_shape})")
    return out.size(-1)


class MILModel(torch.nn.Module):
    r"""Base class of the MIL models: a feature extractor, something that
    pools each bag into one vector :math:`\mathbf{z}` with an attention value
    per instance, and a bag head on :math:`\mathbf{z}`.

    A subclass calls ``super().__init__(in_shape, feat_ext, criterion)``
    (which sets :obj:`feature_dim`), builds its layers, sets
    :obj:`self.classifier = self.bag_head()` and implements
    :meth:`pool_bags`. Every method then takes both input forms:

    - graph form: ``model(data)`` for a ``Data``/``Batch`` with :obj:`x`,
      :obj:`edge_index`, optional :obj:`edge_weight` and :obj:`batch`, or
      ``model(x, edge_index, edge_weight=..., batch=...)``. Outputs are per
      graph :math:`(B,)` and per node :math:`(|\mathcal{V}|,)`, aligned
      with :obj:`data.x`.
    - dense form: ``model(X, adj, mask)`` with :obj:`X` :math:`(B, N, *)`,
      :obj:`adj` :math:`(B, N, N)` dense or sparse COO and :obj:`mask`
      :math:`(B, N)`. Outputs are :math:`(B,)` and :math:`(B, N)`; padded
      positions never influence them and their attention is :obj:`-inf`.

    The bag head gives one logit per bag with :obj:`num_classes=1`, the
    reference's binary head, and :math:`K` logits with
    :obj:`num_classes=K > 1`; the default criterion is then
    :class:`~torch.nn.CrossEntropyLoss` on class indices. With a survival
    criterion (:class:`~pyg_sm.nn.CoxPHLoss`,
    :class:`~pyg_sm.nn.DiscreteTimeNLLLoss`) the head has the outputs the
    criterion needs, the labels are :math:`(t, e)` rows and
    :meth:`risk` gives each bag's risk score.

    Args:
        in_shape (tuple or int): Shape of one instance's input to
            :obj:`feat_ext`.
        feat_ext (torch.nn.Module): Instance feature extractor.
        criterion (torch.nn.Module): Loss on the logits.
        num_classes (int, optional): :math:`K`. (default: :obj:`1`)
    """
    #: Whether the attention is a distribution (the model then predicts
    #: ``attention_std`` too: :meth:`predict` takes ``return_att_std``).
    probabilistic = False

    def __init__(self, in_shape, feat_ext: torch.nn.Module,
                 criterion: torch.nn.Module, num_classes: int = 1):
        super().__init__()
        check_dim('num_classes', num_classes)
        if isinstance(criterion, SurvivalLoss):
            if num_classes not in (1, criterion.num_outputs):
                raise ValueError(f"'num_classes' ({num_classes}) must be 1 "
                                 f"or {criterion.num_outputs}, the outputs "
                                 f"that {criterion!r} needs")
            num_classes = criterion.num_outputs
        if num_classes > 1 and criterion is DEFAULT_CRITERION:
            criterion = torch.nn.CrossEntropyLoss()
        self._head_size = num_classes
        self.in_shape = (in_shape, ) if isinstance(in_shape, int) else \
            tuple(in_shape)
        self.feat_ext = feat_ext
        self.feature_dim = probe_feature_dim(feat_ext, self.in_shape)
        self.criterion = criterion

    def bag_head(self) -> torch.nn.Linear:
        r"""The layer from :math:`\mathbf{z}` to the bag logit(s): linear,
        centred on the training bags (:class:`~pyg_sm.nn.SurvivalHead`)
        with a survival criterion."""
        if isinstance(self.criterion, SurvivalLoss):
            return SurvivalHead(self.feature_dim, self._head_size)
        return torch.nn.Linear(self.feature_dim, self._head_size)

    @property
    def num_classes(self) -> int:
        r"""Logits per bag: 1 (binary, the reference) or :math:`K`."""
        return self.classifier.out_features

    @property
    def task(self) -> str:
        r"""``'survival'`` with a survival criterion, else
        ``'classification'``."""
        return 'survival' if isinstance(self.criterion, SurvivalLoss) \
            else 'classification'

    def risk(self, logits: Tensor) -> Tensor:
        r"""The risk score :math:`(B,)` of the bag outputs of a survival
        model (higher: shorter expected survival), as its criterion defines
        it."""
        if not isinstance(self.criterion, SurvivalLoss):
            raise ValueError(f"{type(self).__name__}.risk needs a survival "
                             f"criterion (got {self.criterion!r})")
        return self.criterion.risk(logits)

    def start_at_baseline(self, times, events) -> None:
        r"""Starts the biases of a survival model's head at its
        criterion's baseline of the training bags' :obj:`times` and
        :obj:`events` (:meth:`~pyg_sm.nn.SurvivalLoss.baseline`): the
        discrete-time NLL then learns to rank the bags from its first
        steps instead of first moving every bag towards the baseline."""
        if not isinstance(self.classifier, SurvivalHead):
            raise ValueError(f"{type(self).__name__}.start_at_baseline needs "
                             f"a survival criterion (got {self.criterion!r})")
        with torch.no_grad():
            self.classifier.bias.copy_(self.criterion.baseline(
                times, events).to(self.classifier.bias))

    def pool_bags(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        r"""Pools bags of extracted features: returns :math:`\mathbf{z}`
        :math:`(B, D)` and the attention values :math:`(|\mathcal{V}|)`."""
        raise NotImplementedError

    def reset_parameters(self):
        for module in self.children():
            if module is not self.feat_ext and hasattr(module,
                                                       'reset_parameters'):
                module.reset_parameters()

    def _logits(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        z, f = self.pool_bags(bags.with_features(self.feat_ext(bags.x)))
        logits = self.classifier(z)
        if self.num_classes == 1:
            logits = logits.squeeze(-1)
        return logits, bags.pad(f)

    def forward(
        self,
        X=None,
        adj=None,
        mask: Optional[Tensor] = None,
        return_att: bool = False,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        size: Optional[int] = None,
        x: Optional[Tensor] = None,
        edge_index=None,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Bag logits and, with :obj:`return_att=True`, the attention
        values before the softmax.

        Args:
            X (torch.Tensor or Data): The instances: node features
                :math:`(|\mathcal{V}|, *)` (graph form), :math:`(B, N, *)`
                (dense form), or a PyG ``Data``/``Batch`` holding
                everything. PyG's name :obj:`x=` works too.
            adj (torch.Tensor, optional): Graph form: edge indices
                :math:`(2, |\mathcal{E}|)` or a sparse adjacency (PyG's
                name :obj:`edge_index=` works too); dense form: the
                :math:`(B, N, N)` adjacency, dense or sparse COO.
            mask (torch.Tensor, optional): Dense form only: :math:`(B, N)`,
                true at real instances.
            return_att (bool, optional): Also return the attention values.
                (default: :obj:`False`)
            edge_weight (torch.Tensor, optional): Graph form: a weight per
                edge :math:`(|\mathcal{E}|)`.
            batch (torch.Tensor, optional): Graph form: the graph of each
                node :math:`(|\mathcal{V}|)`.
            size (int, optional): Graph form: the number of graphs :math:`B`
                (default: read from :obj:`batch`, which cannot show empty
                graphs at its end; an empty bag is an error).

        Shapes:
            - **output:** logits :math:`(B,)` (:math:`(B, K)` with
              :math:`K > 1` classes); attention :math:`(|\mathcal{V}|)` in
              the graph form, :math:`(B, N)` with :obj:`-inf` at padded
              positions in the dense form.
        """
        bags = as_bags(X, adj, mask, edge_weight, batch, size, x=x,
                       edge_index=edge_index)
        logits, att = self._logits(bags)
        return (logits, att) if return_att else logits

    def compute_loss(
        self,
        Y: Tensor,
        X=None,
        adj=None,
        mask: Optional[Tensor] = None,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        size: Optional[int] = None,
        x: Optional[Tensor] = None,
        edge_index=None,
    ) -> Tuple[Tensor, dict]:
        r"""Returns the logits and ``{criterion class name: loss}`` for the
        bag labels :obj:`Y` :math:`(B,)`: 0 or 1 (or a probability in
        between) with one logit per bag, class indices in :math:`[0, K)`
        with :math:`K > 1` classes; with a survival criterion a
        :math:`(B, 2)` tensor of (time, event) rows. The other arguments
        are :meth:`forward`'s."""
        bags = as_bags(X, adj, mask, edge_weight, batch, size, x=x,
                       edge_index=edge_index)
        if isinstance(self.criterion, SurvivalLoss):
            check_survival_targets(Y, bags.num_graphs)
        else:
            check_bag_labels(Y, bags, self.num_classes,
                             from_batch=size is None and batch is not None)
        return self.loss_terms(bags, Y)

    def loss_terms(self, bags: Bags, Y: Tensor) -> Tuple[Tensor, dict]:
        r""":meth:`compute_loss` on bags and labels already checked: the
        logits and the named terms whose sum is the training loss (the
        criterion; a probabilistic model adds its KL term)."""
        logits, _ = self._logits(bags)
        loss = bag_loss(self.criterion, logits, Y)
        return logits, {self.criterion.__class__.__name__: loss}

    def predict(
        self,
        X=None,
        adj=None,
        mask: Optional[Tensor] = None,
        return_inst_pred: bool = True,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        size: Optional[int] = None,
        x: Optional[Tensor] = None,
        edge_index=None,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Bag logits :math:`(B,)` and, if :obj:`return_inst_pred`, the
        instance predictions (the attention values); the other arguments
        are :meth:`forward`'s."""
        return self.forward(X, adj, mask, return_inst_pred,
                            edge_weight=edge_weight, batch=batch, size=size,
                            x=x, edge_index=edge_index)


def check_bag_labels(Y, bags: Bags, num_classes: int,
                     from_batch: bool = False) -> None:
    r"""One label per bag, each a valid target: 0 or 1 (a probability in
    between is a soft label) with one logit per bag, a class index in
    :math:`[0, K)` with :math:`K` logits."""
    if not isinstance(Y, Tensor) or tuple(Y.shape) != (bags.num_graphs, ):
        hint = (" (the batch vector gives the number of graphs; empty "
                "graphs at its end vanish: pass size=)" if from_batch and
                isinstance(Y, Tensor) and Y.dim() == 1 and
                Y.numel() > bags.num_graphs else '')
        raise ValueError(f"'Y' must have shape (batch_size,) = "
                         f"({bags.num_graphs},), one label per bag (got "
                         f"{tuple(getattr(Y, 'shape', ()))}){hint}")
    if num_classes == 1:
        bad = Y[~((Y >= 0) & (Y <= 1))]
        if bad.numel():
            raise ValueError(f"'Y' must hold 0 or 1 with one logit per bag "
                             f"(num_classes=1; got "
                             f"{sorted(set(bad.tolist()))[:5]}); use "
                             f"num_classes=K for K classes")
        return
    bad = Y[(Y < 0) | (Y >= num_classes) | (Y != Y.round())]
    if bad.numel():
        raise ValueError(f"'Y' must hold class indices in [0, {num_classes})"
                         f" (got {sorted(set(bad.tolist()))[:5]})")
