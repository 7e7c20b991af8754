r"""Every adjacency Sm accepts, reduced to one canonical form: an
:class:`Adjacency` holding a coalesced ``EdgeIndex`` (sorted by target
node, then source node, duplicate edges summed; int32 where it fits) and
one weight per edge, normalized if asked. Row ``i`` of
``A`` holds the weights of the edges ``j -> i`` (PyG's ``source_to_target``
flow), so ``A x`` is what message passing computes.

It is prepared once per forward, with the checks and the host
synchronizations they need, and then reused by every Sm of that forward."""
import warnings
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import (
    coalesce,
    is_torch_sparse_tensor,
    to_edge_index,
)

from ..utils.checks import check_batch, check_edge_index, check_edge_weight


def compute_dtype(x: Tensor) -> torch.dtype:
    """Sm runs in float32 or float64: sparse kernels and the solver lack
    reduced-precision versions on some devices."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) \
        else torch.float32


class Adjacency(NamedTuple):
    r"""The adjacency of one call, checked and prepared: pass it to
    :class:`~pyg_sm.Sm` in place of :obj:`edge_index` to skip the checks.

    Attributes:
        edge_index (EdgeIndex): Coalesced: sorted by target (column), then
            source, without duplicates (their weights summed); int32 where
            the sizes allow.
        edge_weight (torch.Tensor): One weight per edge, in that order
            (normalized if it was prepared with :obj:`normalize=True`).
        batch (torch.Tensor, optional): The batch vector, if any.
        num_graphs (int): The number of graphs of the batch.
    """
    edge_index: EdgeIndex
    edge_weight: Tensor
    batch: Optional[Tensor]
    num_graphs: int

    @property
    def num_nodes(self) -> int:
        return self.edge_index.get_sparse_size(0)


def _edges_of_sparse(adj_t, num_nodes: int) -> Tuple[Tensor, Tensor]:
    size = tuple(adj_t.sizes()) if isinstance(adj_t, SparseTensor) else \
        tuple(adj_t.shape)
    if size != (num_nodes, num_nodes):
        raise ValueError(f"the sparse adjacency 'edge_index' must have size "
                         f"({num_nodes}, {num_nodes}) for {num_nodes} nodes "
                         f"(got {size})")
    if isinstance(adj_t, SparseTensor):
        target, source, value = adj_t.coo()
    else:
        (target, source), value = to_edge_index(adj_t)
    if value is None:
        value = torch.ones(target.numel(), device=target.device)
    return torch.stack([source, target]), value


_warned = set()


def _warn_self_loops(edge_index: Tensor) -> None:
    r"""Warns once per process when the edges hold self-loops: Sm's
    :math:`\mathbf{A}` has none of its own, and with them it is another
    operator (a node then also smooths towards itself)."""
    if 'self-loops' in _warned:
        return
    if bool((edge_index[0] == edge_index[1]).any()):
        _warned.add('self-loops')
        warnings.warn("the edges hold self-loops: Sm uses them as given (its "
                      "A adds none, and normalize=True does not remove "
                      "them), which makes it another operator; remove them "
                      "with torch_geometric.utils.remove_self_loops if they "
                      "came with the graph", UserWarning, stacklevel=4)


@torch.compiler.disable  # EdgeIndex does not trace; this runs eagerly
def prepare_adjacency(
    edge_index, edge_weight: Optional[Tensor], num_nodes: int,
    normalize: bool, dtype: torch.dtype, batch: Optional[Tensor] = None,
    num_graphs: Optional[int] = None,
) -> Adjacency:
    r"""Checks an adjacency in any accepted form (``edge_index``,
    ``EdgeIndex``, torch sparse tensor, ``SparseTensor``) and returns it as an
    :class:`Adjacency`, with weights normalized to :math:`D^{-1/2} W
    D^{-1/2}` if :obj:`normalize`, in :obj:`dtype`. Duplicate edges are
    one edge of their summed weight. Gradients flow back to
    :obj:`edge_weight`. :obj:`num_graphs` is read from :obj:`batch` (checked)
    when not given."""
    if isinstance(edge_index, SparseTensor) or is_torch_sparse_tensor(
            edge_index):
        if edge_weight is not None:
            raise ValueError("'edge_weight' must be None when 'edge_index' "
                             "is a sparse matrix: its values are the weights")
        edge_index, edge_weight = _edges_of_sparse(edge_index, num_nodes)
    elif isinstance(edge_index, Tensor):
        check_edge_index(edge_index, num_nodes)
    else:
        raise TypeError(f"'edge_index' must be a LongTensor (2, num_edges), "
                        f"an EdgeIndex, a torch sparse tensor or a "
                        f"SparseTensor (got {type(edge_index).__name__})")

    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype,
                                 device=edge_index.device)
    else:
        check_edge_weight(edge_weight, edge_index.size(1), normalize)
        edge_weight = edge_weight.to(dtype)

    # Sorted by target, then source, with duplicate edges summed (as
    # PyG's coalesce does): the CSR of A then has sorted, distinct columns
    # in every row, torch's CSR contract, which cuSPARSE relies on.
    if isinstance(edge_index, EdgeIndex):
        edge_index = edge_index.as_tensor()
    edge_index, edge_weight = coalesce(edge_index.long(), edge_weight,
                                       num_nodes, reduce='sum',
                                       sort_by_row=False)
    edge_index = EdgeIndex(edge_index, sparse_size=(num_nodes, num_nodes),
                           sort_order='col')
    _warn_self_loops(edge_index)

    if normalize:
        _, edge_weight = gcn_norm(edge_index.as_tensor(), edge_weight,
                                  num_nodes, add_self_loops=False)
    if edge_index.dtype != torch.int32 and max(num_nodes, edge_index.size(1)) \
            < 2**31:
        # Sparse kernels (MKL on the CPU) take int32 indices; int64 ones
        # would be converted on every product.
        edge_index = EdgeIndex(edge_index.as_tensor().int(),
                               sparse_size=(num_nodes, num_nodes),
                               sort_order='col')
    if num_graphs is None:
        num_graphs = 1 if batch is None else check_batch(batch, num_nodes)
    return Adjacency(edge_index, edge_weight, batch, num_graphs)
