"""Patch graphs from CLAM's real coordinates: each tissue contour tiled from
its own corner (several grid origins per slide), the patch side only on
patches/<slide>.h5, 512-px patches at level 0 and 256-px patches at level 1
of a 40x slide; against an independent reference, in both layouts (with and
without patches/), and through pyg-sm train."""
import csv

import h5py
import numpy as np
import pytest
import torch

from field_files import clam_contours, reference_grid_edges, write_clam_slide
from pyg_sm import SlideDataset
from pyg_sm.cli import main
from pyg_sm.datasets.layouts import side_of
from pyg_sm.runs import RunFolder
from pyg_sm.transforms import (
    GridPatchGraph,
    infer_patch_side,
    patch_grid_graph,
)

#: (patch_size, patch_level, downsample, level-0 side): CLAM at level 0, and
#: at level 1 of a 40x .svs whose downsample is not a whole number.
CLAM_SETTINGS = [(512, 0, (1.0, 1.0), 512), (256, 1, (4.0, 4.000293), 1024)]


def clam_cohort(root, rng, slides=6, with_patches=True, dim=8):
    labels = []
    for i in range(slides):
        size, level, downsample, side = CLAM_SETTINGS[i % 2]
        corners = clam_contours(rng, side, pieces=1 + i % 5)
        features = rng.standard_normal((len(corners), dim)) + \
            (i % 2) * 0.5
        write_clam_slide(root, f'TCGA-{i:02d}', corners, features, size,
                         level, downsample, with_patches)
        labels.append((f'TCGA-{i:02d}', i % 2))
    with open(root / 'labels.csv', 'w', newline='') as f:
        csv.writer(f).writerows([('slide_id', 'label'), *labels])
    return root


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return clam_cohort(tmp_path_factory.mktemp('clam'),
                       np.random.default_rng(7))


def test_clam_coordinates_lie_on_several_origins(cohort):
    for i in range(6):
        with h5py.File(cohort / 'h5_files' / f'TCGA-{i:02d}.h5') as f:
            assert not dict(f['coords'].attrs)  # attr_dict=None
            corners = f['coords'][()]
        side = CLAM_SETTINGS[i % 2][3]
        origins = {tuple(c) for c in np.mod(corners, side)}
        assert len(origins) == 1 + i % 5
        # The smallest gap between coordinate values is an offset between
        # two contours' grids, far below the patch side.
        if len(origins) > 1:
            gaps = np.diff(np.unique(corners[:, 0]))
            assert gaps.min() < side / 4


@pytest.mark.parametrize('with_patches', [True, False])
def test_graphs_equal_the_reference_in_both_layouts(tmp_path, with_patches):
    root = clam_cohort(tmp_path, np.random.default_rng(3),
                       with_patches=with_patches)
    dataset = SlideDataset(root)
    graphs = {g.slide_id: g for g in dataset.graphs()}
    for i, slide_id in enumerate(dataset.slide_ids):
        side = CLAM_SETTINGS[i % 2][3]
        data = dataset[i]
        assert data.patch_size_level0 == side if with_patches else \
            'patch_size_level0' not in data
        edges = {tuple(e) for e in data.edge_index.t().tolist()}
        assert edges == reference_grid_edges(data.pos.numpy(), side)
        assert graphs[slide_id].mean_degree > 5.5
        assert graphs[slide_id].side == pytest.approx(side)
        assert graphs[slide_id].source == (
            'patch_size x downsample of the coords of patches/'
            if with_patches else 'inferred')


def test_the_patch_side_from_clams_attributes():
    attrs = {'patch_size': 256, 'patch_level': 1,
             'downsample': np.array([4.0, 4.000293])}
    assert side_of(attrs, 'patches/') == (
        1024.0, 'patch_size x downsample of the coords of patches/')
    assert side_of({'patch_size': 512, 'patch_level': 0}, 'x')[0] == 512
    assert side_of({'patch_size': 256, 'patch_level': 2}, 'x') == \
        (None, None)  # a level without its downsample says nothing
    assert side_of({'patch_size_level0': 448, 'patch_size': 224}, 'x')[0] \
        == 448  # TRIDENT's first


def test_inference_on_several_origins_against_the_smallest_gap():
    rng = np.random.default_rng(11)
    for side in (512, 1024):
        corners = torch.from_numpy(clam_contours(rng, side, pieces=5))
        assert infer_patch_side(corners) == pytest.approx(side)
        smallest = min(float(torch.unique(corners[:, a].double()).diff()
                             .min()) for a in range(2))
        # What pyg-sm 0.2 inferred, and the graph it built: no edge.
        assert smallest < side / 4
        assert patch_grid_graph(corners, patch_size=smallest).size(1) == 0


def test_a_patch_size_the_files_contradict_is_an_error(cohort):
    dataset = SlideDataset(cohort, graph=GridPatchGraph(patch_size=256))
    with pytest.raises(ValueError, match="--patch-size 256 contradicts the "
                                         "slide's files, which say 512"):
        dataset.graphs()


def test_train_on_clams_layout_end_to_end(cohort, tmp_path, capsys):
    status = main(['train', str(cohort), '--out', str(tmp_path / 'run'),
                   '--epochs', '1', '--heatmaps', '0', '--att-dim', '4',
                   '--val-fraction', '0.34'])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert 'patch graphs: 6 slides' in err
    assert 'patch side 512 (3), 1024 (3) from patch_size x downsample of ' \
           'the coords of patches/: 6' in err
    graphs = RunFolder(tmp_path / 'run').results()['graphs']
    assert graphs['slides'] == 6 and not graphs['sparse']
    assert graphs['side_sources'] == {
        'patch_size x downsample of the coords of patches/': 6}
    assert graphs['mean_degree']['lowest'] > 5.5
    with h5py.File(tmp_path / 'run' / 'scores' /
                   f"{RunFolder(tmp_path / 'run').slide_ids[0]}.h5") as f:
        assert f.attrs['patch_size_level0'] in (512, 1024)


def test_sparse_graphs_stop_before_the_first_epoch(cohort, tmp_path,
                                                    capsys):
    """A patch side far below the grid's (here given for slides whose
    files do not say it): one line with the count, no epoch, no folder;
    --allow-sparse-graphs goes on."""
    data = tmp_path / 'data'
    clam_cohort(data, np.random.default_rng(7), with_patches=False)
    argv = ['train', str(data), '--out', str(tmp_path / 'run'), '--epochs',
            '1', '--heatmaps', '0', '--att-dim', '4', '--patch-size', '60',
            '--val-fraction', '0.34']
    status = main(argv)
    _, err = capsys.readouterr()
    assert status == 2
    assert '6 slides of 6 get patch graphs that link few or no patches: ' \
           'TCGA-00 (' in err and 'side 60 from patch_size' in err
    assert 'epoch' not in err and not (tmp_path / 'run').exists()
    assert main([*argv, '--allow-sparse-graphs']) == 0
    assert 'epoch 1/1' in capsys.readouterr().err


def test_inspect_reports_every_slide(cohort, capsys):
    assert main(['inspect', str(cohort), '--worst', '2']) == 0
    out = capsys.readouterr().out
    assert out.startswith('patch graphs: 6 slides')
    rows = [line for line in out.splitlines() if line.startswith('TCGA-')]
    assert len(rows) == 2
