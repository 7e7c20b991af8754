"""Annotation files as QuPath and ASAP write them, and patch coverage
against a brute-force raster count."""
import json

import numpy as np
import pytest
import shapely

from pyg_sm import SlideError
from pyg_sm.datasets.annotations import (
    AnnotationClasses,
    AnnotationFolder,
    find_annotation_file,
    patch_coverage,
    read_annotations,
)
from pyg_sm.train.localization import froc
from tests.field_files import blob, camelyon16_outlines, write_asap_xml

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
    found = {'Tumor': ['s1'], 'Stroma': ['s1']}
    with pytest.raises(ValueError, match=r"names \['Tumour'\]"):
        AnnotationClasses(['Tumour']).check(found)
    with pytest.raises(ValueError, match="did you mean 'Tumor' for "
                                         "'tumor'"):
        AnnotationClasses(['tumor']).check(found)
    assert AnnotationClasses(['Tumor']).check(found) == []


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


# CAMELYON16's re-annotated release: metastasis and negative groups --------

def _reference_area(path):
    """An independent parse of an ASAP XML (ElementTree): the union of the
    metastasis outlines minus the union of the negative ones."""
    import xml.etree.ElementTree as ElementTree

    groups = {}
    for annotation in ElementTree.parse(path).getroot().iter('Annotation'):
        rows = sorted((int(c.get('Order')), float(c.get('X')),
                       float(c.get('Y')))
                      for c in annotation.iter('Coordinate'))
        groups.setdefault(annotation.get('PartOfGroup'), []).append(
            shapely.Polygon([r[1:] for r in rows]))
    return shapely.union_all(groups['metastasis']).difference(
        shapely.union_all(groups['negative']))


def _grid(area, side):
    low, high = np.floor(np.asarray(area.bounds[:2]) / side) - 1, \
        np.ceil(np.asarray(area.bounds[2:]) / side) + 1
    xs, ys = np.meshgrid(np.arange(low[0], high[0]) * side,
                         np.arange(low[1], high[1]) * side)
    return np.stack([xs.ravel(), ys.ravel()], 1)


@pytest.fixture(scope='module')
def camelyon16_slide(tmp_path_factory):
    """tumor_XXX.xml with 4 metastasis and 144 negative outlines (all inside
    the metastases, about 5% of their area), Polygon and Spline mixed."""
    rng = np.random.default_rng(16)
    outlines = camelyon16_outlines(rng)
    path = write_asap_xml(tmp_path_factory.mktemp('c16') / 'tumor_016.xml',
                          outlines)
    return path, outlines


def test_camelyon16_negative_groups_are_subtracted(camelyon16_slide):
    """Coverage of 128-px patches against an independent reference (shapely
    union and difference of an ElementTree parse, exact areas) within
    1e-3; counting the negatives as lesion, as pyg-sm did, is off by up to
    1.0."""
    path, outlines = camelyon16_slide
    assert sum(g == 'negative' for g, _, _ in outlines) == 144
    read = read_annotations(path, 'tumor_016')
    assert read.classes == ['metastasis', 'negative']
    area = read.lesion()
    reference = _reference_area(path)
    metastases = shapely.union_all([shapely.Polygon(p) for g, _, p in
                                    outlines if g == 'metastasis'])
    share = 1 - reference.area / metastases.area
    assert 0.04 < share < 0.06
    assert area.symmetric_difference(reference).area < 1e-6 * area.area
    side = 128.0
    coords = _grid(metastases, side)
    boxes = shapely.box(coords[:, 0], coords[:, 1], coords[:, 0] + side,
                        coords[:, 1] + side)
    expected = shapely.area(shapely.intersection(boxes, reference)) / side**2
    coverage = patch_coverage(coords, side, area)
    assert np.abs(coverage - expected).max() < 1e-3
    filled = patch_coverage(coords, side, metastases)  # negatives as lesion
    assert np.abs(filled - expected).max() > 0.99
    assert ((filled >= 0.5) != (coverage >= 0.5)).sum() > 50


def test_camelyon16_froc_counts_detections_in_negative_regions_as_false_positives(  # noqa: E501
        tmp_path):
    """A negative region wider than the 75 um dilation: the detection at its
    centre is a false positive (a hit when the region is read as
    lesion)."""
    rng = np.random.default_rng(5)
    centre = np.array([8000.0, 8000.0])
    path = write_asap_xml(tmp_path / 'tumor_002.xml', [
        ('metastasis', 'Polygon', blob(centre, 3000, rng, wobble=0.05)),
        ('negative', 'Spline', blob(centre, 1200, rng, wobble=0.05))])
    side, mpp = 256.0, 0.243
    area = read_annotations(path, 'tumor_002').lesion()
    coords = _grid(area, side)
    attention = np.zeros(len(coords))
    top = np.argmin(((coords + side / 2 - centre)**2).sum(1))
    attention[top] = 10.0

    def result(lesion_area):
        return froc([{'coords': coords, 'attention': attention,
                      'probability': 1.0, 'patch_size': side,
                      'lesion_area': lesion_area, 'mpp': mpp}], mpp=mpp)
    right = result(area)
    filled = result(read_annotations(path, 'tumor_002').lesion(
        ['metastasis', 'negative']))  # the negative region read as lesion
    # The top detection: a false positive at the highest threshold, not a
    # hit.
    assert right['curve']['fps_per_slide'][0] == 1
    assert right['curve']['sensitivity'][0] == 0
    assert filled['curve']['fps_per_slide'][0] == 0
    assert filled['curve']['sensitivity'][0] == 1


