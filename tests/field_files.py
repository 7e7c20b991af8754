"""Files with the structure of those the field ships, written here (no
network): CAMELYON16's re-annotated lesion XMLs and the TCGA survival tables
of Patch-GCN, MCAT, SurvPath and PORPOISE."""
import csv
import math
from pathlib import Path

import numpy as np

#: How ASAP writes one annotation (tabs, Name, Type, PartOfGroup, Color).
_ANNOTATION = ('\t\t<Annotation Name="Annotation {number}" Type="{kind}" '
               'PartOfGroup="{group}" Color="{color}">\n\t\t\t<Coordinates>\n'
               '{rows}\t\t\t</Coordinates>\n\t\t</Annotation>\n')
_COORDINATE = '\t\t\t\t<Coordinate Order="{order}" X="{x:.4f}" Y="{y:.4f}" />\n'
#: The groups section of CAMELYON16's re-annotated XMLs: the Group
#: elements carry a PartOfGroup="None" of their own.
_GROUPS = ('\t<AnnotationGroups>\n'
           '\t\t<Group Name="metastasis" PartOfGroup="None" Color="#ff0000">'
           '\n\t\t\t<Attributes />\n\t\t</Group>\n'
           '\t\t<Group Name="negative" PartOfGroup="None" Color="#64FE2E">'
           '\n\t\t\t<Attributes />\n\t\t</Group>\n\t</AnnotationGroups>\n')


def blob(centre, radius, rng, points=40, wobble=0.25):
    """An irregular star-shaped outline (a tumour's), counter-clockwise."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, points))
    radii = radius * (1 + wobble * rng.uniform(-1, 1, points))
    return np.stack([centre[0] + radii * np.cos(angles),
                     centre[1] + radii * np.sin(angles)], 1)


def camelyon16_outlines(rng, metastases=4, negatives=144,
                        negative_share=0.05, radius=2400.0, origin=4000.0):
    """(group, type, points) of a CAMELYON16-like slide: metastases far
    apart, and negative outlines inside them adding up to about
    :obj:`negative_share` of their area, of varied sizes (some hold whole
    patches). Types mix Polygon and Spline, as the files do."""
    import shapely

    outlines = []
    tumours = []
    for k in range(metastases):
        centre = (origin + (k % 2) * 3 * radius, origin + (k // 2) * 3 *
                  radius)
        points = blob(centre, radius, rng)
        tumours.append(shapely.Polygon(points))
        outlines.append(('metastasis', 'Spline' if k % 2 else 'Polygon',
                         points))
    per = negatives // metastases
    for k, tumour in enumerate(tumours if per else []):
        inner = tumour.buffer(-radius * 0.2)
        target = negative_share * tumour.area / per
        placed = 0
        while placed < per:
            # A 12-point blob fills about 0.55 of its square.
            size = math.sqrt(target / 0.55) * rng.uniform(0.5, 1.4)
            low, high = np.asarray(inner.bounds[:2]), np.asarray(
                inner.bounds[2:])
            centre = rng.uniform(low, high)
            square = shapely.box(*(centre - size / 2), *(centre + size / 2))
            if not inner.contains(square) or any(
                    square.intersects(shapely.Polygon(p))
                    for g, _, p in outlines[metastases:]
                    if g == 'negative'):
                continue
            points = blob(centre, size / 2, rng, points=12, wobble=0.1)
            outlines.append(('negative', 'Spline' if placed % 3 == 0
                             else 'Polygon', points))
            placed += 1
    return outlines


def write_asap_xml(path: Path, outlines, groups: str = _GROUPS,
                   group_attribute: str = 'PartOfGroup') -> Path:
    """An ASAP XML as CAMELYON16 ships it."""
    colors = {'metastasis': '#F4FA58', 'negative': '#64FE2E'}
    body = []
    for number, (group, kind, points) in enumerate(outlines):
        rows = ''.join(_COORDINATE.format(order=i, x=x, y=y)
                       for i, (x, y) in enumerate(points))
        body.append(_ANNOTATION.format(
            number=number, kind=kind, group=group,
            color=colors.get(group, '#F4FA58'), rows=rows).replace(
                'PartOfGroup=', f'{group_attribute}='))
    path.write_text('<?xml version="1.0"?>\n<ASAP_Annotations>\n'
                    '\t<Annotations>\n' + ''.join(body) +
                    '\t</Annotations>\n' + groups + '</ASAP_Annotations>\n')
    return path


#: Columns of Patch-GCN's / MCAT's / SurvPath's TCGA tables (an unnamed
#: pandas index first; censorship 1 = censored).
TCGA_COLUMNS = ['', 'case_id', 'slide_id', 'age', 'is_female', 'site',
                'survival_months', 'censorship', 'train', 'oncotree_code']
#: Tissue source sites of TCGA barcodes.
TCGA_SITES = ['A1', 'A2', 'AR', 'B6', 'BH', 'E2', 'D8', 'GM']


def tcga_table(path: Path, times, events, slides_per_case=None, rng=None,
               sites=TCGA_SITES, oncotree='IDC') -> Path:
    """A TCGA survival table as Patch-GCN ships it: one row per slide
    (``TCGA-XX-YYYY-01Z-00-DX1.<uuid>.svs``), ``survival_months`` and
    ``censorship = 1 - event``; a case's slides share its outcome; the
    site is the barcode's tissue source site."""
    rng = rng or np.random.default_rng(0)
    slides_per_case = slides_per_case or [1] * len(times)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(TCGA_COLUMNS)
        index = 0
        for case, (time, event, count) in enumerate(
                zip(times, events, slides_per_case)):
            site = sites[case % len(sites)]
            case_id = f'TCGA-{site}-{1000 + case:04d}'
            for k in range(count):
                slide_id = (f'{case_id}-01Z-00-DX{k + 1}.'
                            f'{case:08X}-{k:04X}-4A5B-9C8D.svs')
                writer.writerow([index, case_id, slide_id,
                                 int(rng.integers(30, 85)),
                                 int(rng.integers(0, 2)), site,
                                 f'{time:.2f}', 1 - int(event), 'True',
                                 oncotree])
                index += 1
    return path


def tcga_slide_ids(path: Path):
    """The slide ids of a :func:`tcga_table` as feature files name them
    (without ``.svs``), with their case ids."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    return [(row['slide_id'][:-len('.svs')], row['case_id']) for row in rows]
