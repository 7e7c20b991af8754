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
    r"""Scores every slide of :obj:`dataset`, in order. Per slide, a record
    with its :obj:`slide_id`, :obj:`label` (class index, :obj:`None`
    without labels), :obj:`logits`, class :obj:`probabilities`,
    :obj:`predicted` (the class index, by
    :func:`predicted_class`) and, with :obj:`keep_attention` or when the
    slide has patch labels, :obj:`attention_logits` (the attention values
    before the softmax, aligned with :obj:`data.pos`; the names of the score
    files) and :obj:`patch_labels`.

    :obj:`on_slide(record, pos, patch_size_level0)` is called for each
    slide as it is scored (to write its files), with the attention always
    in the record; slides are read by a
    :class:`~torch_geometric.loader.DataLoader` with :obj:`workers`
    processes, and nothing of a batch is kept after it."""
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    records = []
    for batch in loader:
        batch = batch.to(device)
        logits, attention = model.predict(batch)
        probabilities = bag_probabilities(logits).cpu()
        logits = logits.reshape(batch.num_graphs, -1).float().cpu()
        attention = attention.float().cpu()
        ptr = batch.ptr.cpu().tolist()
        labels = batch.y.reshape(-1).cpu().tolist() if 'y' in batch \
            else [None] * batch.num_graphs
        steps = batch.get('patch_size_level0')
        for i in range(batch.num_graphs):
            nodes = slice(ptr[i], ptr[i + 1])
            probs = probabilities[i].tolist()
            record = {
                'slide_id': batch.slide_id[i],
                'label': None if labels[i] is None else int(labels[i]),
                'logits': logits[i].tolist(),
                'probabilities': probs,
                'predicted': predicted_class(probs),
                'attention_logits': attention[nodes],
            }
            if 'patch_labels' in batch:
                record['patch_labels'] = batch.patch_labels[nodes].cpu()
            if on_slide is not None:
                step = None if steps is None else float(steps[i])
                on_slide(record, batch.pos[nodes].cpu(),
                         None if step is None or math.isnan(step) else step)
            if not keep_attention and 'patch_labels' not in record:
                del record['attention_logits']
            records.append(record)
    return records


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
