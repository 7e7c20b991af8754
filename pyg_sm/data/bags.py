"""The two input forms of the pool and the models, reduced to one: nodes,
edges and a batch vector, plus the mask to pad node outputs back with."""
import dataclasses
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data.data import BaseData

from ..utils.checks import check_batch, check_dense_inputs
from .adjacency import Adjacency, prepare_adjacency
from .dense import padded_to_batch

#: The attention value returned at padded positions of the dense form, the
#: value a padded instance has inside the softmax.
PADDING_ATTENTION = float('-inf')


@dataclasses.dataclass(frozen=True)
class Bags:
    r"""Validated bags of one call, in the graph form.

    :meth:`adjacency` prepares the graph once (checks, sorting,
    normalization) and every later call of the same forward, including on
    the copies :meth:`with_features` makes, reuses it."""
    x: Tensor
    edge_index: object
    edge_weight: Optional[Tensor]
    batch: Tensor
    num_graphs: int
    mask: Optional[Tensor]  # (B, N) for the dense form, else None
    _prepared: Dict[object, object] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)

    @property
    def is_dense(self) -> bool:
        return self.mask is not None

    def with_features(self, x: Tensor) -> 'Bags':
        r"""The same bags (and graph) with new node features."""
        return dataclasses.replace(self, x=x)

    def adjacency(self, normalize: bool, dtype: torch.dtype) -> Adjacency:
        r"""The bags' graph as an :class:`Adjacency` in :obj:`dtype`,
        normalized if :obj:`normalize` in the graph form (the dense form's
        :obj:`adj` is :math:`\mathbf{A}` itself, never normalized)."""
        key = (normalize and not self.is_dense, dtype)
        if key not in self._prepared:
            self._prepared[key] = prepare_adjacency(
                self.edge_index, self.edge_weight, self.x.size(0), key[0],
                dtype, batch=self.batch, num_graphs=self.num_graphs)
        return self._prepared[key]

    def pad(self, node_values: Tensor,
            fill: float = PADDING_ATTENTION) -> Tensor:
        """``(num_nodes, *)`` to ``(B, N, *)`` with :obj:`fill` at padding,
        in the dense form; unchanged in the graph form."""
        if self.mask is None:
            return node_values
        out = node_values.new_full(tuple(self.mask.shape) +
                                   tuple(node_values.shape[1:]), fill)
        out[self.mask] = node_values
        return out

    def groups(self) -> Tuple[Optional[Tensor], List[int]]:
        r"""What per-bag work (self-attention) needs: a node order that
        puts each bag's nodes together (:obj:`None` when the batch vector
        is already sorted, as in every PyG batch) and the size of each bag,
        in order. Computed once per forward (one host sync)."""
        if 'groups' not in self._prepared:
            batch = self.batch
            order = None
            if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
                order = torch.argsort(batch, stable=True)
            sizes = torch.bincount(batch, minlength=self.num_graphs)
            self._prepared['groups'] = (order, sizes.tolist())
        return self._prepared['groups']


def in_node_order(values: Tensor, order: Optional[Tensor]) -> Tensor:
    r"""Rows computed in the order :obj:`order` of :meth:`Bags.groups`
    (each bag's nodes together) put back in the nodes' order."""
    if order is None:
        return values
    out = torch.empty_like(values)
    out[order] = values
    return out


def empty_graph(x, mask: Optional[Tensor] = None):
    r"""A graph without edges for calls that do not read one (the
    probabilistic pool outside its KL term): a sparse :math:`(B, N, N)`
    for dense instances :math:`(B, N, *)` (or with a :obj:`mask`), no
    edges :math:`(2, 0)` for node features; :obj:`None` for anything else
    (``as_bags`` then says what is missing)."""
    if not isinstance(x, Tensor):
        return None
    if mask is not None or x.dim() == 3:
        batch_size, bag_size = x.shape[:2]
        return torch.sparse_coo_tensor(
            torch.empty(3, 0, dtype=torch.long, device=x.device),
            torch.empty(0, device=x.device), (batch_size, bag_size, bag_size),
            check_invariants=True)
    return torch.empty(2, 0, dtype=torch.long, device=x.device)


