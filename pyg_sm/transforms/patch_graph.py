r"""The patch graph chosen by method name, as the command line and
checkpoints name it."""
from typing import Optional

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from ..utils.checks import check_choice
from ..utils.errors import PygSmError
from .grid_graph import GridPatchGraph
from .radius_graph import RadiusPatchGraph

#: The patch-graph methods, by name.
METHODS = ('grid', 'radius')


class PatchGraph(BaseTransform):
    r"""Builds :obj:`data.edge_index` from the patch coordinates
    :obj:`data.pos` with the method named by :obj:`method`:
    :class:`~pyg_sm.transforms.GridPatchGraph` for patch grids or
    :class:`~pyg_sm.transforms.RadiusPatchGraph` for arbitrary coordinates
    (functional forms: :func:`patch_grid_graph`, :func:`patch_radius_graph`).
    An :obj:`edge_weight` or :obj:`edge_attr` of an earlier graph is
    dropped.

    Args:
        method (str, optional): :obj:`"grid"` or :obj:`"radius"`.
            (default: :obj:`"grid"`)
        connectivity (int, optional): Grid graphs: :obj:`4` or :obj:`8`.
            (default: :obj:`8`)
        patch_size (float, optional): Grid graphs: the grid step of
            :obj:`pos` (pixels); :obj:`None` infers it from each slide's
            coordinates. (default: :obj:`None`)
        radius (float, optional): Radius graphs: the linking distance.
            (default: :obj:`None`)
    """
    def __init__(self, method: str = 'grid', connectivity: int = 8,
                 patch_size: Optional[float] = None,
                 radius: Optional[float] = None):
        check_choice('method', method, METHODS)
        if method == 'radius' and radius is None:
            raise PygSmError("method='radius' needs 'radius'")
        self.method = method
        self.connectivity = connectivity
        self.patch_size = patch_size
        self.radius = radius
        self.transform = GridPatchGraph(connectivity, patch_size) \
            if method == 'grid' else RadiusPatchGraph(radius)

    def forward(self, data: Data) -> Data:
        return self.transform(data)

    def options(self) -> dict:
        r"""The settings that decide the graph, by name."""
        return dict(method=self.method, connectivity=self.connectivity,
                    patch_size=self.patch_size, radius=self.radius)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.transform})'
