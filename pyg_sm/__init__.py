r"""pyg-sm: the Sm operator and SmABMIL on sparse, batched PyG graphs.

The library is grouped by role: :mod:`pyg_sm.nn` (layers),
:mod:`pyg_sm.models` (MIL models), :mod:`pyg_sm.data` (input forms),
:mod:`pyg_sm.transforms` (patch graphs), :mod:`pyg_sm.datasets`,
:mod:`pyg_sm.visualize`, :mod:`pyg_sm.train`, :mod:`pyg_sm.runs` (every
command as one Python call, and the run folder) and :mod:`pyg_sm.utils`; the
names below are the public API."""
from .data import PADDING_ATTENTION, batch_to_dense, dense_to_batch
from .datasets import SlideDataset, make_synthetic_slides
from .models import (
                     ProbSmoothABMIL,
                     SmABMIL,
                     SmoothABMIL,
                     SmTransformerABMIL,
                     TransformerProbSmoothABMIL,
                     from_torchmil,
                     from_torchmil_state_dict,
)
from .nn import (
                     CoxPHLoss,
                     DiscreteTimeNLLLoss,
                     ProbSmoothAttentionPool,
                     Sm,
                     SmAttentionPool,
                     SmConvergenceError,
                     SmConvergenceWarning,
                     SmMultiheadSelfAttention,
                     SmTransformerEncoder,
                     SmTransformerLayer,
)
from .transforms import PatchGraph, patch_grid_graph, patch_radius_graph
from .utils.errors import (
                     MissingFileError,
                     PygSmError,
                     SlideError,
                     TrainingDivergedError,
)
from .version import __version__

__all__ = [
    'Sm',
    'SmAttentionPool',
    'SmABMIL',
    'SmTransformerABMIL',
    'ProbSmoothAttentionPool',
    'ProbSmoothABMIL',
    'SmoothABMIL',
    'TransformerProbSmoothABMIL',
    'from_torchmil',
    'from_torchmil_state_dict',
    'SmTransformerEncoder',
    'SmTransformerLayer',
    'SmMultiheadSelfAttention',
    'CoxPHLoss',
    'DiscreteTimeNLLLoss',
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
    'PygSmError',
    'SlideError',
    'MissingFileError',
    'TrainingDivergedError',
    '__version__',
]
