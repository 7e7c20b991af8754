import warnings
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ..data.bags import Bags
from ..nn.attention_pool import (
    SM_LAYERS_WARNING,
    SmAttentionPool,
    resolve_generation,
)
from .base import DEFAULT_CRITERION, MILModel


class SmABMIL(MILModel):
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
        att_dim (int, optional): Size of the attention network.
            (default: :obj:`128`)
        att_act (str, optional): Activation of the attention network:
            :obj:`"tanh"`, :obj:`"relu"` or :obj:`"gelu"`.
            (default: :obj:`"tanh"`)
        sm_mode (str, optional): Sm mode, :obj:`"approx"` or
            :obj:`"exact"`. (default: :obj:`"approx"`)
        sm_alpha (float or str, optional): Sm :math:`\alpha \in (0, 1)` or
            :obj:`"trainable"`. (default: :obj:`"trainable"`)
        sm_layers (int, optional): Sm layers in the attention network.
            Positional arguments follow torchmil 0.1.0's order, where this
            is the sixth; torchmil 1.0.x's sixth is :obj:`sm_steps`, so
            more than 4 layers warn. (default: :obj:`0`)
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
            (default: :obj:`BCEWithLogitsLoss()`, and
            :obj:`CrossEntropyLoss()` when :obj:`num_classes > 1`)
        num_classes (int, optional): Keyword only. :obj:`1`: one logit per
            bag, the reference's binary head; :math:`K > 1`: :math:`K`
            logits per bag, labels are class indices. The attention branch
            is shared by all classes. (default: :obj:`1`)
        normalize (bool, optional): Graph form only: normalize edge weights
            to :math:`\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2}`. The dense
            form takes :obj:`adj` as :math:`\mathbf{A}`, as the reference.
            (default: :obj:`True`)
        sm_where (str, optional): Keyword only, torchmil 1.0.x's placement
            of Sm (:obj:`"early"`, :obj:`"mid"`, :obj:`"late"`,
            :obj:`"none"`; see :class:`~pyg_sm.SmAttentionPool`) instead of
            :obj:`sm_layers`, :obj:`sm_pre`, :obj:`sm_post`; mixing the two
            generations' keywords is an error. (default: :obj:`None`)
        spectral_norm (bool, optional): Keyword only, torchmil 1.0.x's
            spectral normalization (by :obj:`sm_where`), instead of
            :obj:`sm_spectral_norm`. (default: :obj:`None`)
        **sm_kwargs (optional): Further arguments of :class:`~pyg_sm.Sm`.

    Every method (:meth:`forward`, :meth:`compute_loss`, :meth:`predict`,
    from :class:`~pyg_sm.models.MILModel`) takes either form: a PyG
    ``Data``/``Batch`` (or ``x, edge_index, edge_weight=..., batch=...``),
    outputs per graph :math:`(B,)` and per node :math:`(|\mathcal{V}|,)`;
    or the dense ``(X, adj, mask)``, outputs :math:`(B,)` and
    :math:`(B, N)` with :obj:`-inf` at padded positions.

    Shapes:
        - **input:** see above
        - **output:** logits :math:`(B,)`, or :math:`(B, K)` with
          :obj:`num_classes=K > 1`; with :obj:`return_att=True` also
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
        criterion: torch.nn.Module = DEFAULT_CRITERION,
        *,
        num_classes: int = 1,
        normalize: bool = True,
        sm_where: Optional[str] = None,
        spectral_norm: Optional[bool] = None,
        **sm_kwargs,
    ):
        super().__init__(in_shape, feat_ext, criterion, num_classes)
        placement = resolve_generation(
            SmABMIL, sm_where, spectral_norm, sm_layers=sm_layers,
            sm_pre=sm_pre, sm_post=sm_post,
            sm_spectral_norm=sm_spectral_norm)
        with warnings.catch_warnings():  # the model warned already
            warnings.filterwarnings('ignore', SM_LAYERS_WARNING)
            self.pool = SmAttentionPool(
                in_dim=self.feature_dim, att_dim=att_dim, act=att_act,
                sm_mode=sm_mode, sm_alpha=sm_alpha, sm_steps=sm_steps,
                normalize=normalize, **placement, **sm_kwargs)
        self.classifier = self.bag_head()

    def pool_bags(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        return self.pool.pool(bags)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(in_shape={self.in_shape}, '
                f'feat_ext={self.feat_ext}, pool={self.pool})')
