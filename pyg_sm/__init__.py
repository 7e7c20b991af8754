r"""pyg-sm: the Sm operator and SmABMIL on sparse, batched PyG graphs."""
from ._solver import SmConvergenceError, SmConvergenceWarning
from .sm import Sm

__version__ = '0.1.0'

__all__ = [
    'Sm',
    'SmConvergenceError',
    'SmConvergenceWarning',
    '__version__',
]
