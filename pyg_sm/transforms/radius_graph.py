r"""Patch graphs of patches at arbitrary positions."""
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform

from ..utils.checks import check_coords, check_positive
from ._base import PatchGraphTransform, cell_keys, edges_from_pairs


def patch_radius_graph(coords: Tensor, radius: float) -> Tensor:
    r"""Links every pair of patches at most :obj:`radius` apart (Euclidean),
    for arbitrary coordinates.

    Points are binned into cells of side :obj:`radius`; only the 3 x 3 cells
    around each point are searched.

    Returns:
        A symmetric, coalesced :obj:`edge_index` :math:`(2, E)` without
        self-loops.
    """
    check_coords(coords)
    check_positive('radius', radius)
    num_nodes = coords.size(0)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=coords.device)
    position = coords.double()
    key, width = cell_keys(torch.floor(position / radius).long())
    sorted_key, order = torch.sort(key)
    src, dst = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            wanted = key + dx * width + dy
            start = torch.searchsorted(sorted_key, wanted)
            count = torch.searchsorted(sorted_key, wanted, right=True) - start
            query = torch.repeat_interleave(torch.arange(
                num_nodes, device=coords.device), count)
            # Position of each candidate inside its run of equal keys.
            offset = torch.arange(query.numel(), device=coords.device) - \
                torch.repeat_interleave(torch.cumsum(count, 0) - count,
                                        count)
            candidate = order[start[query] + offset]
            distance = (position[query] - position[candidate]).norm(dim=1)
            keep = (distance <= radius) & (candidate != query)
            src.append(candidate[keep])
            dst.append(query[keep])
    return edges_from_pairs(src, dst, num_nodes).to(coords.device)


@functional_transform('radius_patch_graph')
class RadiusPatchGraph(PatchGraphTransform):
    r"""Links every pair of patches at most :obj:`radius` apart, from the
    patch coordinates :obj:`data.pos` (functional name:
    :obj:`radius_patch_graph`; the function: :func:`patch_radius_graph`).
    Unlike PyG's :class:`~torch_geometric.transforms.RadiusGraph` it needs
    no torch-cluster and has no neighbour cap.

    Args:
        radius (float): The linking distance, in the units of :obj:`pos`.
    """
    def __init__(self, radius: float):
        check_positive('radius', radius)
        self.radius = radius

    def edges(self, data: Data) -> Tensor:
        return patch_radius_graph(data.pos, self.radius)

    def options(self) -> dict:
        return dict(method='radius', radius=self.radius)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(radius={self.radius})'
