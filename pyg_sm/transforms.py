r"""Patch graphs from patch coordinates, in pure torch: cells are hashed to
integer keys, sorted once, and neighbours are found with
:func:`torch.searchsorted`, so no dense distance matrix is ever built."""
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import coalesce

_OFFSETS = {
    4: [(-1, 0), (1, 0), (0, -1), (0, 1)],
    8: [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)
        if (dx, dy) != (0, 0)],
}


def _check_coords(coords: Tensor) -> None:
    if not isinstance(coords, Tensor) or coords.dim() != 2 or \
            coords.size(1) != 2:
        raise ValueError(f"'coords' must have shape (num_patches, 2) (got "
                         f"{tuple(getattr(coords, 'shape', ()))})")
    if coords.is_floating_point() and not bool(torch.isfinite(coords).all()):
        raise ValueError("'coords' must be finite")


def _cell_keys(cells: Tensor) -> Tuple[Tensor, int]:
    """Integer key of each 2-D cell, with a one-cell margin so that
    neighbouring offsets never wrap around a row."""
    cells = cells - cells.min(dim=0).values + 1
    width = int(cells[:, 1].max()) + 2
    return cells[:, 0] * width + cells[:, 1], width


def _finish(src: List[Tensor], dst: List[Tensor], num_nodes: int) -> Tensor:
    if not src:
        return torch.empty(2, 0, dtype=torch.long)
    edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    return coalesce(edge_index, num_nodes=num_nodes)


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
    _check_coords(coords)
    if connectivity not in _OFFSETS:
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
    key, width = _cell_keys(cells.long())
    sorted_key, order = torch.sort(key)
    if bool((sorted_key[1:] == sorted_key[:-1]).any()):
        raise ValueError("two patches share one grid cell: 'coords' or "
                         "'patch_size' are inconsistent")
    node = torch.arange(num_nodes, device=coords.device)
    src, dst = [], []
    for dx, dy in _OFFSETS[connectivity]:
        wanted = key + dx * width + dy
        found = torch.searchsorted(sorted_key, wanted).clamp_max(num_nodes -
                                                                 1)
        hit = sorted_key[found] == wanted
        src.append(order[found[hit]])
        dst.append(node[hit])
    return _finish(src, dst, num_nodes).to(coords.device)


def patch_radius_graph(coords: Tensor, radius: float) -> Tensor:
    r"""Links every pair of patches at most :obj:`radius` apart (Euclidean),
    for arbitrary coordinates.

    Points are binned into cells of side :obj:`radius`; only the 3 x 3 cells
    around each point are searched.

    Returns:
        A symmetric, coalesced :obj:`edge_index` :math:`(2, E)` without
        self-loops.
    """
    _check_coords(coords)
    if not radius > 0:
        raise ValueError(f"'radius' must be positive (got {radius})")
    num_nodes = coords.size(0)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=coords.device)
    position = coords.double()
    key, width = _cell_keys(torch.floor(position / radius).long())
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
    return _finish(src, dst, num_nodes).to(coords.device)


class PatchGraph(BaseTransform):
    r"""Builds :obj:`data.edge_index` from the patch coordinates
    :obj:`data.pos` (functional forms: :func:`patch_grid_graph`,
    :func:`patch_radius_graph`).

    Args:
        method (str, optional): :obj:`"grid"` for patch grids or
            :obj:`"radius"` for arbitrary coordinates. (default: :obj:`"grid"`)
        connectivity (int, optional): Grid graphs: :obj:`4` or :obj:`8`.
            (default: :obj:`8`)
        patch_size (float, optional): Grid graphs: the grid step of
            :obj:`pos` (pixels); :obj:`None` for grid units.
            (default: :obj:`None`)
        radius (float, optional): Radius graphs: the linking distance.
            (default: :obj:`None`)
    """
    def __init__(self, method: str = 'grid', connectivity: int = 8,
                 patch_size: Optional[float] = None,
                 radius: Optional[float] = None):
        if method not in ('grid', 'radius'):
            raise ValueError(f"'method' must be 'grid' or 'radius' (got "
                             f"{method!r})")
        if method == 'radius' and radius is None:
            raise ValueError("method='radius' needs 'radius'")
        if method == 'grid' and connectivity not in _OFFSETS:
            raise ValueError(f"'connectivity' must be 4 or 8 (got "
                             f"{connectivity!r})")
        self.method = method
        self.connectivity = connectivity
        self.patch_size = patch_size
        self.radius = radius

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise ValueError("PatchGraph needs patch coordinates in "
                             "'data.pos'")
        if self.method == 'grid':
            data.edge_index = patch_grid_graph(data.pos, self.connectivity,
                                               self.patch_size)
        else:
            data.edge_index = patch_radius_graph(data.pos, self.radius)
        return data

    def __repr__(self) -> str:
        if self.method == 'grid':
            return (f'{self.__class__.__name__}(grid, connectivity='
                    f'{self.connectivity}, patch_size={self.patch_size})')
        return f'{self.__class__.__name__}(radius={self.radius})'
