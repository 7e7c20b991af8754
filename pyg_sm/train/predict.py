r"""Scoring slides with a trained model, one batch in memory at a time."""
import math
from typing import Callable, List, Optional, Sequence

import torch
from torch_geometric.loader import DataLoader

from ..models.base import MILModel
from .distributed import world
from .metrics import predicted_class
from .records import BagRecord, SlideAttention
from .tasks import Task

__all__ = ['predict_slides', 'score_slides', 'predicted_class']


@torch.no_grad()
def predict_slides(model: MILModel, dataset: Sequence, batch_size: int = 4,
                   workers: int = 0, keep_attention: bool = True,
                   on_slide: Optional[Callable] = None,
                   task: Optional[Task] = None) -> List[BagRecord]:
    r"""Scores every bag of :obj:`dataset`, in order, and returns a record
    per bag of the :obj:`task`'s type (by default the task of the model's
    criterion, :meth:`~pyg_sm.train.tasks.Task.of_model`): a
    :class:`~pyg_sm.train.records.ClassificationRecord` or a
    :class:`~pyg_sm.train.records.SurvivalRecord`. Each has its
    :obj:`slide_id` (a patient's id for a bag of a
    :class:`~pyg_sm.datasets.CaseDataset`, whose slides are then in
    :obj:`slide_ids`), :obj:`logits` and, with :obj:`keep_attention` or
    when the slide has patch labels, :obj:`attention_logits` (the attention
    values before the softmax, aligned with :obj:`data.pos`; the names of
    the score files), :obj:`patch_labels` and, from a probabilistic model,
    :obj:`attention_std` (its attention logits are the mean
    :math:`\boldsymbol{\mu}_f`, its bag logits the mean over samples from
    the model's seeded generator).

    :obj:`on_slide(scores, pos, patch_size_level0)` is called for each
    slide as it is scored (to write its files; each slide of a patient's
    bag with its own patches, as a
    :class:`~pyg_sm.train.records.SlideAttention`), with the attention
    always in it; slides are read by a
    :class:`~torch_geometric.loader.DataLoader` with :obj:`workers`
    processes, and nothing of a batch is kept after it."""
    model.eval()
    task = task or Task.of_model(model)
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    records = []
    for batch in loader:
        batch = batch.to(device)
        if model.probabilistic:
            logits, attention, std = model.predict(batch,
                                                   return_att_std=True)
            std = std.float().cpu()
        else:
            (logits, attention), std = model.predict(batch), None
        fields = task.bag_fields(model, logits,
                                 batch.y if 'y' in batch else None)
        logits = logits.reshape(batch.num_graphs, -1).float().cpu()
        attention = attention.float().cpu()
        ptr = batch.ptr.cpu().tolist()
        steps = batch.get('patch_size_level0')
        for i in range(batch.num_graphs):
            nodes = slice(ptr[i], ptr[i + 1])
            record = task.record_type(
                slide_id=batch.slide_id[i], logits=logits[i].tolist(),
                attention_logits=attention[nodes],
                patch_labels=batch.patch_labels[nodes].cpu()
                if 'patch_labels' in batch else None,
                slide_ids=list(batch.slide_ids[i])
                if 'slide_ids' in batch else None,
                attention_std=None if std is None else std[nodes],
                **fields[i])
            if on_slide is not None:
                for part, pos, step in _slides_of(batch, i, nodes, record,
                                                  steps):
                    on_slide(part, pos, step)
            if not keep_attention and record.patch_labels is None:
                record.attention_logits = record.attention_std = None
            records.append(record)
    return records


def _slides_of(batch, i: int, nodes: slice, record: BagRecord, steps):
    r"""The slides of bag :obj:`i` of :obj:`batch`, each as
    ``(scores, pos, patch_size_level0)``: the bag itself, or each slide of
    a patient's bag with its own nodes."""
    pos = batch.pos[nodes].cpu()
    if record.slide_ids is None:
        step = None if steps is None else float(steps[i])
        yield record, pos, None if step is None or math.isnan(step) \
            else step
        return
    part = batch.slide_part[nodes].cpu()
    for k, slide_id in enumerate(record.slide_ids):
        mine = part == k
        slide = SlideAttention(
            slide_id=slide_id,
            attention_logits=record.attention_logits[mine],
            patch_labels=None if record.patch_labels is None
            else record.patch_labels[mine],
            attention_std=None if record.attention_std is None
            else record.attention_std[mine])
        step = batch.patch_sizes[i][k]
        yield slide, pos[mine], None if math.isnan(step) else step


def score_slides(model: MILModel, dataset: Sequence,
                 on_slide: Optional[Callable] = None, batch_size: int = 1,
                 workers: int = 0, task: Optional[Task] = None
                 ) -> Optional[List[BagRecord]]:
    r"""Scores every slide of :obj:`dataset` with :func:`predict_slides`,
    calling :obj:`on_slide(record, pos, patch_size_level0)` as each slide
    is scored (a :class:`~pyg_sm.runs.RunFolder`'s ``slide_writer()``
    writes its files), and returns the records in dataset order, keeping
    the attention only of slides with patch labels.

    Inside a :mod:`torch.distributed` process group each process scores
    every ``world_size``-th slide and process 0 gets all the records (the
    others get :obj:`None`): the files and records are those of one
    process."""
    size, rank = world()
    indices = list(range(rank, len(dataset), size))
    share = torch.utils.data.Subset(dataset, indices)
    records = predict_slides(model, share, batch_size=batch_size,
                             workers=workers, keep_attention=False,
                             on_slide=on_slide, task=task)
    if size == 1:
        return records
    gathered = [None] * size if rank == 0 else None
    torch.distributed.gather_object(list(zip(indices, records)), gathered)
    if rank != 0:
        return None
    ordered = sorted((pair for part in gathered for pair in part),
                     key=lambda pair: pair[0])
    return [record for _, record in ordered]
