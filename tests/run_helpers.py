"""Small runs for the run-layer and CLI tests."""
import csv
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from pyg_sm import make_synthetic_slides
from pyg_sm.runs import ScoreConfig, TrainConfig, evaluate, predict, train

#: A quick training run (the CLI's --epochs 2 --att-dim 8 --heatmaps 1).
SMALL = dict(epochs=2, model_options={'att_dim': 8}, heatmaps=1)


def small_cohort(root: Path, num_slides: int = 12) -> Path:
    return make_synthetic_slides(root, num_slides=num_slides, feature_dim=6,
                                 seed=4)


def copy(cohort: Path, tmp_path: Path, name: str = 'data') -> Path:
    return Path(shutil.copytree(cohort, tmp_path / name))


def write_labels(root, rows, header=('slide_id', 'label'), bom=False):
    with open(root / 'labels.csv', 'w', newline='',
              encoding='utf-8-sig' if bom else 'utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def slide_ids(root):
    return sorted(p.stem for p in (root / 'features').glob('*.h5'))


def train_run(data, out, **settings):
    r"""A small training run; returns its results.json."""
    return train(TrainConfig(data_dir=data, out=out,
                             **{**SMALL, **settings})).results()


def score_run(command, data, checkpoint, out, **settings):
    r"""``evaluate`` or ``predict``; returns its results.json."""
    function = {'evaluate': evaluate, 'predict': predict}[command]
    return function(ScoreConfig(data_dir=data, checkpoint=checkpoint,
                                out=out, **settings)).results()


def corrupt(root, name, how):
    path = root / 'features' / f'{name}.h5'
    if how == 'zero-byte':
        path.write_bytes(b'')
    elif how == 'garbage':
        path.write_bytes(os.urandom(4096))
    elif how == 'truncated':
        data = path.read_bytes()
        path.write_bytes(data[:len(data) * 2 // 3])
    elif how == 'nan':
        with h5py.File(path, 'r+') as f:
            features = f['features'][()]
            features[-1, 0] = np.nan
            f['features'][...] = features
