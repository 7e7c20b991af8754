r"""Scoring a model on labelled bags: the loss and the task's metrics."""
import dataclasses
from typing import Dict, List, Optional, Sequence

from ..models.base import MILModel
from .predict import score_slides
from .records import BagRecord
from .tasks import Task


@dataclasses.dataclass
class Validation:
    r"""A model scored on labelled bags.

    Args:
        values (dict): The loss and the task's epoch metrics by their
            history names (``val_loss``, ``val_auroc``, ...).
        records (list): The bags' records.
        task (Task): What the model predicts.
    """
    values: Dict[str, Optional[float]]
    records: List[BagRecord]
    task: Task

    @property
    def metrics(self) -> Dict:
        r"""The task's metrics of the records (as ``results.json`` stores
        them; survival's need the task fitted to the training bags)."""
        return self.task.metrics(self.records)


def validate(model: MILModel, dataset: Sequence, task: Optional[Task] = None,
             batch_size: int = 4, workers: int = 0) -> Optional[Validation]:
    r"""The loss and metrics of :obj:`model` on a labelled dataset (the
    criterion's loss over the whole dataset at once), with the per-bag
    records of :func:`~pyg_sm.train.predict_slides`.

    Inside a :mod:`torch.distributed` process group every process scores
    its share (:func:`~pyg_sm.train.score_slides`) and process 0 gets the
    result; the others get :obj:`None`. No process waits at a barrier while
    another validates alone (NCCL would time out after 10 minutes)."""
    task = task or Task.of_model(model)
    records = score_slides(model, dataset, batch_size=batch_size,
                           workers=workers, task=task)
    if records is None:
        return None
    return Validation(task.validation(model, records), records, task)
