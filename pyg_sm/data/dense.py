r"""Converters between the reference's padded ``(X, adj, mask)`` form and
PyG batches.

``adj[b, i, j]`` is the weight of the edge ``j -> i`` of bag ``b`` (row ``i``
of the adjacency ``A`` that Sm multiplies, as ``adj @ X`` in the reference),
so an edge of the batch is stored as ``edge_index[:, e] = (j, i)``. For a
symmetric ``adj`` this is PyG's own :func:`~torch_geometric.utils.to_dense_adj`
convention.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..utils.checks import check_dense_inputs


def dense_to_batch(X: Tensor, adj: Tensor, mask: Optional[Tensor] = None,
                   Y: Optional[Tensor] = None) -> Batch:
    r"""Converts padded bags into a PyG :class:`~torch_geometric.data.Batch`.

    Only unmasked instances become nodes, and only entries of :obj:`adj`
    between two of them become edges (with their value as
    :obj:`edge_weight`), so padding cannot reach any output. A sparse COO
    :obj:`adj` is read through its indices: no dense ``N x N`` tensor is
    built.

    Args:
        X (torch.Tensor): Instances, :math:`(B, N, *)`.
        adj (torch.Tensor): Adjacency, :math:`(B, N, N)`, dense or sparse
            COO; :obj:`adj[b, i, j]` weighs the edge :math:`j \to i`.
        mask (torch.Tensor, optional): :math:`(B, N)`, nonzero where an
            instance is real. (default: :obj:`None`, all real)
        Y (torch.Tensor, optional): Bag labels :math:`(B,)`, stored as
            :obj:`y`. (default: :obj:`None`)

    Returns:
        A batch with :obj:`x`, :obj:`edge_index`, :obj:`edge_weight`,
        :obj:`batch` (and :obj:`y`), one graph per bag. It also keeps each
        node's position along :math:`N` (:obj:`dense_position`) and
        :math:`N` itself (:obj:`dense_size`), so that
        :func:`batch_to_dense` restores any mask exactly.
    """
    mask = check_dense_inputs(X, adj, mask)
    if Y is not None and tuple(Y.shape) != (X.size(0), ):
        raise ValueError(f"'Y' must have shape (batch_size,) = "
                         f"({X.size(0)},) (got {tuple(Y.shape)})")
    return padded_to_batch(X, adj, mask, Y)


def padded_to_batch(X: Tensor, adj: Tensor, mask: Tensor,
                    Y: Optional[Tensor] = None) -> Batch:
    """:func:`dense_to_batch` on inputs already checked, with a boolean
    mask."""
    batch_size = X.size(0)
    if adj.is_sparse:
        adj = adj.coalesce()
        (bag, row, col), weight = adj.indices(), adj.values()
    else:
        bag, row, col = adj.nonzero(as_tuple=True)
        weight = adj[bag, row, col]
    keep = mask[bag, row] & mask[bag, col]
    bag, row, col, weight = bag[keep], row[keep], col[keep], weight[keep]

    # Position of each real instance among the real instances of its bag.
    local = mask.long().cumsum(dim=1) - 1
    edge_index = torch.stack([local[bag, col], local[bag, row]])

    nodes_per_bag = mask.sum(dim=1).tolist()
    edges_per_bag = torch.bincount(bag, minlength=batch_size).tolist()
    xs = X[mask].split(nodes_per_bag)
    # Not named '*index*': Batch would offset it by the node counts.
    dense_position = mask.nonzero()[:, 1].split(nodes_per_bag)
    dense_size = torch.tensor([X.size(1)], device=X.device)
    edge_indices = edge_index.split(edges_per_bag, dim=1)
    weights = weight.split(edges_per_bag)
    data_list = []
    for b in range(batch_size):
        data = Data(x=xs[b], edge_index=edge_indices[b],
                    edge_weight=weights[b], num_nodes=nodes_per_bag[b],
                    dense_position=dense_position[b], dense_size=dense_size)
        if Y is not None:
            data.y = Y[b:b + 1]
        data_list.append(data)
    return Batch.from_data_list(data_list)


def batch_to_dense(
    batch: Batch,
    max_num_nodes: Optional[int] = None,
    sparse: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Converts a PyG batch of bags into the padded ``(X, adj, mask)`` form,
    the inverse of :func:`dense_to_batch`.

    Args:
        batch (torch_geometric.data.Batch or Data): With :obj:`x`,
            :obj:`edge_index` and optionally :obj:`edge_weight` (1 where
            absent) and :obj:`batch`.
        max_num_nodes (int, optional): The padded bag size :math:`N`.
            (default: :obj:`None`, the largest bag)
        sparse (bool, optional): Return :obj:`adj` as a sparse COO tensor
            instead of a dense one. (default: :obj:`False`)

    Returns:
        :obj:`X` :math:`(B, N, *)` (0 at padding), :obj:`adj`
        :math:`(B, N, N)` with :obj:`adj[b, i, j]` the weight of edge
        :math:`j \to i`, and the boolean :obj:`mask` :math:`(B, N)`.
    """
    x, edge_index = batch.x, batch.edge_index
    vector = batch.get('batch')
    if vector is None:
        vector = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    num_graphs = getattr(batch, 'num_graphs', 1)
    weight = batch.get('edge_weight')
    if weight is None:
        weight = torch.ones(edge_index.size(1), dtype=x.dtype,
                            device=x.device)
    position = batch.get('dense_position')
    if position is None:  # a PyG batch: pack each bag to the left
        counts = torch.bincount(vector, minlength=num_graphs)
        position = torch.arange(x.size(0), device=x.device) - \
            (counts.cumsum(0) - counts)[vector]
    if max_num_nodes is None:
        size = batch.get('dense_size')
        max_num_nodes = int(size.max()) if size is not None else \
            int(position.max()) + 1 if position.numel() else 0

    X = x.new_zeros((num_graphs, max_num_nodes) + tuple(x.shape[1:]))
    X[vector, position] = x
    mask = torch.zeros(num_graphs, max_num_nodes, dtype=torch.bool,
                       device=x.device)
    mask[vector, position] = True
    src, dst = edge_index
    indices = torch.stack([vector[src], position[dst], position[src]])
    size = (num_graphs, max_num_nodes, max_num_nodes)
    if sparse:
        adj = torch.sparse_coo_tensor(indices, weight, size,
                                      check_invariants=False).coalesce()
    else:
        adj = weight.new_zeros(size).index_put_(tuple(indices), weight,
                                                accumulate=True)
    return X, adj, mask
