r"""Probabilistic smooth attention pooling (torchmil 1.0.2's
``ProbSmoothAttentionPool``) over the bags of a PyG batch, with its KL
term in :math:`O(N + |\mathcal{E}|)`."""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import GELU, Linear, Sequential
from torch_geometric.utils import scatter, softmax, to_dense_batch

from ..data.adjacency import Adjacency, compute_dtype
from ..data.bags import Bags, as_bags, empty_graph, in_node_order
from ..utils.checks import check_choice, check_count, check_dim

#: The covariance of :math:`q(\mathbf{f})`: a diagonal, or none (the
#: deterministic SmoothABMIL).
COVAR_MODES = ('diag', 'zero')
#: torchmil clips every attention sample to this range.
SAMPLE_CLIP = 20.0
#: Evaluation samples of a bag come in draws of this many, each from its
#: own seeded generator (:meth:`ProbSmoothAttentionPool.noise`).
NOISE_DRAW = 64
# The CPU generator keeps 32 bits of a seed: eval_seed and the draw are
# mixed within them.
_SEED_STRIDE = 1_000_003


class AttentionSamples(NamedTuple):
    r"""What :meth:`ProbSmoothAttentionPool.attend` gives, per node.

    Attributes:
        mu (Tensor): :math:`\boldsymbol{\mu}_f` :math:`(|\mathcal{V}|)`.
        log_var (Tensor, optional): :math:`\log \boldsymbol{\sigma}_f^2`
            :math:`(|\mathcal{V}|)`; :obj:`None` in ``'zero'`` mode.
        f (Tensor): The samples :math:`(|\mathcal{V}|, M)` (:math:`M = 1`,
            :math:`\mathbf{f} = \boldsymbol{\mu}_f`, in ``'zero'`` mode).
        weights (Tensor): Their softmax within each bag,
            :math:`(|\mathcal{V}|, M)`, in float32 or float64.
    """
    mu: Tensor
    log_var: Optional[Tensor]
    f: Tensor
    weights: Tensor

    @property
    def std(self) -> Tensor:
        r""":math:`\boldsymbol{\sigma}_f` :math:`(|\mathcal{V}|)`, zero in
        ``'zero'`` mode: the uncertainty of each attention value."""
        if self.log_var is None:
            return torch.zeros_like(self.mu)
        return torch.exp(0.5 * self.log_var)


def smoothness_kl(mu: Tensor, log_var: Optional[Tensor],
                  adjacency: Adjacency, batch: Tensor,
                  num_graphs: int) -> Tensor:
    r"""The KL term of probabilistic smooth attention, averaged over the
    bags: per bag of :math:`N` nodes,

    .. math::
        \frac{1}{N} \Big[ \boldsymbol{\mu}^\top \boldsymbol{\mu} -
        \boldsymbol{\mu}^\top \mathbf{A} \boldsymbol{\mu} + \sum_i
        (1 - A_{ii}) \sigma_i^2 - \tfrac{1}{2} \sum_i \log \sigma_i^2
        \Big]

    (the variance terms only when :obj:`log_var` is given), with one
    scatter over the nodes and one over the edges: :math:`O(N +
    |\mathcal{E}|)`, no :math:`N \times N` matrix. :math:`A_{ii}` are the
    weights of self-loops (zero in a patch graph)."""
    dtype = compute_dtype(mu)
    mu = mu.to(dtype)
    index = adjacency.edge_index.as_tensor()
    source, target = index[0].long(), index[1].long()
    weight = adjacency.edge_weight.to(dtype)
    per_bag = scatter(mu * mu, batch, dim=0, dim_size=num_graphs,
                      reduce='sum')
    per_bag = per_bag - scatter(weight * mu[source] * mu[target],
                                batch[target], dim=0, dim_size=num_graphs,
                                reduce='sum')
    if log_var is not None:
        log_var = log_var.to(dtype)
        loops = source == target
        diagonal = scatter(weight[loops], target[loops], dim=0,
                           dim_size=mu.numel(), reduce='sum')
        per_node = (1 - diagonal) * torch.exp(log_var) - 0.5 * log_var
        per_bag = per_bag + scatter(per_node, batch, dim=0,
                                    dim_size=num_graphs, reduce='sum')
    sizes = scatter(torch.ones_like(mu), batch, dim=0, dim_size=num_graphs,
                    reduce='sum')
    return (per_bag / sizes).mean()


