r"""Synthetic whole-slide datasets in the layout slide-processing pipelines
write (see :class:`~pyg_sm.SlideDataset`), deterministic by seed."""
import csv
from pathlib import Path
from typing import Union

import torch


def make_synthetic_slides(
    root: Union[str, Path],
    num_slides: int = 120,
    feature_dim: int = 32,
    patch_size: int = 256,
    seed: int = 0,
    signal: float = 0.8,
) -> Path:
    r"""Writes :obj:`num_slides` slides to :obj:`root`:
    ``features/<slide_id>.h5`` with ``features`` :math:`(N, D)`, ``coords``
    :math:`(N, 2)` (pixels, top-left corners, in shuffled order) and
    ``patch_labels`` :math:`(N,)`, and ``labels.csv`` with ``slide_id,label``.

    Patches lie on a grid inside an irregular tissue region. Half of the
    slides are positive and hold one to three contiguous lesions. A lesion
    patch differs from normal tissue only by a shift of :obj:`signal`
    standard deviations along a few feature directions, so single patches are
    ambiguous and their neighbourhood decides.

    Returns:
        :obj:`root` as a :class:`~pathlib.Path`.
    """
    import h5py

    root = Path(root)
    (root / 'features').mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(1, generator=generator))

    directions = torch.randn(4, feature_dim, generator=generator)
    directions = directions / directions.norm(dim=1, keepdim=True)
    rows = []
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
            for _ in range(int(uniform(1, 4))):
                seed_cell = cells[int(uniform(0, cells.size(0) - 1e-9))]
                radius = uniform(2.0, 4.5)
                lesion |= (cells - seed_cell).norm(dim=1) <= radius
        features = torch.randn(cells.size(0), feature_dim,
                               generator=generator)
        features[lesion] += signal * directions.sum(0)
        order = torch.randperm(cells.size(0), generator=generator)
        with h5py.File(root / 'features' / f'{slide_id}.h5', 'w') as f:
            f['features'] = features[order].float().numpy()
            f['coords'] = (cells[order] * patch_size).long().numpy()
            f['patch_labels'] = lesion[order].to(torch.uint8).numpy()
        rows.append((slide_id, label))
    with open(root / 'labels.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['slide_id', 'label'])
        writer.writerows(rows)
    return root
