"""Annotation files as QuPath and ASAP write them, and patch coverage
against a brute-force raster count."""
import json

import numpy as np
import pytest
import shapely

from pyg_sm import SlideError
from pyg_sm.datasets.annotations import (check_lesion_classes,
                                         find_annotation_file,
                                         patch_coverage, read_annotations)

SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]
HOLE = [[40, 40], [60, 40], [60, 60], [40, 60], [40, 40]]


def feature(coordinates, kind='Polygon', name='Tumor'):
    return {'type': 'Feature', 'geometry': {'type': kind,
                                            'coordinates': coordinates},
            'properties': {'classification': {'name': name}}}


@pytest.mark.parametrize('wrap', ['collection', 'list', 'feature'])
def test_qupath_geojson_forms_classes_and_holes(tmp_path, wrap):
    features = [feature([SQUARE, HOLE])]
    if wrap != 'feature':
        features.append(feature([[[[200, 0], [300, 0], [300, 50],
                                   [200, 0]]]], 'MultiPolygon', 'Other'))
    content = {'collection': {'type': 'FeatureCollection',
                              'features': features},
               'list': features, 'feature': features[0]}[wrap]
    path = tmp_path / 's1.geojson'
    path.write_text(json.dumps(content))
    assert find_annotation_file(tmp_path, 's1') == path
    annotations = read_annotations(path, 's1')
    area = annotations.lesion(['Tumor'])
    assert area.area == pytest.approx(100 * 100 - 20 * 20)
    if wrap != 'feature':
        assert annotations.classes == ['Other', 'Tumor']
        assert annotations.lesion().area == pytest.approx(9600 + 2500)


def test_camelyon16_xml_with_exclusions(tmp_path):
    def annotation(group, points):
        rows = ''.join(f'<Coordinate Order="{k}" X="{x}" Y="{y}"/>'
                       for k, (x, y) in enumerate(points))
        return (f'<Annotation Name="a" Type="Polygon" PartOfGroup="{group}">'
                f'<Coordinates>{rows}</Coordinates></Annotation>')
    xml = ('<?xml version="1.0"?><ASAP_Annotations><Annotations>'
           + annotation('_0', SQUARE[:4]) + annotation('_1', [
               [200, 0], [260, 0], [260, 60], [200, 60]])
           + annotation('_2', HOLE[:4])
           + '</Annotations></ASAP_Annotations>')
    path = tmp_path / 'tumor_001.xml'
    path.write_text(xml)
    area = read_annotations(path, 'tumor_001').lesion()
    assert area.area == pytest.approx(10000 - 400 + 3600)
    assert not area.contains(shapely.Point(50, 50))  # the exclusion


def test_coverage_against_a_raster_count():
    rng = np.random.default_rng(3)
    side = 16.0
    xs, ys = np.meshgrid(np.arange(30) * side, np.arange(30) * side)
    coords = np.stack([xs.ravel(), ys.ravel()], 1)
    area = shapely.Polygon(
        [(40, 30), (300, 60), (420, 400), (150, 380), (60, 200)],
        [[(150, 150), (250, 170), (220, 260), (160, 240)]]).union(
        shapely.Point(100, 420).buffer(30))
    coverage = patch_coverage(coords, side, area)
    offsets = (np.arange(32) + 0.5) / 32 * side
    for i in rng.choice(len(coords), 150, replace=False):
        gx, gy = np.meshgrid(coords[i, 0] + offsets, coords[i, 1] + offsets)
        raster = shapely.contains_xy(area, gx.ravel(), gy.ravel()).mean()
        assert abs(coverage[i] - raster) < 0.04
    assert coverage.sum() * side**2 == pytest.approx(area.area)


