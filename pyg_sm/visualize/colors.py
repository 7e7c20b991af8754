r"""The colours of attention, and patches painted as squares on an image:
one scale for the static pictures and the viewer."""
import functools
from typing import Optional

import numpy as np
import torch
from torch import Tensor

#: The colour map of attention percentiles (low blue, high red), in every
#: picture and in the viewer.
ATTENTION_CMAP = 'turbo'
#: The colour bar's label wherever attention is shown.
PERCENTILE_LABEL = 'attention percentile within the slide'
#: How attention is painted over the tissue: ``ramp`` (the opacity grows
#: with the percentile: the lowest half nearly transparent, the top decile
#: opaque, as CLAM's heatmaps) or ``flat`` (every patch at one opacity).
OVERLAY_STYLES = ('ramp', 'flat')
# The ramp's opacity below the median, and where it becomes opaque.
_RAMP_FLOOR, _RAMP_LOW, _RAMP_HIGH = 0.06, 50.0, 90.0
#: The colour of annotation outlines: magenta, which turbo never shows.
OUTLINE_COLOR = (255, 0, 220)
#: The colour map of a probabilistic model's uncertainty (the standard
#: deviation of each attention logit), on its own scale: from the slide's
#: smallest value to its largest.
UNCERTAINTY_CMAP = 'magma'
UNCERTAINTY_LABEL = 'attention std, the slide\'s lowest (0) to highest (1)'


@functools.lru_cache(maxsize=None)
def _lookup_table() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[ATTENTION_CMAP](np.linspace(0, 1, 256))[:, :3] *
            255).round().astype(np.uint8)


def percentile_colors(percentile: Tensor) -> np.ndarray:
    r"""RGB colours (N, 3) uint8 of percentiles (0 to 100) on
    :obj:`ATTENTION_CMAP`."""
    index = (percentile.double().clamp(0, 100) * 2.55).round().long()
    return _lookup_table()[index.numpy()]


@functools.lru_cache(maxsize=None)
def _uncertainty_table() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[UNCERTAINTY_CMAP](np.linspace(0, 1, 256))[:, :3] *
            255).round().astype(np.uint8)


def uncertainty_colors(std: Tensor) -> np.ndarray:
    r"""RGB colours (N, 3) uint8 of standard deviations on
    :obj:`UNCERTAINTY_CMAP`, from their smallest value to their largest
    (:func:`uncertainty_scale`)."""
    share = uncertainty_scale(std)
    return _uncertainty_table()[(share * 255).round().long().numpy()]


def uncertainty_scale(std: Tensor) -> Tensor:
    r"""Standard deviations mapped to [0, 1] from their smallest value to
    their largest (all 0 when they are equal)."""
    std = std.double().reshape(-1)
    if std.numel() == 0:
        return std
    low, high = float(std.min()), float(std.max())
    if high <= low:
        return torch.zeros_like(std)
    return (std - low) / (high - low)


def percentile_opacity(percentile: Tensor, style: str = 'ramp',
                       opacity: float = 0.5) -> np.ndarray:
    r"""The alpha (N,) uint8 of patches at :obj:`percentile` (0 to 100):
    for ``ramp``, 6% below the median rising linearly to opaque at the
    90th percentile; for ``flat``, :obj:`opacity` everywhere."""
    if style not in OVERLAY_STYLES:
        raise ValueError(f"'overlay_style' must be one of {OVERLAY_STYLES} "
                         f"(got {style!r})")
    percentile = percentile.double().clamp(0, 100).numpy()
    if style == 'flat':
        alpha = np.full(percentile.shape, float(opacity))
    else:
        rise = np.clip((percentile - _RAMP_LOW) / (_RAMP_HIGH - _RAMP_LOW),
                       0, 1)
        alpha = _RAMP_FLOOR + (1 - _RAMP_FLOOR) * rise
    return (alpha * 255).round().astype(np.uint8)


def paint_patches(canvas: np.ndarray, corners: Tensor, side: float,
                  colors: np.ndarray, scale: float = 1.0,
                  origin: Optional[Tensor] = None) -> np.ndarray:
    r"""Paints each patch as a filled square on :obj:`canvas` (H, W, C)
    uint8, in place, and returns it.

    A patch with top-left corner :obj:`corners[i]` (level-0 pixels) and
    side :obj:`side` covers the canvas pixels from
    :math:`\lfloor (c - o) s \rfloor` on, :math:`\max(1, \lceil side \cdot
    s \rceil)` pixels wide, with :math:`s` = :obj:`scale` (canvas pixels per
    level-0 pixel) and :math:`o` = :obj:`origin` (the level-0 point at the
    canvas's corner): neighbouring patches leave no gap, and a patch smaller
    than a pixel still gets one. Patches outside the canvas are skipped.
    :obj:`colors` is (N, C) or (C,)."""
    height, width = canvas.shape[:2]
    corners = corners.double()
    if origin is not None:
        corners = corners - origin.double()
    start = torch.floor(corners * scale).long()
    extent = max(1, int(np.ceil(side * scale - 1e-9)))
    inside = ((start[:, 0] < width) & (start[:, 1] < height) &
              (start[:, 0] + extent > 0) & (start[:, 1] + extent > 0))
    if not bool(inside.any()):
        return canvas
    start = start[inside].numpy()
    colors = np.broadcast_to(np.asarray(colors), (len(inside), canvas.shape[2])
                             )[inside.numpy()]
    offsets = np.arange(extent)
    rows = start[:, 1, None] + offsets  # (n, extent)
    cols = start[:, 0, None] + offsets
    # Every pixel of every square, clipped to the canvas.
    rr = np.broadcast_to(rows[:, :, None], (len(start), extent, extent))
    cc = np.broadcast_to(cols[:, None, :], (len(start), extent, extent))
    keep = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
    which = np.broadcast_to(np.arange(len(start))[:, None, None], keep.shape)
    canvas[rr[keep], cc[keep]] = colors[which[keep]]
    return canvas
