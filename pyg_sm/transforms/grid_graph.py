r"""Patch graphs of patches on a regular grid."""
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform

from ..utils.checks import check_choice, check_coords
from ..utils.errors import PygSmError
from ._base import PatchGraphTransform, close_pairs

#: The neighbourhoods of grid graphs.
CONNECTIVITIES = (4, 8)
#: How far off a multiple of the grid step coordinates may be, as a
#: fraction of the step.
TOLERANCE = 0.05


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


def patch_side(coords: Tensor,
               patch_size_level0: Optional[float] = None) -> float:
    r"""The side of a patch in the units of :obj:`coords` (level-0 pixels):
    :obj:`patch_size_level0` when known (TRIDENT writes it), else the
    smaller grid step of the coordinates."""
    if patch_size_level0 is not None:
        return float(patch_size_level0)
    return float(min(grid_step(coords)))


def patch_grid_graph(coords: Tensor, connectivity: int = 8,
                     patch_size: Optional[Union[float, Tuple[float, float]]]
                     = None, tolerance: float = TOLERANCE) -> Tensor:
    r"""The 4- or 8-neighbour graph of patches laid out on grids.

    Two patches are linked when they are within one grid step of each other
    on each axis (8 neighbours), or within one step in the sum of the two
    axes (4 neighbours), up to :obj:`tolerance` of a step. On a single
    lattice this is exactly the grid's 4- or 8-neighbourhood; it also links
    the patches of several grids with different origins where they touch
    (CLAM tiles each tissue contour from its own corner), and leaves pieces
    of tissue more than a step apart unlinked.

    Args:
        coords (torch.Tensor): Patch positions :math:`(N, 2)`, in grid units
            or in pixels with :obj:`patch_size`, from any origin.
        connectivity (int, optional): :obj:`4` (edges along the axes) or
            :obj:`8` (diagonals too). (default: :obj:`8`)
        patch_size (float or (float, float), optional): Grid step in the units
            of :obj:`coords`; :obj:`None` means the coordinates are grid
            units already. (default: :obj:`None`)
        tolerance (float, optional): Slack, as a fraction of a step, for
            coordinates that are not exact multiples of it.
            (default: :obj:`0.05`)

    Returns:
        A symmetric, coalesced :obj:`edge_index` :math:`(2, E)` without
        self-loops.
    """
    check_coords(coords)
    check_choice('connectivity', connectivity, CONNECTIVITIES)
    if not 0 <= tolerance < 0.5:
        raise PygSmError(f"'tolerance' must be in [0, 0.5) (got "
                         f"{tolerance})")
    num_nodes = coords.size(0)
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=coords.device)
    position = coords.double()
    if patch_size is not None:
        step = torch.as_tensor(patch_size, dtype=torch.float64,
                               device=coords.device)
        if not bool((step > 0).all()) or not bool(torch.isfinite(step).all()):
            raise PygSmError(f"'patch_size' must be positive (got "
                             f"{patch_size})")
        position = position / step
    reach = 1.0 + tolerance
    if connectivity == 8:
        def keep(delta):
            return delta.abs().amax(dim=1) <= reach
    else:
        def keep(delta):
            return delta.abs().sum(dim=1) <= reach
    edge_index = close_pairs(position, reach, keep)
    delta = (position[edge_index[0]] - position[edge_index[1]]).abs()
    if bool((delta.amax(dim=1) <= tolerance).any()):
        raise PygSmError("two patches share one grid cell: 'coords' or "
                         "'patch_size' are inconsistent")
    return edge_index


@functional_transform('grid_patch_graph')
class GridPatchGraph(PatchGraphTransform):
    r"""Links each patch to its 4 or 8 grid neighbours, from the patch
    coordinates :obj:`data.pos` (functional name:
    :obj:`grid_patch_graph`; the function: :func:`patch_grid_graph`).

    Args:
        connectivity (int, optional): :obj:`4` (edges along the axes) or
            :obj:`8` (diagonals too). (default: :obj:`8`)
        patch_size (float, optional): The grid step of :obj:`pos` (pixels).
            :obj:`None` takes each slide's :obj:`patch_size_level0` (which
            TRIDENT records) or infers the step from its coordinates
            (:func:`grid_step`: the smallest gap between patches along each
            axis). (default: :obj:`None`)
    """
    def __init__(self, connectivity: int = 8,
                 patch_size: Optional[float] = None):
        check_choice('connectivity', connectivity, CONNECTIVITIES)
        self.connectivity = connectivity
        self.patch_size = patch_size

    def step(self, data: Data) -> Union[float, List[float]]:
        r"""The grid step used for :obj:`data`."""
        if self.patch_size is not None:
            return self.patch_size
        if data.get('patch_size_level0') is not None:
            return float(data.patch_size_level0)
        return grid_step(data.pos)

    def edges(self, data: Data) -> Tensor:
        return patch_grid_graph(data.pos, self.connectivity, self.step(data))

    def options(self) -> dict:
        return dict(method='grid', connectivity=self.connectivity,
                    patch_size=self.patch_size)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(connectivity='
                f'{self.connectivity}, patch_size={self.patch_size})')
