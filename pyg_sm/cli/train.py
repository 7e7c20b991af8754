r"""``pyg-sm train DATA_DIR``: :func:`pyg_sm.runs.train`."""
import argparse
from typing import List, Optional

from .. import runs
from ..models import MODELS
from ..runs import RECIPES, PygSmError, TrainConfig
from ._flags import (DATA_FIELDS, add_config_flags, add_model_flags,
                     escaped, given, model_options, other_model_flags)

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
                               **group_of})
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
    return TrainConfig.from_recipe(args.recipe, **given(args, TrainConfig),
                                   model_options=model_options(args, spec))


def run(config: TrainConfig) -> runs.RunFolder:
    return runs.train(config)
