r"""Scoring slides with a trained model."""
from typing import Dict, List, Sequence

import torch
from torch_geometric.loader import DataLoader

from ..models.base import MILModel


@torch.no_grad()
def predict_slides(model: MILModel, dataset: Sequence,
                   batch_size: int = 4) -> List[Dict]:
    r"""Per slide: its id, label, logit, and the attention value of every
    patch (aligned with :obj:`data.pos`)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size):
        logits, attention = model.predict(batch.to(device))
        logits, attention, batch = logits.cpu(), attention.cpu(), batch.cpu()
        for i, data in enumerate(batch.to_data_list()):
            out.append({
                'slide_id': data.slide_id,
                'label': int(data.y.item()),
                'logit': float(logits[i]),
                'attention': attention[batch.batch == i],
                'data': data,
            })
    return out