@pytest.mark.parametrize('name, content, words', [
    ('a.geojson', '{not json', 'not readable JSON'),
    ('a.xml', '<ASAP_Annotations><Annotations>', 'not readable XML'),
    ('a.geojson', json.dumps(feature([0, 0], 'Point')),
     "geometry 'Point' is not a Polygon"),
    ('a.geojson', json.dumps(feature([[[0, 0], [1, float('nan')], [1, 1],
                                       [0, 0]]])), 'not finite'),
    ('a.xml', '<ASAP_Annotations><Annotations><Annotation PartOfGroup="_0">'
     '<Coordinates><Coordinate Order="0" X="1" Y="1"/></Coordinates>'
     '</Annotation></Annotations></ASAP_Annotations>', 'not a polygon'),
    ('a.txt', '', 'annotations must be'),
])
def test_bad_annotation_files_name_the_slide_and_the_file(tmp_path, name,
                                                          content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SlideError, match=f"slide 'a' .*{words}"):
        read_annotations(path, 'a')


def test_self_intersecting_polygons_are_repaired_with_a_warning(tmp_path):
    bowtie = [[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]
    path = tmp_path / 'b.geojson'
    path.write_text(json.dumps(feature([bowtie])))
    with pytest.warns(UserWarning, match='repaired'):
        area = read_annotations(path, 'b').lesion()
    assert area.area == pytest.approx(5000)


def test_unknown_lesion_class():
    with pytest.raises(ValueError, match=r"names \['Tumour'\]"):
        check_lesion_classes(['Tumour'], ['Tumor', 'Stroma'])


def test_binary_masks_at_their_downsample(tmp_path):
    """CAMELYON16's training masks: non-zero pixels are lesion, the scale is
    the slide's size over the mask's. Lesion squares on mask pixels give
    the polygons' coverage exactly; a mask of another shape is an error."""
    from PIL import Image

    side, down = 64.0, 16
    xs, ys = np.meshgrid(np.arange(20) * side, np.arange(15) * side)
    coords = np.stack([xs.ravel(), ys.ravel()], 1)
    slide = (20 * 64, 15 * 64)
    mask = np.zeros((slide[1] // down, slide[0] // down), np.uint8)
    mask[8:20, 4:16] = 1      # level-0 (64..256) x (128..320)
    mask[30:40, 50:70] = 255
    mask[34:36, 56:60] = 0    # a hole
    Image.fromarray(mask).save(tmp_path / 's_mask.png')
    path = find_annotation_file(tmp_path, 's')
    assert path.name == 's_mask.png'
    area = read_annotations(path, 's', slide).lesion()
    expected = shapely.union_all([
        shapely.box(64, 128, 256, 320),
        shapely.box(800, 480, 1120, 640).difference(
            shapely.box(896, 544, 960, 576))])
    assert area.symmetric_difference(expected).area == pytest.approx(0)
    np.testing.assert_allclose(patch_coverage(coords, side, area),
                               patch_coverage(coords, side, expected))
    with pytest.raises(SlideError, match="needs the slide's image"):
        read_annotations(path, 's')
    with pytest.raises(SlideError, match='matches no level'):
        read_annotations(path, 's', (slide[0], slide[1] * 2))
    (tmp_path / 't_mask.png').write_bytes(b'not a png')
    with pytest.raises(SlideError, match='not a readable mask'):
        read_annotations(tmp_path / 't_mask.png', 't', slide)


def test_synthetic_outlines_trace_the_patch_labels_holes_included(tmp_path):
    import h5py

    from pyg_sm import make_synthetic_slides

    root = make_synthetic_slides(tmp_path, num_slides=14, feature_dim=4,
                                 slide_images=False)
    holes = 0
    for path in sorted((root / 'annotations').glob('*.geojson')):
        area = read_annotations(path, path.stem).lesion()
        holes += sum(len(p.interiors) for p in shapely.get_parts(area))
        with h5py.File(root / 'features' / f'{path.stem}.h5') as f:
            coords, labels = f['coords'][()], f['patch_labels'][()]
        coverage = patch_coverage(coords, 64, area)
        assert np.array_equal(coverage >= 0.5, labels > 0), path.stem
        assert set(np.unique(coverage)) <= {0.0, 1.0}
    assert holes >= 1
    negatives = {f'slide_{i:03d}' for i in range(0, 14, 2)}
    assert not negatives & {p.stem for p in (root / 'annotations').iterdir()}
