r"""What every MIL model of pyg-sm shares: reading the feature size from
:obj:`feat_ext`, the two input forms, the bag head and the
``forward`` / ``compute_loss`` / ``predict`` contract of torchmil's models."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ..data.bags import Bags, as_bags


def probe_feature_dim(feat_ext: torch.nn.Module, in_shape: tuple) -> int:
    r"""The feature size :math:`D` that :obj:`feat_ext` gives one instance of
    shape :obj:`in_shape`, read from its output on ``zeros(1, *in_shape)``
    (in eval mode, without gradients, on the extractor's device)."""
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
    if out.dim() != 2:
        raise ValueError(f"'feat_ext' must map (num_instances, *in_shape) "
                         f"to (num_instances, D) (got an output of shape "
                         f"{tuple(out.shape)})")
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

    Args:
        in_shape (tuple or int): Shape of one instance's input to
            :obj:`feat_ext`.
        feat_ext (torch.nn.Module): Instance feature extractor.
        criterion (torch.nn.Module): Loss on the logits.
    """
    def __init__(self, in_shape, feat_ext: torch.nn.Module,
                 criterion: torch.nn.Module):
        super().__init__()
        self.in_shape = (in_shape, ) if isinstance(in_shape, int) else \
            tuple(in_shape)
        self.feat_ext = feat_ext
        self.feature_dim = probe_feature_dim(feat_ext, self.in_shape)
        self.criterion = criterion

    def bag_head(self) -> torch.nn.Linear:
        r"""The layer from :math:`\mathbf{z}` to the bag logit."""
        return torch.nn.Linear(self.feature_dim, 1)

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
        return self.classifier(z).squeeze(-1), bags.pad(f)

    def forward(
        self,
        X,
        adj=None,
        mask: Optional[Tensor] = None,
        return_att: bool = False,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Bag logits :math:`(B,)` and, with :obj:`return_att=True`, the
        attention values before the softmax."""
        logits, att = self._logits(as_bags(X, adj, mask, edge_weight, batch))
        return (logits, att) if return_att else logits

    def compute_loss(
        self,
        Y: Tensor,
        X,
        adj=None,
        mask: Optional[Tensor] = None,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
    ) -> Tuple[Tensor, dict]:
        r"""Returns the logits :math:`(B,)` and ``{criterion class name:
        loss}`` for the bag labels :obj:`Y` :math:`(B,)`."""
        bags = as_bags(X, adj, mask, edge_weight, batch)
        if not isinstance(Y, Tensor) or tuple(Y.shape) != (bags.num_graphs, ):
            raise ValueError(f"'Y' must have shape (batch_size,) = "
                             f"({bags.num_graphs},), one label per bag (got "
                             f"{tuple(getattr(Y, 'shape', ()))})")
        logits, _ = self._logits(bags)
        loss = self.criterion(logits.float(), Y.float())
        return logits, {self.criterion.__class__.__name__: loss}

    def predict(
        self,
        X,
        adj=None,
        mask: Optional[Tensor] = None,
        return_inst_pred: bool = True,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Bag logits :math:`(B,)` and, if :obj:`return_inst_pred`, the
        instance predictions (the attention values)."""
        return self.forward(X, adj, mask, return_inst_pred,
                            edge_weight=edge_weight, batch=batch)
