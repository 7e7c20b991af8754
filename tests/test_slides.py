import json

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from pyg_sm import (PatchGraph, SlideDataset, make_synthetic_slides,
                    patch_grid_graph, patch_radius_graph)
from pyg_sm.cli import run as main
from pyg_sm.transforms import GridPatchGraph, RadiusPatchGraph
from pyg_sm.visualize import render_heatmap
from pyg_sm.models import build_model
from pyg_sm.train import load_checkpoint, predict_slides, save_checkpoint


def edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def random_grid_patches(num, seed, scale=1):
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(15 * 15, generator=gen)[:num]
    return torch.stack([cells // 15, cells % 15], dim=1) * scale


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
    with pytest.raises(ValueError, match='share one grid cell'):
        patch_grid_graph(torch.cat([cells, cells[:1]]))
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


def test_heatmap_renders_an_image_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pos = random_grid_patches(40, 0, scale=256)
    image = render_heatmap(pos, {'a': torch.rand(40), 'b': torch.rand(40)},
                           mask=torch.rand(40) > 0.5, title='t')
    assert image.mode == 'RGBA' and image.width > image.height > 100
    assert list(tmp_path.iterdir()) == []


def test_heatmap_is_on_the_percentile_scale_and_keeps_every_patch():
    from pyg_sm.visualize import grid_image
    from pyg_sm.utils.stats import percentiles

    pos = random_grid_patches(40, 1, scale=256)
    raw = torch.randn(40) * 30 - 10
    # The same picture for any monotone rescaling of the values.
    a = render_heatmap(pos, {'m': raw})
    b = render_heatmap(pos, {'m': raw * 0.01 + 5})
    assert a.tobytes() == b.tobytes()
    cells = grid_image(pos, percentiles(raw))
    assert float(cells.nan_to_num(-1).max()) == 100.0
    # A 500 x 300 grid gets at least one pixel per patch.
    gy, gx = torch.meshgrid(torch.arange(300), torch.arange(500),
                            indexing='ij')
    big = torch.stack([gx.flatten(), gy.flatten()], 1) * 224
    image = render_heatmap(big, {'m': torch.rand(big.size(0))})
    assert image.width >= 500 and image.height >= 300


@pytest.fixture(scope='module')
def slides(tmp_path_factory):
    return make_synthetic_slides(tmp_path_factory.mktemp('slides'),
                                 num_slides=8, feature_dim=6, seed=3)


def test_generator_is_deterministic(slides, tmp_path):
    again = make_synthetic_slides(tmp_path, num_slides=8, feature_dim=6,
                                  seed=3)
    for name in ['slide_000', 'slide_005']:
        with h5py.File(slides / 'features' / f'{name}.h5') as a, \
                h5py.File(again / 'features' / f'{name}.h5') as b:
            for key in ['features', 'coords', 'patch_labels']:
                assert np.array_equal(a[key][()], b[key][()])


def test_dataset_round_trip_from_generator(slides):
    dataset = SlideDataset(slides)
    assert len(dataset) == 8 and dataset.feature_dim == 6
    assert dataset.labels == [0, 1] * 4
    for index in range(len(dataset)):
        data = dataset[index]
        with h5py.File(slides / 'features' / f'{data.slide_id}.h5') as f:
            assert np.array_equal(data.x.numpy(), f['features'][()])
            assert np.array_equal(data.pos.numpy(), f['coords'][()])
            lesion = f['patch_labels'][()].sum()
        assert data.y.tolist() == [float(index % 2)]
        assert (lesion > 0) == bool(index % 2)
        assert torch.equal(data.edge_index,
                           patch_grid_graph(data.pos, 8, 64))
    subset = SlideDataset(slides, slide_ids=['slide_003'])
    assert len(subset) == 1 and subset[0].slide_id == 'slide_003'


def test_dataset_transform_and_pre_transform(slides):
    seen = []

    def pre_transform(data):
        seen.append(data.slide_id)
        data.marked = torch.ones(1)
        return data

    def transform(data):
        data.x = data.x * 0
        return data

    dataset = SlideDataset(slides, pre_transform=pre_transform,
                           transform=transform, in_memory=True)
    for _ in range(2):
        data = dataset[1]
        assert 'marked' in data and float(data.x.abs().sum()) == 0
    assert seen == ['slide_001']  # once, then kept in memory
    lazy = SlideDataset(slides, pre_transform=pre_transform)
    lazy[1], lazy[1]
    assert seen == ['slide_001'] * 3 and not lazy._cache  # read each time
    plain = SlideDataset(slides)
    assert float(plain[1].x.abs().sum()) > 0
    assert float(dataset._cache[1].x.abs().sum()) > 0  # cache untouched


def copy_slides(slides, tmp_path):
    import shutil
    target = tmp_path / 'copy'
    shutil.copytree(slides, target)
    return target


def write_slide(root, slide_id, **arrays):
    with h5py.File(root / 'features' / f'{slide_id}.h5', 'w') as f:
        for key, value in arrays.items():
            f[key] = value


def test_dataset_errors_name_the_slide(slides, tmp_path):
    root = copy_slides(slides, tmp_path)
    with pytest.raises(ValueError, match='unknown slide ids'):
        SlideDataset(root, slide_ids=['slide_999'])
    cases = {
        'missing': None,
        'mismatched': dict(features=np.zeros((5, 6), 'f4'),
                           coords=np.zeros((4, 2), 'i8')),
        'no_coords': dict(features=np.zeros((5, 6), 'f4')),
        'empty': dict(features=np.zeros((0, 6), 'f4'),
                      coords=np.zeros((0, 2), 'i8')),
        'wrong_dim': dict(features=np.zeros((3, 7), 'f4'),
                          coords=np.array([[0, 0], [0, 1], [1, 0]])),
        'bad_patch_labels': dict(features=np.zeros((3, 6), 'f4'),
                                 coords=np.array([[0, 0], [0, 1], [1, 0]]),
                                 patch_labels=np.zeros(2, 'u1')),
    }
    for slide_id, arrays in cases.items():
        if arrays is not None:
            write_slide(root, slide_id, **arrays)
        with open(root / 'labels.csv', 'a') as f:
            f.write(f'{slide_id},1\n')
        error = FileNotFoundError if arrays is None else ValueError
        with pytest.raises(error, match=f"slide '{slide_id}'"):
            SlideDataset(root)
        # Restore the CSV for the next case.
        lines = (root / 'labels.csv').read_text().splitlines()[:-1]
        (root / 'labels.csv').write_text('\n'.join(lines) + '\n')

    features = np.ones((3, 6), 'f4')
    features[1, 2] = np.nan
    write_slide(root, 'nan_slide', features=features,
                coords=np.array([[0, 0], [0, 1], [1, 0]]))
    with open(root / 'labels.csv', 'a') as f:
        f.write('nan_slide,0\n')
    dataset = SlideDataset(root)
    with pytest.raises(ValueError, match="slide 'nan_slide'.*NaN"):
        dataset[len(dataset) - 1]


@pytest.mark.parametrize('content, match', [
    ('slide_id,label\nslide_000,\n', 'empty label'),
    ('slide_id,label\nslide_000,1\nslide_000,0\n', 'twice'),
    ('name,label\nslide_000,1\n', "columns 'slide_id' and 'label'"),
    ('slide_id,label\n', 'no slides'),
])
def test_label_file_errors(slides, tmp_path, content, match):
    (tmp_path / 'labels.csv').write_text(content)
    with pytest.raises(ValueError, match=match):
        SlideDataset(slides, labels=str(tmp_path / 'labels.csv'))


def test_checkpoint_round_trip_gives_identical_predictions(slides, tmp_path):
    dataset = SlideDataset(slides)
    options = dict(att_dim=8, sm_layers=1, sm_post=True, sm_alpha=0.4)
    model = build_model(dataset.feature_dim, **options).eval()
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, dataset.feature_dim, options,
                    dict(method='grid', connectivity=8))
    loaded, loaded_options, graph = load_checkpoint(path)
    assert loaded_options == options and graph['connectivity'] == 8
    for a, b in zip(predict_slides(model, dataset),
                    predict_slides(loaded, dataset)):
        assert a['logits'] == b['logits']
        assert torch.equal(a['attention'], b['attention'])
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / 'junk.pt')


