r"""Patch graphs of patches at arbitrary positions."""
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform

from ..utils.checks import check_coords, check_positive
from ._base import PatchGraphTransform, close_pairs


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
    return close_pairs(coords.double(), radius,
                       lambda delta: delta.norm(dim=1) <= radius)


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
