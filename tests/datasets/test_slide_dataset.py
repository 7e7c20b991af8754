"""SlideDataset on synthetic slides: the generator, round trips, transforms,
errors that name the slide and the file."""
import h5py
import numpy as np
import pytest
import torch

from pyg_sm import SlideDataset, make_synthetic_slides, patch_grid_graph


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
        words = 'no feature file .*: missing' if arrays is None else \
            f"slide '{slide_id}'"
        with pytest.raises(error, match=words):
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


def test_missing_slides_are_reported_at_once_with_what_is_likely_wrong(
        slides, tmp_path):
    from pyg_sm import MissingFileError

    root = copy_slides(slides, tmp_path)
    labels = (root / 'labels.csv').read_text().splitlines()
    extra = ['gone_1,0', 'gone_2,1', 'SLIDE_003_b,1']
    (root / 'features' / 'slide_003.h5').rename(
        root / 'features' / 'slide_003_B.h5')
    (root / 'labels.csv').write_text('\n'.join(
        [labels[0]] + [line.replace('slide_003,', 'SLIDE_003_b,')
                       for line in labels[1:]] + extra[:2]) + '\n')
    with pytest.raises(MissingFileError) as error:
        SlideDataset(root)
    message = str(error.value)
    assert message.startswith('3 of 10 slides in labels.csv have no '
                              'feature file')
    assert 'gone_1, gone_2' in message and 'SLIDE_003_b' in message
    assert "did you mean 'slide_003_B' for 'SLIDE_003_b'" in message
    assert '--missing-slides skip' in message

    dataset = SlideDataset(root, missing_slides='skip')
    assert len(dataset) == 7
    assert dataset.skipped_slides == ['SLIDE_003_b', 'gone_1', 'gone_2']
    assert any(n.startswith('note: skipped 3 of 10') for n in dataset.notes)
    # The renamed file is in no label table: one note line counts it.
    assert any('1 feature file(s)' in n and 'slide_003_B' in n
               for n in dataset.notes)


def test_slide_extensions_and_feature_folders(slides, tmp_path):
    from pyg_sm import MissingFileError

    root = copy_slides(slides, tmp_path)
    lines = (root / 'labels.csv').read_text().splitlines()
    (root / 'labels.csv').write_text('\n'.join(
        [lines[0]] + [line.replace(',', '.svs,', 1) for line in lines[1:3]]
        + lines[3:]) + '\n')
    dataset = SlideDataset(root)
    assert len(dataset) == 8 and 'slide_000' in dataset.slide_ids
    assert dataset.notes == [
        "note: 2 slide id(s) in labels.csv end in a slide extension and are "
        "read as their stem (e.g. 'slide_000.svs' -> 'slide_000')"]
    (root / 'features').rename(root / 'features_uni_v1')
    with pytest.raises(MissingFileError,
                       match='pass --features-dir features_uni_v1'):
        SlideDataset(root, layout='h5')
    with pytest.raises(MissingFileError, match='there is no folder .*feats'):
        SlideDataset(root, features_dir='feats', layout='h5')
    assert len(SlideDataset(root, features_dir='features_uni_v1')) == 8
