r"""Flags from the config dataclasses of :mod:`pyg_sm.runs` and from the
models' declared options: the command line states no default and no help
text of its own."""
import argparse
import dataclasses
import typing
from typing import Any, Dict, Iterable, Optional

from ..models import MODELS
from ..models.registry import ModelSpec, Option

#: The flags that ``train``, ``evaluate`` and ``predict`` show under "data".
DATA_FIELDS = ('data_dir', 'labels', 'layout', 'features_dir', 'graph',
               'connectivity', 'patch_size', 'radius', 'workers',
               'batch_size', 'device', 'slides_dir')


class HelpFormatter(argparse.HelpFormatter):
    """Room for the longest flag, so that every help text starts on the
    flag's own line."""
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=52, width=120)


def escaped(help: str) -> str:
    r"""Help text as argparse takes it (it formats with ``%``)."""
    return help.replace('%', '%%')


def flag(name: str) -> str:
    return '--' + name.replace('_', '-')


def _value_type(annotation) -> Any:
    r"""The type a flag's text becomes: the annotation without
    :obj:`Optional`; a union (a path or a list) or a list is read as its
    first member."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        members = [a for a in typing.get_args(annotation)
                   if a is not type(None)]
        return _value_type(members[0])
    if origin in (list, tuple):
        return _value_type(typing.get_args(annotation)[0])
    return annotation


def _is_list(annotation) -> bool:
    r"""A list, or an optional one (not a union with another type)."""
    members = [a for a in typing.get_args(annotation)
               if a is not type(None)] \
        if typing.get_origin(annotation) is typing.Union else [annotation]
    return len(members) == 1 and typing.get_origin(members[0]) is list


def _comma_list(text: str):
    return [part.strip() for part in text.split(',') if part.strip()]


def _default_text(field: dataclasses.Field) -> Optional[str]:
    unset = field.metadata.get('unset')
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()  # a list: comma-separated
        return ','.join(map(str, value)) if isinstance(value, list) and \
            value else None
    if field.default is dataclasses.MISSING:
        return None
    if field.default is None:
        return unset
    if isinstance(field.default, bool):
        return None
    return str(field.default)


def add_config_flags(parser: argparse.ArgumentParser, config: type,
                     skip: Iterable[str] = (),
                     group_of: Optional[Dict[str, Any]] = None,
                     optional: Iterable[str] = ()) -> None:
    r"""A flag (or positional argument) per field of :obj:`config` but those
    in :obj:`skip`. Every flag defaults to "not given" (so that the config's
    own default applies); its help ends with that default. The positional
    arguments in :obj:`optional` may be left out (a config file gives
    them)."""
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        if field.name in skip or 'help' not in field.metadata:
            continue
        target = (group_of or {}).get(field.name, parser)
        meta = field.metadata
        help = meta['help']
        default = _default_text(field)
        if default is not None:
            help = f'{help} (default: {default})'
        help = escaped(help)
        kind = _value_type(hints[field.name])
        if meta.get('positional'):
            target.add_argument(
                field.name, type=kind, nargs='+' if meta.get('many') else
                '?' if field.name in optional else None,
                metavar=field.name.upper() if not meta.get('many')
                else 'RUN_DIR', help=help)
            continue
        if kind is bool:
            target.add_argument(flag(field.name), dest=field.name,
                                action='store_true',
                                default=argparse.SUPPRESS, help=help)
            continue
        if _is_list(hints[field.name]):  # one flag, comma-separated values
            kind = _comma_list
        required = field.default is dataclasses.MISSING and \
            field.default_factory is dataclasses.MISSING
        if required:
            help = f'{help} (required)'
        target.add_argument(flag(field.name), dest=field.name, type=kind,
                            choices=meta.get('choices'),
                            default=argparse.SUPPRESS, required=required,
                            metavar=None if meta.get('choices') else
                            meta.get('metavar') or field.name.upper(),
                            help=help)


def given(args: argparse.Namespace, config: type) -> Dict[str, Any]:
    r"""The fields of :obj:`config` that the command line gave."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: v for k, v in vars(args).items() if k in names}


def _option_parser(option: Option):
    def parse(text: str):
        try:
            return option.type(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = option.name
    return parse


def add_model_flags(parser: argparse.ArgumentParser,
                    spec: ModelSpec) -> None:
    r"""A flag per option of the model :obj:`spec` (those of the other
    models are not offered). Unset flags take the value of ``--preset``,
    else the constructor's default."""
    described = '; '.join(
        f"'{name}': {preset.help}" + (' (' + ', '.join(
            f'{key}={value}' for key, value in preset.values.items())
            + ')' if preset.values else '')
        for name, preset in spec.presets.items())
    group = parser.add_argument_group(
        f'{spec.model_class.__name__} options (--model {spec.name})',
        escaped(f'Unset options take the value of --preset, else the '
                f'constructor default. Presets: {described}.'))
    defaults = spec.resolve()
    for option in spec.options:
        if not option.flag:
            continue
        default = defaults[option.name]
        help = option.help(spec.model_class)
        if default is not None:
            help = f'{help} (default: {default})'
        help = escaped(help)
        if option.is_switch:
            group.add_argument(flag(option.name), dest=option.name,
                               default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction,
                               help=help)
        else:
            group.add_argument(flag(option.name), dest=option.name,
                               default=argparse.SUPPRESS,
                               type=_option_parser(option),
                               choices=option.choices,
                               metavar=None if option.choices else
                               option.name.upper(), help=help)


def other_model_flags(spec: ModelSpec) -> Dict[str, str]:
    r"""The flags of the other models that :obj:`spec` lacks, with the model
    each belongs to."""
    own = {o.name for o in spec.options if o.flag}
    out = {}
    for other in MODELS.values():
        for option in other.options:
            if option.flag and option.name not in own:
                out.setdefault(flag(option.name), other.name)
    return out


def model_options(args: argparse.Namespace, spec: ModelSpec) -> Dict:
    r"""The model options the command line gave."""
    return {o.name: getattr(args, o.name) for o in spec.options
            if o.flag and hasattr(args, o.name)}

