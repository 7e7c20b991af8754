r"""Synthetic whole-slide datasets in the layout slide-processing pipelines
write (see :class:`~pyg_sm.SlideDataset`), with slide images that agree with
them, deterministic by seed."""
import csv
import json
from pathlib import Path
from typing import Union

import numpy as np
import torch

#: Empty cells of glass around the tissue, on each side.
MARGIN_CELLS = 2
#: Level-0 sides are rounded up to a multiple of this (OpenSlide-friendly).
SIDE_MULTIPLE = 64
#: Tile side of the pyramidal TIFFs, in pixels.
TIFF_TILE = 256
#: Pyramid levels are halved until the longer side is at most this.
SMALLEST_LEVEL = 512

# H&E-like colours (RGB): glass, eosin-stained stroma, tumour-like lesions
# and the haematoxylin of their nuclei.
GLASS = (243, 241, 245)
STROMA = (236, 176, 205)
STROMA_NUCLEI = (132, 72, 160)
LESION = (196, 128, 184)
LESION_NUCLEI = (74, 30, 118)


# Every RING_EVERY-th slide (from the second) has a first lesion, if large
# enough, with a hole of RING_HOLE of its radius.
RING_EVERY, RING_HOLE = 6, 0.4
#: Micrometres per level-0 pixel the synthetic slides stand for: a 64-pixel
#: patch is 128 um, as a 256-pixel patch at 0.5 um per pixel (20x).
SYNTHETIC_MPP = 2.0
#: The resolution written to the TIFFs (micrometres per pixel): the one the
#: slides stand for, so that OpenSlide's ``openslide.mpp-x`` says it.
MICRONS_PER_PIXEL = SYNTHETIC_MPP
#: Synthetic survival (months): a Weibull time of this shape and scale whose
#: log-hazard is LOG_HAZARD_PER_BURDEN * log(1 + lesion patches / 10);
#: CENSORED of the slides are censored at a uniform share of their time.
WEIBULL_SHAPE, WEIBULL_SCALE = 2.0, 60.0
LOG_HAZARD_PER_BURDEN = 3.0
CENSORED = 0.3


def survival_times(lesion_patches, seed: int):
    r"""Times and events of slides with :obj:`lesion_patches` lesion
    patches each: the hazard grows with the lesion burden, about
    :data:`CENSORED` of the slides are censored. Returns ``(times,
    events)``, times in months rounded to 0.1."""
    rng = np.random.default_rng(seed + 104729)
    burden = np.log1p(np.asarray(lesion_patches, dtype=np.float64) / 10)
    hazard = np.exp(LOG_HAZARD_PER_BURDEN * burden)
    times = WEIBULL_SCALE * (rng.exponential(size=burden.size) /
                             hazard) ** (1 / WEIBULL_SHAPE)
    censored = rng.random(burden.size) < CENSORED
    times = np.where(censored, times * rng.random(burden.size), times)
    return np.maximum(np.round(times, 1), 0.1), (~censored).astype(int)


def write_lesion_outlines(path: Path, corners, patch_size: float) -> None:
    r"""The lesions of a slide as a pathologist would outline them in
    QuPath: a GeoJSON FeatureCollection of the union of the lesion patches'
    squares (:obj:`corners`, top-left, level-0 pixels), class ``Tumor``."""
    import shapely
    from shapely.geometry import mapping

    area = shapely.union_all(shapely.box(
        corners[:, 0], corners[:, 1], corners[:, 0] + patch_size,
        corners[:, 1] + patch_size))
    features = [{'type': 'Feature', 'geometry': mapping(polygon),
                 'properties': {'objectType': 'annotation',
                                'classification': {'name': 'Tumor'}}}
                for polygon in shapely.get_parts(area)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'type': 'FeatureCollection',
                                'features': features}))


