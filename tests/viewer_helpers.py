"""Shared by the viewer and browser tests: a small cohort with slide images
and two prediction folders whose attention is known (the first peaks on
the lesions, the second does not)."""
import threading
from pathlib import Path

import h5py
import torch

from pyg_sm import make_synthetic_slides
from pyg_sm.runs import RunFolder, SlidePrediction, scored_runs
from pyg_sm.visualize import open_viewer

PATCH = 64


def make_cohort(root: Path, num_slides: int = 4) -> Path:
    return make_synthetic_slides(root / 'data', num_slides=num_slides,
                                 feature_dim=4, seed=5)


def read_slide(data: Path, slide_id: str):
    with h5py.File(data / 'features' / f'{slide_id}.h5') as f:
        return (torch.from_numpy(f['coords'][()]),
                torch.from_numpy(f['patch_labels'][()]).long())


def make_runs(root: Path, data: Path):
    r"""'focused' puts its highest attention on the lesions; 'reversed'
    its lowest."""
    folders = []
    for name, sign in (('focused', 1.0), ('reversed', -1.0)):
        out = RunFolder(root / 'runs' / name)
        predictions = []
        for path in sorted((data / 'features').glob('*.h5')):
            coords, labels = read_slide(data, path.stem)
            generator = torch.Generator().manual_seed(len(coords))
            noise = torch.rand(len(coords), generator=generator)
            attention = sign * (4.0 * labels.float() + noise)
            out.write_scores(path.stem, coords, attention, PATCH, labels)
            label = int(labels.max() > 0)
            probability = 0.9 if label else 0.2
            predictions.append(SlidePrediction(
                slide_id=path.stem, label=str(label),
                probabilities={'0': 1 - probability, '1': probability},
                predicted=str(int(probability >= 0.5))))
        out.write_predictions(predictions, ['0', '1'])
        folders.append(out.path)
    return folders


class RunningViewer:
    r"""A viewer served from a thread, closed on exit."""
    def __init__(self, runs, slides_dir=None, **options):
        self.server = open_viewer(scored_runs(runs), slides_dir, **options)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.server

    def __exit__(self, *exc):
        self.server.close()
        self.thread.join(10)
