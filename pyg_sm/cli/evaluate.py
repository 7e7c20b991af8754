r"""``pyg-sm evaluate DATA_DIR --checkpoint FILE``:
:func:`pyg_sm.runs.evaluate`."""
from .. import runs
from ..runs import ScoreConfig
from ._score import add_arguments, config_from_args  # noqa: F401

HELP = ('score the labelled slides of DATA_DIR with a checkpoint and report '
        'metrics')


def run(config: ScoreConfig):
    return runs.evaluate(config)
