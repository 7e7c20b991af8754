r"""SmTransformerABMIL: the Sm paper's headline model (Sm in every
self-attention layer and in the attention pool), on PyG batches and on the
reference's dense form."""
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
from ..nn.sm_transformer import SmTransformerEncoder
from .base import DEFAULT_CRITERION, MILModel


class SmTransformerABMIL(MILModel):
    r"""The Sm transformer followed by Sm attention pooling (torchmil's
    :obj:`SmTransformerABMIL`; :doc:`/math`): the instances :math:`\mathbf{X}`
    of each bag go through :class:`~pyg_sm.SmTransformerEncoder` (Sm after
    the self-attention of every layer, each layer with its own
    :math:`\alpha`), :class:`~pyg_sm.SmAttentionPool` (its own Sm) pools
    them into :math:`\mathbf{z}` with attention values :math:`\mathbf{f}`,
    and a linear layer gives the logits.

    Self-attention runs per bag over its own instances with a
    memory-efficient kernel (no padding, no :math:`N \times N` matrix).

    Args:
        in_shape (tuple): Shape of the input to :obj:`feat_ext`;
            :math:`D` is the last dimension of its output (as torchmil).
        pool_att_dim (int, optional): Size of the attention network of the
            pool. (default: :obj:`128`)
        pool_act (str, optional): Activation of the pool's attention
            network: :obj:`"tanh"`, :obj:`"relu"` or :obj:`"gelu"`.
            (default: :obj:`"tanh"`)
        pool_sm_mode (str, optional): The pool's Sm mode, :obj:`"approx"`
            or :obj:`"exact"`. (default: :obj:`"approx"`)
        pool_sm_alpha (float or str, optional): The pool's Sm
            :math:`\alpha \in (0, 1)` or :obj:`"trainable"`.
            (default: :obj:`"trainable"`)
        pool_sm_layers (int, optional): Sm layers in the pool's attention
            network. (default: :obj:`1`)
        pool_sm_steps (int, optional): Steps of the pool's approx mode.
            (default: :obj:`10`)
        pool_sm_pre (bool, optional): Smooth the encoded instances before
            the attention network. (default: :obj:`False`)
        pool_sm_post (bool, optional): Smooth the attention values.
            (default: :obj:`False`)
        pool_sm_spectral_norm (bool, optional): Spectral normalization on
            the pool's linear layers. (default: :obj:`False`)
        feat_ext (torch.nn.Module, optional): Instance feature extractor.
            (default: :obj:`Identity()`)
        transf_att_dim (int, optional): Width :math:`A` of the transformer.
            (default: :obj:`512`)
        transf_n_layers (int, optional): Transformer layers.
            (default: :obj:`1`)
        transf_n_heads (int, optional): Attention heads, a divisor of
            :math:`A`. (default: :obj:`4`)
        transf_use_mlp (bool, optional): An MLP after each self-attention.
            (default: :obj:`True`)
        transf_add_self (bool, optional): Add the encoder's input after
            every layer. (default: :obj:`True`)
        transf_dropout (float, optional): Dropout on the attention weights
            (in training only) and in the MLP. (default: :obj:`0.0`)
        transf_sm_alpha (float or str, optional): Every transformer layer's
            Sm :math:`\alpha \in (0, 1)` or :obj:`"trainable"`.
            (default: :obj:`"trainable"`)
        transf_sm_mode (str, optional): The transformer's Sm mode.
            (default: :obj:`"approx"`)
        transf_sm_steps (int, optional): Steps of the transformer's approx
            mode. (default: :obj:`10`)
        criterion (torch.nn.Module, optional):
            (default: :obj:`BCEWithLogitsLoss()`, :obj:`CrossEntropyLoss()`
            with :obj:`num_classes > 1`)
        num_classes (int, optional): Keyword only; as in
            :class:`~pyg_sm.SmABMIL`. (default: :obj:`1`)
        normalize (bool, optional): Keyword only; graph form: symmetric
            normalization :math:`\mathbf{D}^{-1/2}\mathbf{W}
            \mathbf{D}^{-1/2}` of the edge weights (for every Sm).
            (default: :obj:`True`)
        pool_sm_where (str, optional): Keyword only, torchmil 1.0.x's
            placement of the pool's Sm instead of :obj:`pool_sm_layers`,
            :obj:`pool_sm_pre`, :obj:`pool_sm_post`. (default: :obj:`None`)
        pool_spectral_norm (bool, optional): Keyword only, torchmil 1.0.x's
            spectral normalization of the pool. (default: :obj:`None`)
        **sm_kwargs (optional): Further arguments of every
            :class:`~pyg_sm.Sm` (:obj:`tol`, :obj:`max_iter`, ...).

    Every method takes the graph form (``Data``/``Batch``, or ``x,
    edge_index, edge_weight=..., batch=...``) or the dense ``(X, adj,
    mask)``, as :class:`~pyg_sm.SmABMIL`.

    Shapes:
        - **input:** as :class:`~pyg_sm.SmABMIL`
        - **output:** logits :math:`(B,)` (:math:`(B, K)` with :math:`K`
          classes) and, with :obj:`return_att=True`, the pool's
          :math:`\mathbf{f}` :math:`(|\mathcal{V}|)` or :math:`(B, N)`.
    """
    def __init__(
        self,
        in_shape: tuple,
        pool_att_dim: int = 128,
        pool_act: str = 'tanh',
        pool_sm_mode: str = 'approx',
        pool_sm_alpha: Union[float, str] = 'trainable',
        pool_sm_layers: int = 1,
        pool_sm_steps: int = 10,
        pool_sm_pre: bool = False,
        pool_sm_post: bool = False,
        pool_sm_spectral_norm: bool = False,
        feat_ext: torch.nn.Module = torch.nn.Identity(),
        transf_att_dim: int = 512,
        transf_n_layers: int = 1,
        transf_n_heads: int = 4,
        transf_use_mlp: bool = True,
        transf_add_self: bool = True,
        transf_dropout: float = 0.0,
        transf_sm_alpha: Union[float, str] = 'trainable',
        transf_sm_mode: str = 'approx',
        transf_sm_steps: int = 10,
        criterion: torch.nn.Module = DEFAULT_CRITERION,
        *,
        num_classes: int = 1,
        normalize: bool = True,
        pool_sm_where: Optional[str] = None,
        pool_spectral_norm: Optional[bool] = None,
        **sm_kwargs,
    ):
        super().__init__(in_shape, feat_ext, criterion, num_classes)
        placement = resolve_generation(
            SmTransformerABMIL, pool_sm_where, pool_spectral_norm, 'pool_',
            sm_layers=pool_sm_layers, sm_pre=pool_sm_pre,
            sm_post=pool_sm_post, sm_spectral_norm=pool_sm_spectral_norm)
        self.transformer_encoder = SmTransformerEncoder(
            self.feature_dim, att_dim=transf_att_dim,
            n_heads=transf_n_heads, n_layers=transf_n_layers,
            use_mlp=transf_use_mlp, add_self=transf_add_self,
            dropout=transf_dropout, sm_alpha=transf_sm_alpha,
            sm_mode=transf_sm_mode, sm_steps=transf_sm_steps,
            normalize=normalize, **sm_kwargs)
        with warnings.catch_warnings():  # the model warned already
            warnings.filterwarnings('ignore', SM_LAYERS_WARNING)
            self.pool = SmAttentionPool(
                in_dim=self.feature_dim, att_dim=pool_att_dim, act=pool_act,
                sm_mode=pool_sm_mode, sm_alpha=pool_sm_alpha,
                sm_steps=pool_sm_steps, normalize=normalize, **placement,
                **sm_kwargs)
        self.classifier = self.bag_head()

    def pool_bags(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        encoded = self.transformer_encoder.encode(bags)
        return self.pool.pool(bags.with_features(encoded))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(in_shape={self.in_shape}, '
                f'feat_ext={self.feat_ext}, '
                f'transformer_encoder={self.transformer_encoder}, '
                f'pool={self.pool})')
