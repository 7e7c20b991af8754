r"""Layers: the :class:`Sm` operator (a PyG ``MessagePassing`` layer, with
its private engine: autograd functions and the conjugate-gradient solver)
and :class:`SmAttentionPool`."""
from ._solver import SmConvergenceError, SmConvergenceWarning
from .attention_pool import ACTIVATIONS, SmAttentionPool
from .sm import MODES, NONCONVERGENCE, Sm

__all__ = ['Sm', 'SmAttentionPool', 'SmConvergenceError',
           'SmConvergenceWarning', 'MODES', 'NONCONVERGENCE', 'ACTIVATIONS']
