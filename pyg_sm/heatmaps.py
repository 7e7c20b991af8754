r"""Attention heatmaps of slides, next to the true lesion mask."""
from pathlib import Path
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

from .datasets import grid_step


def _grid_image(pos: Tensor, values: Tensor) -> Tensor:
    step = torch.tensor(grid_step(pos), dtype=torch.float64)
    cells = torch.round((pos.double() - pos.double().min(0).values) /
                        step).long()
    image = torch.full((int(cells[:, 1].max()) + 1,
                        int(cells[:, 0].max()) + 1), float('nan'))
    image[cells[:, 1], cells[:, 0]] = values.double().float()
    return image


def save_heatmap(path: Union[str, Path], pos: Tensor,
                 panels: Sequence[Tuple[str, Tensor]],
                 title: str = '') -> None:
    r"""Draws each ``(name, per-patch values)`` panel on the patch grid of
    :obj:`pos` side by side (background left blank) and saves a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels),
                             figsize=(3.6 * len(panels), 3.4))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (name, values) in zip(axes, panels):
        shown = ax.imshow(_grid_image(pos, values).numpy(), cmap='magma',
                          interpolation='nearest')
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
