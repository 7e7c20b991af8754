r"""MIL models on one base class (:class:`MILModel`), and the declaration of
their options that the command line, :func:`build_model` and checkpoints
read (:data:`MODELS`)."""
from .base import MILModel
from .convert import from_torchmil, from_torchmil_state_dict
from .prob_smooth_abmil import (
    ProbSmoothABMIL,
    ProbSmoothMILModel,
    SmoothABMIL,
    TransformerProbSmoothABMIL,
)
from .registry import MODELS, ModelSpec, Option, Preset, build_model
from .sm_abmil import SmABMIL
from .sm_transformer_abmil import SmTransformerABMIL

__all__ = ['MILModel', 'SmABMIL', 'SmTransformerABMIL', 'ProbSmoothABMIL',
           'SmoothABMIL', 'TransformerProbSmoothABMIL', 'ProbSmoothMILModel',
           'MODELS',
           'ModelSpec', 'Option', 'Preset', 'build_model', 'from_torchmil',
           'from_torchmil_state_dict']
