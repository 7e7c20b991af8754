r"""What a model learns to predict, one class per kind of outcome.

A :class:`Task` owns everything that depends on the outcome: the criterion
and the number of outputs, the record of a scored bag, the targets of the
loss, the validation metrics and the monitors among them, the metrics a
run folder stores and summarizes over folds, and the task entry of a
checkpoint. The training engine, the scoring and the run layer ask the
task; a new kind of outcome is one new subclass registered in
:data:`TASKS`.
"""
import dataclasses
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..models.base import MILModel, bag_loss, bag_probabilities
from ..nn.survival import SurvivalLoss, make_survival_loss, survival_cut_points
from ..utils.errors import PygSmError
from .metrics import evaluate_predictions, instance_auroc, predicted_class
from .records import BagRecord, ClassificationRecord, SurvivalRecord
from .splits import check_split, check_survival_split
from .survival import evaluate_survival, harrell_c_index

#: ``--class-weights`` choices.
CLASS_WEIGHTS = ('none', 'balanced')


@dataclasses.dataclass
class Task:
    r"""The base of the tasks. A subclass declares its :attr:`name`, its
    :attr:`record_type`, the validation metrics an epoch records
    (:attr:`epoch_metrics`: history name to metric name), which of them may
    pick the best checkpoint (:attr:`monitors`, with whether higher is
    better), its :attr:`default_monitor`, the metrics summarized over folds
    (:attr:`summary`, with why a fold may lack one), and implements the
    methods below."""
    name: ClassVar[str]
    record_type: ClassVar[type] = BagRecord
    epoch_metrics: ClassVar[Dict[str, str]] = {}
    monitors: ClassVar[Dict[str, bool]] = {}
    default_monitor: ClassVar[str] = 'val_loss'
    summary: ClassVar[Dict[str, str]] = {}

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def criterion(self) -> Optional[torch.nn.Module]:
        r"""The loss the model is built with (:obj:`None`: the model's
        default)."""
        return None

    @property
    def curve_points(self) -> Tuple[float, ...]:
        r"""Where the bags' predicted curves are reported (survival's cut
        points; none for others)."""
        return ()

    @property
    def positive_class(self) -> Optional[str]:
        r"""The class whose slides hold the lesions (none: lesions are not
        a class of this task)."""
        return None

    def label_names(self, labels: Optional[Sequence[int]]
                    ) -> List[Optional[str]]:
        r"""The dataset's labels as names (none where the task's labels
        are no classes)."""
        return [None] * len(labels or ())

    def fitted(self, train_set) -> 'Task':
        r"""The task of one split, with what it learns from the training
        bags :obj:`train_set` (cut points, class weights)."""
        return self

    def prepare(self, model: MILModel) -> None:
        r"""Sets up a freshly built :obj:`model` for the split."""

    def bag_fields(self, model: MILModel, logits: Tensor,
                   targets: Optional[Tensor]) -> List[Dict]:
        r"""Per bag of a batch, the fields of :attr:`record_type` beyond
        those of :class:`~pyg_sm.train.records.BagRecord`."""
        raise NotImplementedError

    def targets(self, records: Sequence[BagRecord],
                device: torch.device) -> Tensor:
        r"""The loss targets of labelled records."""
        raise NotImplementedError

    def metrics(self, records: Sequence[BagRecord]) -> Dict:
        r"""The metrics of scored bags, as ``results.json`` stores them."""
        raise NotImplementedError

    def batch_counts(self, batch) -> Dict[str, float]:
        r"""What an epoch counts about its training batches."""
        return {}

    def entry(self) -> Dict:
        r"""The task as checkpoints and ``results.json`` record it."""
        return {'task': self.name}

    def check_split(self, split: Dict[str, List[str]], dataset,
                    units: Optional[Sequence[str]],
                    fixed: bool = False) -> None:
        r"""Stops before training with what a split of :obj:`dataset`
        lacks (:obj:`fixed`: the user's split file)."""
        raise NotImplementedError

    @classmethod
    def from_settings(cls, settings, classes: Optional[Sequence[str]]
                      ) -> 'Task':
        r"""The task of a run's settings (a
        :class:`~pyg_sm.runs.TrainConfig`) and the cohort's classes."""
        raise NotImplementedError

    @classmethod
    def from_entry(cls, entry: Dict,
                   classes: Optional[Sequence[str]]) -> 'Task':
        r"""The task of a checkpoint's entry (:meth:`entry`)."""
        return TASKS[entry.get('task', 'classification')]._from_entry(
            entry, classes)

    def validation(self, model: MILModel,
                   records: Sequence[BagRecord]) -> Dict[str, Optional[float]]:
        r"""The validation loss (the criterion over all the records at
        once) and :attr:`epoch_metrics` of :obj:`records`, by their
        history names."""
        device = next(model.parameters()).device
        logits = torch.tensor([r.logits for r in records], device=device)
        if model.num_classes == 1:
            logits = logits.reshape(-1)
        loss = float(bag_loss(model.criterion, logits,
                              self.targets(records, device)))
        return {'val_loss': loss, **self.epoch_values(records)}

    def epoch_values(self, records: Sequence[BagRecord]
                     ) -> Dict[str, Optional[float]]:
        r"""The :attr:`epoch_metrics` of :obj:`records`."""
        metrics = self.metrics(records)
        return {name: metrics.get(key)
                for name, key in self.epoch_metrics.items()}

    @classmethod
    def of_model(cls, model: MILModel,
                 classes: Optional[Sequence[str]] = None) -> 'Task':
        r"""The task a trained model was built for (by its criterion)."""
        for task in TASKS.values():
            if task.fits(model):
                return task.from_model(model, classes)
        raise PygSmError(f"no task knows {type(model.criterion).__name__}")


