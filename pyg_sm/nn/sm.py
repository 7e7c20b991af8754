import functools
import warnings
from typing import Callable, Optional, Union

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import spmm
from torch_geometric.utils.sparse import index2ptr

from ..data.adjacency import Adjacency, compute_dtype, prepare_adjacency
from ..data.bags import as_bags
from ..utils.checks import (
    check_alpha,
    check_choice,
    check_count,
    check_features,
    check_positive,
)
from ._autograd import SmApprox, SmExact

#: The modes of :class:`Sm`.
MODES = ('approx', 'exact')
#: What :class:`Sm` does when an exact solve stops above ``tol``.
NONCONVERGENCE = ('warn', 'raise')
# Keeps a trainable alpha strictly inside (0, 1) in float32, where a plain
# sigmoid rounds to exactly 1 beyond a logit of about 17.
_ALPHA_MARGIN = 1e-6


class _Propagation:
    r"""``A`` of one call, applied through the layer's :meth:`propagate`:
    one fused sparse matmul on CSR built from the sorted
    :class:`EdgeIndex` (its CSR/CSC caches are shared by every call that
    passes the same object), or message + scatter-add."""
    def __init__(self, layer: 'Sm', edge_index: EdgeIndex,
                 edge_weight: Tensor):
        self.layer = layer
        self.sorted_edge_index = edge_index
        self.edge_index = edge_index.as_tensor()
        self.weight = edge_weight.detach()
        self._sparse = {}
        # Scatter takes int64 indices only.
        self._scatter_index = None if layer.fused else self.edge_index.long()

    def matmul(self, x: Tensor, transpose: bool = False,
               out: Optional[Tensor] = None) -> Tensor:
        r"""``A x`` (or ``A^T x``), written into :obj:`out` if given."""
        if self.layer.fused:
            return self.layer.aggregate_neighbours(
                self._sparse_matrix(transpose), x, None, out)
        edge_index = self._scatter_index
        edge_index = edge_index.flip(0) if transpose else edge_index
        result = self.layer.aggregate_neighbours(edge_index, x, self.weight)
        return result if out is None else out.copy_(result)

    def matmul_with_graph(self, x: Tensor, weight: Tensor,
                          transpose: bool = False) -> Tensor:
        r"""``A x`` (or ``A^T x``) by message + scatter-add with
        :obj:`weight` kept in the autograd graph: differentiable in both, for
        the backward of a backward."""
        edge_index = self.edge_index.long()
        edge_index = edge_index.flip(0) if transpose else edge_index
        return self.layer.aggregate_neighbours(edge_index, x, weight)

    def _sparse_matrix(self, transpose: bool) -> Tensor:
        if transpose not in self._sparse:
            num_nodes = self.sorted_edge_index.get_sparse_size(0)
            if transpose:
                (indptr, index), perm = _transposed_csr(
                    self.sorted_edge_index)
                value = self.weight[perm]
            else:
                (indptr, index), _ = self.sorted_edge_index.get_csc()
                value = self.weight
            with warnings.catch_warnings():
                # torch warns once that CSR support is in beta.
                warnings.filterwarnings('ignore', '.*Sparse CSR tensor')
                # prepare_adjacency coalesced the edges: rows hold sorted,
                # distinct columns, as torch's CSR contract (and cuSPARSE)
                # expect; the check would cost a host synchronization.
                self._sparse[transpose] = torch.sparse_csr_tensor(
                    indptr, index, value, (num_nodes, num_nodes),
                    check_invariants=False)
        return self._sparse[transpose]


