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
_COORDINATE = ('\t\t\t\t<Coordinate Order="{order}" X="{x:.4f}" '
               'Y="{y:.4f}" />\n')
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


def tcga_outcomes(rng, patients=359, censored=0.56, horizon=160.0):
    """Times (months) and events with a real TCGA table's shape: heavy
    censoring, long-tailed times up to :obj:`horizon`, the censored ones
    mostly longer (follow-up ends) than the events."""
    events = (rng.random(patients) >= censored).astype(int)
    times = np.where(events == 1, rng.gamma(1.4, 20.0, patients),
                     rng.uniform(3.0, horizon, patients))
    return np.clip(times, 0.1, horizon).round(2), events


def tcga_cohort(root: Path, rng, patients=359, two_slides=64,
                patches=(24, 48), dim=16, offset=3.0, shift=3.0) -> Path:
    """A TCGA cohort in the h5 layout with :func:`tcga_table`'s labels:
    features far from zero on average (as encoders' are), a quarter of
    each slide's patches shifted along one direction in proportion to the
    patient's hazard rank (shorter times rank higher), so that the
    features carry the outcome."""
    import h5py

    root = Path(root)
    (root / 'features').mkdir(parents=True, exist_ok=True)
    times, events = tcga_outcomes(rng, patients)
    counts = [2 if i < two_slides else 1 for i in range(patients)]
    tcga_table(root / 'labels.csv', times, events, counts, rng)
    rank = (-times).argsort().argsort() / (patients - 1)
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    case_index = {f'TCGA-{TCGA_SITES[i % len(TCGA_SITES)]}-{1000 + i:04d}': i
                  for i in range(patients)}
    for slide_id, case_id in tcga_slide_ids(root / 'labels.csv'):
        side = int(rng.integers(*patches) ** 0.5) + 1
        n = side * side
        features = rng.standard_normal((n, dim)) + offset
        features[rng.permutation(n)[:n // 4]] += \
            shift * rank[case_index[case_id]] * direction
        ys, xs = np.divmod(np.arange(n), side)
        with h5py.File(root / 'features' / f'{slide_id}.h5', 'w') as f:
            f['features'] = features.astype(np.float32)
            coords = f.create_dataset(
                'coords', data=np.stack([xs, ys], 1).astype(np.int64) * 512)
            coords.attrs['patch_size_level0'] = 512
    return root


def exponential_outcomes(root: Path, rng, strength=2.0, censored=0.3,
                         offset=3.0) -> Path:
    """A synthetic cohort (``make_synthetic_slides``) turned into the
    second kind of real-looking survival data: exponential times with
    hazard ``exp(strength * z)``, z the standardized lesion burden (lesion
    patches), random censoring of about :obj:`censored`, and features moved
    :obj:`offset` away from zero (an encoder's are not centred)."""
    import h5py

    root = Path(root)
    with open(root / 'labels.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    burden = []
    for row in rows:
        with h5py.File(root / 'features' / f"{row['slide_id']}.h5",
                       'r+') as f:
            burden.append(float(f['patch_labels'][()].sum()))
            f['features'][...] = f['features'][()] + offset
    burden = np.asarray(burden)
    z = (burden - burden.mean()) / burden.std()
    times = rng.exponential(24.0 / np.exp(strength * z))
    cut = rng.exponential(24.0 * (1 - censored) / censored, len(rows))
    events = (times <= cut).astype(int)
    with open(root / 'labels.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['slide_id', 'time', 'event'])
        for row, time, end, event in zip(rows, times, cut, events):
            writer.writerow([row['slide_id'], f'{min(time, end):.3f}',
                             event])
    return root


# CLAM's output ---------------------------------------------------------------

def clam_contours(rng, side, pieces=4, extent=12):
    """The level-0 top-left corners of a slide's patches as CLAM's
    create_patches_fp.py lays them: each tissue contour tiled from its own
    bounding box's corner (an arbitrary pixel), so that one slide's patches
    lie on several grids whose origins differ by less than a patch (22 to
    126 px here). Odd pieces touch the piece before them (right below it);
    even ones lie apart."""
    import shapely

    corners, below = [], None
    for k in range(pieces):
        width, height = rng.integers(extent // 2, extent + 1, 2) * side
        if k % 2 == 1:
            x, y = below
        else:
            x, y = 1000 + k * (extent + 3) * side, 2000
        origin = np.array([x, y]) + rng.integers(22, 127, 2)
        centre = origin + np.array([width, height]) / 2
        region = shapely.Polygon(blob(centre, min(width, height) / 2, rng,
                                      points=24, wobble=0.1))
        region = region.union(shapely.box(
            centre[0] - width / 3, origin[1], centre[0] + width / 3,
            origin[1] + height))  # flat top and bottom: pieces touch
        xs = origin[0] + side * np.arange(width // side + 1)
        ys = origin[1] + side * np.arange(height // side + 1)
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        inside = shapely.contains_xy(region, grid[:, 0] + side / 2,
                                     grid[:, 1] + side / 2)
        corners.append(grid[inside])
        below = (origin[0], origin[1] + height)
    return np.concatenate(corners).astype(np.int64)


def reference_grid_edges(corners, side, tolerance=0.05):
    """Every pair of distinct patches whose corners lie within one side
    (with the tolerance) on each axis: an independent O(N^2) reference."""
    corners = np.asarray(corners, np.float64)
    delta = np.abs(corners[:, None, :] - corners[None, :, :]).max(-1)
    close = delta <= side * (1 + tolerance)
    np.fill_diagonal(close, False)
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(close))}


def write_clam_slide(root: Path, slide_id: str, corners, features,
                     patch_size=512, patch_level=0, downsample=(1.0, 1.0),
                     with_patches=True) -> None:
    """A slide as CLAM writes it: ``pt_files/<id>.pt`` (features),
    ``h5_files/<id>.h5`` (``features`` and ``coords``, no attributes:
    extract_features_fp.py saves with attr_dict=None) and, from
    create_patches_fp.py, ``patches/<id>.h5`` whose ``coords`` carry
    ``patch_size``, ``patch_level``, ``downsample``,
    ``downsampled_level_dim``, ``level_dim``, ``name`` and ``save_path``."""
    import h5py
    import torch

    root = Path(root)
    for name in ('pt_files', 'h5_files', 'patches'):
        (root / name).mkdir(parents=True, exist_ok=True)
    torch.save(torch.as_tensor(features, dtype=torch.float32),
               root / 'pt_files' / f'{slide_id}.pt')
    with h5py.File(root / 'h5_files' / f'{slide_id}.h5', 'w') as f:
        f['features'] = np.asarray(features, np.float32)
        f['coords'] = corners
    if not with_patches:
        return
    with h5py.File(root / 'patches' / f'{slide_id}.h5', 'w') as f:
        coords = f.create_dataset('coords', data=corners)
        level_dim = np.array([120000, 90000], np.int64)
        coords.attrs['patch_size'] = patch_size
        coords.attrs['patch_level'] = patch_level
        coords.attrs['downsample'] = np.asarray(downsample, np.float64)
        coords.attrs['downsampled_level_dim'] = (
            level_dim / np.asarray(downsample)).astype(np.int64)
        coords.attrs['level_dim'] = level_dim
        coords.attrs['name'] = slide_id
        coords.attrs['save_path'] = str(root / 'patches')