def test_cli_train_then_evaluate(slides, tmp_path):
    run = tmp_path / 'run'
    results = main(['train', str(slides), '--out', str(run), '--epochs', '2',
                    '--att-dim', '8', '--sm-alpha', '0.3', '--sm-pre',
                    '--connectivity', '4', '--heatmaps', '2'])
    saved = json.loads((run / 'results.json').read_text())
    assert saved['validation']['num_slides'] == len(
        saved['split']['val']) == 2
    assert set(saved['split']['train']).isdisjoint(saved['split']['val'])
    assert (run / 'checkpoint.pt').is_file()
    assert len(list((run / 'heatmaps').glob('*.png'))) == 2
    model, options, graph = load_checkpoint(run / 'checkpoint.pt')
    assert options['sm_alpha'] == 0.3 and options['sm_pre']
    assert graph['connectivity'] == 4

    evaluation = main(['evaluate', str(slides), '--checkpoint',
                       str(run / 'checkpoint.pt'), '--out',
                       str(tmp_path / 'eval'), '--heatmaps', '1'])
    logits = {p['slide_id']: p['logits'] for p in evaluation['predictions']}
    assert len(logits) == 8
    for p in results['validation']['predictions']:
        assert logits[p['slide_id']] == pytest.approx(p['logits'], abs=1e-6)
    metrics = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    assert 0.0 <= metrics['metrics']['instance_auroc'] <= 1.0


def test_cli_demo_end_to_end(tmp_path):
    results = main(['demo', '--out', str(tmp_path), '--num-slides', '12',
                    '--epochs', '2', '--heatmaps', '1'])
    saved = json.loads((tmp_path / 'results.json').read_text())
    for name in ['SmABMIL', 'ABMIL']:
        assert 0.0 <= saved[name]['instance_auroc'] <= 1.0
        assert saved[name]['bag_auroc'] == results[name]['bag_auroc']
    assert len(list((tmp_path / 'heatmaps').glob('*.png'))) == 1


def test_demo_signal_flag_reaches_the_generator(tmp_path, monkeypatch):
    import pyg_sm.cli

    seen = {}

    def generator(root, **kwargs):
        seen.update(kwargs)
        raise FileNotFoundError('stop here')

    monkeypatch.setattr(pyg_sm.cli, 'make_synthetic_slides', generator)
    with pytest.raises(SystemExit, match='stop here'):
        main(['demo', '--out', str(tmp_path), '--signal', '1.25'])
    assert seen['signal'] == 1.25
    main_parser = pyg_sm.cli.parser()
    assert main_parser.parse_args(['demo']).signal == pyg_sm.cli.DEMO_SIGNAL


def test_cli_errors_are_messages(tmp_path):
    with pytest.raises(SystemExit, match='no labels file'):
        main(['train', str(tmp_path), '--out', str(tmp_path / 'o')])
    with pytest.raises(SystemExit):
        main(['train', str(tmp_path), '--sm-alpha', 'high'])
