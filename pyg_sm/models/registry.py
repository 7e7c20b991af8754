r"""The models' options, declared once.

Each model has a :class:`ModelSpec`: its class, its options (name, help
text, value type, choices; the default is read from the constructor's
signature, so it cannot drift from it) and named presets. The ``pyg-sm``
command builds its model flags from it, :func:`build_model` checks options
against it, and checkpoints record the model's name and options in its
terms."""
import dataclasses
import inspect
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from ..nn.attention_pool import ACTIVATIONS, SM_WHERE
from ..nn.sm import MODES, NONCONVERGENCE, Sm
from .sm_abmil import SmABMIL
from .sm_transformer_abmil import SmTransformerABMIL


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

    Args:
        name (str): The keyword argument.
        help (str): What it does, for the command line.
        type (callable, optional): Parses a value from text; :obj:`None`
            for a boolean switch.
        choices (sequence, optional): The allowed values.
        owner (type, optional): The class whose signature holds the default,
            when the model passes the option through (an :class:`Sm`
            option). (default: the model's class)
        flag (bool, optional): Whether the command line has a flag for it;
            :obj:`False` for options the data decide (the number of
            classes). (default: :obj:`True`)
    """
    name: str
    help: str
    type: Optional[Callable[[str], Any]] = None
    choices: Optional[Sequence] = None
    owner: Optional[type] = None
    flag: bool = True

    def default(self, model_class: type) -> Any:
        owner = self.owner or model_class
        return inspect.signature(owner).parameters[self.name].default

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

    def build(self, feature_dim: int, **options) -> torch.nn.Module:
        self.check(options)
        return self.model_class(in_shape=(feature_dim, ), **options)


def _sm_options() -> Tuple[Option, ...]:
    r"""The options of :class:`~pyg_sm.Sm` a model passes through."""
    return (
        Option('tol', 'exact mode: relative residual at which the solve '
               'stops (unset: 1e-10 in float64, 1e-5 otherwise)',
               type=float, owner=Sm),
        Option('max_iter', 'exact mode: conjugate-gradient iterations at '
               'most', type=int, owner=Sm),
        Option('on_nonconvergence', 'exact mode: warn or raise when a solve '
               'stops above tol', type=str, choices=NONCONVERGENCE,
               owner=Sm),
        Option('fused', 'one sparse matrix product per step (else message '
               '+ scatter-add; same numbers)', owner=Sm),
    )


def _torchmil_1_options(prefix: str = '') -> Tuple[Option, ...]:
    r"""torchmil 1.0.x's keywords of the pool: in Python and checkpoints,
    not flags (the command line's presets use the 0.1.0 keywords, and the
    two cannot be mixed)."""
    return (
        Option(f'{prefix}sm_where', "torchmil 1.0.x's placement of Sm",
               type=str, choices=SM_WHERE, flag=False),
        Option(f'{prefix}spectral_norm', "torchmil 1.0.x's spectral "
               'normalization', flag=False),
    )


SM_ABMIL = ModelSpec(
    name='sm_abmil',
    model_class=SmABMIL,
    options=(
        Option('att_dim', 'size of the attention network', type=int),
        Option('att_act', 'activation of the attention network', type=str,
               choices=tuple(ACTIVATIONS)),
        Option('sm_mode', 'Sm mode', type=str, choices=MODES),
        Option('sm_alpha', "Sm alpha: a float in (0, 1) or 'trainable'",
               type=parse_alpha),
        Option('sm_layers', 'Sm layers in the attention network', type=int),
        Option('sm_steps', 'steps of the approx mode', type=int),
        Option('sm_pre', 'smooth the instances before the attention '
               'network'),
        Option('sm_post', 'smooth the attention values'),
        Option('sm_spectral_norm', 'spectral normalization on the '
               "attention network's linear layers"),
        Option('normalize', 'symmetric normalization D^-1/2 W D^-1/2 of the '
               'patch graph'),
        Option('num_classes', 'logits per bag: 1 for two classes, else the '
               'number of classes (pyg-sm train sets it from the labels)',
               type=int, flag=False),
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
        Option('pool_att_dim', 'size of the attention network of the pool',
               type=int),
        Option('pool_act', 'activation of the attention network', type=str,
               choices=tuple(ACTIVATIONS)),
        Option('pool_sm_mode', "the pool's Sm mode", type=str,
               choices=MODES),
        Option('pool_sm_alpha', "the pool's Sm alpha: a float in (0, 1) or "
               "'trainable'", type=parse_alpha),
        Option('pool_sm_layers', 'Sm layers in the attention network',
               type=int),
        Option('pool_sm_steps', "steps of the pool's approx mode", type=int),
        Option('pool_sm_pre', 'smooth the encoded instances before the '
               'attention network'),
        Option('pool_sm_post', 'smooth the attention values'),
        Option('pool_sm_spectral_norm', 'spectral normalization on the '
               "attention network's linear layers"),
        Option('transf_att_dim', 'width A of the transformer', type=int),
        Option('transf_n_layers', 'transformer layers', type=int),
        Option('transf_n_heads', 'attention heads (a divisor of A)',
               type=int),
        Option('transf_use_mlp', 'an MLP after each self-attention'),
        Option('transf_add_self', "add the encoder's input after every "
               'layer'),
        Option('transf_dropout', 'dropout on the attention weights '
               '(training only) and in the MLP', type=float),
        Option('transf_sm_alpha', "every layer's Sm alpha: a float in (0, 1) "
               "or 'trainable'", type=parse_alpha),
        Option('transf_sm_mode', "the transformer's Sm mode", type=str,
               choices=MODES),
        Option('transf_sm_steps', "steps of the transformer's approx mode",
               type=int),
        Option('normalize', 'symmetric normalization D^-1/2 W D^-1/2 of the '
               'patch graph'),
        Option('num_classes', 'logits per bag: 1 for two classes, else the '
               'number of classes (pyg-sm train sets it from the labels)',
               type=int, flag=False),
    ) + _torchmil_1_options('pool_') + _sm_options(),
    presets={
        'sm': Preset('Sm in every transformer layer, one Sm layer in the '
                     "pool's attention network and Sm on its attention "
                     'values', dict(pool_sm_layers=1, pool_sm_post=True)),
        'reference': Preset("the constructor's defaults (torchmil 0.1.0's)",
                            {}),
    },
)

#: The models the command line and checkpoints know, by name.
MODELS: Dict[str, ModelSpec] = {spec.name: spec for spec in (
    SM_ABMIL, SM_TRANSFORMER_ABMIL)}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {list(MODELS)})")
    return MODELS[name]


def build_model(feature_dim: int, model: str = 'sm_abmil',
                **options) -> torch.nn.Module:
    r"""Builds the model :obj:`model` for instances of :obj:`feature_dim`
    features with :obj:`options` (the constructor's defaults elsewhere)."""
    return model_spec(model).build(feature_dim, **options)
