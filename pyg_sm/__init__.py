r"""pyg-sm: the Sm operator and SmABMIL on sparse, batched PyG graphs."""
from ._bags import PADDING_ATTENTION
from ._solver import SmConvergenceError, SmConvergenceWarning
from .abmil import SmABMIL
from .attention_pool import SmAttentionPool
from .dense import batch_to_dense, dense_to_batch
from .sm import Sm

__version__ = '0.1.0'

__all__ = [
    'Sm',
    'SmAttentionPool',
    'SmABMIL',
    'dense_to_batch',
    'batch_to_dense',
    'PADDING_ATTENTION',
    'SmConvergenceError',
    'SmConvergenceWarning',
    '__version__',
]
