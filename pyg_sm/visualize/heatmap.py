r"""Attention heatmaps of slides on their patch grid, next to the true lesion
mask. Rendering returns an image; writing it is the caller's choice."""
from typing import Dict, Optional

import torch
from torch import Tensor

from ..transforms.grid_graph import infer_patch_side
from ..utils.stats import percentiles
from .colors import (
    ATTENTION_CMAP,
    PERCENTILE_LABEL,
    UNCERTAINTY_CMAP,
    UNCERTAINTY_LABEL,
    uncertainty_scale,
)

#: Pixels per inch of the rendered figures.
DPI = 100
#: The smallest panel side, in inches (small slides are drawn larger).
MIN_PANEL_INCHES = 3.2


def grid_image(pos: Tensor, values: Tensor) -> Tensor:
    r"""Per-patch :obj:`values` laid out on the patch grid of :obj:`pos`
    (one pixel per patch, NaN where there is no patch): :math:`(H, W)`."""
    step = torch.full((2, ), infer_patch_side(pos), dtype=torch.float64)
    cells = torch.round((pos.double() - pos.double().min(0).values) /
                        step).long()
    image = torch.full((int(cells[:, 1].max()) + 1,
                        int(cells[:, 0].max()) + 1), float('nan'))
    image[cells[:, 1], cells[:, 0]] = values.double().float()
    return image


def render_heatmap(pos: Tensor, attention: Dict[str, Tensor],
                   mask: Optional[Tensor] = None, title: str = '',
                   uncertainty: Optional[Dict[str, Tensor]] = None):
    r"""Draws the attention of each model (:obj:`attention` maps a name to
    per-patch values, before or after the softmax) on the patch grid of
    :obj:`pos`, as the percentile of each patch within the slide (0 to 100:
    the same scale for every slide and model, whatever the range of the raw
    values), side by side, with the true lesion :obj:`mask` when known and
    a panel per probabilistic model of its :obj:`uncertainty` (a name to
    per-patch standard deviations), on :obj:`UNCERTAINTY_CMAP` from the
    slide's smallest value to its largest.

    The image has at least one pixel per patch: a large slide gets a larger
    image, not smaller patches.

    Returns:
        A :class:`PIL.Image.Image` (RGBA); ``image.save(path)`` writes it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    panels = [(f'{name} attention', grid_image(pos, percentiles(values)))
              for name, values in attention.items()]
    panels += [(f'{name} uncertainty', grid_image(pos,
                                                  uncertainty_scale(std)))
               for name, std in (uncertainty or {}).items()]
    if mask is not None:
        panels.append(('true lesion mask', grid_image(pos, mask.float())))
    height, width = panels[0][1].shape
    # Each panel holds the grid at one pixel per patch or more; the colour
    # bar and margins get room beside it.
    panel = max(MIN_PANEL_INCHES, width / DPI, height / DPI)
    side_h = panel * height / max(height, width)
    side_w = panel * width / max(height, width)
    fig = Figure(figsize=(len(panels) * (side_w + 1.4), side_h + 1.0),
                 dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, image) in zip(axes, panels):
        is_mask = name == 'true lesion mask'
        is_std = name.endswith(' uncertainty')
        cmap, top, label = (
            ('gray', 1, 'lesion (1) / tissue (0)') if is_mask else
            (UNCERTAINTY_CMAP, 1, UNCERTAINTY_LABEL) if is_std else
            (ATTENTION_CMAP, 100, PERCENTILE_LABEL))
        shown = ax.imshow(image.numpy(), cmap=cmap, vmin=0, vmax=top,
                          interpolation='nearest')
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    canvas.draw()
    return Image.frombuffer('RGBA', canvas.get_width_height(),
                            canvas.buffer_rgba(), 'raw', 'RGBA', 0, 1).copy()
