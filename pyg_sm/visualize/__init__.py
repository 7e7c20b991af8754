r"""Pictures of attention: heatmaps on the patch grid, overlays on the slide
image (functions that return images and write no files), and a local
deep-zoom viewer (a read-only server)."""
from .colors import (
                     ATTENTION_CMAP,
                     OVERLAY_STYLES,
                     paint_patches,
                     percentile_colors,
                     percentile_opacity,
)
from .froc import render_froc_curve
from .heatmap import grid_image, render_heatmap
from .overlay import render_overlay
from .survival import render_kaplan_meier
from .viewer import AttentionTiles, ViewerServer, open_viewer

__all__ = ['grid_image', 'render_heatmap', 'render_overlay',
           'render_froc_curve', 'render_kaplan_meier',
           'ATTENTION_CMAP', 'percentile_colors', 'paint_patches',
           'percentile_opacity', 'OVERLAY_STYLES',
           'AttentionTiles', 'ViewerServer', 'open_viewer']