class ProbSmoothAttentionPool(torch.nn.Module):
    r"""Probabilistic smooth attention pooling, from the `"Probabilistic
    Smooth Attention for Deep Multiple Instance Learning in Medical
    Imaging" <https://arxiv.org/abs/2507.14932>`_ paper (torchmil 1.0.2's
    ``ProbSmoothAttentionPool``), over the bags of a PyG batch.

    The attention logits of a bag's instances :math:`\mathbf{X} \in
    \mathbb{R}^{N \times D}` are a Gaussian
    :math:`q(\mathbf{f}) = \mathcal{N}(\boldsymbol{\mu}_f,
    \mathrm{diag}(\boldsymbol{\sigma}_f^2))`:

    .. math::
        \mathbf{H} &= \mathrm{GELU}(\mathrm{GELU}(\mathbf{X}\mathbf{W}_1 +
        \mathbf{b}_1) \mathbf{W}_2 + \mathbf{b}_2)

        \boldsymbol{\mu}_f &= \mathbf{H} \mathbf{w}_\mu + b_\mu, \qquad
        \log \boldsymbol{\sigma}_f^2 = \mathbf{H} \mathbf{w}_\sigma +
        b_\sigma

        \mathbf{f}^{(m)} &= \mathrm{clip}(\boldsymbol{\mu}_f +
        \boldsymbol{\sigma}_f \odot \boldsymbol{\epsilon}^{(m)}, -20, 20),
        \quad \boldsymbol{\epsilon}^{(m)} \sim \mathcal{N}(\mathbf{0},
        \mathbf{I}), \quad m = 1, \ldots, M

        \mathbf{s}^{(m)} &= \mathrm{softmax}(\mathbf{f}^{(m)}), \qquad
        \mathbf{z}^{(m)} = \mathbf{X}^\top \mathbf{s}^{(m)}

    (``covar_mode='zero'``: no variance, :math:`M = 1`,
    :math:`\mathbf{f} = \boldsymbol{\mu}_f`). The prior is smooth over the
    bag's graph (:math:`\mathbf{A}` symmetric, normalized
    :math:`\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2}`, no self-loops);
    the KL term per bag (:func:`smoothness_kl`) is

    .. math::
        \frac{1}{N} \Big[ \boldsymbol{\mu}_f^\top (\mathbf{I} - \mathbf{A})
        \boldsymbol{\mu}_f + \sum_i (1 - A_{ii}) \sigma_i^2 - \tfrac{1}{2}
        \sum_i \log \sigma_i^2 \Big],

    averaged over the bags, computed with scatters over nodes and edges in
    :math:`O(N + |\mathcal{E}|)`. :math:`N` is the bag's own size (torchmil
    divides by the padded size and counts padded rows).

    Samples are drawn from the global generator in training, and in
    evaluation from generators seeded with :obj:`eval_seed` at every call
    (:meth:`noise`): the same model gives a bag the same outputs, alone or
    in any batch.

    Args:
        in_dim (int): Instance feature size :math:`D`.
        att_dim (int, optional): Half the hidden size of the attention
            network (:math:`\mathbf{H}` has :math:`2 \cdot` att_dim
            columns). (default: :obj:`128`)
        covar_mode (str, optional): :obj:`"diag"` or :obj:`"zero"`.
            (default: :obj:`"diag"`)
        n_samples_train (int, optional): :math:`M` in training.
            (default: :obj:`1000`)
        n_samples_test (int, optional): :math:`M` in evaluation.
            (default: :obj:`5000`)
        normalize (bool, optional): In the graph form, normalize edge
            weights to :math:`\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2}`
            for the KL term. The dense form takes :obj:`adj` as
            :math:`\mathbf{A}` itself, as torchmil. (default: :obj:`True`)
        eval_seed (int, optional): Keyword only. The seed of the samples
            in evaluation. (default: :obj:`0`)

    Call it as ``pool(x, edge_index, edge_weight=..., batch=...)``,
    ``pool(data)`` or, in torchmil's dense form, ``pool(X, adj, mask)``,
    with torchmil's keywords :obj:`return_att_samples`,
    :obj:`return_att_dist`, :obj:`return_kl_div` and :obj:`n_samples`.
    The graph is only read for the KL term.

    Shapes:
        - **input:** graph form: :math:`(|\mathcal{V}|, D)`,
          :math:`(2, |\mathcal{E}|)`, :math:`(|\mathcal{E}|)`,
          :math:`(|\mathcal{V}|)`; dense form: :math:`(B, N, D)`,
          :math:`(B, N, N)`, :math:`(B, N)`
        - **output:** :math:`\mathbf{z}` :math:`(B, D, M)`; then, as asked
          and in torchmil's order: the samples :math:`\mathbf{f}`
          :math:`(|\mathcal{V}|, M)` or :math:`(B, N, M)`;
          :math:`\boldsymbol{\mu}_f` and :math:`\log \boldsymbol{\sigma}_f^2`
          :math:`(|\mathcal{V}|, 1)` or :math:`(B, N, 1)` (the latter
          :obj:`None` in ``'zero'`` mode); the KL term :math:`()`. Dense
          outputs hold :obj:`-inf` at padded positions.
    """
    def __init__(self, in_dim: int, att_dim: int = 128,
                 covar_mode: str = 'diag', n_samples_train: int = 1000,
                 n_samples_test: int = 5000, normalize: bool = True, *,
                 eval_seed: int = 0):
        super().__init__()
        check_dim('in_dim', in_dim)
        check_dim('att_dim', att_dim)
        check_choice('covar_mode', covar_mode, COVAR_MODES)
        check_dim('n_samples_train', n_samples_train)
        check_dim('n_samples_test', n_samples_test)
        check_count('eval_seed', eval_seed)
        self.in_dim, self.att_dim = in_dim, att_dim
        self.covar_mode = covar_mode
        self.n_samples_train = n_samples_train
        self.n_samples_test = n_samples_test
        self.normalize = normalize
        self.eval_seed = eval_seed
        # torchmil's module names: its state dicts load as they are.
        self.in_mlp = Sequential(Linear(in_dim, 2 * att_dim), GELU(),
                                 Linear(2 * att_dim, 2 * att_dim), GELU())
        self.mu_f_nn = Linear(2 * att_dim, 1)
        self.log_diag_Sigma_nn = Linear(2 * att_dim, 1) \
            if covar_mode == 'diag' else None

    def reset_parameters(self):
        for module in (self.in_mlp[0], self.in_mlp[2], self.mu_f_nn,
                       self.log_diag_Sigma_nn):
            if module is not None:
                module.reset_parameters()

    def num_samples(self, n_samples: Optional[int] = None) -> int:
        r""":math:`M`: :obj:`n_samples` if given, else
        :obj:`n_samples_train` in training and :obj:`n_samples_test` in
        evaluation; 1 in ``'zero'`` mode."""
        if self.covar_mode == 'zero':
            return 1
        if n_samples is None:
            return self.n_samples_train if self.training \
                else self.n_samples_test
        check_dim('n_samples', n_samples)
        return n_samples

    def distribution(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        r""":math:`\boldsymbol{\mu}_f` and :math:`\log
        \boldsymbol{\sigma}_f^2` (:obj:`None` in ``'zero'`` mode) of the
        instances :obj:`x` :math:`(|\mathcal{V}|, D)`, each
        :math:`(|\mathcal{V}|)`."""
        if x.dim() != 2 or x.size(1) != self.in_dim:
            raise ValueError(f"instance features must have shape "
                             f"(num_nodes, in_dim={self.in_dim}) (got "
                             f"{tuple(x.shape)})")
        h = self.in_mlp(x)
        mu = self.mu_f_nn(h).squeeze(-1)
        if self.log_diag_Sigma_nn is None:
            return mu, None
        return mu, self.log_diag_Sigma_nn(h).squeeze(-1)

    def noise(self, mu: Tensor, sizes: Sequence[int], start: int,
              count: int) -> Tensor:
        r"""The standard normal :math:`\boldsymbol{\epsilon}`
        :math:`(|\mathcal{V}|, M)` of samples :obj:`start` to
        :obj:`start + count` of the nodes :obj:`mu`, each bag's nodes
        together (:obj:`sizes`). In training from the global generator, as
        torchmil draws it (one ``randn`` of the nodes by the samples). In
        evaluation each bag's samples come in draws of
        :data:`NOISE_DRAW`, draw :math:`k` from a generator seeded with
        :obj:`eval_seed` and :math:`k`: a bag gets the same samples alone
        or in any batch, in one block or in several (:obj:`start` is then a
        multiple of :data:`NOISE_DRAW`)."""
        like = dict(device=mu.device, dtype=mu.dtype)
        if self.training:
            return torch.randn(mu.size(0), count, **like)
        if start % NOISE_DRAW:
            raise ValueError(f"evaluation samples start at a multiple of "
                             f"{NOISE_DRAW} (got {start})")
        draws = []
        for first in range(start, start + count, NOISE_DRAW):
            width = min(NOISE_DRAW, start + count - first)
            seed = (self.eval_seed * _SEED_STRIDE + first // NOISE_DRAW) \
                % (1 << 32)
            draws.append(torch.cat([torch.randn(
                size, width, generator=torch.Generator(
                    device=mu.device).manual_seed(seed), **like)
                for size in sizes]))
        return torch.cat(draws, dim=1)

    def sample(self, bags: Bags, mu: Tensor, log_var: Optional[Tensor],
               n_samples: int) -> Tensor:
        r""":math:`M` samples :math:`(|\mathcal{V}|, M)` of
        :math:`q(\mathbf{f})` of the nodes of :obj:`bags`, clipped to
        :math:`[-20, 20]` as torchmil clips them (the noise of
        :meth:`noise`); :math:`\boldsymbol{\mu}_f` itself
        :math:`(|\mathcal{V}|, 1)` without variance."""
        if log_var is None:
            return mu.unsqueeze(-1)
        order, sizes = bags.groups()
        noise = self.noise(mu, sizes, 0, n_samples)
        return self.samples_of(mu, log_var, in_node_order(noise, order))

    @staticmethod
    def samples_of(mu: Tensor, log_var: Optional[Tensor],
                   noise: Optional[Tensor]) -> Tensor:
        r"""The samples :math:`\mathrm{clip}(\boldsymbol{\mu} +
        \boldsymbol{\sigma} \odot \boldsymbol{\epsilon}, -20, 20)` of the
        :obj:`noise` :math:`\boldsymbol{\epsilon}` :math:`(|\mathcal{V}|,
        M)`; :math:`\boldsymbol{\mu}` :math:`(|\mathcal{V}|, 1)` without
        variance."""
        if log_var is None:
            return mu.unsqueeze(-1)
        f = mu.unsqueeze(-1) + torch.exp(0.5 * log_var).unsqueeze(-1) * noise
        return torch.clip(f, -SAMPLE_CLIP, SAMPLE_CLIP)

    def softmax_weights(self, f: Tensor, bags: Bags) -> Tensor:
        r"""The softmax of the samples :obj:`f` :math:`(|\mathcal{V}|, M)`
        within each bag, in float32 under fp16/bf16 autocast (a large bag's
        weights then still sum to 1)."""
        with torch.autocast(f.device.type, enabled=False):
            return softmax(f.to(compute_dtype(f)), bags.batch,
                           num_nodes=bags.num_graphs, dim=0)

    def attend(self, bags: Bags, n_samples: Optional[int] = None
               ) -> AttentionSamples:
        r"""The attention distribution of already validated bags, its
        samples and their softmax weights within each bag."""
        mu, log_var = self.distribution(bags.x)
        f = self.sample(bags, mu, log_var, self.num_samples(n_samples))
        return AttentionSamples(mu, log_var, f, self.softmax_weights(f, bags))

    def kl_div(self, bags: Bags, mu: Tensor,
               log_var: Optional[Tensor]) -> Tensor:
        r"""The KL term :math:`()` of the distribution :obj:`mu`,
        :obj:`log_var` over the bags' graph (:func:`smoothness_kl`)."""
        adjacency = bags.adjacency(self.normalize, compute_dtype(mu))
        return smoothness_kl(mu, log_var, adjacency, bags.batch,
                             bags.num_graphs)

    def forward(
        self,
        x,
        edge_index=None,
        mask: Optional[Tensor] = None,
        return_att_samples: bool = False,
        return_att_dist: bool = False,
        return_kl_div: bool = False,
        n_samples: Optional[int] = None,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        size: Optional[int] = None,
    ):
        r"""Pools each bag :math:`M` times (torchmil's call form).

        Args:
            x (torch.Tensor or Data): Node features (graph form),
                :math:`(B, N, D)` (dense form), or a PyG ``Data``/``Batch``.
            edge_index (torch.Tensor, optional): Graph form: edge indices
                or a sparse adjacency; dense form: :math:`(B, N, N)`
                (:math:`\mathbf{A}` itself). Only needed with
                :obj:`return_kl_div`.
            mask (torch.Tensor, optional): Dense form only: :math:`(B, N)`.
            return_att_samples (bool, optional): Also return the samples.
                (default: :obj:`False`)
            return_att_dist (bool, optional): Also return
                :math:`\boldsymbol{\mu}_f` and :math:`\log
                \boldsymbol{\sigma}_f^2`. (default: :obj:`False`)
            return_kl_div (bool, optional): Also return the KL term.
                (default: :obj:`False`)
            n_samples (int, optional): :math:`M` (default: by mode, see
                :meth:`num_samples`).
            edge_weight, batch, size: Graph form, as in
                :class:`~pyg_sm.SmAttentionPool`.
        """
        if edge_index is None and not return_kl_div:
            edge_index = empty_graph(x, mask)
        bags = as_bags(x, edge_index, mask, edge_weight, batch, size)
        samples = self.attend(bags, n_samples)
        features, _ = to_dense_batch(bags.x, bags.batch,
                                     batch_size=bags.num_graphs)
        weights, _ = to_dense_batch(samples.weights, bags.batch,
                                    batch_size=bags.num_graphs)
        z = torch.bmm(features.transpose(1, 2).to(weights.dtype),
                      weights).to(bags.x.dtype)
        out = [z]
        if return_att_samples:
            out.append(bags.pad(samples.f))
        if return_att_dist:
            out.append(bags.pad(samples.mu.unsqueeze(-1)))
            out.append(None if samples.log_var is None else
                       bags.pad(samples.log_var.unsqueeze(-1)))
        if return_kl_div:
            out.append(self.kl_div(bags, samples.mu, samples.log_var))
        return out[0] if len(out) == 1 else tuple(out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_dim}, '
                f'att_dim={self.att_dim}, covar_mode={self.covar_mode!r}, '
                f'n_samples_train={self.n_samples_train}, '
                f'n_samples_test={self.n_samples_test})')

