import inspect
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Linear, ModuleList

# The hook-based spectral norm, as the reference uses: unlike the
# parametrization, it lets torch.save pickle a whole model.
from torch.nn.utils import remove_spectral_norm
from torch.nn.utils import spectral_norm as apply_spectral_norm
from torch_geometric.utils import scatter, softmax

from ..data.adjacency import compute_dtype
from ..data.bags import Bags, as_bags
from ..utils.checks import check_alpha, check_choice, check_count, check_dim
from .sm import MODES, Sm, ignore_state_of

#: torchmil 1.0.x's places for Sm in the pool (its ``sm_where``).
SM_WHERE = ('early', 'mid', 'late', 'none')
#: More Sm layers than this warn: likely torchmil 1.0.x's sm_steps given by
#: position (1.0.x has no sm_layers; its sixth argument is sm_steps).
MANY_SM_LAYERS = 4
SM_LAYERS_WARNING = r'.*Sm layers is unusual'
#: The pool's linear layers that spectral normalization can cover.
POOL_LAYERS = ('proj1', 'mlp', 'proj2')
# torchmil 1.0.x's spectral_norm=True, by sm_where (its code).
_SPECTRAL_NORM_BY_WHERE = {'early': ('proj1', 'proj2'), 'none':
                           ('proj1', 'proj2'), 'mid': ('proj2', ),
                           'late': ()}


def resolve_generation(owner, sm_where: Optional[str],
                       spectral_norm: Optional[bool], prefix: str = '',
                       **legacy) -> Dict[str, Any]:
    r"""The pool's settings from the keywords of either torchmil
    generation: torchmil 1.0.x's :obj:`sm_where` / :obj:`spectral_norm`
    (:obj:`None` when not given), or 0.1.0's :obj:`legacy` values
    (``sm_layers``, ``sm_pre``, ``sm_post``, ``sm_spectral_norm``).
    :obj:`owner` is the class whose constructor takes them, named with
    :obj:`prefix` (``pool_`` in SmTransformerABMIL): its signature gives
    the defaults, and errors use its names. Returns
    ``sm_layers``, ``sm_pre``, ``sm_mid``, ``sm_post`` and
    ``spectral_norm_layers``."""
    modern = [prefix + k for k, v in (('sm_where', sm_where),
                                      ('spectral_norm', spectral_norm))
              if v is not None]
    if not modern:
        if legacy['sm_layers'] > MANY_SM_LAYERS:
            warnings.warn(
                f"{prefix}sm_layers={legacy['sm_layers']}: more than "
                f"{MANY_SM_LAYERS} Sm layers is unusual. Positional "
                f"arguments follow torchmil 0.1.0 ({prefix}sm_layers comes "
                f"before {prefix}sm_steps); in torchmil 1.0.x that position "
                f"is {prefix}sm_steps: pass it by keyword", UserWarning,
                stacklevel=3)
        return dict(sm_layers=legacy['sm_layers'], sm_pre=legacy['sm_pre'],
                    sm_mid=False, sm_post=legacy['sm_post'],
                    spectral_norm_layers=POOL_LAYERS
                    if legacy['sm_spectral_norm'] else ())
    parameters = inspect.signature(owner).parameters
    changed = [prefix + k for k, v in legacy.items()
               if v != parameters[prefix + k].default]
    if changed:
        raise ValueError(
            f"{' and '.join(modern)} (torchmil 1.0.x) cannot be mixed with "
            f"{' and '.join(changed)} (torchmil 0.1.0): the two generations "
            f"place Sm differently; use one generation's keywords")
    where = 'early' if sm_where is None else sm_where  # torchmil's default
    check_choice(prefix + 'sm_where', where, SM_WHERE)
    if spectral_norm is not None and not isinstance(spectral_norm, bool):
        raise TypeError(f"'{prefix}spectral_norm' must be a bool (got "
                        f"{type(spectral_norm).__name__})")
    return dict(sm_layers=0, sm_pre=where == 'early', sm_mid=where == 'mid',
                sm_post=where == 'late',
                spectral_norm_layers=_SPECTRAL_NORM_BY_WHERE[where]
                if spectral_norm else ())


#: The activations of the attention network, by name.
ACTIVATIONS = {
    'tanh': torch.nn.Tanh,
    'relu': torch.nn.ReLU,
    'gelu': torch.nn.GELU,
}


def _reset_linear(module: Linear) -> None:
    """Linear's own initialization; under spectral normalization the hook is
    rebuilt so that its power-iteration vectors match the new weight."""
    normalized = hasattr(module, 'weight_orig')
    if normalized:
        remove_spectral_norm(module)
    module.reset_parameters()
    if normalized:
        apply_spectral_norm(module)


