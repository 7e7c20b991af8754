r"""``pyg-sm view``: :func:`pyg_sm.runs.view`."""
import argparse

from .. import runs
from ..runs import ViewConfig
from ._flags import add_config_flags, given

HELP = 'start the local deep-zoom viewer of slides and attention'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, ViewConfig)


def config_from_args(args: argparse.Namespace) -> ViewConfig:
    return ViewConfig(**given(args, ViewConfig))


def run(config: ViewConfig):
    return runs.view(config)
