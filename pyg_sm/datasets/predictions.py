r"""Folders of scored slides, as ``pyg-sm predict``, ``evaluate``, ``train``
and ``demo`` write them: ``scores/<slide_id>.h5`` (coordinates and
attention of each patch) and the slide-level predictions
(``predictions.csv``, else ``results.json``)."""
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..transforms.grid_graph import patch_side
from ..utils.tables import read_table

#: The folder of the per-slide score files inside a prediction folder.
SCORES_DIR = 'scores'
#: The slide-level table of a prediction folder.
PREDICTIONS_FILE = 'predictions.csv'


class PredictionFolder:
    r"""A folder of scored slides (a run of ``pyg-sm train``, ``evaluate``,
    ``predict`` or one model of ``demo``).

    Args:
        folder (str or Path): the folder, holding ``scores/``.
        name (str, optional): what to call the run (default: the folder's
            name).
    """
    def __init__(self, folder: Union[str, Path], name: Optional[str] = None):
        self.folder = Path(folder)
        if not (self.folder / SCORES_DIR).is_dir():
            raise FileNotFoundError(
                f"{self.folder} holds no scored slides (no {SCORES_DIR}/ "
                f"folder); give a folder written by pyg-sm predict, "
                f"evaluate, train or demo")
        self.name = name or self.folder.resolve().name
        self.slide_ids: List[str] = sorted(
            p.stem for p in (self.folder / SCORES_DIR).glob('*.h5'))
        self.predictions: Dict[str, Dict] = self._read_predictions()

    def _read_predictions(self) -> Dict[str, Dict]:
        r"""Per slide: ``label`` (or :obj:`None`), ``predicted`` and
        ``probabilities`` (class name to probability)."""
        table = self.folder / PREDICTIONS_FILE
        if table.is_file():
            out = {}
            for _, row in read_table(table, ('slide_id', 'predicted'),
                                     'predictions table'):
                out[row['slide_id']] = {
                    'label': row.get('label') or None,
                    'predicted': row['predicted'],
                    'probabilities': {key[len('prob_'):]: float(value)
                                      for key, value in row.items()
                                      if key.startswith('prob_')}}
            return out
        results = self.folder / 'results.json'
        if not results.is_file():
            return {}
        content = json.loads(results.read_text())
        records = list(content.get('predictions') or [])
        for part in ('validation', 'test'):
            records += (content.get(part) or {}).get('predictions') or []
        return {r['slide_id']: {'label': r.get('label'),
                                'predicted': r.get('predicted'),
                                'probabilities': r.get('probabilities', {})}
                for r in records}

    def scores_path(self, slide_id: str) -> Path:
        return self.folder / SCORES_DIR / f'{slide_id}.h5'

    def read_scores(self, slide_id: str) -> Dict:
        r"""``coords`` (N, 2) level-0 pixels, ``attention`` (the softmax
        weights), ``attention_logits``, ``patch_labels`` (:obj:`None` when
        unknown) and ``patch_size_level0`` (the side
        of a patch; the grid step of the coordinates in files written
        before it was stored) of a slide."""
        import h5py

        path = self.scores_path(slide_id)
        if slide_id not in self.slide_ids or not path.is_file():
            raise FileNotFoundError(f"slide '{slide_id}': no scores in "
                                    f"{self.folder / SCORES_DIR}")
        with h5py.File(path, 'r') as f:
            side = f.attrs.get('patch_size_level0')
            coords = torch.from_numpy(f['coords'][()])
            return {'coords': coords,
                    'attention': torch.from_numpy(f['attention'][()]),
                    'attention_logits': torch.from_numpy(
                        f['attention_logits'][()]),
                    'patch_labels': torch.from_numpy(
                        f['patch_labels'][()]).long()
                    if 'patch_labels' in f else None,
                    'patch_size_level0': patch_side(
                        coords, None if side is None else float(side))}

    def __len__(self) -> int:
        return len(self.slide_ids)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.folder)!r}, ' \
               f'{len(self)} slides)'


def prediction_folders(folders: Sequence[Union[str, Path, PredictionFolder]]
                       ) -> List[PredictionFolder]:
    r"""Runs to show together, by folder: runs with the same folder name
    are told apart by their parent folder's name."""
    runs = [f if isinstance(f, PredictionFolder) else PredictionFolder(f)
            for f in folders]
    names = [run.name for run in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f'{run.folder.resolve().parent.name}/{run.name}'
    return runs
