r"""Patch graphs of patches on a regular grid."""
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform

from ..utils.checks import check_coords
from ._base import PatchGraphTransform, cell_keys, edges_from_pairs

#: The neighbour offsets of 4- and 8-connected grids.
OFFSETS = {
    4: [(-1, 0), (1, 0), (0, -1), (0, 1)],
    8: [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
        if (dx, dy) != (0, 0)],
}


def grid_step(coords: Tensor) -> List[float]:
    r"""The grid step of patch coordinates along each axis: the smallest
    positive gap between distinct values (the other axis's step when an axis
    has a single value, 1 for a single patch)."""
    steps = []
    for axis in range(2):
        values = torch.unique(coords[:, axis].double())
        gaps = values.diff()
        steps.append(float(gaps.min()) if gaps.numel() else None)
    known = [s for s in steps if s is not None] or [1.0]
    return [s if s is not None else known[0] for s in steps]


def patch_grid_graph(coords: Tensor, connectivity: int = 8,
                     patch_size: Optional[Union[float, Tuple[float, float]]]
                     = None) -> Tensor:
    r"""The 4- or 8-neighbour graph of patches on a regular grid.

    Args:
        coords (torch.Tensor): Patch positions :math:`(N, 2)`, in grid units
            (integers) or in pixels with :obj:`patch_size`, from any
            origin.
        connectivity (int, optional): :obj:`4` (edges along the axes) or
            :obj:`8` (diagonals too). (default: :obj:`8`)
        patch_size (float or (float, float), optional): Grid step in the units
            of :obj:`coords`; :obj:`None` means the coordinates are grid
            units already. (default: :obj:`None`)

    Returns:
        A symmetric, coalesced :obj:`edge_index` :math:`(2, E)` without
        self-loops.
    """
    check_coords(coords)
    if connectivity not in OFFSETS:
        raise ValueError(f"'connectivity' must be 4 or 8 (got "
                         f"{connectivity!r})")
    num_nodes = coords.size(0)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=coords.device)
    # Grids of patches start anywhere: measure from the first row/column.
    position = coords.double()
    position = position - position.min(dim=0).values
    if patch_size is not None:
        step = torch.as_tensor(patch_size, dtype=torch.float64,
                               device=coords.device)
        if not bool((step > 0).all()):
            raise ValueError(f"'patch_size' must be positive (got "
                             f"{patch_size})")
        position = position / step
    cells = torch.round(position)
    if float((position - cells).abs().max()) > 1e-3:
        raise ValueError("'coords' are not on a grid"
                         + (f" of step patch_size={patch_size}"
                            if patch_size is not None else
                            " of integer units; pass 'patch_size' for "
                            "pixel coordinates"))
    key, width = cell_keys(cells.long())
    sorted_key, order = torch.sort(key)
    if bool((sorted_key[1:] == sorted_key[:-1]).any()):
        raise ValueError("two patches share one grid cell: 'coords' or "
                         "'patch_size' are inconsistent")
    node = torch.arange(num_nodes, device=coords.device)
    src, dst = [], []
    for dx, dy in OFFSETS[connectivity]:
        wanted = key + dx * width + dy
        found = torch.searchsorted(sorted_key, wanted).clamp_max(num_nodes -
                                                                 1)
        hit = sorted_key[found] == wanted
        src.append(order[found[hit]])
        dst.append(node[hit])
    return edges_from_pairs(src, dst, num_nodes).to(coords.device)


@functional_transform('grid_patch_graph')
class GridPatchGraph(PatchGraphTransform):
    r"""Links each patch to its 4 or 8 grid neighbours, from the patch
    coordinates :obj:`data.pos` (functional name:
    :obj:`grid_patch_graph`; the function: :func:`patch_grid_graph`).

    Args:
        connectivity (int, optional): :obj:`4` (edges along the axes) or
            :obj:`8` (diagonals too). (default: :obj:`8`)
        patch_size (float, optional): The grid step of :obj:`pos` (pixels).
            :obj:`None` infers each slide's step from its coordinates
            (:func:`grid_step`: the smallest gap between patches along each
            axis). (default: :obj:`None`)
    """
    def __init__(self, connectivity: int = 8,
                 patch_size: Optional[float] = None):
        if connectivity not in OFFSETS:
            raise ValueError(f"'connectivity' must be 4 or 8 (got "
                             f"{connectivity!r})")
        self.connectivity = connectivity
        self.patch_size = patch_size

    def step(self, data: Data) -> Union[float, List[float]]:
        r"""The grid step used for :obj:`data`."""
        if self.patch_size is not None:
            return self.patch_size
        return grid_step(data.pos)

    def edges(self, data: Data) -> Tensor:
        return patch_grid_graph(data.pos, self.connectivity, self.step(data))

    def options(self) -> dict:
        return dict(method='grid', connectivity=self.connectivity,
                    patch_size=self.patch_size)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(connectivity='
                f'{self.connectivity}, patch_size={self.patch_size})')
