"""Validation and the one canonical form of every adjacency Sm accepts: an
``EdgeIndex`` sorted by target node, with one weight per edge. Row ``i`` of
``A`` holds the weights of the edges ``j -> i`` (PyG's ``source_to_target``
flow), so ``A x`` is what message passing computes."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, to_edge_index

_INDEX_DTYPES = (torch.int32, torch.int64)


def compute_dtype(x: Tensor) -> torch.dtype:
    """Sm runs in float32 or float64: sparse kernels and the solver lack
    reduced-precision versions on some devices."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) \
        else torch.float32


def check_edge_index(edge_index: Tensor, num_nodes: int) -> None:
    if edge_index.dtype not in _INDEX_DTYPES:
        raise TypeError(f"'edge_index' must hold int64 or int32 node "
                        f"indices (got dtype {edge_index.dtype})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape (2, num_edges) "
                         f"(got {tuple(edge_index.shape)})")
    if edge_index.numel() > 0:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            raise ValueError(f"'edge_index' must hold node indices in "
                             f"[0, {num_nodes - 1}] for {num_nodes} nodes "
                             f"(found values in [{low}, {high}])")


def check_batch(batch: Tensor, num_nodes: int) -> int:
    """Validates a batch vector and returns the number of graphs."""
    if batch.dtype not in _INDEX_DTYPES:
        raise TypeError(f"'batch' must be an integer tensor (got dtype "
                        f"{batch.dtype})")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' must have shape ({num_nodes},), one "
                         f"graph index per node (got {tuple(batch.shape)})")
    if num_nodes == 0:
        return 0
    if int(batch.min()) < 0:
        raise ValueError("'batch' must hold non-negative graph indices")
    return int(batch.max()) + 1


def check_edge_weight(edge_weight: Tensor, num_edges: int,
                      normalize: bool) -> None:
    if not torch.is_floating_point(edge_weight):
        raise TypeError(f"'edge_weight' must be a floating-point tensor "
                        f"(got dtype {edge_weight.dtype})")
    if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
        raise ValueError(f"'edge_weight' must have shape ({num_edges},), "
                         f"one weight per edge (got "
                         f"{tuple(edge_weight.shape)})")
    if not bool(torch.isfinite(edge_weight.detach()).all()):
        raise ValueError("'edge_weight' must be finite (found NaN or inf)")
    if normalize and edge_weight.numel() > 0 and bool(
            (edge_weight.detach() < 0).any()):
        raise ValueError("'edge_weight' must be non-negative when "
                         "normalize=True (degrees would be negative)")


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


@torch.compiler.disable  # EdgeIndex does not trace; this runs eagerly
def sorted_adjacency(
    edge_index, edge_weight: Optional[Tensor], num_nodes: int,
    normalize: bool, dtype: torch.dtype
) -> Tuple[EdgeIndex, Tensor]:
    r"""Returns ``A`` as an :class:`EdgeIndex` sorted by target and the edge
    weights in that order, normalized to :math:`D^{-1/2} W D^{-1/2}` if
    :obj:`normalize`. Gradients flow back to :obj:`edge_weight`."""
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

    if not isinstance(edge_index, EdgeIndex):
        edge_index = EdgeIndex(edge_index.long(),
                               sparse_size=(num_nodes, num_nodes))
    elif edge_index.sparse_size() != (num_nodes, num_nodes):
        edge_index = EdgeIndex(edge_index.as_tensor().long(),
                               sparse_size=(num_nodes, num_nodes),
                               sort_order=edge_index.sort_order)
    edge_index, perm = edge_index.sort_by('col')
    if perm is not None:
        edge_weight = edge_weight[perm]

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
    return edge_index, edge_weight
