r"""The models' options, declared once.

Each model has a :class:`ModelSpec`: its class, its options (name, help
text, value type, choices; the default is read from the constructor's
signature and the help text from its docstring, so neither can drift) and
named presets. The ``pyg-sm`` command builds its model flags from it,
:func:`build_model` checks options against it, and checkpoints record the
model's name and options in its terms."""
import dataclasses
import inspect
import re
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from ..nn.attention_pool import ACTIVATIONS, SM_WHERE
from ..nn.prob_smooth_pool import COVAR_MODES
from ..nn.sm import MODES, NONCONVERGENCE, Sm
from ..utils.docstrings import argument_docs, plain_text
from .prob_smooth_abmil import (
    ProbSmoothABMIL,
    SmoothABMIL,
    TransformerProbSmoothABMIL,
)
from .sm_abmil import SmABMIL
from .sm_transformer_abmil import SmTransformerABMIL

#: 'Keyword only' concerns Python callers, not the command line.
_KEYWORD_ONLY = re.compile(r'^Keyword only[.;,]\s*')


def parse_alpha(value: str) -> Union[float, str]:
    r"""``'trainable'`` or a float, from text."""
    if value == 'trainable':
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be 'trainable' or a float in (0, 1), got "
                         f"{value!r}") from None


@dataclasses.dataclass(frozen=True)
class Option:
    r"""One constructor option of a model.

    Its default and its help text are read from the constructor of
    :obj:`owner` (the model's class unless given): the signature's default
    and the docstring's ``Args:`` entry, so that neither is written twice.

    Args:
        name (str): The keyword argument.
        type (callable, optional): Parses a value from text; :obj:`None`
            for a boolean switch.
        choices (sequence, optional): The allowed values.
        owner (type, optional): The class whose signature and docstring
            hold the option, when the model passes it through (an
            :class:`Sm` option). (default: the model's class)
        flag (bool, optional): Whether the command line has a flag for it;
            :obj:`False` for options the data decide (the number of
            classes). (default: :obj:`True`)
    """
    name: str
    type: Optional[Callable[[str], Any]] = None
    choices: Optional[Sequence] = None
    owner: Optional[type] = None
    flag: bool = True

    def default(self, model_class: type) -> Any:
        owner = self.owner or model_class
        return inspect.signature(owner).parameters[self.name].default

    def help(self, model_class: type) -> str:
        r"""What the option does, from the owner's docstring, as a terminal
        shows it."""
        text = argument_docs(self.owner or model_class).get(self.name, '')
        return _KEYWORD_ONLY.sub('', plain_text(text))

    @property
    def is_switch(self) -> bool:
        return self.type is None


@dataclasses.dataclass(frozen=True)
class Preset:
    r"""A named set of option values, and what it is."""
    help: str
    values: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    r"""A model the command line and checkpoints know by :obj:`name`.

    Args:
        name (str): The name in checkpoints and ``--model``.
        model_class (type): The :class:`~pyg_sm.models.MILModel` subclass,
            built as ``model_class(in_shape=(feature_dim,), **options)``.
        options (tuple of Option): Its options.
        presets (dict of Preset): Named sets of option values; the first is
            the command line's default model.
    """
    name: str
    model_class: type
    options: Tuple[Option, ...]
    presets: Dict[str, Preset]

    def defaults(self) -> Dict[str, Any]:
        r"""Every option's default, from the constructors' signatures."""
        return {option.name: option.default(self.model_class)
                for option in self.options}

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))

    def check(self, options: Dict[str, Any]) -> None:
        unknown = sorted(set(options) - {o.name for o in self.options})
        if unknown:
            raise ValueError(f"unknown {self.name} options: {unknown} "
                             f"(known: {[o.name for o in self.options]})")

    def resolve(self, preset: Optional[str] = None,
                **overrides) -> Dict[str, Any]:
        r"""Every option's value: the defaults, then :obj:`preset` (the
        default preset if :obj:`None`), then :obj:`overrides`."""
        preset = self.default_preset if preset is None else preset
        if preset not in self.presets:
            raise ValueError(f"unknown preset {preset!r} of {self.name} "
                             f"(known: {list(self.presets)})")
        self.check(overrides)
        return {**self.defaults(), **self.presets[preset].values,
                **overrides}

    def build(self, feature_dim: int, criterion=None,
              **options) -> torch.nn.Module:
        r"""The model for instances of :obj:`feature_dim` features with
        :obj:`options` and, when given, :obj:`criterion` (a survival
        criterion gives the model its survival head)."""
        self.check(options)
        if criterion is not None:
            options = {**options, 'criterion': criterion}
        return self.model_class(in_shape=(feature_dim, ), **options)


def _sm_options() -> Tuple[Option, ...]:
    r"""The options of :class:`~pyg_sm.Sm` a model passes through."""
    return (
        Option('tol', type=float, owner=Sm),
        Option('max_iter', type=int, owner=Sm),
        Option('on_nonconvergence', type=str, choices=NONCONVERGENCE,
               owner=Sm),
        Option('fused', owner=Sm),
    )


def _torchmil_1_options(prefix: str = '') -> Tuple[Option, ...]:
    r"""torchmil 1.0.x's keywords of the pool: in Python and checkpoints,
    not flags (the command line's presets use the 0.1.0 keywords, and the
    two cannot be mixed)."""
    return (
        Option(f'{prefix}sm_where', type=str, choices=SM_WHERE, flag=False),
        Option(f'{prefix}spectral_norm', flag=False),
    )


