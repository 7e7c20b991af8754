r"""Pathologists' lesion outlines, as the tools that draw them write them,
and the share of each patch they cover.

One reader per format, chosen by the file's extension
(``<slide_id>.<ext>`` in an annotation folder):

- QuPath GeoJSON (``.geojson``, ``.json``): a ``FeatureCollection``, a bare
  list of Features or one Feature; ``Polygon`` or ``MultiPolygon``
  geometries in level-0 pixels (holes are holes); the class is
  ``properties.classification.name``.
- ASAP XML (``.xml``), as CAMELYON16 and CAMELYON17 ship it:
  ``ASAP_Annotations/Annotations/Annotation[@PartOfGroup]/Coordinates/
  Coordinate[@Order, @X, @Y]``.
- Binary masks (``<slide_id>_mask.tif``, ``.tiff`` or ``.png``, as
  CAMELYON16's training masks ship): non-zero pixels are lesion; the scale
  follows from the mask's size against the slide's.

The groups or classes ``_2`` (CAMELYON16) and ``Exclusion`` (any case) are
exclusions: regions inside a lesion that are not lesion. Every other class
is a lesion unless ``lesion_classes`` names the ones that are. Geometry is
shapely's."""
import dataclasses
import json
import math
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.errors import PygSmError, SlideError

#: Classes and groups that mark non-lesion inside a lesion (casefolded).
EXCLUSION_CLASSES = ('_2', 'exclusion')
# Patches that cross an outline are intersected by tiles of this many
# patch sides: the outline is clipped once per tile.
_TILE_PATCHES = 16
#: Readers by file extension, in the order an annotation folder is searched.
ANNOTATION_EXTENSIONS = ('.geojson', '.json', '.xml')
#: Binary masks (CAMELYON16's training masks): ``<slide_id>_mask.<ext>``,
#: non-zero pixels are lesion.
MASK_SUFFIX = '_mask'
MASK_EXTENSIONS = ('.tif', '.tiff', '.png')
#: Masks are read at the first pyramid level at most this wide or high.
MASK_MAX_SIDE = 8192


@dataclasses.dataclass
class SlideAnnotations:
    r"""The outlines of one slide, by class, in level-0 pixels.

    Attributes:
        slide_id (str): The slide.
        path (Path): The file they were read from.
        regions (dict): Class (or ASAP group) name to a shapely geometry,
            the union of that class's polygons.
    """
    slide_id: str
    path: Path
    regions: Dict[str, object]

    @property
    def classes(self) -> List[str]:
        return sorted(self.regions)

    def lesion(self, lesion_classes: Optional[Sequence[str]] = None):
        r"""The lesion area: the union of the lesion classes
        (:obj:`lesion_classes`, else every class that is not an exclusion)
        minus the exclusions."""
        import shapely

        lesions = [g for name, g in self.regions.items()
                   if (name in lesion_classes if lesion_classes is not None
                       else name.casefold() not in EXCLUSION_CLASSES)]
        exclusions = [g for name, g in self.regions.items()
                      if name.casefold() in EXCLUSION_CLASSES]
        area = shapely.union_all(lesions) if lesions else \
            shapely.Polygon()
        if exclusions:
            area = area.difference(shapely.union_all(exclusions))
        return area


def find_annotation_file(folder: Path, slide_id: str) -> Optional[Path]:
    r"""``<slide_id>.<ext>`` in :obj:`folder` for the first extension of
    :data:`ANNOTATION_EXTENSIONS` that exists, else a binary mask
    ``<slide_id>_mask.<ext>`` (:data:`MASK_EXTENSIONS`), else
    :obj:`None`."""
    for extension in ANNOTATION_EXTENSIONS:
        path = Path(folder) / f'{slide_id}{extension}'
        if path.is_file():
            return path
    for extension in MASK_EXTENSIONS:
        path = Path(folder) / f'{slide_id}{MASK_SUFFIX}{extension}'
        if path.is_file():
            return path
    return None


def read_annotations(path: Path, slide_id: str,
                     slide_dimensions: Optional[Sequence[int]] = None
                     ) -> SlideAnnotations:
    r"""Reads one slide's annotation file by its extension; errors name the
    slide and the file. A binary mask needs :obj:`slide_dimensions` (the
    slide's level-0 width and height) for its scale."""
    path = Path(path)
    if path.stem.endswith(MASK_SUFFIX) and \
            path.suffix.lower() in MASK_EXTENSIONS:
        return SlideAnnotations(slide_id, path, {'Lesion': _read_mask(
            path, slide_id, slide_dimensions)})
    reader = {'.geojson': _read_geojson, '.json': _read_geojson,
              '.xml': _read_asap_xml}.get(path.suffix.lower())
    if reader is None:
        raise SlideError(slide_id, path, f"annotations must be "
                         f"{', '.join(ANNOTATION_EXTENSIONS)} or a mask "
                         f"<slide_id>{MASK_SUFFIX}"
                         f"{'/'.join(MASK_EXTENSIONS)}")
    polygons = reader(path, slide_id)
    return SlideAnnotations(slide_id, path,
                            _union_by_class(polygons, slide_id, path))


