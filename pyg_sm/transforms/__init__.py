r"""Patch graphs from patch coordinates, in pure torch: one transform per
method, as PyG's :class:`~torch_geometric.transforms.RadiusGraph` and
:class:`~torch_geometric.transforms.KNNGraph` (functional names
:obj:`grid_patch_graph`, :obj:`radius_patch_graph`), the functions behind
them, and :class:`PatchGraph`, which picks one by name."""
from .grid_graph import (
                         GridPatchGraph,
                         infer_patch_side,
                         patch_grid_graph,
                         patch_side,
                         resolve_side,
)
from .patch_graph import METHODS, PatchGraph
from .radius_graph import RadiusPatchGraph, patch_radius_graph

__all__ = ['GridPatchGraph', 'RadiusPatchGraph', 'PatchGraph', 'METHODS',
           'patch_grid_graph', 'patch_radius_graph', 'infer_patch_side',
           'patch_side', 'resolve_side']
