r"""What ``evaluate`` and ``predict`` share: their flags and config."""
import argparse

from ..runs import ScoreConfig
from ._flags import DATA_FIELDS, add_config_flags, given


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group('data')
    add_config_flags(parser, ScoreConfig,
                     group_of={name: data for name in DATA_FIELDS})


def config_from_args(args: argparse.Namespace) -> ScoreConfig:
    return ScoreConfig(**given(args, ScoreConfig))
