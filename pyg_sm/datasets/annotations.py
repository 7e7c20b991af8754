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

The groups or classes ``_2`` (CAMELYON16's 2016 release), ``negative``
(its re-annotated release, whose lesions are ``metastasis``), ``Exclusion``
and QuPath's ``Ignore*`` (any case) are exclusions: regions inside a lesion
that are not lesion, subtracted from it. Every other class is a lesion
unless ``lesion_classes`` names the ones that are
(:class:`AnnotationClasses`). ASAP's ``Spline`` annotations are read as the
polygon of their points, as CAMELYON16's evaluation and most tools read
them; ``Dot`` and ``PointSet`` annotations mark no area and are left out.
Geometry is shapely's."""
import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..utils.errors import MissingFileError, PygSmError, SlideError

#: Classes and groups that mark non-lesion inside a lesion (casefolded):
#: CAMELYON16's ``_2`` (2016) and ``negative`` (re-annotated release).
EXCLUSION_CLASSES = ('_2', 'exclusion', 'negative')
#: QuPath's classes that start with this (casefolded) are exclusions too.
EXCLUSION_PREFIX = 'ignore'
#: The group ASAP writes for an annotation in no group.
ASAP_NO_GROUP = 'None'
#: ASAP annotation types that outline an area; a spline is read as the
#: polygon of its points.
ASAP_AREA_TYPES = ('polygon', 'spline', 'rectangle')
#: ASAP annotation types that mark points, not areas: left out.
ASAP_POINT_TYPES = ('dot', 'pointset')
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


@dataclasses.dataclass(frozen=True)
class AnnotationClasses:
    r"""Which annotation classes (QuPath) or groups (ASAP) are lesion and
    which are exclusions, subtracted from the lesions.

    Args:
        lesion (sequence of str, optional): The lesion classes, as written
            (``--annotation-classes``). (default: :obj:`None`: every class
            that is not an exclusion)
        exclusion (sequence of str, optional): Exclusion classes besides
            :data:`EXCLUSION_CLASSES` and QuPath's ``Ignore*``, in any case
            (``--exclusion-classes``). (default: none)
    """
    lesion: Optional[Tuple[str, ...]] = None
    exclusion: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.lesion is not None:
            object.__setattr__(self, 'lesion', tuple(self.lesion))
        object.__setattr__(self, 'exclusion', tuple(self.exclusion or ()))
        named = sorted(set(self.lesion or ()) & set(self.exclusion))
        if named:
            raise PygSmError(f"classes {named} are named both lesion "
                             f"(--annotation-classes) and exclusion "
                             f"(--exclusion-classes)")

    def _excluded(self, name: str) -> bool:
        folded = name.casefold()
        return folded in EXCLUSION_CLASSES or \
            folded.startswith(EXCLUSION_PREFIX) or \
            any(folded == e.casefold() for e in self.exclusion)

    def is_exclusion(self, name: str) -> bool:
        r"""Whether class :obj:`name` is subtracted from the lesions (a
        default exclusion named a lesion class is a lesion)."""
        return not (self.lesion is not None and name in self.lesion) and \
            self._excluded(name)

    def is_lesion(self, name: str) -> bool:
        if self.lesion is not None:
            return name in self.lesion
        return not self._excluded(name)

    def check(self, found: Dict[str, List[str]]) -> List[str]:
        r"""Checks the classes :obj:`found` in a cohort's files (class name
        to the slides whose files hold it) against these: every lesion
        class named must occur (else the error lists those found), and no
        ASAP annotation in no group may be read as lesion unless named.
        Returns the warnings to print: a file with more than one lesion
        class while none was named."""
        if self.lesion is not None:
            unknown = sorted(set(self.lesion) - set(found))
            if unknown:
                by_case = {name.casefold(): name for name in found}
                hints = [f"'{by_case[u.casefold()]}' for '{u}'" for u in
                         unknown if u.casefold() in by_case]
                raise PygSmError(
                    f"--annotation-classes names {unknown}, which no "
                    f"annotation holds (found: {sorted(found)})" + (
                        f"; did you mean {', '.join(hints)}" if hints
                        else ''))
        ungrouped = found.get(ASAP_NO_GROUP)
        if ungrouped and self.is_lesion(ASAP_NO_GROUP) and \
                self.lesion is None:
            raise PygSmError(
                f"{len(ungrouped)} annotation file(s) hold outlines in no "
                f"group (PartOfGroup=\"None\"), e.g. "
                f"{', '.join(ungrouped[:3])}: name the lesion groups with "
                f"--annotation-classes (--annotation-classes None reads "
                f"the ungrouped outlines as lesion)")
        if self.lesion is not None:
            return []
        lesions_by_slide: Dict[str, List[str]] = {}
        for name, slides in found.items():
            if self.is_lesion(name):
                for slide_id in slides:
                    lesions_by_slide.setdefault(slide_id, []).append(name)
        mixed = sorted(s for s, names in lesions_by_slide.items()
                       if len(names) > 1)
        if not mixed:
            return []
        names = sorted({n for s in mixed for n in lesions_by_slide[s]})
        return [f"warning: {len(mixed)} annotation file(s) hold more than "
                f"one class, all read as lesion: {names} (e.g. "
                f"{', '.join(mixed[:3])}); --annotation-classes names the "
                f"lesion classes, --exclusion-classes the ones to "
                f"subtract"]

    def split(self, names: Sequence[str]) -> Tuple[List[str], List[str]]:
        r""":obj:`names` as (lesion classes, exclusion classes); the others
        are neither."""
        return ([n for n in sorted(names) if self.is_lesion(n)],
                [n for n in sorted(names) if self.is_exclusion(n)])


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

    def lesion(self, classes: Union[AnnotationClasses, Sequence[str],
                                    None] = None):
        r"""The lesion area: the union of the lesion classes of
        :obj:`classes` (an :class:`AnnotationClasses`, or the lesion
        classes' names; by default every class that is not an exclusion)
        minus the exclusions."""
        import shapely

        if not isinstance(classes, AnnotationClasses):
            classes = AnnotationClasses(lesion=classes)
        lesions = [g for name, g in self.regions.items()
                   if classes.is_lesion(name)]
        exclusions = [g for name, g in self.regions.items()
                      if classes.is_exclusion(name)]
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


def _attribute(attributes: Dict[str, str], name: str, element: str,
               line: int, slide_id: str, path: Path) -> Optional[str]:
    r"""An XML attribute as ASAP spells it; one spelt in another case
    (``PartofGroup``) is an error naming it and the line, not a silent
    miss."""
    if name in attributes:
        return attributes[name]
    for other in attributes:
        if other.casefold() == name.casefold():
            raise SlideError(slide_id, path, f"line {line}: <{element}> has "
                             f"the attribute '{other}'; ASAP writes "
                             f"'{name}'")
    return None


def _asap_annotations(path: Path, slide_id: str) -> List[Dict]:
    r"""The ``Annotation`` elements of an ASAP XML with their line, group,
    type, name and coordinates (``(order, x, y)``), read with expat for
    the line numbers."""
    from xml.parsers import expat

    annotations: List[Dict] = []
    current: List[Optional[Dict]] = [None]
    parser = expat.ParserCreate()

    def start(element, attributes):
        line = parser.CurrentLineNumber
        if element == 'Annotation':
            group = _attribute(attributes, 'PartOfGroup', element, line,
                               slide_id, path)
            if group is None:
                raise SlideError(slide_id, path, f"line {line}: <Annotation "
                                 f"Name=\"{attributes.get('Name', '')}\"> "
                                 f"has no PartOfGroup attribute: its "
                                 f"class is unknown")
            current[0] = {'line': line, 'group': group,
                          'name': attributes.get('Name', ''),
                          'type': _attribute(attributes, 'Type', element,
                                             line, slide_id, path)
                          or 'Polygon', 'points': []}
            annotations.append(current[0])
        elif element == 'Coordinate' and current[0] is not None:
            values = [_attribute(attributes, name, element, line, slide_id,
                                 path) for name in ('Order', 'X', 'Y')]
            points = current[0]['points']
            try:
                points.append((float(values[0]) if values[0] is not None
                               else float(len(points)),
                               float(values[1]), float(values[2])))
            except (TypeError, ValueError):
                raise SlideError(slide_id, path, f"line {line}: a Coordinate "
                                 f"without numeric X and Y") from None

    def end(element):
        if element == 'Annotation':
            current[0] = None

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
    except (OSError, expat.ExpatError) as error:
        raise SlideError(slide_id, path, f"not readable XML ({error})") \
            from None
    return annotations


def _read_asap_xml(path: Path, slide_id: str) -> List[Tuple[str, object]]:
    import shapely

    polygons = []
    for annotation in _asap_annotations(path, slide_id):
        kind, points = annotation['type'], annotation['points']
        where = (f"line {annotation['line']}: annotation "
                 f"'{annotation['name']}' ({kind})")
        if kind.casefold() in ASAP_POINT_TYPES:
            warnings.warn(f"slide '{slide_id}' ({path}): {where} marks "
                          f"points, not an area: left out", UserWarning,
                          stacklevel=4)
            continue
        if kind.casefold() not in ASAP_AREA_TYPES:
            raise SlideError(slide_id, path, f"{where}: the type must be one "
                             f"of Polygon, Spline, Rectangle, Dot, PointSet")
        if len(points) < 3:
            raise SlideError(slide_id, path, f"{where}: {len(points)} "
                             f"coordinates are not a polygon")
        points.sort()
        polygons.append((annotation['group'],
                         shapely.Polygon([p[1:] for p in points])))
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


def _annotation_stem(path: Path) -> Optional[str]:
    r"""The slide id an annotation file would be for (its name without the
    extension, or without ``_mask.<ext>``), :obj:`None` for other files."""
    name = path.name
    for extension in ANNOTATION_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[:-len(extension)]
    for extension in MASK_EXTENSIONS:
        if name.lower().endswith(MASK_SUFFIX + extension):
            return name[:-len(MASK_SUFFIX + extension)]
    return None


def _near(stem: str, slide_id: str) -> bool:
    r"""Whether an annotation file named :obj:`stem` likely meant
    :obj:`slide_id`: equal in another case, with a slide extension left in
    (``a.tif.xml``), or one a prefix or suffix of the other."""
    from .slide_images import SLIDE_EXTENSIONS

    a, b = stem.casefold(), slide_id.casefold()
    for extension in SLIDE_EXTENSIONS:
        if a.endswith(extension):
            a = a[:-len(extension)]
    return a == b or (min(len(a), len(b)) >= 3 and (
        a.endswith(b) or b.endswith(a) or a.startswith(b) or
        b.startswith(a)))


class AnnotationFolder:
    r"""A folder of annotation files, ``<slide_id>.<ext>`` (see the
    module's docstring), and the classes that are lesion in them.

    Each file is read once (:meth:`read`). :meth:`unmatched` and
    :meth:`hints` tell which files name no slide, and which slide they
    likely meant.

    Args:
        folder (str or Path): The folder.
        classes (AnnotationClasses, optional): The lesion and exclusion
            classes. (default: every class but the exclusions)
    """
    def __init__(self, folder: Union[str, Path],
                 classes: Optional[AnnotationClasses] = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MissingFileError(f"no annotation folder {self.folder}")
        self.classes = classes or AnnotationClasses()
        self._read: Dict[str, SlideAnnotations] = {}

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.folder)!r})'

    def file(self, slide_id: str) -> Optional[Path]:
        r"""The slide's annotation file, :obj:`None` without one."""
        return find_annotation_file(self.folder, slide_id)

    def read(self, slide_id: str, dimensions: Optional[Sequence[int]] = None
             ) -> Optional[SlideAnnotations]:
        r"""The slide's outlines (:obj:`dimensions`, the slide's level-0
        size, scale a mask), :obj:`None` without a file."""
        if slide_id not in self._read:
            path = self.file(slide_id)
            if path is None:
                return None
            self._read[slide_id] = read_annotations(path, slide_id,
                                                    dimensions)
        return self._read[slide_id]

    def lesion(self, slide_id: str,
               dimensions: Optional[Sequence[int]] = None):
        r"""The slide's lesion area (exclusions subtracted), :obj:`None`
        without a file."""
        read = self.read(slide_id, dimensions)
        return None if read is None else read.lesion(self.classes)

    def unmatched(self, slide_ids: Sequence[str]) -> List[Path]:
        r"""The annotation files of the folder that name none of
        :obj:`slide_ids`."""
        known = set(slide_ids)
        stems = {p: _annotation_stem(p) for p in self.folder.iterdir()}
        return sorted(p for p, stem in stems.items()
                      if stem is not None and stem not in known)

    def hints(self, slide_ids: Sequence[str], count: int = 3) -> List[str]:
        r"""``'<file>' for '<slide>'`` for the unmatched files that likely
        meant a slide of :obj:`slide_ids` (case, a slide extension left in
        the name, a prefix or suffix)."""
        hints = []
        for path in self.unmatched(slide_ids):
            stem = _annotation_stem(path)
            meant = next((s for s in slide_ids if _near(stem, s)), None)
            if meant is not None:
                hints.append(f"'{path.name}' for '{meant}'")
            if len(hints) == count:
                break
        return hints
