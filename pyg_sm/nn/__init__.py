r"""Layers: the :class:`Sm` operator (a PyG ``MessagePassing`` layer, with
its private engine: autograd functions and the conjugate-gradient solver),
:class:`SmAttentionPool` and the Sm transformer (:class:`SmTransformerEncoder`,
its layer and its self-attention), probabilistic smooth attention
(:class:`ProbSmoothAttentionPool`, its KL term :func:`smoothness_kl`), and
the survival criteria
(:class:`CoxPHLoss`, :class:`DiscreteTimeNLLLoss`) and their bag head
(:class:`SurvivalHead`)."""
from ._solver import SmConvergenceError, SmConvergenceWarning
from .attention_pool import ACTIVATIONS, SM_WHERE, SmAttentionPool
from .prob_smooth_pool import (
                       COVAR_MODES,
                       ProbSmoothAttentionPool,
                       smoothness_kl,
)
from .sm import MODES, NONCONVERGENCE, Sm
from .sm_transformer import (
                       SmMultiheadSelfAttention,
                       SmTransformerEncoder,
                       SmTransformerLayer,
                       per_bag_attention,
)
from .survival import (
                       SURVIVAL_LOSSES,
                       CoxPHLoss,
                       DiscreteTimeNLLLoss,
                       SurvivalHead,
                       SurvivalLoss,
                       make_survival_loss,
                       survival_cut_points,
)

__all__ = ['Sm', 'SmAttentionPool', 'ProbSmoothAttentionPool',
           'smoothness_kl', 'COVAR_MODES', 'SmConvergenceError',
           'SmConvergenceWarning', 'MODES', 'NONCONVERGENCE', 'ACTIVATIONS',
           'SM_WHERE', 'SmMultiheadSelfAttention', 'SmTransformerLayer',
           'SmTransformerEncoder', 'per_bag_attention', 'SurvivalLoss',
           'CoxPHLoss', 'DiscreteTimeNLLLoss', 'survival_cut_points',
           'make_survival_loss', 'SURVIVAL_LOSSES', 'SurvivalHead']
