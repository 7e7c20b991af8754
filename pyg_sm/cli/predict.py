r"""``pyg-sm predict DATA_DIR --checkpoint FILE``:
:func:`pyg_sm.runs.predict`."""
from .. import runs
from ..runs import ScoreConfig
from ._score import add_arguments, config_from_args  # noqa: F401

HELP = ('score slides (labels optional) with a checkpoint: predictions.csv, '
        'scores/, geojson/')


def run(config: ScoreConfig):
    return runs.predict(config)
