r"""The Sm transformer of the Sm paper (torchmil's ``SmTransformerEncoder``)
on sparse batches: self-attention runs per bag over its own instances with
torch's :func:`~torch.nn.functional.scaled_dot_product_attention`, whose
CPU and GPU kernels keep memory linear in the number of instances; nothing
is padded and no :math:`N \times N` matrix is built."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Identity, LayerNorm, Linear
from torch.nn.attention import SDPBackend

from ..data.adjacency import Adjacency, compute_dtype
from ..data.bags import Bags, as_bags
from ..utils.checks import (
    check_alpha,
    check_choice,
    check_count,
    check_dim,
    check_probability,
)
from .sm import MODES, Sm, ignore_state_of

#: Queries per block where attention runs in blocks (where torch would use
#: its math kernel).
QUERY_BLOCK = 1024
_MATH_KERNEL = int(SDPBackend.MATH)


def _math_kernel(q: Tensor, k: Tensor, v: Tensor, dropout: float) -> bool:
    r"""Whether torch's dispatcher would run :obj:`q`, :obj:`k`, :obj:`v`
    through its math kernel, which holds a (heads, n, n) matrix, rather than
    a flash, memory-efficient or cuDNN kernel, whose memory is linear in n.
    It does with dropout on the CPU, in float64 on a GPU, with head
    dimensions a GPU kernel cannot align (multiples of 8 in fp16/bf16, 4 in
    float32), or where the fused kernels are disabled
    (:func:`torch.nn.attention.sdpa_kernel`)."""
    return torch._fused_sdp_choice(q, k, v, dropout_p=dropout) == \
        _MATH_KERNEL


def _attention(q: Tensor, k: Tensor, v: Tensor, dropout: float,
               block: int) -> Tensor:
    r"""torch's scaled dot-product attention of (1, heads, n, d) tensors.
    Where torch would use its math kernel (:func:`_math_kernel`), queries go
    in blocks of :obj:`block`, each recomputed in the backward
    (checkpointed), so that memory stays linear in n: (heads, block, n) at
    a time. Rows of a softmax are independent: blocks give the same
    attention."""
    n = q.size(-2)
    if n <= block or not _math_kernel(q, k, v, dropout):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    from torch.utils.checkpoint import checkpoint

    def one_block(part: Tensor) -> Tensor:
        return F.scaled_dot_product_attention(part, k, v, dropout_p=dropout)

    return torch.cat([checkpoint(one_block, part, use_reentrant=False)
                      if torch.is_grad_enabled() else one_block(part)
                      for part in q.split(block, dim=-2)], dim=-2)


def per_bag_attention(q: Tensor, k: Tensor, v: Tensor, groups, heads: int,
                      dropout: float = 0.0,
                      block: int = QUERY_BLOCK) -> Tensor:
    r"""Multi-head scaled dot-product attention of each bag's instances
    among themselves. :obj:`q`, :obj:`k`, :obj:`v` are :math:`(N, A)` node
    rows of a batch, :obj:`groups` is :meth:`Bags.groups
    <pyg_sm.data.Bags.groups>`; returns :math:`(N, A)`, heads
    concatenated, in the nodes' order. Memory stays linear in the largest
    bag's size (where torch has no fused kernel for the inputs, by queries
    in blocks of :obj:`block`)."""
    order, sizes = groups
    if order is not None:
        q, k, v = q[order], k[order], v[order]
    width = q.size(-1)
    outputs = []
    for q_bag, k_bag, v_bag in zip(q.split(sizes), k.split(sizes),
                                   v.split(sizes)):
        n = q_bag.size(0)

        def split_heads(t: Tensor) -> Tensor:  # (1, heads, n, A / heads)
            return t.reshape(1, n, heads, width // heads).transpose(1, 2)

        out = _attention(split_heads(q_bag), split_heads(k_bag),
                         split_heads(v_bag), dropout, block)
        outputs.append(out.transpose(1, 2).reshape(n, width))
    out = torch.cat(outputs)
    if order is not None:
        out = torch.empty_like(out).index_copy_(0, order, out)
    return out


class SmMultiheadSelfAttention(torch.nn.Module):
    r"""Multi-head self-attention within each bag, followed by the Sm
    operator on the bag's graph (torchmil's ``SmMultiheadSelfAttention``):

    .. math::
        \mathbf{Q}, \mathbf{K}, \mathbf{V} = \mathbf{U}\mathbf{W}_{qkv},
        \qquad \mathbf{O} = \mathrm{Sm}\Big(\big\Vert_{h}
        \mathrm{softmax}\big(\mathbf{Q}_h \mathbf{K}_h^\top /
        \sqrt{A / H}\big) \mathbf{V}_h\Big)

    with :math:`H` heads of :math:`A / H` dimensions, over the instances of
    the same bag only.

    Args:
        in_dim (int): Input size :math:`D_{in}`.
        att_dim (int, optional): :math:`A`. (default: :obj:`512`)
        n_heads (int, optional): :math:`H`, a divisor of :math:`A`.
            (default: :obj:`4`)
        dropout (float, optional): Dropout on the attention weights, in
            training only. (default: :obj:`0.0`)
        sm_alpha (float or str, optional): (default: :obj:`"trainable"`)
        sm_mode (str, optional): (default: :obj:`"approx"`)
        sm_steps (int, optional): (default: :obj:`10`)
        **sm_kwargs (optional): Further arguments of :class:`~pyg_sm.Sm`.

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, D_{in})`, the prepared
          :class:`~pyg_sm.data.Adjacency` and the bags' groups
        - **output:** :math:`(|\mathcal{V}|, A)`
    """
    def __init__(self, in_dim: int, att_dim: int = 512, n_heads: int = 4,
                 dropout: float = 0.0,
                 sm_alpha: Union[float, str] = 'trainable',
                 sm_mode: str = 'approx', sm_steps: int = 10, **sm_kwargs):
        super().__init__()
        check_dim('in_dim', in_dim)
        check_dim('att_dim', att_dim)
        check_dim('n_heads', n_heads)
        if att_dim % n_heads:
            raise ValueError(f"'att_dim' ({att_dim}) must be a multiple of "
                             f"'n_heads' ({n_heads})")
        check_probability('dropout', dropout)
        self.in_dim, self.att_dim, self.n_heads = in_dim, att_dim, n_heads
        self.dropout = dropout
        self.qkv = Linear(in_dim, 3 * att_dim, bias=False)
        self.sm = Sm(alpha=sm_alpha, num_steps=sm_steps, mode=sm_mode,
                     normalize=False, **sm_kwargs)

    def reset_parameters(self):
        self.qkv.reset_parameters()
        self.sm.reset_parameters()

    def forward(self, x: Tensor, adjacency: Adjacency, groups) -> Tensor:
        r"""Self-attention within each bag, then Sm.

        Args:
            x (torch.Tensor): :math:`(|\mathcal{V}|, D_{in})`.
            adjacency (Adjacency): The bags' graph, prepared once
                (:meth:`Bags.adjacency <pyg_sm.data.Bags.adjacency>`).
            groups: :meth:`Bags.groups <pyg_sm.data.Bags.groups>`.

        Shapes:
            - **output:** :math:`(|\mathcal{V}|, A)`
        """
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = per_bag_attention(q, k, v, groups, self.n_heads,
                                self.dropout if self.training else 0.0)
        return self.sm(out, adjacency)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_dim}, '
                f'att_dim={self.att_dim}, n_heads={self.n_heads}, '
                f'dropout={self.dropout}, sm={self.sm})')


class SmTransformerLayer(torch.nn.Module):
    r"""One layer of the Sm transformer (:doc:`/math`, torchmil's
    ``SmTransformerLayer``), on input :math:`\mathbf{Y}` of width
    :math:`D_{in}`:

    .. math::
        \mathbf{Z} &= P(\mathbf{Y}) + \mathrm{SmMHSA}(\mathrm{LayerNorm}_1
        (\mathbf{Y}))

        \mathbf{Z} &\leftarrow \mathbf{Z} + \mathrm{MLP}(\mathrm{LayerNorm}_2
        (\mathbf{Z})) \quad \text{(if use\_mlp)}

        \mathbf{Y}' &= \mathbf{Z}\mathbf{W}_{out} + \mathbf{b}_{out}
        \quad \text{(if } A \neq D_{out}\text{, else } \mathbf{Z})

    with :math:`P` a linear map :math:`D_{in} \to A` when the two differ
    (else the identity) and :math:`\mathrm{MLP}` = Linear(A, 4A), GELU,
    Dropout, Linear(4A, A), Dropout. Without the MLP there is no
    :math:`\mathrm{LayerNorm}_2` (:attr:`norm2` is :obj:`None`).

    Args:
        in_dim (int): :math:`D_{in}`.
        out_dim (int, optional): :math:`D_{out}`. (default: :obj:`in_dim`)
        att_dim (int, optional): :math:`A`. (default: :obj:`512`)
        n_heads (int, optional): (default: :obj:`4`)
        use_mlp (bool, optional): (default: :obj:`True`)
        dropout (float, optional): (default: :obj:`0.0`)
        sm_alpha, sm_mode, sm_steps, \*\*sm_kwargs: the layer's own Sm.

    Shapes:
        - **input:** :math:`(|\mathcal{V}|, D_{in})`, the prepared
          adjacency and the bags' groups
        - **output:** :math:`(|\mathcal{V}|, D_{out})`
    """
    def __init__(self, in_dim: int, out_dim: Optional[int] = None,
                 att_dim: int = 512, n_heads: int = 4, use_mlp: bool = True,
                 dropout: float = 0.0,
                 sm_alpha: Union[float, str] = 'trainable',
                 sm_mode: str = 'approx', sm_steps: int = 10, **sm_kwargs):
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        check_dim('out_dim', out_dim)
        self.in_dim, self.out_dim, self.att_dim = in_dim, out_dim, att_dim
        self.use_mlp = use_mlp
        self.norm1 = LayerNorm(in_dim)
        self.attention = SmMultiheadSelfAttention(
            in_dim, att_dim=att_dim, n_heads=n_heads, dropout=dropout,
            sm_alpha=sm_alpha, sm_mode=sm_mode, sm_steps=sm_steps,
            **sm_kwargs)
        self.att_proj = Linear(in_dim, att_dim) if in_dim != att_dim \
            else Identity()
        if use_mlp:
            self.norm2 = LayerNorm(att_dim)
            self.mlp = torch.nn.Sequential(
                Linear(att_dim, 4 * att_dim), torch.nn.GELU(),
                torch.nn.Dropout(dropout), Linear(4 * att_dim, att_dim),
                torch.nn.Dropout(dropout))
        else:
            # No MLP, no LayerNorm before it (torchmil builds one and never
            # uses it): its parameters would get no gradient, which stops
            # DDP.
            self.norm2 = self.mlp = None
            ignore_state_of(self, 'norm2')
        self.out_proj = Linear(att_dim, out_dim) if att_dim != out_dim \
            else Identity()

    def reset_parameters(self):
        for module in self.modules():
            if module is not self and hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def forward(self, y: Tensor, adjacency: Adjacency, groups) -> Tensor:
        r"""One layer on the bags' nodes.

        Args:
            y (torch.Tensor): :math:`(|\mathcal{V}|, D_{in})`.
            adjacency (Adjacency): The bags' prepared graph.
            groups: :meth:`Bags.groups <pyg_sm.data.Bags.groups>`.

        Shapes:
            - **output:** :math:`(|\mathcal{V}|, D_{out})`
        """
        z = self.att_proj(y) + self.attention(self.norm1(y), adjacency,
                                              groups)
        if self.mlp is not None:
            z = z + self.mlp(self.norm2(z))
        return self.out_proj(z)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_dim}, {self.out_dim}, '
                f'att_dim={self.att_dim}, use_mlp={self.use_mlp}, '
                f'attention={self.attention})')


class SmTransformerEncoder(torch.nn.Module):
    r"""The Sm transformer encoder (:doc:`/math`, torchmil's
    ``SmTransformerEncoder``) over the bags of a PyG batch: :math:`L`
    :class:`SmTransformerLayer` s, the first from :math:`D` to :math:`A`,
    the last from :math:`A` to :math:`D_{out}`, each with its own Sm; with
    :obj:`add_self`, the encoder's input :math:`\mathbf{X}^0` is added
    after every layer; then a final LayerNorm:

    .. math::
        \mathbf{Y}^{l} = \mathrm{Layer}_l(\mathbf{Y}^{l-1})
        \; (+ \mathbf{X}^0), \qquad
        \mathrm{Encoder}(\mathbf{X}^0) = \mathrm{LayerNorm}(\mathbf{Y}^{L})

    Self-attention runs per bag (:func:`per_bag_attention`): memory grows
    with the number of instances, not its square.

    Args:
        in_dim (int): :math:`D`.
        out_dim (int, optional): :math:`D_{out}`. (default: :obj:`in_dim`)
        att_dim (int, optional): :math:`A`. (default: :obj:`512`)
        n_heads (int, optional): (default: :obj:`4`)
        n_layers (int, optional): :math:`L`. (default: :obj:`4`)
        use_mlp (bool, optional): (default: :obj:`True`)
        add_self (bool, optional): Add :math:`\mathbf{X}^0` after every
            layer; needs :math:`A = D` with several layers and
            :math:`D_{out} = D` (a clear error here, a shape mismatch in
            torchmil). (default: :obj:`False`)
        dropout (float, optional): On the attention weights (training
            only; torchmil's kernel call applies it in eval mode too) and in
            the MLP. (default: :obj:`0.0`)
        sm_alpha, sm_mode, sm_steps: every layer's Sm (each has its own
            alpha). (default: :obj:`"trainable"`, :obj:`"approx"`,
            :obj:`10`)
        normalize (bool, optional): Graph form: normalize edge weights.
            (default: :obj:`True`)
        **sm_kwargs (optional): Further arguments of :class:`~pyg_sm.Sm`.

    Call it as ``encoder(x, edge_index, edge_weight=..., batch=...)``,
    ``encoder(data)`` or ``encoder(X, adj, mask)``.

    Shapes:
        - **input:** graph form :math:`(|\mathcal{V}|, D)` with its edges and
          batch vector, or dense :math:`(B, N, D)`, :math:`(B, N, N)`,
          :math:`(B, N)`
        - **output:** :math:`(|\mathcal{V}|, D_{out})`, or :math:`(B, N,
          D_{out})` with zeros at padded positions
    """
    def __init__(self, in_dim: int, out_dim: Optional[int] = None,
                 att_dim: int = 512, n_heads: int = 4, n_layers: int = 4,
                 use_mlp: bool = True, add_self: bool = False,
                 dropout: float = 0.0,
                 sm_alpha: Union[float, str] = 'trainable',
                 sm_mode: str = 'approx', sm_steps: int = 10,
                 normalize: bool = True, **sm_kwargs):
        super().__init__()
        check_dim('in_dim', in_dim)
        check_dim('n_layers', n_layers)
        check_choice('sm_mode', sm_mode, MODES)
        check_alpha(sm_alpha, 'sm_alpha')
        check_count('sm_steps', sm_steps)
        out_dim = in_dim if out_dim is None else out_dim
        if add_self and out_dim != in_dim:
            raise ValueError(f"add_self adds the input to the output: "
                             f"'out_dim' ({out_dim}) must equal 'in_dim' "
                             f"({in_dim})")
        if add_self and n_layers > 1 and att_dim != in_dim:
            raise ValueError(f"add_self with {n_layers} layers adds the "
                             f"input (width {in_dim}) to the output of "
                             f"every layer (width att_dim={att_dim}): "
                             f"'att_dim' must equal the feature size "
                             f"{in_dim}, or use one layer")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.add_self, self.normalize = add_self, normalize
        self.layers = torch.nn.ModuleList([
            SmTransformerLayer(
                in_dim if i == 0 else att_dim,
                out_dim if i == n_layers - 1 else att_dim, att_dim=att_dim,
                n_heads=n_heads, use_mlp=use_mlp, dropout=dropout,
                sm_alpha=sm_alpha, sm_mode=sm_mode, sm_steps=sm_steps,
                **sm_kwargs) for i in range(n_layers)])
        self.norm = LayerNorm(out_dim)

    def reset_parameters(self):
        for layer in self.layers:
            layer.reset_parameters()
        self.norm.reset_parameters()

    def encode(self, bags: Bags) -> Tensor:
        r"""Encodes already validated bags: :math:`(|\mathcal{V}|,
        D_{out})`. The graph is prepared once per forward
        (:meth:`Bags.adjacency <pyg_sm.data.Bags.adjacency>`) and shared
        with the pool."""
        x = bags.x
        if x.dim() != 2 or x.size(1) != self.in_dim:
            raise ValueError(f"instance features must have shape "
                             f"(num_nodes, in_dim={self.in_dim}) (got "
                             f"{tuple(x.shape)})")
        adjacency = bags.adjacency(self.normalize, compute_dtype(x))
        groups = bags.groups()
        y = x
        for layer in self.layers:
            y = layer(y, adjacency, groups)
            if self.add_self:
                y = y + x
        return self.norm(y)

    def forward(self, x, edge_index=None, mask: Optional[Tensor] = None, *,
                edge_weight: Optional[Tensor] = None,
                batch: Optional[Tensor] = None,
                size: Optional[int] = None) -> Tensor:
        r"""Encodes each bag's instances.

        Args:
            x (torch.Tensor or Data): :math:`(|\mathcal{V}|, D)` (graph
                form), :math:`(B, N, D)` (dense form), or a PyG
                ``Data``/``Batch``.
            edge_index (torch.Tensor, optional): Graph form: edge indices
                :math:`(2, |\mathcal{E}|)` or a sparse adjacency; dense
                form: the :math:`(B, N, N)` adjacency.
            mask (torch.Tensor, optional): Dense form only: :math:`(B, N)`.
            edge_weight (torch.Tensor, optional): Graph form:
                :math:`(|\mathcal{E}|)`.
            batch (torch.Tensor, optional): Graph form:
                :math:`(|\mathcal{V}|)`.
            size (int, optional): Graph form: the number of bags (default:
                read from :obj:`batch`).

        Shapes:
            - **output:** :math:`(|\mathcal{V}|, D_{out})`, or
              :math:`(B, N, D_{out})` with zeros at padded positions
        """
        bags = as_bags(x, edge_index, mask, edge_weight, batch, size)
        return bags.pad(self.encode(bags), fill=0.0)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_dim}, {self.out_dim}, '
                f'n_layers={len(self.layers)}, add_self={self.add_self}, '
                f'layer={self.layers[0]})')