def make_synthetic_slides(
    root: Union[str, Path],
    num_slides: int = 120,
    feature_dim: int = 32,
    patch_size: int = 64,
    seed: int = 0,
    signal: float = 0.8,
    slide_images: bool = True,
    task: str = 'classification',
) -> Path:
    r"""Writes :obj:`num_slides` slides to :obj:`root`:
    ``features/<slide_id>.h5`` with ``features`` :math:`(N, D)`, ``coords``
    :math:`(N, 2)` (level-0 pixels, top-left corners, in shuffled order) and
    ``patch_labels`` :math:`(N,)`, ``annotations/<slide_id>.geojson`` of
    the positive slides (the lesions outlined as QuPath writes them; the
    slides stand for :data:`SYNTHETIC_MPP` um per pixel),
    ``labels.csv`` with ``slide_id,label``
    and, with :obj:`slide_images`, ``slides/<slide_id>.tif``: a pyramidal
    tiled TIFF (JPEG tiles, pyramid levels as successive pages, level-0
    sides multiples of 64) that OpenSlide reads as ``generic-tiff``, with
    the tissue drawn exactly on the patches of ``coords`` and the lesions
    exactly on the patches that ``patch_labels`` marks.

    Patches of :obj:`patch_size` level-0 pixels lie on a grid inside an
    irregular tissue region. Half of the slides are positive and hold one to
    three contiguous lesions (in every sixth slide from the second, a large
    first lesion has a hole). A lesion patch differs from normal tissue only
    by a shift of :obj:`signal` standard deviations along a few feature
    directions, so single patches are ambiguous and their neighbourhood
    decides.

    With :obj:`task` ``'survival'`` the labels file also has ``time``
    (months) and ``event`` columns (:func:`survival_times`): each slide's
    time is drawn from a hazard that grows with its lesion burden, and
    about 30% of the slides are censored. The slides are the same as for
    classification.

    Returns:
        :obj:`root` as a :class:`~pathlib.Path`.
    """
    import h5py

    root = Path(root)
    (root / 'features').mkdir(parents=True, exist_ok=True)
    if slide_images:
        (root / 'slides').mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    # The pictures draw from their own stream: the features do not depend on
    # whether slide images are written.
    painter = SlidePainter(patch_size, seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(1, generator=generator))

    directions = torch.randn(4, feature_dim, generator=generator)
    directions = directions / directions.norm(dim=1, keepdim=True)
    rows, burdens = [], []
    for index in range(num_slides):
        slide_id = f'slide_{index:03d}'
        label = index % 2
        height, width = int(uniform(24, 44)), int(uniform(24, 44))
        gy, gx = torch.meshgrid(torch.arange(height), torch.arange(width),
                                indexing='ij')
        cells = torch.stack([gx.flatten(), gy.flatten()], dim=1).double()
        # Tissue: an ellipse with a wavy border.
        center = torch.tensor([width / 2, height / 2], dtype=torch.float64)
        angle = torch.atan2(cells[:, 1] - center[1], cells[:, 0] - center[0])
        wobble = 1 + 0.15 * torch.sin(3 * angle + uniform(0, 6.28))
        radii = torch.tensor([width, height], dtype=torch.float64) * 0.45
        inside = (((cells - center) / radii).pow(2).sum(1).sqrt() <= wobble)
        cells = cells[inside]
        lesion = torch.zeros(cells.size(0), dtype=torch.bool)
        if label:
            for k in range(int(uniform(1, 4))):
                seed_cell = cells[int(uniform(0, cells.size(0) - 1e-9))]
                radius = uniform(2.0, 4.5)
                distance = (cells - seed_cell).norm(dim=1)
                disk = distance <= radius
                if k == 0 and index % RING_EVERY == 1 and radius >= 3.0:
                    # A lesion with a hole (its outline has an inner ring).
                    disk &= distance > RING_HOLE * radius
                lesion |= disk
        features = torch.randn(cells.size(0), feature_dim,
                               generator=generator)
        features[lesion] += signal * directions.sum(0)
        order = torch.randperm(cells.size(0), generator=generator)
        cells = (cells + MARGIN_CELLS).long()
        with h5py.File(root / 'features' / f'{slide_id}.h5', 'w') as f:
            f['features'] = features[order].float().numpy()
            f['coords'] = (cells[order] * patch_size).numpy()
            # As TRIDENT records it: the patch side at level 0.
            f['coords'].attrs['patch_size_level0'] = patch_size
            f['patch_labels'] = lesion[order].to(torch.uint8).numpy()
        if lesion.any():
            write_lesion_outlines(
                root / 'annotations' / f'{slide_id}.geojson',
                (cells[lesion] * patch_size).numpy(), patch_size)
        if slide_images:
            painter.write(root / 'slides' / f'{slide_id}.tif',
                          cells.numpy(), lesion.numpy(),
                          (width + 2 * MARGIN_CELLS,
                           height + 2 * MARGIN_CELLS))
        rows.append((slide_id, label))
        burdens.append(int(lesion.sum()))
    header = ['slide_id', 'label']
    if task == 'survival':
        times, events = survival_times(burdens, seed)
        header += ['time', 'event']
        rows = [(*row, f'{t:.1f}', e)
                for row, t, e in zip(rows, times, events)]
    elif task != 'classification':
        raise ValueError(f"'task' must be 'classification' or 'survival' "
                         f"(got {task!r})")
    with open(root / 'labels.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return root


class SlidePainter:
    r"""Draws synthetic H&E-like slides patch by patch and writes them as
    pyramidal TIFFs. Two textures (stroma, lesion) are made once and tiled,
    so a slide costs little more than its JPEG encoding."""
    texture_side = 512

    def __init__(self, patch_size: int, seed: int):
        self.patch_size = patch_size
        rng = np.random.default_rng(seed + 7919)
        self.stroma = self._texture(rng, STROMA, STROMA_NUCLEI, 0.0025, 2.5)
        self.lesion = self._texture(rng, LESION, LESION_NUCLEI, 0.006, 3.5)
        self.glass = np.clip(np.asarray(GLASS, np.float32) + rng.normal(
            0, 1.5, (self.texture_side, self.texture_side, 1)), 0,
            255).astype(np.uint8)
        self.rng = rng

    def _texture(self, rng, base, nucleus, density: float,
                 radius: float) -> np.ndarray:
        side = self.texture_side
        image = np.asarray(base, np.float32) + rng.normal(0, 6, (side, side,
                                                                 1))
        count = int(density * side * side)
        r = int(np.ceil(radius)) + 1
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        for cy, cx, size in zip(rng.integers(0, side, count),
                                rng.integers(0, side, count),
                                rng.uniform(0.6, 1.2, count) * radius):
            disc = (xx ** 2 + yy ** 2 <= size ** 2)
            rows = (np.arange(cy - r, cy + r + 1) % side)[:, None]
            cols = (np.arange(cx - r, cx + r + 1) % side)[None, :]
            image[rows, cols] = np.where(disc[..., None],
                                         np.asarray(nucleus, np.float32),
                                         image[rows, cols])
        return np.clip(image, 0, 255).astype(np.uint8)

    def _tiled(self, texture: np.ndarray, height: int, width: int):
        side = self.texture_side
        dy, dx = (int(v) for v in self.rng.integers(0, side, 2))
        reps = (-(-(height + dy) // side), -(-(width + dx) // side), 1)
        return np.tile(texture, reps)[dy:dy + height, dx:dx + width]

    def paint(self, cells: np.ndarray, lesion: np.ndarray,
              grid: tuple) -> np.ndarray:
        r"""The level-0 image (H, W, 3) of a slide whose patches sit at grid
        :obj:`cells` (x, y), :obj:`lesion` marking the lesion patches, on a
        grid of :obj:`grid` = (columns, rows) cells."""
        p = self.patch_size
        width = -(-grid[0] * p // SIDE_MULTIPLE) * SIDE_MULTIPLE
        height = -(-grid[1] * p // SIDE_MULTIPLE) * SIDE_MULTIPLE
        rows, cols = -(-height // p), -(-width // p)
        kind = np.zeros((rows, cols), np.uint8)  # 0 glass, 1 tissue, 2 lesion
        kind[cells[:, 1], cells[:, 0]] = np.where(lesion, 2, 1)
        kind = kind[:, None, :, None, None]

        def layer(texture):  # (rows, p, cols, p, 3): one block per cell
            return self._tiled(texture, rows * p, cols * p).reshape(
                rows, p, cols, p, 3)

        image = np.where(kind == 2, layer(self.lesion), np.where(
            kind == 1, layer(self.stroma), layer(self.glass)))
        return image.reshape(rows * p, cols * p, 3)[:height, :width]

    def write(self, path: Path, cells: np.ndarray, lesion: np.ndarray,
              grid: tuple) -> None:
        write_pyramidal_tiff(path, self.paint(cells, lesion, grid))


def write_pyramidal_tiff(path: Union[str, Path], image: np.ndarray,
                         microns_per_pixel: float = MICRONS_PER_PIXEL,
                         quality: int = 80) -> None:
    r"""Writes an RGB image (H, W, 3) as a tiled pyramidal TIFF that
    OpenSlide reads (``generic-tiff``): level 0, then each level halved
    until the longer side is at most 512 pixels, as successive pages of
    256-pixel JPEG tiles."""
    import tifffile
    from PIL import Image

    resolution = 1e4 / microns_per_pixel  # pixels per centimetre
    level = np.ascontiguousarray(image)
    with tifffile.TiffWriter(path) as tif:
        for index in range(32):
            tif.write(level, tile=(TIFF_TILE, TIFF_TILE), photometric='rgb',
                      compression='jpeg', compressionargs={'level': quality},
                      subfiletype=1 if index else 0, metadata=None,
                      resolution=(resolution, resolution),
                      resolutionunit='CENTIMETER')
            if max(level.shape[:2]) <= SMALLEST_LEVEL:
                break
            level = np.asarray(Image.fromarray(level).reduce(2))
            resolution /= 2
