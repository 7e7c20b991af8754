r"""What the patch-graph transforms share: coordinates hashed to integer
cell keys (sorted once, neighbours found with :func:`torch.searchsorted`, so
no dense distance matrix is ever built) and the transform's contract."""
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import coalesce

from ..utils.errors import PygSmError


def cell_keys(cells: Tensor) -> Tuple[Tensor, int]:
    r"""Integer key of each 2-D cell, with a one-cell margin so that
    neighbouring offsets never wrap around a row. Returns the keys and the
    row width (the key offset of one step along the first axis)."""
    cells = cells - cells.min(dim=0).values + 1
    width = int(cells[:, 1].max()) + 2
    return cells[:, 0] * width + cells[:, 1], width


def close_pairs(position: Tensor, reach: float, keep) -> Tensor:
    r"""The coalesced ``edge_index`` of every pair of distinct points whose
    offset ``delta = position[source] - position[target]`` passes
    :obj:`keep` (a function of :math:`(P, 2)` offsets), among the pairs
    within one cell of side :obj:`reach` of each other on both axes: points
    are binned into such cells, sorted by key once, and only the 3 x 3 cells
    around each point are searched. :obj:`keep` must reject pairs farther
    than :obj:`reach` on an axis."""
    num_nodes = position.size(0)
    device = position.device
    key, width = cell_keys(torch.floor(position / reach).long())
    sorted_key, order = torch.sort(key)
    src, dst = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            wanted = key + dx * width + dy
            start = torch.searchsorted(sorted_key, wanted)
            count = torch.searchsorted(sorted_key, wanted, right=True) - start
            query = torch.repeat_interleave(
                torch.arange(num_nodes, device=device), count)
            # Position of each candidate inside its run of equal keys.
            offset = torch.arange(query.numel(), device=device) - \
                torch.repeat_interleave(torch.cumsum(count, 0) - count,
                                        count)
            candidate = order[start[query] + offset]
            chosen = keep(position[candidate] - position[query]) & \
                (candidate != query)
            src.append(candidate[chosen])
            dst.append(query[chosen])
    return edges_from_pairs(src, dst, num_nodes).to(device)


def edges_from_pairs(src: List[Tensor], dst: List[Tensor],
                     num_nodes: int) -> Tensor:
    r"""The coalesced ``edge_index`` of the pairs ``src -> dst``."""
    if not src:
        return torch.empty(2, 0, dtype=torch.long)
    edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    return coalesce(edge_index, num_nodes=num_nodes)


class PatchGraphTransform(BaseTransform):
    r"""Base of the transforms that link patches by their coordinates
    :obj:`data.pos`. A subclass implements :meth:`edges`; the transform sets
    :obj:`data.edge_index` and drops any :obj:`edge_weight` /
    :obj:`edge_attr` of an earlier graph, which would no longer match."""
    def edges(self, data: Data) -> Tensor:
        raise NotImplementedError

    def options(self) -> Dict:
        r"""The settings that decide the graph (checkpoints record them)."""
        raise NotImplementedError

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise PygSmError(f"{self.__class__.__name__} needs patch "
                             f"coordinates in 'data.pos'")
        data.edge_index = self.edges(data)
        data.edge_weight = None
        data.edge_attr = None
        return data