def _transposed_csr(edge_index: EdgeIndex):
    r"""``(indptr, index), perm`` of the CSR of :math:`\mathbf{A}^\top`,
    kept on the :class:`EdgeIndex` for every call that shares it.
    prepare_adjacency sorted the edges by target, then source: a stable sort
    by source keeps the targets of each source sorted, as torch's CSR
    contract wants (EdgeIndex's own ``get_csr()`` sorts without keeping
    that order)."""
    cached = getattr(edge_index, '_sm_transposed_csr', None)
    if cached is None:
        source, target = edge_index.as_tensor()
        source, perm = torch.sort(source, stable=True)
        cached = (index2ptr(source, edge_index.get_sparse_size(0)),
                  target[perm]), perm
        edge_index._sm_transposed_csr = cached
    return cached


class Sm(MessagePassing):
    r"""The Sm smoothing operator from the `"Sm: enhanced localization in
    Multiple Instance Learning for medical imaging classification"
    <https://arxiv.org/abs/2410.03276>`_ paper, on sparse batched graphs.

    With :math:`\mathbf{A}` the (normalized) adjacency and
    :math:`\mathbf{L} = \mathbf{I} - \mathbf{A}`, the exact mode computes

    .. math::
        \mathrm{Sm}(\mathbf{U}) = (\mathbf{I} + \gamma \mathbf{L})^{-1}
        \mathbf{U} = (1 - \alpha)(\mathbf{I} - \alpha \mathbf{A})^{-1}
        \mathbf{U}, \qquad \gamma = \frac{\alpha}{1 - \alpha},

    by conjugate gradient, and the approximate mode runs :math:`T` steps of

    .. math::
        \mathbf{G}^{(0)} = \mathbf{U}, \qquad
        \mathbf{G}^{(t)} = \alpha \mathbf{A} \mathbf{G}^{(t-1)}
        + (1 - \alpha) \mathbf{U}, \qquad
        \mathrm{Sm}(\mathbf{U}) = \mathbf{G}^{(T)}.

    :math:`A_{ij}` is the weight of the edge :math:`j \to i`. With
    :obj:`normalize=True` it is :math:`\mathbf{D}^{-1/2} \mathbf{W}
    \mathbf{D}^{-1/2}` of the given weights :math:`\mathbf{W}` (1 where
    absent); no self-loops are added. Repeated edges are one edge of their
    summed weight. A node without incoming edges gets
    :math:`(1 - \alpha)\mathbf{U}` in both modes (for :math:`T \ge 1`).
    The graphs of a batch are blocks of one graph: nothing is padded.

    The approximate mode follows the formula above for every :math:`\alpha`;
    torchmil's approx mode uses :math:`1 - \alpha` in its place (the two
    agree at :math:`\alpha = 0.5`, the start of a trainable alpha).

    Both modes differentiate without storing iterations: the approximate
    backward is the same recursion run on the gradient with
    :math:`\mathbf{A}^\top`, the exact backward is one more solve. Only a
    gradient for :obj:`edge_weight` in approximate mode keeps the
    :math:`T` iterates. Sm is twice differentiable (gradient penalties,
    Hessian-vector products): under :obj:`create_graph=True` the approximate
    backward recomputes the recursion as a graph (keeping the iterates) and
    the exact backward is an exact Sm with :math:`\mathbf{A}^\top`.

    Args:
        alpha (float or str, optional): :math:`\alpha \in (0, 1)`, or
            :obj:`"trainable"` to learn it, starting at :obj:`0.5` and
            kept strictly inside :math:`(0, 1)` by a sigmoid (an approx
            layer of zero steps, the identity, builds no parameter for it).
            (default: :obj:`"trainable"`)
        num_steps (int, optional): Steps :math:`T` of the approximate mode.
            (default: :obj:`10`)
        mode (str, optional): :obj:`"approx"` or :obj:`"exact"`.
            (default: :obj:`"approx"`)
        normalize (bool, optional): Normalize edge weights symmetrically;
            if :obj:`False`, :obj:`edge_weight` is :math:`\mathbf{A}` itself.
            (default: :obj:`True`)
        cached (bool, optional): Cache the normalized, sorted adjacency of
            the first call and reuse it (transductive use only); it follows
            the layer's :meth:`~torch.nn.Module.to`. (default: :obj:`False`)
        fused (bool, optional): Aggregate with one sparse matrix product per
            step (:meth:`message_and_aggregate`); if :obj:`False`, with
            :meth:`message` and scatter-add. Same numbers either way.
            (default: :obj:`True`)
        tol (float, optional): Relative residual at which the exact solve
            stops, per graph and feature column. :obj:`None` means
            :obj:`1e-10` for float64 inputs and :obj:`1e-5` otherwise.
            (default: :obj:`None`)
        max_iter (int, optional): Conjugate-gradient iterations at most.
            (default: :obj:`1000`)
        on_nonconvergence (str, optional): :obj:`"warn"` (a
            :class:`~pyg_sm.SmConvergenceWarning`) or :obj:`"raise"` (a
            :class:`~pyg_sm.SmConvergenceError`) when the exact solve stops
            at :obj:`max_iter` above :obj:`tol`. (default: :obj:`"warn"`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    The exact mode needs a symmetric :math:`\mathbf{A}` (an undirected graph
    with symmetric weights), for which :math:`\mathbf{I} + \gamma
    \mathbf{L}` is positive definite. Inputs in float16 or bfloat16 are
    smoothed in float32 and returned in their own dtype.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, *)`,
          edge indices :math:`(2, |\mathcal{E}|)`, a sparse
          :math:`(|\mathcal{V}|, |\mathcal{V}|)` adjacency, or an
          :class:`~pyg_sm.data.Adjacency` prepared once for several calls
          by :func:`~pyg_sm.data.prepare_adjacency` (then without
          edge weights and batch, which it holds),
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional, exact mode: one
          stopping test per graph)*
        - **output:** node features :math:`(|\mathcal{V}|, *)`
    """
    def __init__(
        self,
        alpha: Union[float, str] = 'trainable',
        num_steps: int = 10,
        mode: str = 'approx',
        normalize: bool = True,
        cached: bool = False,
        fused: bool = True,
        tol: Optional[float] = None,
        max_iter: int = 1000,
        on_nonconvergence: str = 'warn',
        **kwargs,
    ):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        check_alpha(alpha)
        check_count('num_steps', num_steps)
        check_choice('mode', mode, MODES)
        check_count('max_iter', max_iter)
        check_choice('on_nonconvergence', on_nonconvergence, NONCONVERGENCE)
        check_positive('tol', tol, allow_none=True)
        if self.flow != 'source_to_target':
            raise ValueError("Sm supports flow='source_to_target' only; pass "
                             "'edge_index.flip(0)' to reverse the edges")

        self.trainable_alpha = alpha == 'trainable'
        self.num_steps = num_steps
        self.mode = mode
        self.normalize = normalize
        self.cached = cached
        self.fused = fused
        self.tol = tol
        self.max_iter = max_iter
        self.on_nonconvergence = on_nonconvergence

        self.fixed_alpha = None if self.trainable_alpha else float(alpha)
        if self.trainable_alpha and (mode == 'exact' or num_steps > 0):
            self.alpha_logit = Parameter(torch.empty(()))
        else:
            # An approx Sm of zero steps is the identity: a trainable alpha
            # it never read would get no gradient (which stops DDP).
            self.register_parameter('alpha_logit', None)
            if self.trainable_alpha:
                ignore_state_of(self, 'alpha_logit')
        self._cached_adjacency: Optional[Adjacency] = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if self.alpha_logit is not None:
            torch.nn.init.zeros_(self.alpha_logit)
        self._cached_adjacency = None

    @property
    def alpha(self) -> Tensor:
        r"""The current :math:`\alpha` as a 0-dim tensor."""
        if self.alpha_logit is None:
            # A trainable alpha that is never used stays at its start.
            return torch.tensor(0.5 if self.fixed_alpha is None
                                else self.fixed_alpha, dtype=torch.float64)
        return _ALPHA_MARGIN + (1 - 2 * _ALPHA_MARGIN) * torch.sigmoid(
            self.alpha_logit)

    # torch.compile runs the layer eagerly (a graph break): its autograd
    # functions keep Python state between forward and backward.
    @torch.compiler.disable
    def forward(self, x: Tensor, edge_index: Union[Adj, Adjacency],
                edge_weight: OptTensor = None, batch: OptTensor = None,
                mask: OptTensor = None) -> Tensor:
        r"""Smooths :obj:`x` over the graph.

        Args:
            x (torch.Tensor): Node features :math:`(|\mathcal{V}|, *)`, or
                :math:`(B, N, *)` in the dense form.
            edge_index (torch.Tensor or SparseTensor or Adjacency): Edge
                indices :math:`(2, |\mathcal{E}|)` (edge :math:`j \to i`
                as the column :math:`(j, i)`), a sparse
                :math:`(|\mathcal{V}|, |\mathcal{V}|)` adjacency, an
                :class:`~pyg_sm.data.Adjacency`; or, in the dense form
                (torchmil's ``Sm(X, adj)``), a :math:`(B, N, N)` dense or
                sparse COO adjacency taken as :math:`\mathbf{A}` itself
                (never normalized, as in torchmil).
            edge_weight (torch.Tensor, optional): A weight per edge
                :math:`(|\mathcal{E}|)`; ``data.edge_attr`` is not read
                as one (as in PyG's ``GCNConv``).
            batch (torch.Tensor, optional): The graph of each node
                :math:`(|\mathcal{V}|)`: exact mode tests convergence per
                graph.
            mask (torch.Tensor, optional): Dense form only: :math:`(B, N)`,
                true at real instances (default: all); padded positions
                get zeros.

        Shapes:
            - **output:** the shape of :obj:`x`
        """
        if isinstance(x, (tuple, list)):
            raise ValueError(
                "Sm smooths over one node type (a square graph): it got a "
                "(source, target) pair of node features, as to_hetero "
                "passes for a bipartite edge type. Use Sm on edge types "
                "whose source and target node types are the same")
        if isinstance(edge_index, Tensor) and edge_index.dim() == 3:
            return self._dense_forward(x, edge_index, edge_weight, batch,
                                       mask)
        if mask is not None:
            raise ValueError("'mask' belongs to the dense form (x of shape "
                             "(batch_size, bag_size, ...) and a "
                             "(batch_size, bag_size, bag_size) adjacency); "
                             "pass edge weights as edge_weight=... and the "
                             "batch vector as batch=...")
        check_features(x)
        num_nodes = x.size(0)
        dtype = compute_dtype(x)
        if isinstance(edge_index, Adjacency):
            # Prepared once for several calls (SmAttentionPool does this).
            if edge_weight is not None or batch is not None:
                raise ValueError("'edge_weight' and 'batch' are part of a "
                                 "prepared Adjacency; pass them to "
                                 "prepare_adjacency instead")
            adjacency = edge_index
        elif self.cached and self._cached_adjacency is not None:
            adjacency = self._cached_adjacency
        else:
            adjacency = prepare_adjacency(edge_index, edge_weight, num_nodes,
                                          self.normalize, dtype, batch)
            if self.cached:
                self._cached_adjacency = adjacency
        if adjacency.num_nodes != num_nodes:
            raise ValueError(
                f"the adjacency has {adjacency.num_nodes} nodes but 'x' has "
                f"{num_nodes}" + ("; Sm(cached=True) caches the graph of its "
                                  "first call: call reset_parameters() to "
                                  "drop it" if self.cached else ""))
        weight = adjacency.edge_weight.to(dtype)

        if self.num_steps == 0 and self.mode == 'approx':
            return x
        propagation = _Propagation(self, adjacency.edge_index, weight)
        if self.alpha_logit is None:
            # Filled on the device: no host-to-device copy per call.
            alpha = x.new_full((), self.fixed_alpha, dtype=dtype)
        else:
            alpha = self.alpha.to(dtype)
        features = x.reshape(num_nodes, -1).to(dtype)
        if self.mode == 'approx':
            out = SmApprox.apply(features, alpha, weight, propagation,
                                 self.num_steps)
        else:
            tol = self.tol or (1e-10 if dtype == torch.float64 else 1e-5)
            solver = dict(batch=adjacency.batch,
                          num_graphs=adjacency.num_graphs, tol=tol,
                          max_iter=self.max_iter,
                          on_nonconvergence=self.on_nonconvergence)
            out = SmExact.apply(features, alpha, weight, propagation, solver)
        return out.to(x.dtype).reshape(x.shape)

    def _dense_forward(self, x: Tensor, adj: Tensor, edge_weight: OptTensor,
                       batch: OptTensor, mask: OptTensor) -> Tensor:
        if edge_weight is not None or batch is not None:
            raise ValueError("'edge_weight' and 'batch' belong to the graph "
                             "form; the dense form takes 'adj' and 'mask'")
        if not isinstance(x, Tensor) or x.dim() < 3:
            raise ValueError(f"the dense form needs 'x' of shape (batch_size,"
                             f" bag_size, ...) (got "
                             f"{tuple(getattr(x, 'shape', ()))})")
        bags = as_bags(x, adj, mask)
        out = self(bags.x, bags.adjacency(False, compute_dtype(bags.x)))
        return bags.pad(out, fill=0.0)

    def aggregate_neighbours(self, edge_index: Adj, x: Tensor,
                             edge_weight: OptTensor,
                             out: OptTensor = None) -> Tensor:
        r"""One product :math:`\mathbf{A} \mathbf{x}` through
        :meth:`propagate` (fused for a sparse matrix, message + scatter for
        an :obj:`edge_index`)."""
        # propagate_type: (x: Tensor, edge_weight: OptTensor, out: OptTensor)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight,
                              out=out)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor,
                              out: OptTensor = None) -> Tensor:
        if out is None:
            return spmm(adj_t, x, reduce=self.aggr)
        if out.device.type != 'cpu':
            # Whether cuSPARSE reads C when beta is 0 is not documented, and
            # a recycled buffer may hold NaN or -inf (0 * NaN is NaN).
            out.zero_()
        # Into a reused buffer: on the CPU, allocating (and first touching) a
        # fresh (N, F) output costs several times the product itself.
        return torch.addmm(out, adj_t, x, beta=0.0, out=out)

    def _apply(self, fn: Callable, recurse: bool = True):
        # The cached adjacency follows the layer to its device (and its
        # weights to its dtype), as parameters and buffers do.
        super()._apply(fn, recurse)
        if self._cached_adjacency is not None:
            edge_index, edge_weight, batch, num_graphs = \
                self._cached_adjacency
            self._cached_adjacency = Adjacency(
                fn(edge_index), fn(edge_weight),
                None if batch is None else fn(batch), num_graphs)
        return self

    def __repr__(self) -> str:
        alpha = 'trainable' if self.trainable_alpha else self.fixed_alpha
        steps = f', num_steps={self.num_steps}' if self.mode == 'approx' \
            else ''
        return (f'{self.__class__.__name__}(alpha={alpha!r}, '
                f'mode={self.mode!r}{steps})')


def _drop_state_of(names, module, state_dict, prefix, *_) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix):].split('.')[0] in names:
            del state_dict[key]


def ignore_state_of(module: torch.nn.Module, *names: str) -> None:
    r"""Makes :obj:`module` drop the entries of its parts :obj:`names` from
    any state dict it loads: parts it does not build because its forward
    would not use them (their parameters would get no gradient, which stops
    DDP), but which checkpoints written before still hold."""
    module.register_load_state_dict_pre_hook(
        functools.partial(_drop_state_of, frozenset(names)))
