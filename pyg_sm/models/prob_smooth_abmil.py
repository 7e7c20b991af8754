r"""The probabilistic side of the Sm family (torchmil 1.0.2's
``ProbSmoothABMIL``, ``SmoothABMIL`` and ``TransformerProbSmoothABMIL``) on
PyG batches and on the reference's dense form: attention logits that are a
Gaussian per instance with a prior smooth over the patch graph."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data.data import BaseData
from torch_geometric.utils import scatter

from ..data.adjacency import compute_dtype
from ..data.bags import Bags, as_bags, empty_graph, in_node_order
from ..nn._sampled_attention import sampled_softmax_head
from ..nn.prob_smooth_pool import NOISE_DRAW, ProbSmoothAttentionPool
from ..nn.sm_transformer import SmTransformerEncoder
from ..nn.survival import SurvivalHead, SurvivalLoss, check_survival_targets
from .base import (
    DEFAULT_CRITERION,
    MILModel,
    check_bag_labels,
    sampled_bag_loss,
)

#: Attention samples per block in evaluation (nodes x samples): scoring a
#: large slide with thousands of samples never holds more at once.
SAMPLE_BLOCK = 1 << 24
#: torchmil's name of the KL term in ``compute_loss``.
KL_NAME = 'KLDiv'


class ProbSmoothMILModel(MILModel):
    r"""What the probabilistic smooth attention models share: a
    :class:`~pyg_sm.nn.ProbSmoothAttentionPool` (:attr:`pool`) on the
    instances (after :meth:`encode`), a linear bag head applied to every
    attention sample, the criterion averaged over the samples plus the KL
    term.

    The head is linear, so the logit of sample :math:`m` is a weighted sum
    of one scalar per instance, :math:`y^{(m)} = \sum_n s^{(m)}_n
    \mathbf{w}^\top \mathbf{x}_n + b`: the :math:`D \times M` bag
    representations are never formed (:math:`O(N (D + M))` instead of
    :math:`O(N D M)`). The bag logit is the mean over the samples, the
    attention map :math:`\boldsymbol{\mu}_f` and its uncertainty
    :math:`\boldsymbol{\sigma}_f`."""
    probabilistic = True
    #: The name of the KL term in :meth:`compute_loss`'s dictionary.
    kl_name = KL_NAME

    def encode(self, bags: Bags) -> Tensor:
        r"""The instances the pool reads, from extracted features."""
        return bags.x

    def pool_bags(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError(
            f"{type(self).__name__} pools every bag once per attention "
            f"sample: see sample_logits")

    def sample_logits(self, bags: Bags, n_samples: Optional[int] = None,
                      kl: bool = False):
        r"""The logits of every attention sample :math:`(B, M, K)`, the
        attention distribution :math:`(\boldsymbol{\mu}_f, \log
        \boldsymbol{\sigma}_f^2)` per node and, with :obj:`kl`, the KL term
        (else :obj:`None`). Without gradients, the samples are drawn in
        blocks of :data:`SAMPLE_BLOCK` nodes x samples."""
        return self._sampled(bags, n_samples, kl)[:3]

    def _sampled(self, bags: Bags, n_samples: Optional[int] = None,
                 kl: bool = False, keep: bool = False):
        r""":meth:`sample_logits` and, with :obj:`keep`, the samples
        :math:`(|\mathcal{V}|, M)` themselves (in one block; else
        :obj:`None`)."""
        bags = bags.with_features(self.encode(
            bags.with_features(self.feat_ext(bags.x))))
        pool = self.pool
        mu, log_var = pool.distribution(bags.x)
        divergence = pool.kl_div(bags, mu, log_var) if kl else None
        with torch.autocast(mu.device.type, enabled=False):
            logits, samples = self._sampled_head(
                bags, mu, log_var, pool.num_samples(n_samples), keep)
        return logits, (mu, log_var), divergence, samples

    def _sampled_head(self, bags: Bags, mu: Tensor,
                      log_var: Optional[Tensor], total: int,
                      keep: bool = False):
        r"""The head on :obj:`total` attention samples of every bag
        :math:`(B, M, K)`, in float32 or float64, through
        :func:`~pyg_sm.nn._sampled_attention.sampled_softmax_head` (each
        bag's nodes together: a batch vector out of order is sorted), and
        with :obj:`keep` the samples :math:`(|\mathcal{V}|, M)` in one
        block, in the nodes' order (else :obj:`None`)."""
        head, pool = self.classifier, self.pool
        dtype = compute_dtype(mu)
        order, sizes = bags.groups()
        x = bags.x if order is None else bags.x[order]
        x = x.to(dtype)
        mu = (mu if order is None else mu[order]).to(dtype)
        if log_var is not None:
            log_var = (log_var if order is None else log_var[order]).to(dtype)
        values = torch.nn.functional.linear(x, head.weight.to(dtype))
        centred = isinstance(head, SurvivalHead)
        block = total if torch.is_grad_enabled() or keep else max(
            NOISE_DRAW, SAMPLE_BLOCK // max(1, mu.numel()) // NOISE_DRAW *
            NOISE_DRAW)
        logits, weights, kept = [], 0.0, None
        for start in range(0, total, block):
            count = min(block, total - start)
            noise = None if log_var is None else \
                pool.noise(mu, sizes, start, count)
            if keep:
                kept = in_node_order(pool.samples_of(mu, log_var, noise),
                                     order)
            out, mean = sampled_softmax_head(mu, log_var, values, noise,
                                             sizes, centred)
            logits.append(out)
            if centred:
                weights = weights + mean * (count / total)
        if centred:
            # The centring follows the mean representation of the samples.
            batch = bags.batch if order is None else bags.batch[order]
            head.track(scatter(weights.unsqueeze(-1) * x, batch, dim=0,
                               dim_size=bags.num_graphs, reduce='sum'))
            offset = head.offset()
        else:
            offset = head.bias
        return torch.cat(logits, dim=1) + offset.to(dtype), kept

    def _outputs(self, logits: Tensor, samples: bool) -> Tensor:
        r"""Sample logits :math:`(B, M, K)` as the caller asked: their mean
        over the samples, or all of them; one logit per bag loses its last
        dimension."""
        if not samples:
            logits = logits.mean(dim=1)
        if self.num_classes == 1:
            logits = logits.squeeze(-1)
        return logits

    def _logits(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        logits, (mu, _), _ = self.sample_logits(bags)
        return self._outputs(logits, False), bags.pad(mu)

    def forward(
        self,
        X=None,
        adj=None,
        mask: Optional[Tensor] = None,
        return_att: bool = False,
        return_samples: bool = False,
        return_kl_div: bool = False,
        *,
        return_att_std: bool = False,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        size: Optional[int] = None,
        x: Optional[Tensor] = None,
        edge_index=None,
    ):
        r"""Bag logits and, as asked, the attention, its uncertainty and
        the KL term (torchmil's call form, in either input form).

        Args:
            X, adj, mask: As in :meth:`MILModel.forward
                <pyg_sm.models.MILModel.forward>`; :obj:`adj` is only
                read for the KL term (and may then be left out).
            return_att (bool, optional): Also return the attention:
                :math:`\boldsymbol{\mu}_f` (torchmil returns the mean of
                its clipped samples, a noisy estimate of it), or the
                samples with :obj:`return_samples`. (default: :obj:`False`)
            return_samples (bool, optional): Logits (and attention) of
                every sample instead of their mean. (default: :obj:`False`)
            return_kl_div (bool, optional): Also return the KL term.
                (default: :obj:`False`)
            return_att_std (bool, optional): Keyword only. Also return
                :math:`\boldsymbol{\sigma}_f`, after the attention.
                (default: :obj:`False`)
            edge_weight, batch, size, x, edge_index: The graph form's.

        Shapes:
            - **output:** logits :math:`(B,)`, or :math:`(B, M)` with
              :obj:`return_samples` (:math:`(B, K)` / :math:`(B, M, K)`
              with :math:`K > 1` outputs); the attention and its
              uncertainty :math:`(|\mathcal{V}|)` or :math:`(B, N)`
              (:math:`(\cdot, M)` for samples), :obj:`-inf` at padding
              (the uncertainty 0); the KL term :math:`()`.
        """
        bags = self._bags(X, adj, mask, edge_weight, batch, size, x,
                          edge_index, needs_graph=return_kl_div)
        # The samples themselves are kept only when they are asked for.
        keep = return_att and return_samples
        logits, (mu, log_var), kl, samples = self._sampled(
            bags, kl=return_kl_div, keep=keep)
        attention = samples if keep else mu
        out = [self._outputs(logits, return_samples)]
        if return_att:
            out.append(bags.pad(attention))
        if return_att_std:
            std = torch.zeros_like(mu) if log_var is None \
                else torch.exp(0.5 * log_var)
            out.append(bags.pad(std, fill=0.0))
        if return_kl_div:
            out.append(kl)
        return out[0] if len(out) == 1 else tuple(out)

    def _bags(self, X, adj, mask, edge_weight, batch, size, x, edge_index,
              needs_graph: bool) -> Bags:
        instances = X if x is None else x
        if adj is None and edge_index is None and \
                not isinstance(instances, BaseData):
            if needs_graph:
                raise ValueError("'adj' (dense form) or 'edge_index' (graph "
                                 "form) is needed for the KL term")
            adj = empty_graph(instances, mask)
        return as_bags(X, adj, mask, edge_weight, batch, size, x=x,
                       edge_index=edge_index)

    def loss_terms(self, bags: Bags, Y: Tensor) -> Tuple[Tensor, dict]:
        r"""The criterion over every sample's logits (each with its bag's
        label) and the KL term, under torchmil's names
        (``{criterion class name: ..., 'KLDiv': ...}``; their sum is the
        training loss, as torchmil's trainer sums them); the logits are the
        mean over the samples."""
        logits, _, kl = self.sample_logits(bags, kl=True)
        loss = sampled_bag_loss(self.criterion, logits.squeeze(-1)
                                if self.num_classes == 1 else logits, Y)
        return self._outputs(logits, False), {
            type(self.criterion).__name__: loss, self.kl_name: kl}

    def compute_loss(self, Y: Tensor, X=None, adj=None,
                     mask: Optional[Tensor] = None, *,
                     edge_weight: Optional[Tensor] = None,
                     batch: Optional[Tensor] = None,
                     size: Optional[int] = None, x: Optional[Tensor] = None,
                     edge_index=None) -> Tuple[Tensor, dict]:
        r"""The mean logits and ``{criterion class name: loss, KL name:
        KL term}`` for the bag labels :obj:`Y` (:meth:`MILModel.compute_loss
        <pyg_sm.models.MILModel.compute_loss>`'s labels and arguments)."""
        bags = self._bags(X, adj, mask, edge_weight, batch, size, x,
                          edge_index, needs_graph=True)
        if isinstance(self.criterion, SurvivalLoss):
            check_survival_targets(Y, bags.num_graphs)
        else:
            check_bag_labels(Y, bags, self.num_classes,
                             from_batch=size is None and batch is not None)
        return self.loss_terms(bags, Y)

    def predict(self, X=None, adj=None, mask: Optional[Tensor] = None,
                return_inst_pred: bool = True, return_samples: bool = False,
                *, return_att_std: bool = False, **graph):
        r"""Bag logits and, if :obj:`return_inst_pred`, the attention
        (:obj:`return_samples`: every sample), as :meth:`forward` gives
        them. torchmil's ``ProbSmoothABMIL.predict(X, mask)`` form works:
        a :math:`(B, N)` second argument with a :math:`(B, N, D)`
        :obj:`X` is the mask (torchmil then passes it on as the
        adjacency, and padded instances enter its softmax); its flags then
        go by keyword (a bool third argument is an error, not a mask)."""
        if _looks_like_mask(X, adj):
            if isinstance(mask, bool):
                raise TypeError(
                    "predict(X, mask, ...): in torchmil's form the flags "
                    "follow the mask; pass return_inst_pred= and "
                    "return_samples= by keyword (pyg-sm's third argument is "
                    "the mask of predict(X, adj, mask))")
            if mask is None:
                adj, mask = None, adj
        return self.forward(X, adj, mask, return_inst_pred, return_samples,
                            return_att_std=return_att_std, **graph)


def _looks_like_mask(X, adj) -> bool:
    return isinstance(X, Tensor) and isinstance(adj, Tensor) and \
        X.dim() == 3 and adj.dim() == 2 and tuple(adj.shape) == \
        tuple(X.shape[:2])


class ProbSmoothABMIL(ProbSmoothMILModel):
    r"""Attention-based MIL with probabilistic smooth attention (torchmil
    1.0.2's ``ProbSmoothABMIL``; `Castro-Macías et al., 2025
    <https://arxiv.org/abs/2507.14932>`_), on PyG batches and on the
    reference's dense form.

    A feature extractor maps each bag's instances to :math:`D` features;
    :class:`~pyg_sm.nn.ProbSmoothAttentionPool` gives each instance a
    Gaussian attention logit :math:`\mathcal{N}(\mu_n, \sigma_n^2)` and
    draws :math:`M` samples; a linear head maps each sample's
    :math:`\mathbf{z}^{(m)}` to a logit. The bag logit is their mean; the
    training loss is the criterion averaged over the samples plus the KL
    term, which makes :math:`\boldsymbol{\mu}` smooth over the patch
    graph. The attention map is :math:`\boldsymbol{\mu}` and its
    uncertainty :math:`\boldsymbol{\sigma}`.

    Args:
        in_shape (tuple): Shape of one instance's input to
            :obj:`feat_ext`; :math:`D` is read from its output.
        att_dim (int, optional): Half the hidden size of the attention
            network. (default: :obj:`128`)
        covar_mode (str, optional): :obj:`"diag"` (a variance per
            instance) or :obj:`"zero"` (no variance, one sample: the
            deterministic smooth attention). (default: :obj:`"diag"`)
        n_samples_train (int, optional): Attention samples per bag in
            training. (default: :obj:`1000`)
        n_samples_test (int, optional): Attention samples per bag in
            evaluation, drawn from generators seeded with :obj:`eval_seed`:
            a bag gets the same outputs alone or in any batch.
            (default: :obj:`5000`)
        feat_ext (torch.nn.Module, optional): Instance feature extractor.
            (default: :obj:`Identity()`)
        criterion (torch.nn.Module, optional): Loss on the logits.
            (default: :obj:`BCEWithLogitsLoss()`, and
            :obj:`CrossEntropyLoss()` when :obj:`num_classes > 1`)
        num_classes (int, optional): Keyword only. Logits per bag.
            (default: :obj:`1`)
        normalize (bool, optional): Keyword only. Graph form: normalize
            edge weights to :math:`\mathbf{D}^{-1/2}\mathbf{W}
            \mathbf{D}^{-1/2}` for the KL term, as torchmil's datasets
            normalize their adjacency; the dense form takes :obj:`adj` as
            it is. (default: :obj:`True`)
        eval_seed (int, optional): Keyword only. The seed of the
            evaluation samples; the same model gives a bag the same
            numbers, alone or in any batch. (default: :obj:`0`)

    Every method takes either input form (:class:`~pyg_sm.models.MILModel`);
    :meth:`forward` adds torchmil's :obj:`return_samples` and
    :obj:`return_kl_div`, and :obj:`return_att_std`.

    Shapes:
        - **input:** a PyG batch, or the dense :math:`(B, N, *)`,
          :math:`(B, N, N)`, :math:`(B, N)`
        - **output:** logits :math:`(B,)` (the mean over samples); see
          :meth:`forward`.
    """
    def __init__(
        self,
        in_shape: tuple,
        att_dim: int = 128,
        covar_mode: str = 'diag',
        n_samples_train: int = 1000,
        n_samples_test: int = 5000,
        feat_ext: torch.nn.Module = torch.nn.Identity(),
        criterion: torch.nn.Module = DEFAULT_CRITERION,
        *,
        num_classes: int = 1,
        normalize: bool = True,
        eval_seed: int = 0,
    ):
        super().__init__(in_shape, feat_ext, criterion, num_classes)
        self.pool = ProbSmoothAttentionPool(
            self.feature_dim, att_dim=att_dim, covar_mode=covar_mode,
            n_samples_train=n_samples_train, n_samples_test=n_samples_test,
            normalize=normalize, eval_seed=eval_seed)
        self.classifier = self.bag_head()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(in_shape={self.in_shape}, '
                f'feat_ext={self.feat_ext}, pool={self.pool})')


class SmoothABMIL(ProbSmoothABMIL):
    r"""Deterministic smooth attention (torchmil 1.0.2's ``SmoothABMIL``;
    `Castro-Macías et al., 2023 <https://arxiv.org/abs/2307.09457>`_):
    :class:`ProbSmoothABMIL` with ``covar_mode='zero'``: one attention
    logit per instance, no sampling, and the Dirichlet energy
    :math:`\frac{1}{N}\boldsymbol{\mu}^\top (\mathbf{I} - \mathbf{A})
    \boldsymbol{\mu}` added to the loss (named ``'DirEnergy'``, as
    torchmil names it).

    Args:
        in_shape (tuple): Shape of one instance's input to
            :obj:`feat_ext`.
        att_dim (int, optional): Half the hidden size of the attention
            network. (default: :obj:`128`)
        feat_ext (torch.nn.Module, optional): Instance feature extractor.
            (default: :obj:`Identity()`)
        criterion (torch.nn.Module, optional): Loss on the logits.
            (default: :obj:`BCEWithLogitsLoss()`)
        num_classes (int, optional): Keyword only. Logits per bag.
            (default: :obj:`1`)
        normalize (bool, optional): Keyword only, as in
            :class:`ProbSmoothABMIL`. (default: :obj:`True`)

    Shapes:
        - **input:** a PyG batch, or the dense :math:`(B, N, *)`,
          :math:`(B, N, N)`, :math:`(B, N)`
        - **output:** logits :math:`(B,)`; the attention :math:`(|\mathcal
          {V}|)` or :math:`(B, N)`.
    """
    kl_name = 'DirEnergy'

    def __init__(
        self,
        in_shape: tuple,
        att_dim: int = 128,
        feat_ext: torch.nn.Module = torch.nn.Identity(),
        criterion: torch.nn.Module = DEFAULT_CRITERION,
        *,
        num_classes: int = 1,
        normalize: bool = True,
    ):
        super().__init__(in_shape, att_dim=att_dim, covar_mode='zero',
                         n_samples_train=1, n_samples_test=1,
                         feat_ext=feat_ext, criterion=criterion,
                         num_classes=num_classes, normalize=normalize)


class TransformerProbSmoothABMIL(ProbSmoothMILModel):
    r"""A transformer encoder followed by probabilistic smooth attention
    pooling (torchmil 1.0.2's ``TransformerProbSmoothABMIL``): each bag's
    instances go through self-attention within the bag
    (:class:`~pyg_sm.SmTransformerEncoder` without Sm: torchmil's
    ``TransformerEncoder``), then :class:`ProbSmoothABMIL`'s pool and
    head.

    Args:
        in_shape (tuple): Shape of one instance's input to
            :obj:`feat_ext`.
        pool_att_dim (int, optional): Half the hidden size of the pool's
            attention network. (default: :obj:`128`)
        covar_mode (str, optional): :obj:`"diag"` or :obj:`"zero"`.
            (default: :obj:`"diag"`)
        n_samples_train (int, optional): Attention samples per bag in
            training. (default: :obj:`1000`)
        n_samples_test (int, optional): Attention samples per bag in
            evaluation. (default: :obj:`5000`)
        feat_ext (torch.nn.Module, optional): Instance feature extractor.
            (default: :obj:`Identity()`)
        transf_att_dim (int, optional): The transformer's attention size.
            (default: :obj:`512`)
        transf_n_layers (int, optional): Transformer layers.
            (default: :obj:`1`)
        transf_n_heads (int, optional): Attention heads.
            (default: :obj:`8`)
        transf_use_mlp (bool, optional): An MLP in every transformer
            layer. (default: :obj:`True`)
        transf_add_self (bool, optional): Add the encoder's input after
            every layer. (default: :obj:`True`)
        transf_dropout (float, optional): The transformer's dropout.
            (default: :obj:`0.0`)
        criterion (torch.nn.Module, optional): Loss on the logits.
            (default: :obj:`BCEWithLogitsLoss()`)
        num_classes (int, optional): Keyword only. Logits per bag.
            (default: :obj:`1`)
        normalize (bool, optional): Keyword only, as in
            :class:`ProbSmoothABMIL`. (default: :obj:`True`)
        eval_seed (int, optional): Keyword only, as in
            :class:`ProbSmoothABMIL`. (default: :obj:`0`)

    Shapes:
        - **input:** a PyG batch, or the dense :math:`(B, N, *)`,
          :math:`(B, N, N)`, :math:`(B, N)`
        - **output:** logits :math:`(B,)`; see
          :meth:`ProbSmoothMILModel.forward`.
    """
    def __init__(
        self,
        in_shape: tuple,
        pool_att_dim: int = 128,
        covar_mode: str = 'diag',
        n_samples_train: int = 1000,
        n_samples_test: int = 5000,
        feat_ext: torch.nn.Module = torch.nn.Identity(),
        transf_att_dim: int = 512,
        transf_n_layers: int = 1,
        transf_n_heads: int = 8,
        transf_use_mlp: bool = True,
        transf_add_self: bool = True,
        transf_dropout: float = 0.0,
        criterion: torch.nn.Module = DEFAULT_CRITERION,
        *,
        num_classes: int = 1,
        normalize: bool = True,
        eval_seed: int = 0,
    ):
        super().__init__(in_shape, feat_ext, criterion, num_classes)
        # Sm of zero approx steps is the identity: torchmil's plain
        # transformer encoder, with pyg-sm's per-bag attention.
        self.transformer_encoder = SmTransformerEncoder(
            self.feature_dim, att_dim=transf_att_dim,
            n_heads=transf_n_heads, n_layers=transf_n_layers,
            use_mlp=transf_use_mlp, add_self=transf_add_self,
            dropout=transf_dropout, sm_alpha=0.5, sm_mode='approx',
            sm_steps=0, normalize=normalize)
        self.pool = ProbSmoothAttentionPool(
            self.feature_dim, att_dim=pool_att_dim, covar_mode=covar_mode,
            n_samples_train=n_samples_train, n_samples_test=n_samples_test,
            normalize=normalize, eval_seed=eval_seed)
        self.classifier = self.bag_head()

    def encode(self, bags: Bags) -> Tensor:
        return self.transformer_encoder.encode(bags)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(in_shape={self.in_shape}, '
                f'feat_ext={self.feat_ext}, '
                f'transformer_encoder={self.transformer_encoder}, '
                f'pool={self.pool})')
