r"""Pictures of attention: functions that return images and write no
files."""
from .heatmap import grid_image, render_heatmap

__all__ = ['grid_image', 'render_heatmap']
