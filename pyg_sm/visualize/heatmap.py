r"""Attention heatmaps of slides on their patch grid, next to the true lesion
mask. Rendering returns an image; writing it is the caller's choice."""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..transforms.grid_graph import grid_step


def grid_image(pos: Tensor, values: Tensor) -> Tensor:
    r"""Per-patch :obj:`values` laid out on the patch grid of :obj:`pos`
    (one pixel per patch, NaN where there is no patch): :math:`(H, W)`."""
    step = torch.tensor(grid_step(pos), dtype=torch.float64)
    cells = torch.round((pos.double() - pos.double().min(0).values) /
                        step).long()
    image = torch.full((int(cells[:, 1].max()) + 1,
                        int(cells[:, 0].max()) + 1), float('nan'))
    image[cells[:, 1], cells[:, 0]] = values.double().float()
    return image


def render_heatmap(pos: Tensor, panels: Sequence[Tuple[str, Tensor]],
                   title: str = ''):
    r"""Draws each ``(name, per-patch values)`` panel on the patch grid of
    :obj:`pos`, side by side (background left blank), with a colour bar.

    Returns:
        A :class:`PIL.Image.Image` (RGBA); ``image.save(path)`` writes it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    # A bare Figure: no pyplot state, no backend switch, safe in threads.
    fig = Figure(figsize=(3.6 * len(panels), 3.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, values) in zip(axes, panels):
        shown = ax.imshow(grid_image(pos, values).numpy(), cmap='magma',
                          interpolation='nearest')
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return Image.frombuffer('RGBA', canvas.get_width_height(),
                            canvas.buffer_rgba(), 'raw', 'RGBA', 0, 1).copy()
