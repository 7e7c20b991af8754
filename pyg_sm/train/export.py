r"""What ``pyg-sm predict`` writes: per-slide attention scores (HDF5),
QuPath-readable GeoJSON of the patches, and a table of predictions."""
import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..models.base import MILModel
from ..datasets.predictions import SCORES_DIR
from ..transforms.grid_graph import patch_side
from ..utils.files import atomic_path
from ..utils.stats import percentiles
from .distributed import world
from .predict import predict_slides


def write_scores(folder: Path, slide_id: str, pos: Tensor,
                 attention_logits: Tensor, side: float,
                 patch_labels: Optional[Tensor] = None) -> Path:
    r"""``<folder>/<slide_id>.h5`` with ``coords`` (N, 2), ``attention``
    (the softmax weights of the slide, summing to 1),
    ``attention_logits`` (the values before the softmax) and, when known,
    ``patch_labels`` (N,); its attributes
    are the ``slide_id`` and ``patch_size_level0`` (:obj:`side`, the side
    of a patch in level-0 pixels). :class:`~pyg_sm.datasets.PredictionFolder`
    reads it."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{slide_id}.h5'
    weights = torch.softmax(attention_logits.double(), dim=0)
    with atomic_path(path) as temporary, h5py.File(temporary, 'w') as f:
        f['coords'] = pos.numpy()
        f['attention'] = weights.float().numpy()
        f['attention_logits'] = attention_logits.float().numpy()
        if patch_labels is not None:
            f['patch_labels'] = patch_labels.numpy()
        f.attrs['slide_id'] = slide_id
        f.attrs['patch_size_level0'] = float(side)
    return path


def write_geojson(folder: Path, slide_id: str, pos: Tensor,
                  attention_logits: Tensor, side: float) -> Path:
    r"""``<folder>/<slide_id>.geojson``: a FeatureCollection with one square
    polygon per patch (top-left corner at its coordinates, level-0 pixels),
    whose measurements are the attention weight and its percentile within
    the slide, as QuPath imports detections."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{slide_id}.geojson'
    weights = torch.softmax(attention_logits.double(), dim=0).tolist()
    ranks = percentiles(attention_logits).tolist()
    corners = pos.double().tolist()
    with atomic_path(path) as temporary, open(temporary, 'w') as f:
        f.write('{"type": "FeatureCollection", "features": [\n')
        for i, ((x, y), weight, rank) in enumerate(zip(corners, weights,
                                                       ranks)):
            ring = [[x, y], [x + side, y], [x + side, y + side],
                    [x, y + side], [x, y]]
            feature = {'type': 'Feature',
                       'geometry': {'type': 'Polygon', 'coordinates': [ring]},
                       'properties': {
                           'objectType': 'detection',
                           'name': f'patch {i}',
                           'measurements': {'attention': weight,
                                            'attention_percentile': rank}}}
            f.write(('' if i == 0 else ',\n') + json.dumps(feature))
        f.write('\n]}\n')
    return path


def write_predictions(path: Path, records: List[Dict],
                      classes: Sequence[str]) -> None:
    r"""``slide_id``, the probability of each class (``prob_<class>``), the
    predicted class and, when known, the true one."""
    labelled = any(r['label'] is not None for r in records)
    with atomic_path(path) as temporary, \
            open(temporary, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['slide_id', *[f'prob_{c}' for c in classes],
                         'predicted'] + (['label'] if labelled else []))
        for r in records:
            row = [r['slide_id'], *[f'{p:.6f}' for p in r['probabilities']],
                   classes[r['prediction']]]
            if labelled:
                row.append('' if r['label'] is None else classes[r['label']])
            writer.writerow(row)


def score_slides(model: MILModel, dataset, out: Path, batch_size: int = 1,
                 workers: int = 0, geojson: bool = True) -> List[Dict]:
    r"""Scores every slide of :obj:`dataset` and writes, as each slide is
    scored, ``out/scores/<slide_id>.h5`` (:func:`write_scores`) and
    ``out/geojson/<slide_id>.geojson`` (:func:`write_geojson`). Returns the
    records of :func:`~pyg_sm.train.predict_slides` in dataset order,
    keeping the attention only of slides with patch labels.

    Inside a :mod:`torch.distributed` process group each process scores
    every ``world_size``-th slide and process 0 gets all the records (the
    others get :obj:`None`): the files and records are those of one
    process."""
    size, rank = world()
    indices = list(range(rank, len(dataset), size))
    share = torch.utils.data.Subset(dataset, indices)

    def write(record: Dict, pos: Tensor, step: Optional[float]) -> None:
        side = patch_side(pos, step)
        write_scores(out / SCORES_DIR, record['slide_id'], pos,
                     record['attention'], side, record.get('patch_labels'))
        if geojson:
            write_geojson(out / 'geojson', record['slide_id'], pos,
                          record['attention'], side)

    records = predict_slides(model, share, batch_size=batch_size,
                             workers=workers, keep_attention=False,
                             on_slide=write)
    if size == 1:
        return records
    gathered = [None] * size if rank == 0 else None
    torch.distributed.gather_object(list(zip(indices, records)), gathered)
    if rank != 0:
        return None
    ordered = sorted((pair for part in gathered for pair in part),
                     key=lambda pair: pair[0])
    return [record for _, record in ordered]
