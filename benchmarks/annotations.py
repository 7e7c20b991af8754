"""Patch coverage of annotation outlines and the FROC: seconds for a
200,000-patch slide with outlines of 50,000 vertices in total (target: under
5 s), and for the FROC of 100 slides (target: under 10 s).

    python benchmarks/annotations.py
"""
import time

import numpy as np
import shapely

from pyg_sm.datasets.annotations import patch_coverage
from pyg_sm.train.localization import froc

SIDE = 256.0


def grid(count):
    side = int(np.ceil(count**0.5))
    xs, ys = np.meshgrid(np.arange(side) * SIDE, np.arange(side) * SIDE)
    return np.stack([xs.ravel(), ys.ravel()], 1)[:count].astype(float)


def outlines(vertices, extent, count=10, seed=0):
    r""":obj:`count` wavy lesions with :obj:`vertices` vertices in all, one
    with a hole, inside a square of side :obj:`extent`."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(count):
        t = np.linspace(0, 2 * np.pi, vertices // count, endpoint=False)
        centre = rng.uniform(0.15, 0.85, 2) * extent
        radius = rng.uniform(0.03, 0.1) * extent * (
            1 + 0.1 * np.sin(rng.integers(5, 40) * t))
        ring = np.stack([centre[0] + radius * np.cos(t),
                         centre[1] + radius * np.sin(t)], 1)
        hole = [shapely.Point(centre).buffer(radius.min() / 3).exterior
                .coords] if k == 0 else []
        parts.append(shapely.Polygon(ring, hole))
    return shapely.union_all(parts)


def main():
    coords = grid(200_000)
    extent = coords.max() + SIDE
    area = outlines(62_500, extent)
    began = time.perf_counter()
    coverage = patch_coverage(coords, SIDE, area)
    seconds = time.perf_counter() - began
    print(f'coverage: 200,000 patches, {len(shapely.get_coordinates(area))} '
          f'outline vertices: {seconds:.2f} s ({int((coverage > 0).sum())} '
          f'patches touched)')

    rng = np.random.default_rng(1)
    small = grid(10_000)
    slides = []
    for k in range(100):
        lesion = outlines(400, small.max(), count=3, seed=k) if k % 2 \
            else shapely.Polygon()
        slides.append({'coords': small, 'attention': rng.normal(size=len(
            small)), 'probability': float(rng.random()), 'patch_size': SIDE,
            'lesion_area': lesion})
    began = time.perf_counter()
    result = froc(slides, mpp=0.5)
    print(f"FROC: 100 slides of 10,000 patches: "
          f"{time.perf_counter() - began:.2f} s (score {result['score']:.3f}"
          f", {result['lesions']} lesions)")


if __name__ == '__main__':
    main()
