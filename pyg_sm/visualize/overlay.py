r"""Attention drawn over the slide image, as pathologists read it: the
thumbnail with each patch's attention percentile over the tissue, one panel
per model, the true lesions when known, and a gallery of the most attended
patches at full resolution."""
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..utils.stats import percentiles
from .colors import (
    ATTENTION_CMAP,
    OUTLINE_COLOR,
    PERCENTILE_LABEL,
    UNCERTAINTY_CMAP,
    UNCERTAINTY_LABEL,
    paint_patches,
    percentile_colors,
    percentile_opacity,
    uncertainty_colors,
)

#: Pixels per inch of the rendered figures.
DPI = 100
#: The thumbnail's longer side: at least this, more for slides with many
#: patches (two pixels per patch), at most :obj:`MAX_THUMBNAIL`.
MIN_THUMBNAIL = 640
MAX_THUMBNAIL = 4096
#: Side of a gallery patch in the figure, in pixels.
GALLERY_PIXELS = 128
#: Colour of the true lesions (patch labels) in their panel.
LESION_COLOR = (0, 200, 90)
#: Opacity of the uncertainty squares over the tissue.
UNCERTAINTY_OPACITY = 0.75


def thumbnail_side(dimensions: Sequence[int], side: float) -> int:
    r"""The longer side of the thumbnail of a slide of level-0
    :obj:`dimensions` whose patches have :obj:`side` level-0 pixels: two
    pixels per patch, within [:obj:`MIN_THUMBNAIL`, :obj:`MAX_THUMBNAIL`]."""
    patches_across = max(dimensions) / side
    return int(min(MAX_THUMBNAIL, max(MIN_THUMBNAIL, 2 * patches_across)))


def overlay_image(thumbnail, corners: Tensor, side: float, colors,
                  scale: float, opacity):
    r""":obj:`thumbnail` (PIL) with the patches painted in :obj:`colors`
    at :obj:`opacity` (one value in [0, 1], or an alpha (N,) uint8 per
    patch) over it, nothing elsewhere."""
    from PIL import Image

    layer = np.zeros((thumbnail.height, thumbnail.width, 4), np.uint8)
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    alpha = np.asarray(opacity if np.ndim(opacity) else
                       round(255 * opacity), np.uint8).reshape(-1, 1)
    count = max(len(colors), len(alpha))
    paint_patches(layer, corners, side, np.concatenate(
        [np.broadcast_to(colors, (count, 3)),
         np.broadcast_to(alpha, (count, 1))], -1), scale)
    return Image.alpha_composite(thumbnail.convert('RGBA'),
                                 Image.fromarray(layer, 'RGBA'))


def draw_outlines(ax, outlines, scale: float) -> None:
    r"""Draws every ring (exterior and holes) of the shapely geometry
    :obj:`outlines` (level-0 pixels) on :obj:`ax` at :obj:`scale` image
    pixels per level-0 pixel, as thin :obj:`OUTLINE_COLOR` lines."""
    import shapely

    color = tuple(c / 255 for c in OUTLINE_COLOR)
    for polygon in shapely.get_parts(outlines):
        if polygon.is_empty or polygon.geom_type != 'Polygon':
            continue
        for ring in [polygon.exterior, *polygon.interiors]:
            xy = np.asarray(ring.coords) * scale
            ax.plot(xy[:, 0] - 0.5, xy[:, 1] - 0.5, color=color,
                    linewidth=0.9, scalex=False, scaley=False)