@dataclasses.dataclass
class ClassificationTask(Task):
    r"""Bags of :obj:`classes`: one logit (two classes) or one per class,
    with the class probabilities, the bag AUROC, accuracy and balanced
    accuracy, and the instance AUROC of the attention where patch labels
    exist.

    Args:
        classes (list): The class names in the order of the outputs.
        class_weights (str, optional): ``'balanced'`` weighs each class's
            loss by the inverse of its share of the training bags
            (``pos_weight`` of a binary loss, ``weight`` of the cross
            entropy), ``'none'`` does not. (default: ``'none'``)
        counts (list, optional): The training bags of each class (set by
            :meth:`fitted`).
    """
    classes: List[str] = dataclasses.field(
        default_factory=lambda: ['0', '1'])
    class_weights: str = 'none'
    counts: Optional[List[int]] = None

    name: ClassVar[str] = 'classification'
    record_type: ClassVar[type] = ClassificationRecord
    epoch_metrics: ClassVar[Dict[str, str]] = {
        'val_auroc': 'bag_auroc', 'val_balanced_accuracy':
        'balanced_accuracy', 'val_accuracy': 'bag_accuracy',
        'val_instance_auroc': 'instance_auroc'}
    monitors: ClassVar[Dict[str, bool]] = {
        'val_auroc': True, 'val_balanced_accuracy': True,
        'val_accuracy': True}
    summary: ClassVar[Dict[str, str]] = {
        'bag_auroc': 'its validation slides are of one class',
        'balanced_accuracy': 'it has no labelled validation slide',
        'bag_accuracy': 'it has no labelled validation slide',
        'instance_auroc': 'its validation slides have no patch labels of '
                          'both kinds'}

    def __post_init__(self):
        if self.class_weights not in CLASS_WEIGHTS:
            raise PygSmError(f"'class_weights' (--class-weights) must be "
                             f"one of {list(CLASS_WEIGHTS)} (got "
                             f"{self.class_weights!r})")

    @property
    def num_outputs(self) -> int:
        return 1 if len(self.classes) == 2 else len(self.classes)

    @property
    def positive_class(self) -> Optional[str]:
        return self.classes[-1]

    def label_names(self, labels) -> List[Optional[str]]:
        return [self.classes[k] for k in labels] if labels is not None \
            else []

    def fitted(self, train_set) -> 'ClassificationTask':
        labels = np.asarray(train_set.labels, dtype=np.int64)
        counts = np.bincount(labels, minlength=len(self.classes)).tolist()
        return dataclasses.replace(self, counts=counts)

    def criterion(self) -> Optional[torch.nn.Module]:
        if self.class_weights == 'none':
            return None
        if self.counts is None:
            raise ValueError('balanced class weights need the training '
                             'counts: use the fitted() task')
        counts = torch.tensor(self.counts, dtype=torch.float32)
        if len(self.classes) == 2:
            return torch.nn.BCEWithLogitsLoss(
                pos_weight=(counts[0] / counts[1]).reshape(1))
        return torch.nn.CrossEntropyLoss(
            weight=counts.sum() / (len(counts) * counts.clamp(min=1)))

    def bag_fields(self, model, logits, targets) -> List[Dict]:
        probabilities = bag_probabilities(logits).cpu().tolist()
        labels = None if targets is None else \
            targets.reshape(-1).long().cpu().tolist()
        return [{'label': None if labels is None else labels[i],
                 'probabilities': p, 'predicted': predicted_class(p)}
                for i, p in enumerate(probabilities)]

    def targets(self, records, device) -> Tensor:
        return torch.tensor([r.label for r in records], device=device)

    def metrics(self, records) -> Dict:
        return evaluate_predictions(records, self.classes)

    def check_split(self, split, dataset, units, fixed=False) -> None:
        check_split(split, dataset.slide_ids, dataset.labels, self.classes,
                    units, both_classes_held_out=not fixed)

    @classmethod
    def from_settings(cls, settings, classes) -> 'ClassificationTask':
        return cls(classes=list(classes),
                   class_weights=settings.class_weights)

    def entry(self) -> Dict:
        entry = {'task': self.name, 'class_weights': self.class_weights}
        if self.counts is not None:
            entry['class_counts'] = list(self.counts)
        return entry

    @classmethod
    def _from_entry(cls, entry, classes) -> 'ClassificationTask':
        return cls(classes=list(classes or ['0', '1']),
                   class_weights=entry.get('class_weights', 'none'),
                   counts=entry.get('class_counts'))

    @classmethod
    def fits(cls, model: MILModel) -> bool:
        return not isinstance(model.criterion, SurvivalLoss)

    @classmethod
    def from_model(cls, model, classes) -> 'ClassificationTask':
        return cls(classes=list(classes or ['0', '1']))


