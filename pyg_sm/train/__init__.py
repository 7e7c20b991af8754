r"""Training, prediction, metrics and checkpoints."""
from . import legacy_pickle
from .checkpoint import (CHECKPOINT_FORMAT, load_checkpoint, model_name,
                         save_checkpoint)
from .loop import make_optimizer, train_model, train_step
from .metrics import evaluate_predictions
from .predict import predict_slides

__all__ = ['train_model', 'train_step', 'make_optimizer', 'predict_slides',
           'evaluate_predictions', 'save_checkpoint', 'load_checkpoint',
           'model_name', 'CHECKPOINT_FORMAT']
