r"""Scoring slides with a trained model, one batch in memory at a time."""
import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch_geometric.loader import DataLoader

from ..models.base import MILModel, bag_probabilities
from .distributed import world


def predicted_class(probabilities: Sequence[float]) -> int:
    r"""Binary: class 1 when its probability is at least 0.5; otherwise the
    class of highest probability."""
    if len(probabilities) == 2:
        return int(probabilities[1] >= 0.5)
    return int(max(range(len(probabilities)),
                   key=lambda k: probabilities[k]))


@torch.no_grad()
def predict_slides(model: MILModel, dataset: Sequence, batch_size: int = 4,
                   workers: int = 0, keep_attention: bool = True,
                   on_slide: Optional[Callable] = None) -> List[Dict]:
    r"""Scores every bag of :obj:`dataset`, in order. Per bag, a record
    with its :obj:`slide_id` (a patient's id for a bag of a
    :class:`~pyg_sm.datasets.CaseDataset`, whose slides are then in
    :obj:`slide_ids`), :obj:`logits` and, with :obj:`keep_attention` or
    when the slide has patch labels, :obj:`attention_logits` (the attention
    values before the softmax, aligned with :obj:`data.pos`; the names of
    the score files) and :obj:`patch_labels`. A classifier's records add
    :obj:`label` (class index, :obj:`None` without labels), class
    :obj:`probabilities` and :obj:`predicted` (the class index, by
    :func:`predicted_class`); a survival model's add :obj:`risk`,
    :obj:`survival` (the survival probabilities past each interval, for
    :class:`~pyg_sm.nn.DiscreteTimeNLLLoss`), :obj:`time` and
    :obj:`event` (:obj:`None` when unknown).

    :obj:`on_slide(record, pos, patch_size_level0)` is called for each
    slide as it is scored (to write its files; each slide of a patient's
    bag with its own patches), with the attention always in the record;
    slides are read by a
    :class:`~torch_geometric.loader.DataLoader` with :obj:`workers`
    processes, and nothing of a batch is kept after it."""
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    survival = model.task == 'survival'
    records = []
    for batch in loader:
        batch = batch.to(device)
        logits, attention = model.predict(batch)
        if survival:
            risks = model.risk(logits).cpu().tolist()
            curves = model.criterion.survival(logits).cpu().tolist() \
                if hasattr(model.criterion, 'survival') else None
        else:
            probabilities = bag_probabilities(logits).cpu()
        logits = logits.reshape(batch.num_graphs, -1).float().cpu()
        attention = attention.float().cpu()
        ptr = batch.ptr.cpu().tolist()
        targets = batch.y.cpu() if 'y' in batch else None
        steps = batch.get('patch_size_level0')
        for i in range(batch.num_graphs):
            nodes = slice(ptr[i], ptr[i + 1])
            record = {'slide_id': batch.slide_id[i],
                      'logits': logits[i].tolist(),
                      'attention_logits': attention[nodes]}
            if survival:
                known = targets is not None
                record.update(
                    label=None, risk=risks[i],
                    survival=None if curves is None else curves[i],
                    time=float(targets[i, 0]) if known else None,
                    event=int(targets[i, 1]) if known else None)
            else:
                probs = probabilities[i].tolist()
                record.update(
                    label=None if targets is None
                    else int(targets.reshape(-1)[i]),
                    probabilities=probs, predicted=predicted_class(probs))
            if 'patch_labels' in batch:
                record['patch_labels'] = batch.patch_labels[nodes].cpu()
            if 'slide_ids' in batch:  # a patient's slides as one bag
                record['slide_ids'] = list(batch.slide_ids[i])
            if on_slide is not None:
                for part, pos, step in _slides_of(batch, i, nodes, record,
                                                  steps):
                    on_slide(part, pos, step)
            if not keep_attention and 'patch_labels' not in record:
                del record['attention_logits']
            records.append(record)
    return records


def _slides_of(batch, i: int, nodes: slice, record: Dict, steps):
    r"""The slides of bag :obj:`i` of :obj:`batch`, each as
    ``(record, pos, patch_size_level0)``: the bag itself, or each slide of a
    patient's bag with its own nodes."""
    pos = batch.pos[nodes].cpu()
    if 'slide_ids' not in batch:
        step = None if steps is None else float(steps[i])
        yield record, pos, None if step is None or math.isnan(step) \
            else step
        return
    part = batch.slide_part[nodes].cpu()
    for k, slide_id in enumerate(batch.slide_ids[i]):
        mine = part == k
        slide = {'slide_id': slide_id,
                 'attention_logits': record['attention_logits'][mine]}
        if 'patch_labels' in record:
            slide['patch_labels'] = record['patch_labels'][mine]
        step = batch.patch_sizes[i][k]
        yield slide, pos[mine], None if math.isnan(step) else step


def score_slides(model: MILModel, dataset: Sequence,
                 on_slide: Optional[Callable] = None, batch_size: int = 1,
                 workers: int = 0) -> Optional[List[Dict]]:
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
                             on_slide=on_slide)
    if size == 1:
        return records
    gathered = [None] * size if rank == 0 else None
    torch.distributed.gather_object(list(zip(indices, records)), gathered)
    if rank != 0:
        return None
    ordered = sorted((pair for part in gathered for pair in part),
                     key=lambda pair: pair[0])
    return [record for _, record in ordered]
