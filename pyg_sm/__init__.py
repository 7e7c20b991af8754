r"""pyg-sm: the Sm operator and SmABMIL on sparse, batched PyG graphs."""
from ._bags import PADDING_ATTENTION
from ._solver import SmConvergenceError, SmConvergenceWarning
from .abmil import SmABMIL
from .attention_pool import SmAttentionPool
from .datasets import SlideDataset
from .dense import batch_to_dense, dense_to_batch
from .sm import Sm
from .synthetic import make_synthetic_slides
from .transforms import PatchGraph, patch_grid_graph, patch_radius_graph

__version__ = '0.1.0'

__all__ = [
    'Sm',
    'SmAttentionPool',
    'SmABMIL',
    'dense_to_batch',
    'batch_to_dense',
    'PatchGraph',
    'patch_grid_graph',
    'patch_radius_graph',
    'SlideDataset',
    'make_synthetic_slides',
    'PADDING_ATTENTION',
    'SmConvergenceError',
    'SmConvergenceWarning',
    '__version__',
]
