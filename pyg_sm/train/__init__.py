r"""Training, prediction, metrics, exports and checkpoints."""
from . import legacy_pickle
from .checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, model_name,
                         read_checkpoint, save_checkpoint)
from .distributed import deterministic_algorithms, resolve_device
from .loop import (MONITORS, Interrupted, fit, make_optimizer, train_model,
                   train_step, validate)
from .metrics import classification_metrics, evaluate_predictions
from .predict import predict_slides, predicted_class, score_slides
from .survival import (evaluate_survival, harrell_c_index,
                       kaplan_meier_groups, survival_metrics)

__all__ = ['fit', 'validate', 'Interrupted', 'MONITORS', 'train_model',
           'train_step', 'make_optimizer', 'predict_slides', 'score_slides',
           'predicted_class',
           'classification_metrics', 'evaluate_predictions',
           'save_checkpoint', 'load_checkpoint', 'read_checkpoint',
           'model_name', 'CHECKPOINT_FORMAT', 'legacy_pickle',
           'resolve_device', 'deterministic_algorithms', 'harrell_c_index',
           'survival_metrics', 'evaluate_survival', 'kaplan_meier_groups']
