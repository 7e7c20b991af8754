r"""Training on Lightning, prediction, metrics, exports and checkpoints.

:func:`fit` trains any :class:`~pyg_sm.models.MILModel` for a
:class:`~pyg_sm.train.tasks.Task` with a Lightning ``Trainer``
(:class:`~pyg_sm.train.engine.MILModule`, the callbacks of
:mod:`pyg_sm.train.engine`, the data of :mod:`pyg_sm.train.data`).
Lightning is imported when one of those is first used: scoring, reading
runs and the command line's other commands do not load it."""
import importlib

from . import legacy_pickle
from .checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    model_name,
    read_checkpoint,
    save_checkpoint,
)
from .distributed import deterministic_algorithms, resolve_device
from .metrics import (
    classification_metrics,
    evaluate_predictions,
    predicted_class,
)
from .predict import predict_slides, score_slides
from .records import (
    BagRecord,
    ClassificationRecord,
    EpochRecord,
    SlideAttention,
    SurvivalRecord,
)
from .settings import FitSettings, Interrupted, make_optimizer, make_scheduler
from .survival import (
    evaluate_survival,
    harrell_c_index,
    kaplan_meier_groups,
    survival_metrics,
)
from .tasks import MONITORS, TASKS, ClassificationTask, SurvivalTask, Task
from .validation import Validation, validate

#: The names whose modules import Lightning, loaded on first use.
_ENGINE = {'fit': 'loop', 'make_loggers': 'loop', 'train_model': 'loop',
           'train_step': 'loop', 'MILModule': 'engine',
           'BestCheckpoint': 'engine', 'TrainingState': 'engine',
           'RandomStates': 'engine', 'StopOnInterrupt': 'engine',
           'model_weights': 'engine', 'CohortData': 'data',
           'EpochOrder': 'data'}


def __getattr__(name: str):
    if name in _ENGINE:
        module = importlib.import_module(f'.{_ENGINE[name]}', __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ['fit', 'validate', 'Validation', 'FitSettings', 'Interrupted',
           'MONITORS', 'train_model', 'train_step', 'make_optimizer',
           'make_scheduler', 'make_loggers', 'MILModule', 'CohortData',
           'EpochOrder', 'BestCheckpoint', 'TrainingState', 'RandomStates',
           'StopOnInterrupt', 'model_weights', 'Task',
           'ClassificationTask', 'SurvivalTask', 'TASKS', 'BagRecord',
           'ClassificationRecord', 'SurvivalRecord', 'SlideAttention',
           'EpochRecord', 'predict_slides', 'score_slides',
           'predicted_class', 'classification_metrics',
           'evaluate_predictions', 'save_checkpoint', 'load_checkpoint',
           'read_checkpoint', 'model_name', 'CHECKPOINT_FORMAT',
           'legacy_pickle', 'resolve_device', 'deterministic_algorithms',
           'harrell_c_index', 'survival_metrics', 'evaluate_survival',
           'kaplan_meier_groups']
