r"""``pyg-sm demo``: :func:`pyg_sm.runs.demo`."""
import argparse

from .. import runs
from ..runs import DemoConfig
from ._flags import add_config_flags, given

HELP = ('train SmABMIL, ProbSmoothABMIL and ABMIL on a synthetic dataset '
        'and compare localization')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, DemoConfig)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(**given(args, DemoConfig))


def run(config: DemoConfig):
    return runs.demo(config)