SM_ABMIL = ModelSpec(
    name='sm_abmil',
    model_class=SmABMIL,
    options=(
        Option('att_dim', type=int),
        Option('att_act', type=str, choices=tuple(ACTIVATIONS)),
        Option('sm_mode', type=str, choices=MODES),
        Option('sm_alpha', type=parse_alpha),
        Option('sm_layers', type=int),
        Option('sm_steps', type=int),
        Option('sm_pre'),
        Option('sm_post'),
        Option('sm_spectral_norm'),
        Option('normalize'),
        Option('num_classes', type=int, flag=False),
    ) + _torchmil_1_options() + _sm_options(),
    presets={
        # The first preset is the command line's default model.
        'sm': Preset('one Sm layer in the attention network and Sm on the '
                     'attention values', dict(sm_layers=1, sm_post=True)),
        'abmil': Preset("no smoothing at all, plain ABMIL: the "
                        "constructor's defaults",
                        dict(sm_layers=0, sm_pre=False, sm_post=False)),
    },
)

SM_TRANSFORMER_ABMIL = ModelSpec(
    name='sm_transformer_abmil',
    model_class=SmTransformerABMIL,
    options=(
        Option('pool_att_dim', type=int),
        Option('pool_act', type=str, choices=tuple(ACTIVATIONS)),
        Option('pool_sm_mode', type=str, choices=MODES),
        Option('pool_sm_alpha', type=parse_alpha),
        Option('pool_sm_layers', type=int),
        Option('pool_sm_steps', type=int),
        Option('pool_sm_pre'),
        Option('pool_sm_post'),
        Option('pool_sm_spectral_norm'),
        Option('transf_att_dim', type=int),
        Option('transf_n_layers', type=int),
        Option('transf_n_heads', type=int),
        Option('transf_use_mlp'),
        Option('transf_add_self'),
        Option('transf_dropout', type=float),
        Option('transf_sm_alpha', type=parse_alpha),
        Option('transf_sm_mode', type=str, choices=MODES),
        Option('transf_sm_steps', type=int),
        Option('normalize'),
        Option('num_classes', type=int, flag=False),
    ) + _torchmil_1_options('pool_') + _sm_options(),
    presets={
        'sm': Preset('Sm in every transformer layer, one Sm layer in the '
                     "pool's attention network and Sm on its attention "
                     'values', dict(pool_sm_layers=1, pool_sm_post=True)),
        'reference': Preset("the constructor's defaults (torchmil 0.1.0's)",
                            {}),
    },
)

#: The options of the probabilistic pool that the models pass through.
_SAMPLING_OPTIONS = (
    Option('covar_mode', type=str, choices=COVAR_MODES),
    Option('n_samples_train', type=int),
    Option('n_samples_test', type=int),
)
_GRAPH_OPTIONS = (
    Option('normalize'),
    Option('num_classes', type=int, flag=False),
)

PROB_SMOOTH_ABMIL = ModelSpec(
    name='prob_smooth_abmil',
    model_class=ProbSmoothABMIL,
    options=(Option('att_dim', type=int), ) + _SAMPLING_OPTIONS + (
        Option('eval_seed', type=int), ) + _GRAPH_OPTIONS,
    presets={
        'prob': Preset("torchmil 1.0.2's defaults: a variance per patch, "
                       "1000 attention samples per bag in training and "
                       "5000 in evaluation", {}),
    },
)

SMOOTH_ABMIL = ModelSpec(
    name='smooth_abmil',
    model_class=SmoothABMIL,
    options=(Option('att_dim', type=int), ) + _GRAPH_OPTIONS,
    presets={'smooth': Preset("the constructor's defaults (torchmil "
                              "1.0.2's)", {})},
)

TRANSFORMER_PROB_SMOOTH_ABMIL = ModelSpec(
    name='transformer_prob_smooth_abmil',
    model_class=TransformerProbSmoothABMIL,
    options=(Option('pool_att_dim', type=int), ) + _SAMPLING_OPTIONS + (
        Option('transf_att_dim', type=int),
        Option('transf_n_layers', type=int),
        Option('transf_n_heads', type=int),
        Option('transf_use_mlp'),
        Option('transf_add_self'),
        Option('transf_dropout', type=float),
        Option('eval_seed', type=int),
    ) + _GRAPH_OPTIONS,
    presets={'prob': Preset("the constructor's defaults (torchmil "
                            "1.0.2's)", {})},
)

#: The models the command line and checkpoints know, by name.
MODELS: Dict[str, ModelSpec] = {spec.name: spec for spec in (
    SM_ABMIL, SM_TRANSFORMER_ABMIL, PROB_SMOOTH_ABMIL, SMOOTH_ABMIL,
    TRANSFORMER_PROB_SMOOTH_ABMIL)}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {list(MODELS)})")
    return MODELS[name]


def build_model(feature_dim: int, model: str = 'sm_abmil',
                criterion=None, **options) -> torch.nn.Module:
    r"""Builds the model :obj:`model` for instances of :obj:`feature_dim`
    features with :obj:`options` (the constructor's defaults elsewhere)
    and :obj:`criterion` (the model's default when :obj:`None`)."""
    return model_spec(model).build(feature_dim, criterion, **options)
