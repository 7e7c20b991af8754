"""Patch graphs: grid and radius graphs against brute force, CLAM contours,
one transform per method."""
import pytest
import torch
from torch_geometric.data import Data

from graph_helpers import random_grid_patches
from pyg_sm import PatchGraph, patch_grid_graph, patch_radius_graph
from pyg_sm.transforms import GridPatchGraph, RadiusPatchGraph


def edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))




@pytest.mark.parametrize('connectivity', [4, 8])
@pytest.mark.parametrize('seed', range(3))
def test_grid_graph_matches_brute_force(connectivity, seed):
    cells = random_grid_patches(120, seed)
    diff = (cells[:, None, :] - cells[None, :, :]).abs()
    if connectivity == 4:
        linked = diff.sum(-1) == 1
    else:
        linked = (diff.max(-1).values == 1)
    expected = linked.nonzero().t()
    for coords, size in [(cells, None), (cells * 224 + 1000, 224)]:
        edge_index = patch_grid_graph(coords, connectivity, patch_size=size)
        assert edge_set(edge_index) == edge_set(expected)
        assert edge_set(edge_index) == edge_set(edge_index.flip(0))


@pytest.mark.parametrize('seed', range(3))
def test_radius_graph_matches_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand(200, 2, generator=gen) * 50
    radius = 4.5
    distance = torch.cdist(coords.double(), coords.double())
    expected = ((distance <= radius) & ~torch.eye(200, dtype=torch.bool))
    edge_index = patch_radius_graph(coords, radius)
    assert edge_set(edge_index) == edge_set(expected.nonzero().t())


def test_grid_graph_errors():
    cells = random_grid_patches(20, 0)
    # Patches more than a step apart stay unlinked (a wrong patch_size).
    assert patch_grid_graph(cells * 100 + 37, patch_size=64).shape == (2, 0)
    # One patch on top of another (two contours' grids where they meet)
    # is linked, not an error; many mean a step far too large (grid units
    # read as pixels).
    doubled = patch_grid_graph(torch.cat([cells, cells[:1]]))
    assert [cells.size(0), 0] in doubled.t().tolist()
    with pytest.raises(ValueError, match='are inconsistent'):
        patch_grid_graph(cells, patch_size=64)
    with pytest.raises(ValueError, match='connectivity'):
        patch_grid_graph(cells, connectivity=6)
    with pytest.raises(ValueError, match='coords'):
        patch_grid_graph(torch.zeros(5, 3))
    with pytest.raises(ValueError, match='radius'):
        patch_radius_graph(cells.float(), 0.0)
    assert patch_grid_graph(torch.zeros(0, 2)).shape == (2, 0)


def test_grid_graph_links_clam_contours_with_their_own_origins():
    # Two tissue pieces tiled from their own corners (offsets that are not
    # multiples of the step), touching along a column; a third piece lies
    # far away. Steps of 256 px, coordinates off by up to 3 px.
    step = 256
    a = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(3),
                                   indexing='ij'), -1).reshape(-1, 2) * step
    b = a + torch.tensor([4 * step - 37, 101])   # touches a's last column
    c = a + torch.tensor([20 * step, 20 * step])  # far away
    jitter = torch.randint(-3, 4, (36, 2))
    coords = torch.cat([a, b, c]) + jitter
    edge_index = patch_grid_graph(coords, 8, step)
    piece = torch.arange(36) // 12
    src, dst = edge_index
    assert not bool(((piece[src] == 2) != (piece[dst] == 2)).any())
    across = ((piece[src] == 0) & (piece[dst] == 1)).sum()
    assert across > 0  # a and b are linked where they touch
    # Within each piece, exactly the lattice's 8 neighbours.
    lattice = patch_grid_graph(a // step, 8)
    for k in range(3):
        inside = (piece[src] == k) & (piece[dst] == k)
        assert edge_set(edge_index[:, inside] - 12 * k) == edge_set(lattice)
    # Distances of the cross links are at most a step (+ tolerance) per axis.
    delta = (coords[src] - coords[dst]).abs().double() / step
    assert float(delta.max()) <= 1.05


def test_patch_graph_transform():
    pos = random_grid_patches(30, 1, scale=256)
    data = PatchGraph('grid', connectivity=4, patch_size=256)(Data(pos=pos))
    assert torch.equal(data.edge_index, patch_grid_graph(pos, 4, 256))
    data = PatchGraph('radius', radius=300.0)(Data(pos=pos.float()))
    assert torch.equal(data.edge_index, patch_grid_graph(pos, 4, 256))
    with pytest.raises(ValueError, match='radius'):
        PatchGraph('radius')
    with pytest.raises(ValueError, match='data.pos'):
        PatchGraph()(Data(x=torch.zeros(3, 1)))


def test_one_transform_per_method_with_pyg_functional_names():
    from torch_geometric.data.datapipes import DatasetAdapter

    pos = random_grid_patches(30, 2, scale=224) + 1000
    old = Data(pos=pos, edge_index=torch.zeros(2, 1, dtype=torch.long),
               edge_weight=torch.ones(1), edge_attr=torch.ones(1, 3))
    data = GridPatchGraph(connectivity=4)(old.clone())
    # The step is inferred from the coordinates; stale edge data is gone.
    assert torch.equal(data.edge_index, patch_grid_graph(pos, 4, 224))
    assert 'edge_weight' not in data and 'edge_attr' not in data
    data = RadiusPatchGraph(radius=300.0)(old.clone())
    assert torch.equal(data.edge_index, patch_grid_graph(pos, 4, 224))
    assert 'edge_weight' not in data and 'edge_attr' not in data
    pipe = DatasetAdapter([Data(pos=pos)]).grid_patch_graph(connectivity=8)
    assert torch.equal(next(iter(pipe)).edge_index,
                       patch_grid_graph(pos, 8, 224))
    pipe = DatasetAdapter([Data(pos=pos.float())]).radius_patch_graph(300.0)
    assert next(iter(pipe)).edge_index.size(1) > 0
    assert isinstance(PatchGraph('grid').transform, GridPatchGraph)
    assert PatchGraph('radius', radius=2.0).options()['radius'] == 2.0
    with pytest.raises(ValueError, match='radius'):
        RadiusPatchGraph(-1.0)