def _mask_pixels(path: Path, slide_id: str) -> np.ndarray:
    r"""The mask as a boolean array (rows, columns): through OpenSlide at
    the first level of at most :data:`MASK_MAX_SIDE` pixels on its longer
    side (CAMELYON16's masks are pyramidal TIFFs of the slide's size), else
    through PIL."""
    try:
        import openslide
        slide = openslide.OpenSlide(str(path))
    except Exception:  # not a format OpenSlide reads, or no OpenSlide
        slide = None
    try:
        if slide is not None:
            level = next((k for k, (w, h) in enumerate(slide.level_dimensions)
                          if max(w, h) <= MASK_MAX_SIDE),
                         slide.level_count - 1)
            image = slide.read_region((0, 0), level,
                                      slide.level_dimensions[level])
            return np.asarray(image.convert('L')) > 0
        from PIL import Image
        with Image.open(path) as image:
            return np.asarray(image.convert('L')) > 0
    except Exception as error:
        raise SlideError(slide_id, path, f"not a readable mask image "
                         f"({error})") from None
    finally:
        if slide is not None:
            slide.close()


def _read_mask(path: Path, slide_id: str,
               slide_dimensions: Optional[Sequence[int]]):
    r"""A binary mask as a shapely geometry in level-0 pixels: the union of
    the runs of lesion pixels of each row, scaled by the downsample that
    the mask's size gives against the slide's."""
    import shapely

    if slide_dimensions is None:
        raise SlideError(slide_id, path, "a mask needs the slide's image "
                         "(--slides-dir) for its scale")
    mask = _mask_pixels(path, slide_id)
    rows, columns = mask.shape
    width, height = (float(v) for v in slide_dimensions)
    down_x, down_y = width / columns, height / rows
    if abs(down_x / down_y - 1) > 0.02:
        raise SlideError(slide_id, path, f"a mask of {columns}x{rows} "
                         f"pixels matches no level of the slide "
                         f"({int(width)}x{int(height)}): downsamples "
                         f"{down_x:.2f} and {down_y:.2f} differ")
    padded = np.zeros((rows, columns + 2), bool)
    padded[:, 1:-1] = mask
    edges = np.diff(padded.astype(np.int8), axis=1)
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)
    if not len(starts_r):
        return shapely.Polygon()
    return shapely.union_all(shapely.box(
        starts_c * down_x, starts_r * down_y, ends_c * down_x,
        (starts_r + 1) * down_y))


def _read_geojson(path: Path, slide_id: str) -> List[Tuple[str, object]]:
    import shapely.geometry

    try:
        content = json.loads(path.read_text(encoding='utf-8-sig'))
    except (OSError, ValueError) as error:
        raise SlideError(slide_id, path, f"not readable JSON ({error})") \
            from None
    if isinstance(content, dict) and content.get('type') == \
            'FeatureCollection':
        features = content.get('features') or []
    elif isinstance(content, list):
        features = content
    elif isinstance(content, dict) and content.get('type') == 'Feature':
        features = [content]
    else:
        raise SlideError(slide_id, path, "GeoJSON must be a "
                         "FeatureCollection, a list of Features or a "
                         "Feature")
    polygons = []
    for number, feature in enumerate(features):
        geometry = (feature or {}).get('geometry') or {}
        kind = geometry.get('type')
        if kind not in ('Polygon', 'MultiPolygon'):
            raise SlideError(slide_id, path, f"feature {number}: geometry "
                             f"{kind!r} is not a Polygon or MultiPolygon")
        try:
            shape = shapely.geometry.shape(geometry)
        except Exception as error:
            raise SlideError(slide_id, path, f"feature {number}: "
                             f"{error}") from None
        properties = feature.get('properties') or {}
        classification = properties.get('classification') or {}
        name = classification.get('name') if isinstance(
            classification, dict) else None
        polygons.append((str(name or 'Lesion'), shape))
    return polygons


