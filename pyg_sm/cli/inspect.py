r"""``pyg-sm inspect DATA_DIR``: :func:`pyg_sm.runs.inspect`."""
import argparse

from .. import runs
from ..runs import InspectConfig
from ._flags import add_config_flags, given

HELP = ("report every slide's patch graph (patches, edges, mean degree, "
        "the patch side and where it came from) before training")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, InspectConfig)


def config_from_args(args: argparse.Namespace) -> InspectConfig:
    return InspectConfig(**given(args, InspectConfig))


def run(config: InspectConfig):
    return runs.inspect(config)
