r"""Pictures of attention: heatmaps on the patch grid, overlays on the slide
image (functions that return images and write no files), and a local
deep-zoom viewer (a read-only server)."""
from .colors import ATTENTION_CMAP, paint_patches, percentile_colors
from .heatmap import grid_image, render_heatmap
from .overlay import render_overlay
from .viewer import AttentionTiles, ViewerServer, open_viewer

__all__ = ['grid_image', 'render_heatmap', 'render_overlay',
           'ATTENTION_CMAP', 'percentile_colors', 'paint_patches',
           'AttentionTiles', 'ViewerServer', 'open_viewer']
