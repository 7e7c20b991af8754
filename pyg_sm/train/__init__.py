r"""Training on Lightning, prediction, metrics, exports and checkpoints.

:func:`fit` trains any :class:`~pyg_sm.models.MILModel` for a
:class:`~pyg_sm.train.tasks.Task` with a Lightning ``Trainer``
(:class:`~pyg_sm.train.engine.MILModule`, the callbacks of
:mod:`pyg_sm.train.engine`, the data of :mod:`pyg_sm.train.data`)."""
from . import legacy_pickle
from .checkpoint import (
                         CHECKPOINT_FORMAT,
                         load_checkpoint,
                         model_name,
                         read_checkpoint,
                         save_checkpoint,
)
from .data import CohortData, EpochOrder
from .distributed import deterministic_algorithms, resolve_device
from .engine import (
                         BestCheckpoint,
                         Interrupted,
                         MILModule,
                         RandomStates,
                         StopOnInterrupt,
                         TrainingState,
                         model_weights,
)
from .loop import fit, make_loggers, train_model, train_step
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
from .settings import FitSettings, make_optimizer, make_scheduler
from .survival import (
                         evaluate_survival,
                         harrell_c_index,
                         kaplan_meier_groups,
                         survival_metrics,
)
from .tasks import MONITORS, TASKS, ClassificationTask, SurvivalTask, Task
from .validation import Validation, validate

__all__ = ['fit', 'validate', 'Validation', 'FitSettings', 'Interrupted',
           'MONITORS', 'train_model', 'train_step', 'make_optimizer',
           'make_scheduler', 'make_loggers', 'MILModule', 'CohortData',
           'EpochOrder', 'BestCheckpoint', 'TrainingState', 'RandomStates',
           'StopOnInterrupt', 'model_weights', 'Task',
           'ClassificationTask', 'SurvivalTask', 'TASKS', 'BagRecord',
           'ClassificationRecord', 'SurvivalRecord',
           'SlideAttention', 'EpochRecord', 'predict_slides',
           'score_slides', 'predicted_class', 'classification_metrics',
           'evaluate_predictions', 'save_checkpoint', 'load_checkpoint',
           'read_checkpoint', 'model_name', 'CHECKPOINT_FORMAT',
           'legacy_pickle', 'resolve_device', 'deterministic_algorithms',
           'harrell_c_index', 'survival_metrics', 'evaluate_survival',
           'kaplan_meier_groups']
