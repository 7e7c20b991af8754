r"""The run layer: every command of ``pyg-sm`` as one Python call, and the
run folder it writes, with one owner.

Each command has a config dataclass (its flags, with underscores) and a
function:

>>> import tempfile
>>> from pathlib import Path
>>> from pyg_sm import make_synthetic_slides
>>> from pyg_sm.runs import ScoreConfig, TrainConfig, evaluate, train
>>> root = Path(tempfile.mkdtemp())
>>> cohort = make_synthetic_slides(root / 'cohort', num_slides=8,
...                                feature_dim=8, slide_images=False)
>>> run = train(TrainConfig(data_dir=cohort, out=root / 'run', epochs=1,
...                         heatmaps=0))  # doctest: +ELLIPSIS
<BLANKLINE>
...
>>> scored = evaluate(ScoreConfig(data_dir=cohort,
...                               checkpoint=run.checkpoint_path,
...                               out=root / 'eval', heatmaps=0))
... # doctest: +ELLIPSIS
<BLANKLINE>
...
>>> sorted(scored.results()['metrics'])[:3]
['auroc_kind', 'bag_accuracy', 'bag_auroc']

:class:`RunFolder` reads any run folder back: the model, the results, the
slides' predictions and their per-patch scores."""
from ..train import Interrupted
from ..utils.errors import PygSmError
from ..version import __version__  # noqa: F401 (the CLI's --version)
from ._common import invoked_as
from .config import (
                     DEMO_SIGNAL,
                     RECIPES,
                     CohortConfig,
                     DemoConfig,
                     GraphConfig,
                     HeatmapConfig,
                     InspectConfig,
                     Recipe,
                     ScoreConfig,
                     TrainConfig,
                     ViewConfig,
)
from .demos import demo
from .folder import (
                     SCHEMA,
                     RunFolder,
                     SlidePrediction,
                     SlideScores,
                     scored_runs,
)
from .inspecting import inspect
from .pictures import heatmap, open_runs, view
from .scoring import evaluate, predict
from .training import train

__all__ = ['train', 'evaluate', 'predict', 'demo', 'heatmap', 'view',
           'inspect', 'open_runs', 'InspectConfig', 'TrainConfig',
           'ScoreConfig', 'GraphConfig', 'CohortConfig', 'DemoConfig',
           'HeatmapConfig', 'ViewConfig',
           'RECIPES', 'Recipe', 'DEMO_SIGNAL', 'RunFolder', 'SlidePrediction',
           'SlideScores', 'scored_runs', 'SCHEMA', 'Interrupted', 'PygSmError',
           'invoked_as']
