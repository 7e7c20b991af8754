r"""What ``evaluate`` and ``predict`` share: their flags and config."""
import argparse

from ..runs import ScoreConfig
from ._flags import add_config_flags, given

#: Where each field's flag is shown in --help.
DATA = ('data_dir', 'labels', 'layout', 'features_dir', 'graph',
        'connectivity', 'patch_size', 'radius', 'workers', 'batch_size',
        'device', 'slides_dir')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group('data')
    add_config_flags(parser, ScoreConfig,
                     group_of={name: data for name in DATA})


def config_from_args(args: argparse.Namespace) -> ScoreConfig:
    return ScoreConfig(**given(args, ScoreConfig))