@pytest.mark.parametrize('attribute', ['PartofGroup', 'partOfGroup'])
def test_an_asap_attribute_in_another_case_is_an_error(tmp_path, attribute):
    rng = np.random.default_rng(0)
    path = write_asap_xml(tmp_path / 'tumor_001.xml',
                          camelyon16_outlines(rng, 1, 2),
                          group_attribute=attribute)
    with pytest.raises(SlideError, match=f"line 4: <Annotation> has the "
                                         f"attribute '{attribute}'; ASAP "
                                         f"writes 'PartOfGroup'"):
        read_annotations(path, 'tumor_001')


def test_an_annotation_without_a_group_is_an_error(tmp_path):
    path = tmp_path / 'a.xml'
    path.write_text('<?xml version="1.0"?>\n<ASAP_Annotations>\n'
                    '<Annotations>\n<Annotation Name="A" Type="Polygon">\n'
                    '<Coordinates><Coordinate Order="0" X="0" Y="0"/>'
                    '<Coordinate Order="1" X="9" Y="0"/><Coordinate '
                    'Order="2" X="9" Y="9"/></Coordinates></Annotation>\n'
                    '</Annotations></ASAP_Annotations>\n')
    with pytest.raises(SlideError, match='line 4: <Annotation Name="A"> has '
                                         'no PartOfGroup attribute'):
        read_annotations(path, 'a')


def test_ungrouped_outlines_need_a_class_and_dots_are_left_out(tmp_path):
    """ASAP writes PartOfGroup="None" for an outline in no group: read as
    lesion only when named. A Dot marks no area: left out, with a
    warning."""
    rng = np.random.default_rng(1)
    outlines = [('None', 'Polygon', blob) for _, _, blob in
                camelyon16_outlines(rng, 1, 0)]
    outlines.append(('None', 'Dot', np.array([[5.0, 5.0]])))
    path = write_asap_xml(tmp_path / 'b.xml', outlines, groups='')
    with pytest.warns(UserWarning, match="'Annotation 1' .Dot. marks "
                                         "points"):
        read = read_annotations(path, 'b')
    with pytest.raises(ValueError, match='no group .PartOfGroup="None"'):
        AnnotationClasses().check({c: ['b'] for c in read.classes})
    AnnotationClasses(['None']).check({c: ['b'] for c in read.classes})
    assert read.lesion(['None']).area > 0


def test_exclusions_by_default_and_by_name(tmp_path):
    """_2, Exclusion, negative and QuPath's Ignore* are subtracted; others
    with --exclusion-classes; a file of several lesion classes warns,
    naming them."""
    big = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]

    def square(x, y, s):
        return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
    content = {'type': 'FeatureCollection', 'features': [
        feature([big], name='Tumor'),
        feature([square(10, 10, 10)], name='Ignore*'),
        feature([square(30, 30, 10)], name='Necrosis'),
        feature([square(50, 50, 10)], name='negative')]}
    (tmp_path / 's.geojson').write_text(json.dumps(content))
    folder = AnnotationFolder(tmp_path)
    found = {c: ['s'] for c in folder.read('s').classes}
    assert folder.lesion('s').area == pytest.approx(10000 - 200)
    notes = folder.classes.check(found)
    assert len(notes) == 1 and "['Necrosis', 'Tumor']" in notes[0]
    named = AnnotationFolder(tmp_path, AnnotationClasses(
        exclusion=['necrosis']))
    assert named.lesion('s').area == pytest.approx(10000 - 300)
    assert named.classes.check(found) == []
    assert named.classes.split(found) == (['Tumor'], ['Ignore*', 'Necrosis',
                                                      'negative'])
    with pytest.raises(ValueError, match='both lesion'):
        AnnotationClasses(['Tumor'], ['Tumor'])


def test_unmatched_annotation_files_and_their_likely_slides(tmp_path):
    for name in ('Slide_025.geojson', 'slide_026.tif.geojson',
                 'c16_slide_027.xml', 'other.xml', 'notes.txt'):
        (tmp_path / name).write_text('{}')
    folder = AnnotationFolder(tmp_path)
    ids = ['slide_025', 'slide_026', 'slide_027']
    assert [p.name for p in folder.unmatched(ids)] == [
        'Slide_025.geojson', 'c16_slide_027.xml', 'other.xml',
        'slide_026.tif.geojson']
    assert folder.hints(ids) == ["'Slide_025.geojson' for 'slide_025'",
                                 "'c16_slide_027.xml' for 'slide_027'",
                                 "'slide_026.tif.geojson' for 'slide_026'"]
