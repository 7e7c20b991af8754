r"""Patch graphs of patches on a regular grid."""
from typing import Optional, Tuple, Union

import numpy as np
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


def infer_patch_side(coords: Tensor) -> float:
    r"""The patch side that patch coordinates imply: the most common
    distance from a patch to its nearest other patch (a KD-tree over the
    coordinates, SciPy's), 1 for a single patch.

    Unlike the smallest gap between distinct coordinate values, this holds
    when a slide's patches lie on several grids with different origins, as
    CLAM tiles each tissue contour from its own corner: the gaps between
    two contours' grids are few, the grid steps within each contour are
    most."""
    from scipy.spatial import cKDTree

    points = torch.unique(coords.detach().double().cpu(), dim=0).numpy()
    if len(points) < 2:
        return 1.0
    distances = cKDTree(points).query(points, k=2)[0][:, 1]
    scale = float(np.median(distances)) * 1e-3
    values, counts = np.unique(np.round(distances / scale), return_counts=True)
    return float(values[counts.argmax()] * scale)


def patch_side(coords: Tensor,
               patch_size_level0: Optional[float] = None) -> float:
    r"""The side of a patch in the units of :obj:`coords` (level-0 pixels):
    :obj:`patch_size_level0` when known (TRIDENT and CLAM write it), else
    :func:`infer_patch_side`."""
    if patch_size_level0 is not None:
        return float(patch_size_level0)
    return infer_patch_side(coords)


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
    # A few patches of two contours' grids may overlap where the contours
    # meet; many patches within a small part of a step of each other mean
    # a step far larger than the coordinates' (grid units given pixels).
    crowded = int((delta.amax(dim=1) <= tolerance).sum()) // 2
    if crowded > max(1, num_nodes // 100):
        raise PygSmError(f"{crowded} pairs of the {num_nodes} patches lie "
                         f"within {tolerance:g} of a step of each other: "
                         f"'coords' and 'patch_size' ({patch_size}) are "
                         f"inconsistent")
    return edge_index




def resolve_side(data: Data, patch_size: Optional[float] = None
                 ) -> Tuple[float, str]:
    r"""The patch side of a slide and where it came from, in this order:
    its files' (``data.patch_size_level0``: TRIDENT's
    ``patch_size_level0`` or CLAM's ``patch_size`` x ``downsample``, named
    by ``data.patch_size_source``), else :obj:`patch_size` (source
    ``'patch_size'``), else inferred from ``data.pos``
    (:func:`infer_patch_side`, source ``'inferred'``). A
    :obj:`patch_size` that the files contradict is an error naming
    both."""
    known = data.get('patch_size_level0')
    if known is not None:
        source = data.get('patch_size_source') or 'patch_size_level0'
        if patch_size is not None and \
                abs(float(patch_size) - float(known)) > \
                TOLERANCE * float(known):
            raise PygSmError(f"--patch-size {float(patch_size):g} "
                             f"contradicts the slide's files, which say "
                             f"{float(known):g} ({source}); leave "
                             f"--patch-size out")
        return float(known), source
    if patch_size is not None:
        return float(patch_size), 'patch_size'
    return infer_patch_side(data.pos), 'inferred'


@functional_transform('grid_patch_graph')
class GridPatchGraph(PatchGraphTransform):
    r"""Links each patch to its 4 or 8 grid neighbours, from the patch
    coordinates :obj:`data.pos` (functional name:
    :obj:`grid_patch_graph`; the function: :func:`patch_grid_graph`).

    Args:
        connectivity (int, optional): :obj:`4` (edges along the axes) or
            :obj:`8` (diagonals too). (default: :obj:`8`)
        patch_size (float, optional): The grid step of :obj:`pos` (pixels)
            for slides whose files do not say it: each slide's
            :obj:`patch_size_level0` (from TRIDENT's or CLAM's attributes)
            comes first, and must agree with it; without either the step
            is inferred from the coordinates (:func:`infer_patch_side`).
            (default: :obj:`None`)
    """
    def __init__(self, connectivity: int = 8,
                 patch_size: Optional[float] = None):
        check_choice('connectivity', connectivity, CONNECTIVITIES)
        self.connectivity = connectivity
        self.patch_size = patch_size

    def step(self, data: Data) -> float:
        r"""The grid step used for :obj:`data` (:func:`resolve_side`)."""
        return resolve_side(data, self.patch_size)[0]

    def edges(self, data: Data) -> Tensor:
        return patch_grid_graph(data.pos, self.connectivity, self.step(data))

    def options(self) -> dict:
        return dict(method='grid', connectivity=self.connectivity,
                    patch_size=self.patch_size)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(connectivity='
                f'{self.connectivity}, patch_size={self.patch_size})')
