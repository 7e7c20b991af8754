from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ._bags import Bags, as_bags
from .attention_pool import SmAttentionPool


class SmABMIL(torch.nn.Module):
    r"""Attention-based multiple-instance learning with the Sm operator
    (torchmil's :obj:`SmABMIL`), on PyG batches and on the reference's dense
    form.

    A feature extractor maps the instances of each bag to
    :math:`D` features, :class:`~pyg_sm.SmAttentionPool` pools them into
    :math:`\mathbf{z}` and attention values :math:`\mathbf{f}`, and a
    linear layer maps :math:`\mathbf{z}` to the bag logit.

    Args:
        in_shape (tuple): Shape of one instance's input to
            :obj:`feat_ext`; :math:`D` is read from :obj:`feat_ext`'s output
            on it.
        att_dim (int, optional): Attention size. (default: :obj:`128`)
        att_act (str, optional): :obj:`"tanh"`, :obj:`"relu"` or
            :obj:`"gelu"`. (default: :obj:`"tanh"`)
        sm_mode (str, optional): :obj:`"approx"` or :obj:`"exact"`.
            (default: :obj:`"approx"`)
        sm_alpha (float or str, optional): :math:`\alpha \in (0, 1)` or
            :obj:`"trainable"`. (default: :obj:`"trainable"`)
        sm_layers (int, optional): Sm layers in the attention network.
            (default: :obj:`0`)
        sm_steps (int, optional): Steps of the approx mode.
            (default: :obj:`10`)
        sm_pre (bool, optional): Smooth the instances before pooling.
            (default: :obj:`False`)
        sm_post (bool, optional): Smooth the attention values.
            (default: :obj:`False`)
        sm_spectral_norm (bool, optional): Spectral normalization on the
            pool's linear layers. (default: :obj:`False`)
        feat_ext (torch.nn.Module, optional): Instance feature extractor.
            (default: :obj:`Identity()`)
        criterion (torch.nn.Module, optional): Loss on the logits.
            (default: :obj:`BCEWithLogitsLoss()`)
        normalize (bool, optional): Graph form only: normalize edge weights
            to :math:`\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2}`. The dense
            form takes :obj:`adj` as :math:`\mathbf{A}`, as the reference.
            (default: :obj:`True`)
        **sm_kwargs (optional): Further arguments of :class:`~pyg_sm.Sm`.

    Every method takes either form:

    - graph form: ``model(data)`` for a ``Data``/``Batch`` with :obj:`x`,
      :obj:`edge_index`, optional :obj:`edge_weight` and :obj:`batch`, or
      ``model(x, edge_index, edge_weight=..., batch=...)``. Outputs are per
      graph :math:`(B,)` and per node :math:`(|\mathcal{V}|,)`, aligned
      with :obj:`data.x`.
    - dense form: ``model(X, adj, mask)`` with :obj:`X` :math:`(B, N, *)`,
      :obj:`adj` :math:`(B, N, N)` dense or sparse COO and :obj:`mask`
      :math:`(B, N)`. Outputs are :math:`(B,)` and :math:`(B, N)`; padded
      positions never influence them and their attention is :obj:`-inf`.

    Shapes:
        - **input:** see above
        - **output:** logits :math:`(B,)`; with :obj:`return_att=True` also
          the attention values before the softmax.
    """
    def __init__(
        self,
        in_shape: tuple,
        att_dim: int = 128,
        att_act: str = 'tanh',
        sm_mode: str = 'approx',
        sm_alpha: Union[float, str] = 'trainable',
        sm_layers: int = 0,
        sm_steps: int = 10,
        sm_pre: bool = False,
        sm_post: bool = False,
        sm_spectral_norm: bool = False,
        feat_ext: torch.nn.Module = torch.nn.Identity(),
        criterion: torch.nn.Module = torch.nn.BCEWithLogitsLoss(),
        normalize: bool = True,
        **sm_kwargs,
    ):
        super().__init__()
        self.in_shape = (in_shape, ) if isinstance(in_shape, int) else \
            tuple(in_shape)
        self.feat_ext = feat_ext
        feat_dim = self._feature_dim()
        self.pool = SmAttentionPool(feat_dim, att_dim, att_act, sm_mode,
                                    sm_alpha, sm_layers, sm_steps, sm_pre,
                                    sm_post, sm_spectral_norm, normalize,
                                    **sm_kwargs)
        self.classifier = torch.nn.Linear(feat_dim, 1)
        self.criterion = criterion

    def _feature_dim(self) -> int:
        training = self.feat_ext.training
        self.feat_ext.eval()
        try:
            with torch.no_grad():
                probe = next(self.feat_ext.parameters(), None)
                sample = torch.zeros(
                    (1, ) + self.in_shape,
                    device=None if probe is None else probe.device)
                out = self.feat_ext(sample)
        except Exception as error:
            raise ValueError(f"'feat_ext' failed on an input of shape "
                             f"(1, *in_shape) = {(1, ) + self.in_shape}: "
                             f"{error}") from error
        finally:
            self.feat_ext.train(training)
        if out.dim() != 2:
            raise ValueError(f"'feat_ext' must map (num_instances, *in_shape) "
                             f"to (num_instances, D) (got an output of shape "
                             f"{tuple(out.shape)})")
        return out.size(-1)

    def reset_parameters(self):
        self.pool.reset_parameters()
        self.classifier.reset_parameters()

    def _logits(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        z, f = self.pool.pool(bags._replace(x=self.feat_ext(bags.x)))
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

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(in_shape={self.in_shape}, '
                f'feat_ext={self.feat_ext}, pool={self.pool})')
