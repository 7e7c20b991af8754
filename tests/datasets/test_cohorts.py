"""Real cohorts as datasets: lazy reading and graph caching, file checks, the
TRIDENT, CLAM and torchmil layouts."""
import os
import time

import h5py
import numpy as np
import pytest
import torch

from pyg_sm import SlideDataset, make_synthetic_slides
from pyg_sm.datasets.layouts import SlideError
from pyg_sm.transforms import GridPatchGraph
from run_helpers import copy, corrupt, slide_ids, write_labels


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return make_synthetic_slides(tmp_path_factory.mktemp('cohort'),
                                 num_slides=12, feature_dim=6, seed=4)








def test_slides_are_read_lazily_and_graphs_built_once(cohort, tmp_path):
    calls = []

    class CountingGraph(GridPatchGraph):
        def edges(self, data):
            calls.append(data.slide_id)
            return super().edges(data)

    cache = tmp_path / 'cache'
    dataset = SlideDataset(cohort, graph=CountingGraph(), graph_cache=cache)
    first = [dataset[i].edge_index for i in range(len(dataset))]
    assert not dataset._cache and len(calls) == len(dataset)
    again = SlideDataset(cohort, graph=CountingGraph(), graph_cache=cache)
    for i in range(len(again)):
        assert torch.equal(again[i].edge_index, first[i])
    assert len(calls) == len(dataset)  # read back, not rebuilt
    # Other graph settings, or a changed file, give another key.
    SlideDataset(cohort, graph=CountingGraph(connectivity=4),
                 graph_cache=cache)[0]
    assert len(calls) == len(dataset) + 1
    path = dataset.path(dataset.slide_ids[1])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    again[1]
    assert len(calls) == len(dataset) + 2


def test_each_process_checks_its_share_of_the_files(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    corrupt(root, 'slide_002', 'garbage')
    dataset = SlideDataset(root, labels=None, slide_ids=slide_ids(root)[:2]
                           + slide_ids(root)[3:])  # headers of 002 unread
    dataset.slide_ids.insert(2, 'slide_002')
    dataset.check(shard=(2, 1))  # slides 1, 3, 5, ...: all sound
    with pytest.raises(SlideError, match="slide 'slide_002'"):
        dataset.check(shard=(2, 0))


def test_trident_patch_size_attribute_and_graphs_without_edges(tmp_path):
    root = tmp_path / 'trident'
    (root / 'features').mkdir(parents=True)
    # Every other column: the gaps say 512, TRIDENT says 256.
    cells = torch.stack(torch.meshgrid(torch.arange(0, 10, 2),
                                       torch.arange(5), indexing='ij'),
                        -1).reshape(-1, 2)
    with h5py.File(root / 'features' / 'a.h5', 'w') as f:
        f['features'] = np.random.rand(len(cells), 4).astype('f4')
        f['coords'] = (cells * 256).numpy()
        f['coords'].attrs['patch_size_level0'] = 256
    write_labels(root, [('a', 1)])
    data = SlideDataset(root)[0]
    assert data.patch_size_level0 == 256
    vertical = (data.pos[data.edge_index[0]] -
                data.pos[data.edge_index[1]]).abs()
    assert int(vertical[:, 0].max()) == 0  # columns 512 apart: unlinked
    graphs = SlideDataset(root).graphs()
    assert graphs[0].side == 256 and graphs[0].source == \
        'patch_size_level0 of the coords of the features file'
    # A patch size that the files contradict is an error, not a choice.
    with pytest.raises(SlideError, match="slide 'a' .*--patch-size 100 "
                                         "contradicts the slide's files, "
                                         "which say 256"):
        SlideDataset(root, graph=GridPatchGraph(patch_size=100))[0]
    with h5py.File(root / 'features' / 'a.h5', 'a') as f:
        del f['coords'].attrs['patch_size_level0']
    with pytest.warns(UserWarning, match="slide 'a'.*links no patches"):
        SlideDataset(root, graph=GridPatchGraph(patch_size=100))[0]


@pytest.mark.parametrize('how, words', [
    ('zero-byte', 'empty'), ('garbage', 'cannot be read'),
    ('truncated', 'cannot be read'), ('nan', 'NaN'),
])
def test_every_file_is_checked(cohort, tmp_path, how, words):
    root = copy(cohort, tmp_path)
    corrupt(root, 'slide_007', how)
    with pytest.raises(SlideError, match=f"slide 'slide_007' .*{words}"):
        SlideDataset(root).check()
    with pytest.raises(SlideError, match=str(root / 'features')):
        SlideDataset(root).check()


def write_clam(root, ids, dim=5):
    (root / 'pt_files').mkdir(parents=True)
    (root / 'h5_files').mkdir()
    gen = torch.Generator().manual_seed(0)
    for slide_id in ids:
        coords = torch.stack(torch.meshgrid(
            torch.arange(4), torch.arange(3), indexing='ij'),
            -1).reshape(-1, 2) * 512 + 1000
        features = torch.randn(len(coords), dim, generator=gen)
        torch.save(features, root / 'pt_files' / f'{slide_id}.pt')
        with h5py.File(root / 'h5_files' / f'{slide_id}.h5', 'w') as f:
            f['features'] = features.numpy()
            f['coords'] = coords.numpy()


def test_clam_and_torchmil_layouts(tmp_path):
    clam = tmp_path / 'clam'
    write_clam(clam, ['s1', 's2'])
    write_labels(clam, [('s1', 0), ('s2', 1)])
    dataset = SlideDataset(clam)
    assert dataset.layout.name == 'clam' and dataset.feature_dim == 5
    data = dataset[1]
    assert torch.equal(data.x, torch.load(clam / 'pt_files' / 's2.pt'))
    assert data.edge_index.size(1) == 2 * (3 * 3 + 4 * 2 + 2 * 3 * 2)
    (clam / 'h5_files' / 's2.h5').unlink()
    with pytest.raises(FileNotFoundError, match="slide 's2'.*h5_files"):
        SlideDataset(clam)

    tm = tmp_path / 'torchmil'
    for folder in ('features', 'coords', 'inst_labels', 'labels'):
        (tm / folder).mkdir(parents=True)
    for i, name in enumerate(['bag_a', 'bag_b', 'bag_c']):
        coords = np.stack(np.meshgrid(np.arange(3), np.arange(3)),
                          -1).reshape(-1, 2)
        np.save(tm / 'features' / f'{name}.npy',
                np.random.rand(9, 7).astype('f4'))
        np.save(tm / 'coords' / f'{name}.npy', coords.astype('f4'))
        np.save(tm / 'inst_labels' / f'{name}.npy', (np.arange(9) < i)
                .astype('f4'))
        np.save(tm / 'labels' / f'{name}.npy', np.array([i % 2], 'f4'))
    dataset = SlideDataset(tm, labels=None)
    assert dataset.layout.name == 'torchmil'
    assert dataset.labels == [0, 1, 0] and dataset.classes == ['0', '1']
    data = dataset[2]
    assert data.x.shape == (9, 7) and int(data.patch_labels.sum()) == 2
    assert data.edge_index.size(1) == 2 * (2 * 3 * 2 + 2 * 2 * 2)
