r"""Scoring slides with a trained model, one batch in memory at a time."""
import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch_geometric.loader import DataLoader

from ..models.base import MILModel, bag_probabilities


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
    :obj:`prediction` and, with :obj:`keep_attention` or when the slide has
    patch labels, :obj:`attention` (the values before the softmax, aligned
    with :obj:`data.pos`) and :obj:`patch_labels`.

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
                'prediction': predicted_class(probs),
                'attention': attention[nodes],
            }
            if 'patch_labels' in batch:
                record['patch_labels'] = batch.patch_labels[nodes].cpu()
            if on_slide is not None:
                step = None if steps is None else float(steps[i])
                on_slide(record, batch.pos[nodes].cpu(),
                         None if step is None or math.isnan(step) else step)
            if not keep_attention and 'patch_labels' not in record:
                del record['attention']
            records.append(record)
    return records