class SmAttentionPool(torch.nn.Module):
    r"""Attention pooling with the Sm operator, from the `"Sm: enhanced
    localization in Multiple Instance Learning for medical imaging
    classification" <https://arxiv.org/abs/2410.03276>`_ paper, over the
    bags of a PyG batch.

    For the instances :math:`\mathbf{X} \in \mathbb{R}^{N \times D}` of one
    bag (:math:`\mathrm{Sm}` is :class:`~pyg_sm.Sm` on the bag's graph):

    .. math::
        \mathbf{X} &\leftarrow \mathrm{Sm}(\mathbf{X})
        \quad \text{(if sm\_pre)}

        \mathbf{H} &= \mathrm{act}(\mathbf{X} \mathbf{W}_1 + \mathbf{b}_1)
        \quad (\mathrm{act}(\mathrm{Sm}(\mathbf{X} \mathbf{W}_1 +
        \mathbf{b}_1)) \text{ with sm\_where='mid'})

        \mathbf{H} &\leftarrow \mathrm{act}(\mathrm{Sm}(\mathbf{H})
        \mathbf{W}_l + \mathbf{b}_l), \quad l = 1, \ldots,
        \text{sm\_layers}

        \mathbf{f} &= \mathbf{H} \mathbf{w}
        \quad (\leftarrow \mathrm{Sm}(\mathbf{f}) \text{ if sm\_post})

        \mathbf{s} &= \mathrm{softmax}(\mathbf{f}), \qquad
        \mathbf{z} = \textstyle\sum_n s_n \mathbf{x}_n

    The softmax and the sum run per bag over the batch vector (PyG's
    :func:`~torch_geometric.utils.softmax` and
    :func:`~torch_geometric.utils.scatter`): nothing is padded; under
    fp16/bf16 autocast they run in float32, so that the weights of a large
    bag still sum to 1. One Sm module (one :math:`\alpha`) serves every use,
    as in the reference, and the graph is normalized and sorted once per
    call for all of them; a pool that does not smooth builds none
    (:attr:`sm` is :obj:`None`).

    Args:
        in_dim (int): Instance feature size :math:`D`.
        att_dim (int, optional): Attention size. (default: :obj:`128`)
        act (str, optional): :obj:`"tanh"`, :obj:`"relu"` or :obj:`"gelu"`.
            (default: :obj:`"gelu"`)
        sm_mode (str, optional): :obj:`"approx"` or :obj:`"exact"`.
            (default: :obj:`"approx"`)
        sm_alpha (float or str, optional): :math:`\alpha \in (0, 1)` or
            :obj:`"trainable"`. (default: :obj:`"trainable"`)
        sm_layers (int, optional): Number of Sm layers in the attention
            network (positional arguments follow torchmil 0.1.0; more than
            4 warn: see :class:`~pyg_sm.SmABMIL`). (default: :obj:`1`)
        sm_steps (int, optional): Steps of the approx mode.
            (default: :obj:`10`)
        sm_pre (bool, optional): Smooth the instances first.
            (default: :obj:`False`)
        sm_post (bool, optional): Smooth the attention values.
            (default: :obj:`False`)
        sm_spectral_norm (bool, optional): Spectral normalization on every
            linear layer of the pool. (default: :obj:`False`)
        normalize (bool, optional): In the graph form, turn edge weights
            into :math:`\mathbf{D}^{-1/2}\mathbf{W}\mathbf{D}^{-1/2}`. The
            dense form always takes :obj:`adj` as :math:`\mathbf{A}`.
            (default: :obj:`True`)
        sm_where (str, optional): Keyword only, torchmil 1.0.x's
            placement of Sm instead of :obj:`sm_layers`, :obj:`sm_pre`,
            :obj:`sm_post`: :obj:`"early"` (on :math:`\mathbf{X}`, as
            sm_pre), :obj:`"mid"` (on :math:`\mathbf{X}\mathbf{W}_1 +
            \mathbf{b}_1` before the activation), :obj:`"late"` (on
            :math:`\mathbf{f}`, as sm_post) or :obj:`"none"`; no Sm layers.
            Mixing it with the 0.1.0 keywords is an error.
            (default: :obj:`None`, the 0.1.0 keywords apply)
        spectral_norm (bool, optional): Keyword only, torchmil 1.0.x's:
            spectral normalization on :math:`\mathbf{W}_1` and
            :math:`\mathbf{w}` for early / none, on :math:`\mathbf{w}` for
            mid, on nothing for late. (default: :obj:`None`)
        spectral_norm_layers (sequence of str, optional): Keyword only: the
            layers to normalize by name (:obj:`"proj1"`, :obj:`"mlp"`,
            :obj:`"proj2"`), overriding the flags; how
            :func:`~pyg_sm.from_torchmil` reproduces what torchmil's code
            normalizes. (default: :obj:`None`)
        sm_mid (bool, optional): Keyword only: smooth
            :math:`\mathbf{X}\mathbf{W}_1 + \mathbf{b}_1` before the
            activation (what :obj:`sm_where="mid"` sets; for models that
            resolve the keywords themselves). (default: :obj:`False`)
        **sm_kwargs (optional): Further arguments of :class:`~pyg_sm.Sm`
            (:obj:`tol`, :obj:`max_iter`, :obj:`on_nonconvergence`,
            :obj:`fused`).

    Call it as ``pool(x, edge_index, edge_weight=..., batch=...)``,
    ``pool(data)`` or, in the reference's dense form,
    ``pool(X, adj, mask)``.

    Shapes:
        - **input:**
          graph form: node features :math:`(|\mathcal{V}|, D)`,
          edge indices :math:`(2, |\mathcal{E}|)` (or a sparse adjacency),
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*;
          dense form: :math:`(B, N, D)`, :math:`(B, N, N)`, :math:`(B, N)`
        - **output:** :math:`\mathbf{z}` :math:`(B, D)` and, with
          :obj:`return_att=True`, :math:`\mathbf{f}` (before the softmax)
          :math:`(|\mathcal{V}|)` in the graph form or :math:`(B, N)` in
          the dense form, :obj:`-inf` at padded positions.
    """
    def __init__(
        self,
        in_dim: int,
        att_dim: int = 128,
        act: str = 'gelu',
        sm_mode: str = 'approx',
        sm_alpha: Union[float, str] = 'trainable',
        sm_layers: int = 1,
        sm_steps: int = 10,
        sm_pre: bool = False,
        sm_post: bool = False,
        sm_spectral_norm: bool = False,
        normalize: bool = True,
        *,
        sm_where: Optional[str] = None,
        spectral_norm: Optional[bool] = None,
        spectral_norm_layers: Optional[Sequence[str]] = None,
        sm_mid: bool = False,
        **sm_kwargs,
    ):
        super().__init__()
        settings = resolve_generation(
            SmAttentionPool, sm_where, spectral_norm, sm_layers=sm_layers,
            sm_pre=sm_pre, sm_post=sm_post,
            sm_spectral_norm=sm_spectral_norm)
        sm_layers, sm_pre, sm_post = (settings[k] for k in (
            'sm_layers', 'sm_pre', 'sm_post'))
        sm_mid = sm_mid or settings['sm_mid']
        if spectral_norm_layers is None:
            spectral_norm_layers = settings['spectral_norm_layers']
        unknown = set(spectral_norm_layers) - set(POOL_LAYERS)
        if unknown:
            raise ValueError(f"'spectral_norm_layers' names unknown layers "
                             f"{sorted(unknown)} (known: {POOL_LAYERS})")
        check_dim('in_dim', in_dim)
        check_dim('att_dim', att_dim)
        check_choice('act', act, tuple(ACTIVATIONS))
        check_choice('sm_mode', sm_mode, MODES)
        check_alpha(sm_alpha, 'sm_alpha')
        check_count('sm_layers', sm_layers)
        check_count('sm_steps', sm_steps)
        self.in_dim = in_dim
        self.att_dim = att_dim
        self.act = act
        self.sm_layers = sm_layers
        self.sm_pre = sm_pre
        self.sm_mid = sm_mid
        self.sm_post = sm_post
        self.sm_spectral_norm = set(spectral_norm_layers) == set(POOL_LAYERS)
        self.normalize = normalize

        # The bags carry the graph, normalized once per forward for every Sm
        # use: the layer itself never normalizes. A pool that does not smooth
        # builds no Sm: its alpha would get no gradient, which stops DDP.
        smooths = sm_pre or sm_mid or sm_post or sm_layers > 0
        sm = Sm(  # built either way: it checks the Sm arguments
alpha=sm_alpha, num_steps=sm_steps, mode=sm_mode,
                normalize=False, **sm_kwargs)
        self.sm = sm if smooths else None
        if not smooths:
            ignore_state_of(self, 'sm')
        self.activation = ACTIVATIONS[act]()
        self.proj1 = Linear(in_dim, att_dim)
        self.mlp = ModuleList(
            [Linear(att_dim, att_dim) for _ in range(sm_layers)])
        self.proj2 = Linear(att_dim, 1, bias=False)
        for name, modules in self._linear_layers().items():
            if name in spectral_norm_layers:
                for module in modules:
                    apply_spectral_norm(module)

    #: Smooth X W1 + b1 before the activation (torchmil 1.0.x's 'mid'); a
    #: class default, so that pools pickled before it existed load.
    sm_mid = False

    def _linear_layers(self) -> Dict[str, list]:
        return {'proj1': [self.proj1], 'mlp': list(self.mlp),
                'proj2': [self.proj2]}

    @property
    def spectral_norm_layers(self) -> Tuple[str, ...]:
        r"""The linear layers under spectral normalization, by name."""
        return tuple(name for name, modules in self._linear_layers().items()
                     if modules and all(hasattr(m, 'weight_orig')
                                        for m in modules))

    def reset_parameters(self):
        if self.sm is not None:
            self.sm.reset_parameters()
        for module in [self.proj1, *self.mlp, self.proj2]:
            _reset_linear(module)

    def forward(
        self,
        x,
        edge_index=None,
        mask: Optional[Tensor] = None,
        return_att: bool = False,
        *,
        edge_weight: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        size: Optional[int] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""Pools each bag.

        Args:
            x (torch.Tensor or Data): Node features :math:`(|\mathcal{V}|,
                D)` (graph form), :math:`(B, N, D)` (dense form), or a PyG
                ``Data``/``Batch``.
            edge_index (torch.Tensor, optional): Graph form: edge indices
                :math:`(2, |\mathcal{E}|)` or a sparse adjacency; dense
                form: the :math:`(B, N, N)` adjacency (:math:`\mathbf{A}`
                itself).
            mask (torch.Tensor, optional): Dense form only: :math:`(B, N)`.
            return_att (bool, optional): Also return :math:`\mathbf{f}`.
                (default: :obj:`False`)
            edge_weight (torch.Tensor, optional): Graph form:
                :math:`(|\mathcal{E}|)`.
            batch (torch.Tensor, optional): Graph form:
                :math:`(|\mathcal{V}|)`.
            size (int, optional): Graph form: the number of bags :math:`B`
                (default: read from :obj:`batch`).

        Shapes:
            - **output:** :math:`\mathbf{z}` :math:`(B, D)`; with
              :obj:`return_att`, :math:`\mathbf{f}`
              :math:`(|\mathcal{V}|)` or :math:`(B, N)` (:obj:`-inf` at
              padding).
        """
        bags = as_bags(x, edge_index, mask, edge_weight, batch, size)
        z, f = self.pool(bags)
        return (z, bags.pad(f)) if return_att else z

    def pool(self, bags: Bags) -> Tuple[Tensor, Tensor]:
        r"""Pools already validated bags: returns :math:`\mathbf{z}`
        :math:`(B, D)` and :math:`\mathbf{f}` :math:`(|\mathcal{V}|)`. The
        graph is prepared once (:meth:`Bags.adjacency
        <pyg_sm.data.Bags.adjacency>`) and shared with every other user of
        the same bags in this forward."""
        x, batch, num_graphs = bags.x, bags.batch, bags.num_graphs
        if x.dim() != 2 or x.size(1) != self.in_dim:
            raise ValueError(f"instance features must have shape "
                             f"(num_nodes, in_dim={self.in_dim}) (got "
                             f"{tuple(x.shape)})")
        adjacency = bags.adjacency(self.normalize, compute_dtype(x))

        def smooth(values: Tensor) -> Tensor:
            return self.sm(values, adjacency)

        if self.sm_pre:
            x = smooth(x)
        h = self.proj1(x)
        if self.sm_mid:
            h = smooth(h)
        h = self.activation(h)
        for layer in self.mlp:
            h = self.activation(layer(smooth(h)))
        f = self.proj2(h).squeeze(-1)
        if self.sm_post:
            f = smooth(f)
        # In float32 under fp16/bf16 autocast, as Sm: the softmax's sums are
        # scatter-adds in the tensor's own dtype, which on a GPU accumulate
        # in half precision and stop summing to 1 past a few thousand
        # instances (fp16) or a few hundred (bf16).
        with torch.autocast(x.device.type, enabled=False):
            dtype = compute_dtype(f)
            weight = softmax(f.to(dtype), batch, num_nodes=num_graphs, dim=0)
            z = scatter(weight.unsqueeze(-1) * x.to(dtype), batch, dim=0,
                        dim_size=num_graphs, reduce='sum')
        return z.to(x.dtype), f

    def __repr__(self) -> str:
        flags = ''.join(f', {name}=True' for name in
                        ['sm_pre', 'sm_mid', 'sm_post', 'sm_spectral_norm']
                        if getattr(self, name))
        if self.spectral_norm_layers and not self.sm_spectral_norm:
            flags += f', spectral_norm_layers={self.spectral_norm_layers}'

        return (f'{self.__class__.__name__}({self.in_dim}, '
                f'att_dim={self.att_dim}, act={self.act!r}, '
                f'sm_layers={self.sm_layers}{flags}, sm={self.sm})')