@dataclasses.dataclass
class SurvivalTask(Task):
    r"""Bags with a time and an event: risk scores (and survival curves
    with the discrete-time loss), Harrell's and Uno's c-index, the
    time-dependent AUC, the integrated Brier score and the instance AUROC
    of the attention.

    Args:
        survival_loss (str, optional): ``'nll'`` or ``'cox'``.
            (default: ``'nll'``)
        num_bins (int, optional): The intervals of ``'nll'``.
            (default: :obj:`4`)
        time_column, event_column, censorship_column (str, optional): The
            label columns, as checkpoints record them.
        train_times, train_events (list, optional): The training bags'
            outcomes (set by :meth:`fitted`): the cut points and Uno's
            censoring distribution come from them.
        cut_points (list, optional): The interval ends of ``'nll'``.
    """
    survival_loss: str = 'nll'
    num_bins: int = 4
    time_column: str = 'time'
    event_column: Optional[str] = 'event'
    censorship_column: Optional[str] = None
    train_times: Optional[List[float]] = None
    train_events: Optional[List[int]] = None
    cut_points: Tuple[float, ...] = ()

    name: ClassVar[str] = 'survival'
    record_type: ClassVar[type] = SurvivalRecord
    epoch_metrics: ClassVar[Dict[str, str]] = {
        'val_c_index': 'c_index', 'val_instance_auroc': 'instance_auroc'}
    monitors: ClassVar[Dict[str, bool]] = {'val_c_index': True}
    default_monitor: ClassVar[str] = 'val_c_index'
    summary: ClassVar[Dict[str, str]] = {
        'c_index': 'its validation bags have no comparable pair',
        'c_index_uno': 'its validation bags have no comparable pair within '
                       'the training times',
        'mean_time_auc': 'its validation times fall outside the training '
                         'times',
        'integrated_brier_score': 'only --survival-loss nll gives survival '
                                  'curves',
        'instance_auroc': 'its validation slides have no patch labels of '
                          'both kinds'}

    @property
    def num_outputs(self) -> int:
        return self.num_bins if self.survival_loss == 'nll' else 1

    def fitted(self, train_set) -> 'SurvivalTask':
        times, events = list(train_set.times), list(train_set.events)
        try:
            cuts = survival_cut_points(times, events, self.num_bins) \
                if self.survival_loss == 'nll' else []
        except ValueError as error:
            raise PygSmError(f"--num-bins {self.num_bins}: {error}") \
                from error
        return dataclasses.replace(self, train_times=times,
                                   train_events=events,
                                   cut_points=tuple(cuts))

    def criterion(self) -> torch.nn.Module:
        return make_survival_loss(self.survival_loss, self.cut_points)

    @property
    def curve_points(self) -> Tuple[float, ...]:
        return tuple(self.cut_points)

    def prepare(self, model: MILModel) -> None:
        # The bias starts at the training bags' baseline hazard or risk.
        model.start_at_baseline(self.train_times, self.train_events)

    def bag_fields(self, model, logits, targets) -> List[Dict]:
        risks = model.risk(logits).cpu().tolist()
        curves = model.criterion.survival(logits).cpu().tolist() \
            if hasattr(model.criterion, 'survival') else None
        known = targets is not None
        return [{'risk': risk,
                 'survival': None if curves is None else curves[i],
                 'time': float(targets[i, 0]) if known else None,
                 'event': int(targets[i, 1]) if known else None}
                for i, risk in enumerate(risks)]

    def targets(self, records, device) -> Tensor:
        return torch.tensor([(r.time, r.event) for r in records],
                            device=device, dtype=torch.float64)

    def epoch_values(self, records) -> Dict[str, Optional[float]]:
        # Harrell's c-index only, each epoch: Uno's and the curves' metrics
        # are for the final evaluation.
        return {'val_c_index': harrell_c_index(
                    [r.time for r in records], [r.event for r in records],
                    [r.risk for r in records]),
                'val_instance_auroc': instance_auroc(records)}

    def metrics(self, records) -> Dict:
        metrics = evaluate_survival(records, self.train_times,
                                    self.train_events, self.cut_points)
        metrics['mean_time_auc'] = (metrics.get('time_auc') or {}).get(
            'mean')
        return metrics

    def batch_counts(self, batch) -> Dict[str, float]:
        if self.survival_loss != 'cox':
            return {}
        # A batch without an event contributes nothing to Cox's loss.
        return {'batches_without_events': float(not bool(batch.y[:, 1].any()))}

    def entry(self) -> Dict:
        entry = {'task': self.name, 'time_column': self.time_column,
                 'event_column': self.event_column,
                 'censorship_column': self.censorship_column,
                 'survival_loss': self.survival_loss}
        if self.survival_loss == 'nll':
            entry['cut_points'] = list(self.cut_points)
        if self.train_times is not None:  # a split's (checkpoints)
            entry.update(train_times=self.train_times,
                         train_events=self.train_events)
        return entry

    def check_split(self, split, dataset, units, fixed=False) -> None:
        check_survival_split(split, dataset.slide_ids, dataset.events, units)

    @classmethod
    def from_settings(cls, settings, classes) -> 'SurvivalTask':
        return cls(survival_loss=settings.survival_loss,
                   num_bins=settings.num_bins,
                   time_column=settings.time_column,
                   event_column=settings.event_column,
                   censorship_column=settings.censorship_column)

    @classmethod
    def _from_entry(cls, entry, classes) -> 'SurvivalTask':
        return cls(survival_loss=entry['survival_loss'],
                   time_column=entry.get('time_column', 'time'),
                   event_column=entry.get('event_column'),
                   censorship_column=entry.get('censorship_column'),
                   train_times=entry.get('train_times'),
                   train_events=entry.get('train_events'),
                   cut_points=tuple(entry.get('cut_points') or ()),
                   num_bins=len(entry.get('cut_points') or ()) + 1)

    @classmethod
    def fits(cls, model: MILModel) -> bool:
        return isinstance(model.criterion, SurvivalLoss)

    @classmethod
    def from_model(cls, model, classes) -> 'SurvivalTask':
        options = model.criterion.options()
        return cls(survival_loss=options['survival_loss'],
                   cut_points=tuple(options.get('cut_points') or ()))


#: The tasks by name (``--task``).
TASKS: Dict[str, type] = {task.name: task for task in
                          (ClassificationTask, SurvivalTask)}

#: ``--monitor`` choices: the validation metric and whether higher is
#: better; ``last`` (:obj:`None`) keeps the final epoch, as a fixed
#: training budget does.
MONITORS: Dict[str, Optional[bool]] = {
    'val_loss': False,
    **{name: higher for task in TASKS.values()
       for name, higher in task.monitors.items()},
    'last': None}