# Validation reads values on the host (graph counts, index ranges): under
# torch.compile it runs eagerly, a graph break before the compiled layers,
# instead of a break with a warning at the first .item().
@torch.compiler.disable
def as_bags(X=None, adj=None, mask: Optional[Tensor] = None,
            edge_weight: Optional[Tensor] = None,
            batch: Optional[Tensor] = None, size: Optional[int] = None, *,
            x: Optional[Tensor] = None, edge_index=None) -> Bags:
    r"""Reads a PyG ``Data``/``Batch``, graph tensors ``(x, edge_index)``
    (positional, or by PyG's keyword names :obj:`x=` and
    :obj:`edge_index=`), or the dense ``(X, adj (B, N, N), mask)`` form.
    :obj:`size` is the number of graphs (PyG's global pooling calls it so):
    a batch vector alone cannot show empty graphs at its end."""
    X = _one_of('X', X, 'x', x)
    adj = _one_of('adj', adj, 'edge_index', edge_index)
    if size is not None and (isinstance(size, bool) or
                             not isinstance(size, int) or size < 1):
        raise ValueError(f"'size' (the number of graphs) must be a positive "
                         f"int (got {size!r})")
    if isinstance(X, BaseData):
        if adj is not None or mask is not None or edge_weight is not None \
                or batch is not None or size is not None:
            raise ValueError("pass either a Data/Batch object or tensors, "
                             "not both")
        data = X
        adj = data.edge_index if 'edge_index' in data else \
            getattr(data, 'adj_t', None)
        if adj is None:
            raise ValueError("the Data/Batch object needs 'edge_index' (or "
                             "'adj_t')")
        num_graphs = getattr(data, 'num_graphs', 1)
        warn_unread_edge_attr(data)
        return _graph_bags(data.x, adj, data.get('edge_weight'),
                           data.get('batch'), num_graphs)
    if not isinstance(X, Tensor):
        raise TypeError(f"expected a Data/Batch object or a tensor of "
                        f"instances (got {type(X).__name__})")
    if adj is None:
        raise ValueError("'adj' (dense form) or 'edge_index' (graph form) "
                         "is missing")
    if isinstance(adj, Tensor) and adj.dim() == 3:
        if edge_weight is not None or batch is not None or size is not None:
            raise ValueError("'edge_weight', 'batch' and 'size' belong to "
                             "the graph form; the dense form takes 'adj' "
                             "and 'mask'")
        mask = check_dense_inputs(X, adj, mask)
        batch = padded_to_batch(X, adj, mask)
        return Bags(batch.x, batch.edge_index, batch.edge_weight, batch.batch,
                    batch.num_graphs, mask)
    if mask is not None:
        raise ValueError(_misplaced_mask(mask, X, adj))
    return _graph_bags(X, adj, edge_weight, batch, size)


def _one_of(name: str, value, pyg_name: str, pyg_value):
    if pyg_value is None:
        return value
    if value is not None:
        raise ValueError(f"'{name}' and '{pyg_name}' are the same argument "
                         f"(the reference's name and PyG's): pass one")
    return pyg_value


def _misplaced_mask(mask, x: Tensor, edge_index) -> str:
    r"""What a third positional argument in the graph form most likely
    meant: the third positional argument is the dense form's mask."""
    message = ("'mask' (the third positional argument) belongs to the dense "
               "form (adj of shape (batch_size, bag_size, bag_size)); graph "
               "inputs are never padded")
    if isinstance(mask, Tensor) and mask.dim() == 1:
        num_edges = edge_index.size(1) if isinstance(edge_index, Tensor) \
            and edge_index.dim() == 2 else None
        if mask.is_floating_point() and mask.numel() == num_edges:
            return message + ": pass edge weights as edge_weight=..."
        if not mask.is_floating_point() and mask.dtype != torch.bool and \
                mask.numel() == x.size(0):
            return message + ": pass the batch vector as batch=..."
    return message


def warn_unread_edge_attr(data: BaseData) -> None:
    r"""Warns when :obj:`data` has a one-dimensional ``edge_attr`` and no
    ``edge_weight``: like PyG's ``GCNConv``, Sm reads weights from
    ``edge_weight`` only."""
    edge_attr = data.get('edge_attr')
    if data.get('edge_weight') is None and isinstance(edge_attr, Tensor) \
            and edge_attr.dim() == 1:
        warnings.warn("the Data has a one-dimensional 'edge_attr' and no "
                      "'edge_weight': edge_attr is not read as edge weights "
                      "(as in PyG's GCNConv); set data.edge_weight = "
                      "data.edge_attr to use it", UserWarning, stacklevel=4)


def _graph_bags(x: Tensor, edge_index, edge_weight: Optional[Tensor],
                batch: Optional[Tensor], num_graphs: Optional[int]) -> Bags:
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise ValueError("'x' must be a tensor of shape (num_nodes, ...)")
    if x.size(0) == 0:
        raise ValueError("a bag needs at least one instance (got 0 nodes)")
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    found = check_batch(batch, x.size(0))
    num_graphs = num_graphs or found
    if found > num_graphs:
        raise ValueError(f"'batch' refers to graph {found - 1} but the "
                         f"batch has {num_graphs} graphs ('size')")
    counts = torch.bincount(batch, minlength=num_graphs)
    empty = (counts == 0).nonzero().flatten()
    if empty.numel() > 0:
        raise ValueError(f"every bag needs at least one instance; graph(s) "
                         f"{empty.tolist()} of the batch have none")
    return Bags(x, edge_index, edge_weight, batch.long(), num_graphs, None)
