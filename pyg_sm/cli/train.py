r"""``pyg-sm train DATA_DIR``: :func:`pyg_sm.runs.train`."""
import argparse
from pathlib import Path
from typing import List, Optional

from .. import runs
from ..models import MODELS
from ..runs import RECIPES, PygSmError, TrainConfig
from ._flags import (
    DATA_FIELDS,
    add_config_flags,
    add_model_flags,
    escaped,
    given,
    model_options,
    other_model_flags,
)

HELP = 'train a model on DATA_DIR (labels + slide features)'

#: The model when ``--model`` is not given.
DEFAULT_MODEL = TrainConfig.__dataclass_fields__['model'].default


def chosen_model(argv: List[str]) -> str:
    r"""The ``--model`` of a command line (its flags depend on it)."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument('--model', default=DEFAULT_MODEL)
    known, _ = peek.parse_known_args(argv)
    return known.model if known.model in MODELS else DEFAULT_MODEL


def add_arguments(parser: argparse.ArgumentParser,
                  argv: Optional[List[str]] = None) -> None:
    data = parser.add_argument_group('data')
    training = parser.add_argument_group('training')
    group_of = {name: data for name in DATA_FIELDS}
    spec = MODELS[chosen_model(argv or [])]
    add_config_flags(parser, TrainConfig, skip=('model_options', 'preset'),
                     group_of={**{f: training for f in
                                  TrainConfig.__dataclass_fields__},
                               **group_of}, optional=('data_dir', ))
    training.add_argument(
        '--config', type=Path, default=None, metavar='FILE',
        help='YAML file of settings, every flag a key (as --print-config '
             'writes them); flags given override it (default: none)')
    training.add_argument(
        '--print-config', action='store_true',
        help='print every setting of this command line as YAML (for '
             '--config) and exit')
    described = '; '.join(
        f"'{name}': {recipe.help} (" + ', '.join(
            f'{k}={v}' for k, v in recipe.settings.items()) + ')'
        for name, recipe in RECIPES.items())
    training.add_argument('--recipe', choices=list(RECIPES),
                          default=None,
                          help=escaped(f'named training settings; flags '
                                       f'given override them: {described} '
                                       f'(default: none)'))
    preset = TrainConfig.__dataclass_fields__['preset'].metadata
    training.add_argument('--preset', choices=list(spec.presets),
                          default=argparse.SUPPRESS,
                          help=escaped(f"{preset['help']} of --model "
                                       f"{spec.name} (default: "
                                       f"{spec.default_preset})"))
    add_model_flags(parser, spec)


def check_model_flags(unknown: List[str], args: argparse.Namespace) -> None:
    r"""A flag of another model than ``--model`` is an error that says
    which model it belongs to."""
    spec = MODELS[getattr(args, 'model', DEFAULT_MODEL)]
    owners = other_model_flags(spec)
    stray = sorted({f for f in owners for a in unknown
                    if a == f or a.startswith(f + '=') or
                    a == '--no-' + f[2:]})
    if stray:
        raise PygSmError(', '.join(f'{f} belongs to --model {owners[f]}'
                                   for f in stray) +
                         f', not to --model {spec.name}')


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    spec = MODELS[getattr(args, 'model', DEFAULT_MODEL)]
    settings = given(args, TrainConfig)
    if settings.get('data_dir') is None:
        settings.pop('data_dir', None)
    if args.config is not None:
        if args.recipe is not None:
            settings['recipe'] = args.recipe
        return TrainConfig.from_file(args.config, **settings,
                                     model_options=model_options(args, spec))
    if 'data_dir' not in settings:
        raise PygSmError('DATA_DIR is required (or data_dir in --config)')
    return TrainConfig.from_recipe(args.recipe, **settings,
                                   model_options=model_options(args, spec))


def shown(args: argparse.Namespace, config: TrainConfig) -> bool:
    r"""With ``--print-config``: prints the config as YAML instead of
    training."""
    if args.print_config:
        print(config.to_yaml(), end='')
    return args.print_config


def run(config: TrainConfig) -> runs.RunFolder:
    return runs.train(config)
