r"""``pyg-sm heatmap``: :func:`pyg_sm.runs.heatmap`."""
import argparse

from .. import runs
from ..runs import HeatmapConfig
from ._flags import add_config_flags, given

HELP = ('draw the attention of one or more runs over the slide images (or on '
        'the patch grid without them)')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, HeatmapConfig)


def config_from_args(args: argparse.Namespace) -> HeatmapConfig:
    return HeatmapConfig(**given(args, HeatmapConfig))


def run(config: HeatmapConfig):
    return runs.heatmap(config)