def _read_asap_xml(path: Path, slide_id: str) -> List[Tuple[str, object]]:
    import shapely

    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise SlideError(slide_id, path, f"not readable XML ({error})") \
            from None
    polygons = []
    for number, annotation in enumerate(root.iter('Annotation')):
        group = annotation.get('PartOfGroup') or 'None'
        points = []
        for coordinate in annotation.iter('Coordinate'):
            try:
                points.append((float(coordinate.get('Order', len(points))),
                               float(coordinate.get('X')),
                               float(coordinate.get('Y'))))
            except (TypeError, ValueError):
                raise SlideError(slide_id, path, f"annotation {number}: a "
                                 f"Coordinate without numeric X and "
                                 f"Y") from None
        if len(points) < 3:
            raise SlideError(slide_id, path, f"annotation {number} "
                             f"({annotation.get('Name')}): "
                             f"{len(points)} coordinates are not a polygon")
        points.sort()
        polygons.append((group, shapely.Polygon([p[1:] for p in points])))
    return polygons


def _union_by_class(polygons, slide_id: str, path: Path) -> Dict[str, object]:
    import shapely

    by_class: Dict[str, list] = {}
    for name, shape in polygons:
        coordinates = shapely.get_coordinates(shape)
        if not np.isfinite(coordinates).all():
            raise SlideError(slide_id, path, f"class {name!r}: coordinates "
                             f"that are not finite")
        if not shape.is_valid:
            reason = shapely.is_valid_reason(shape)
            warnings.warn(f"slide '{slide_id}' ({path}): an invalid polygon "
                          f"of class {name!r} ({reason}) is repaired "
                          f"(make_valid)", UserWarning, stacklevel=4)
            shape = shapely.make_valid(shape)
            shape = shapely.union_all([g for g in shapely.get_parts(shape)
                                       if g.geom_type in ('Polygon',
                                                          'MultiPolygon')])
        by_class.setdefault(name, []).append(shape)
    return {name: shapely.union_all(shapes)
            for name, shapes in by_class.items()}


def patch_coverage(coords, patch_size: float, area) -> np.ndarray:
    r"""The fraction of each patch that lies inside :obj:`area` (a shapely
    geometry): patches are the squares :math:`[x, x + s) \times [y, y + s)`
    of their top-left corners :obj:`coords` :math:`(N, 2)` and side
    :obj:`patch_size` :math:`s`, in level-0 pixels. Returns :math:`(N,)`
    in :math:`[0, 1]`.

    Patches wholly inside count 1 without any overlay; only those that
    cross the outline are intersected, each with the parts of the area
    near it."""
    import shapely

    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    coverage = np.zeros(len(coords))
    if area.is_empty or not len(coords):
        return coverage
    side = float(patch_size)
    boxes = shapely.box(coords[:, 0], coords[:, 1], coords[:, 0] + side,
                        coords[:, 1] + side)
    tree = shapely.STRtree(boxes)
    tile = side * _TILE_PATCHES
    for part in shapely.get_parts(area):
        shapely.prepare(part)
        touching = tree.query(part, predicate='intersects')
        if not len(touching):
            continue
        inside = shapely.contains_properly(part, boxes[touching])
        coverage[touching[inside]] += 1.0
        crossing = touching[~inside]
        # The patches that cross the outline, by tile: the outline is
        # clipped to each tile once, and the tile's patches are intersected
        # with that small piece, not with the whole outline.
        keys = np.floor(coords[crossing] / tile).astype(np.int64)
        for key in np.unique(keys, axis=0):
            group = crossing[(keys == key).all(1)]
            low = coords[group].min(0)
            high = coords[group].max(0) + side
            piece = shapely.clip_by_rect(part, low[0], low[1], high[0],
                                         high[1])
            coverage[group] += shapely.area(
                shapely.intersection(boxes[group], piece)) / side**2
    return np.clip(coverage, 0.0, 1.0)


def longest_diameter(polygon) -> float:
    r"""The largest distance between two points of :obj:`polygon` (between
    two vertices of its convex hull)."""
    import shapely

    hull = shapely.get_coordinates(polygon.convex_hull)
    if len(hull) < 2:
        return 0.0
    differences = hull[:, None, :] - hull[None, :, :]
    return float(math.sqrt((differences**2).sum(-1).max()))


def check_lesion_classes(requested: Optional[Sequence[str]],
                         found: Sequence[str]) -> None:
    r"""Every class :obj:`requested` (``--annotation-classes``) must occur
    in the annotations read."""
    if requested is None:
        return
    unknown = sorted(set(requested) - set(found))
    if unknown:
        raise PygSmError(f"--annotation-classes names {unknown}, which no "
                         f"annotation holds (found: {sorted(set(found))})")
