r"""Typed records: one per scored bag (or slide of a patient's bag), one per
training epoch."""
import dataclasses
from typing import Dict, List, Optional, Sequence

from torch import Tensor


@dataclasses.dataclass
class SlideAttention:
    r"""The attention of one slide as it is scored: what a run folder's
    score file holds.

    Args:
        slide_id (str): The slide.
        attention_logits (Tensor, optional): The attention values before the
            softmax :math:`(N,)`, aligned with the slide's ``pos``.
        patch_labels (Tensor, optional): The slide's patch labels
            :math:`(N,)`, where it has them.
        attention_std (Tensor, optional): The uncertainty of each
            attention value :math:`(N,)`, from a probabilistic model
            (:attr:`MILModel.probabilistic
            <pyg_sm.models.MILModel.probabilistic>`).
    """
    slide_id: str
    attention_logits: Optional[Tensor] = None
    patch_labels: Optional[Tensor] = None
    attention_std: Optional[Tensor] = None

    def slides(self) -> List[str]:
        r"""The slides scored."""
        return [self.slide_id]


@dataclasses.dataclass
class BagRecord(SlideAttention):
    r"""A scored bag (:class:`SlideAttention` with the bag's outputs): a slide,
    or a patient whose slides are :obj:`slide_ids`.

    Args:
        logits (list): The model's outputs for the bag.
        slide_ids (list, optional): A patient's slides (bags of a
            :class:`~pyg_sm.datasets.CaseDataset`).
    """
    logits: List[float] = dataclasses.field(default_factory=list)
    slide_ids: Optional[List[str]] = None

    def slides(self) -> List[str]:
        return self.slide_ids or [self.slide_id]

    def prediction_fields(self, classes: Optional[Sequence[str]],
                          cut_points: Sequence[float] = ()) -> Dict:
        r"""What a run folder's prediction of the bag holds beyond its ids
        and logits, in names (the class names, the cut points)."""
        raise NotImplementedError


@dataclasses.dataclass
class ClassificationRecord(BagRecord):
    r"""A classifier's bag.

    Args:
        label (int, optional): The true class index (:obj:`None` without
            labels).
        probabilities (list): The class probabilities.
        predicted (int): The predicted class index
            (:func:`~pyg_sm.train.predicted_class`).
    """
    label: Optional[int] = None
    probabilities: List[float] = dataclasses.field(default_factory=list)
    predicted: int = 0

    def prediction_fields(self, classes, cut_points=()) -> Dict:
        return {'label': None if self.label is None
                else classes[self.label],
                'probabilities': dict(zip(classes, self.probabilities)),
                'predicted': classes[self.predicted]}


@dataclasses.dataclass
class SurvivalRecord(BagRecord):
    r"""A survival model's bag.

    Args:
        risk (float): The risk score (higher: shorter expected survival).
        survival (list, optional): The survival probabilities past each
            interval (:class:`~pyg_sm.nn.DiscreteTimeNLLLoss`).
        time (float, optional): The bag's time (:obj:`None` when unknown).
        event (int, optional): 1 where the event was observed, 0 where the
            bag was censored (:obj:`None` when unknown).
    """
    risk: float = 0.0
    survival: Optional[List[float]] = None
    time: Optional[float] = None
    event: Optional[int] = None

    def prediction_fields(self, classes, cut_points=()) -> Dict:
        return {'label': None, 'probabilities': {}, 'predicted': None,
                'risk': self.risk, 'time': self.time, 'event': self.event,
                'survival': None if self.survival is None else {
                    f'{c:g}': s for c, s in zip(cut_points,
                                                 self.survival)}}


@dataclasses.dataclass
class EpochRecord:
    r"""One training epoch, as the run's ``history`` records it.

    Args:
        epoch (int): The epoch, from 1.
        train_loss (float): The mean training loss over the epoch's bags
            (of every process).
        seconds (float): The epoch's wall time, validation included.
        validation (dict): The validation loss and metrics under their
            history names (``val_loss``, ``val_auroc``, ...); empty in an
            epoch without validation.
        counts (dict): What the task counts over the epoch (e.g. the
            ``batches_without_events`` of a Cox loss).
        improved (bool): Whether the monitored metric improved (the best
            checkpoint was saved).
    """
    epoch: int
    train_loss: float
    seconds: float = 0.0
    validation: Dict[str, Optional[float]] = dataclasses.field(
        default_factory=dict)
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)
    improved: bool = False

    def get(self, key: str) -> Optional[float]:
        r"""A value by its history name (``train_loss``, ``val_loss``,
        ...)."""
        if key == 'train_loss':
            return self.train_loss
        return self.validation.get(key, self.counts.get(key))

    def to_json(self) -> Dict:
        r"""The entry of ``results.json``'s ``history``."""
        return {'epoch': self.epoch, 'train_loss': self.train_loss,
                **self.counts, **self.validation, 'seconds': self.seconds}

    @classmethod
    def from_json(cls, entry: Dict,
                  counts: tuple = ('batches_without_events', )
                  ) -> 'EpochRecord':
        return cls(epoch=entry['epoch'], train_loss=entry['train_loss'],
                   seconds=entry.get('seconds', 0.0),
                   validation={k: v for k, v in entry.items()
                               if k.startswith('val_')},
                   counts={k: entry[k] for k in counts if k in entry})