def render_overlay(slide, pos: Tensor, attention: Dict[str, Tensor],
                   patch_size: float, mask: Optional[Tensor] = None,
                   title: str = '', top_k: int = 8, opacity: float = 0.5,
                   overlay_style: str = 'ramp', outlines=None,
                   uncertainty: Optional[Dict[str, Tensor]] = None):
    r"""Draws each model's attention over the slide image.

    One panel per model (:obj:`attention` maps a name to per-patch values,
    before or after the softmax): the slide thumbnail with each patch's
    square coloured by its attention percentile within the slide (0 to 100,
    :obj:`ATTENTION_CMAP`, the same scale for every slide and model), over
    the tissue only (the patches), its opacity growing with the percentile
    (:obj:`overlay_style`); the annotation :obj:`outlines` on every panel;
    a panel of the true
    lesions when :obj:`mask` is given; below, per model, the :obj:`top_k`
    patches of highest attention read at full resolution (level 0) from the
    slide, with their percentile and softmax weight.

    Args:
        slide: an :class:`openslide.OpenSlide` (or anything with
            ``dimensions``, ``get_thumbnail`` and ``read_region``).
        pos (torch.Tensor): patch top-left corners :math:`(N, 2)` in
            level-0 pixels.
        attention (dict): model name to values :math:`(N,)`.
        patch_size (float): side of a patch in level-0 pixels.
        mask (torch.Tensor, optional): true lesion patches :math:`(N,)`.
        title (str, optional): the figure's title (slide id, label,
            predicted probability).
        top_k (int, optional): gallery patches per model; 0 for none.
            (default: :obj:`8`)
        opacity (float, optional): of the attention squares in the
            ``flat`` style. (default: :obj:`0.5`)
        overlay_style (str, optional): :obj:`"ramp"` (nearly transparent
            below the median, opaque in the top decile) or :obj:`"flat"`.
            (default: :obj:`"ramp"`)
        outlines (optional): a shapely geometry in level-0 pixels (the
            annotated lesions) drawn as thin :obj:`OUTLINE_COLOR` lines.
            (default: :obj:`None`)
        uncertainty (dict, optional): model name to per-patch standard
            deviations :math:`(N,)` of the attention (probabilistic
            models): a panel each, on :obj:`UNCERTAINTY_CMAP` from the
            slide's smallest value to its largest, with its own colour
            bar.
            (default: :obj:`None`)

    Returns:
        A :class:`PIL.Image.Image` (RGBA); ``image.save(path)`` writes it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from PIL import Image

    dimensions = slide.dimensions
    target = thumbnail_side(dimensions, patch_size)
    thumbnail = slide.get_thumbnail((target, target)).convert('RGB')
    scale = thumbnail.width / dimensions[0]
    ranks = {name: percentiles(values) for name, values in attention.items()}
    panels = [(f'{name} attention', overlay_image(
        thumbnail, pos, patch_size, percentile_colors(rank), scale,
        percentile_opacity(rank, overlay_style, opacity)))
        for name, rank in ranks.items()]
    panels += [(f'{name} uncertainty (attention std)', overlay_image(
        thumbnail, pos, patch_size, uncertainty_colors(std), scale,
        UNCERTAINTY_OPACITY)) for name, std in (uncertainty or {}).items()]
    if mask is not None:
        lesion = mask.reshape(-1) > 0
        panels.append(('true lesions (patch labels)', overlay_image(
            thumbnail, pos[lesion], patch_size, LESION_COLOR, scale, 0.6)))

    gallery = []
    if top_k > 0:
        side = int(round(patch_size))
        for name, values in attention.items():
            weights = torch.softmax(values.double().reshape(-1), 0)
            order = torch.argsort(values.double().reshape(-1),
                                  descending=True)[:top_k].tolist()
            tiles = []
            for i in order:
                x, y = (int(v) for v in pos[i].tolist())
                tile = slide.read_region((x, y), 0, (side, side)).convert(
                    'RGB')
                tiles.append((tile, f'{float(ranks[name][i]):.1f} pct, '
                              f'w {float(weights[i]):.2g}'))
            gallery.append((name, tiles))

    # Each panel shows the thumbnail pixel for pixel.
    panel_w, panel_h = thumbnail.width / DPI, thumbnail.height / DPI
    # The colour bars right of the panels: the attention's, then the
    # uncertainty's.
    colour_bars = ([(100, ATTENTION_CMAP, PERCENTILE_LABEL)] if ranks
                   else []) + ([(1, UNCERTAINTY_CMAP, UNCERTAINTY_LABEL)]
                               if uncertainty else [])
    bar_w = 0.9 * max(1, len(colour_bars))
    columns = max(len(panels), 1)
    cell, gap, row_h = GALLERY_PIXELS / DPI, 0.25, GALLERY_PIXELS / DPI + 0.6
    width = max(columns * (panel_w + 0.3) + bar_w,
                top_k * (cell + gap) + 0.3)
    gallery_h = len(gallery) * row_h
    height = panel_h + 0.9 + gallery_h
    fig = Figure(figsize=(width, height), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    top = 1 - 0.6 / height
    for k, (name, image) in enumerate(panels):
        left = (0.15 + k * (panel_w + 0.3)) / width
        ax = fig.add_axes([left, top - panel_h / height,
                           panel_w / width, panel_h / height])
        ax.imshow(np.asarray(image), interpolation='nearest')
        if outlines is not None:
            draw_outlines(ax, outlines, scale)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    for k, (top_value, cmap, label) in enumerate(colour_bars):
        bar = fig.add_axes([(columns * (panel_w + 0.3) + 0.2 + 0.9 * k) /
                            width, top - panel_h / height, 0.15 / width,
                            panel_h / height])
        colorbar = fig.colorbar(ScalarMappable(Normalize(0, top_value),
                                               cmap), cax=bar)
        colorbar.set_label(label, fontsize=8)
    row_top = top - (panel_h + 0.25) / height
    for name, tiles in gallery:
        fig.text(0.15 / width, row_top - 0.12 / height,
                 f'{name}: the {len(tiles)} patches of highest attention '
                 f'(level 0; percentile, softmax weight)', fontsize=8)
        for j, (tile, caption) in enumerate(tiles):
            ax = fig.add_axes([(0.15 + j * (cell + gap)) / width,
                               row_top - (0.45 + cell) / height,
                               cell / width, cell / height])
            ax.imshow(np.asarray(tile.resize((GALLERY_PIXELS,
                                              GALLERY_PIXELS))))
            ax.set_axis_off()
            ax.set_title(caption, fontsize=6.5, pad=2)
        row_top -= row_h / height
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.15 / height, va='top')
    canvas.draw()
    return Image.frombuffer('RGBA', canvas.get_width_height(),
                            canvas.buffer_rgba(), 'raw', 'RGBA', 0, 1).copy()
