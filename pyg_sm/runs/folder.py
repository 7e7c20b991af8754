r"""The run folder: the one owner of its layout and of the schema of its
files, for writing and for reading.

A run folder is what ``pyg-sm train``, ``evaluate``, ``predict`` and
``demo`` write (and :func:`pyg_sm.runs.train` and the others)::

    OUT/
      results.json              the run: schema, kind, status, settings,
                                versions, classes, metrics, predictions
      checkpoint.pt             train: the best model (by the monitor)
      last.pt                   train: the whole training state, each epoch
                                (Lightning's checkpoint: resumable)
      logs/                     train: the curves, one folder per --logger
                                (csv/metrics.csv, tensorboard/events.*)
      predictions.csv           evaluate / predict: one row per bag (a
                                slide, or a patient with --bag-by case)
      km.png                    survival: Kaplan-Meier curves of the
                                evaluated bags, split at the median
                                training risk
      scores/<slide_id>.h5      coords, attention, attention_logits,
                                attention_std (probabilistic models),
                                patch_labels (when known; from the
                                annotations with --annotations, and then
                                annotation_coverage)
      froc.png                  evaluate / predict --annotations: the FROC
                                curve of results.json's localization
      geojson/<slide_id>.geojson  one square per patch, for QuPath
      heatmaps/<slide_id>.png   attention pictures
      graph_cache/              patch graphs, built once per slide
      fold_<k>/                 train --folds: a run folder per fold

Folders written before ``results.json`` had a ``schema`` field (pyg-sm
0.1.0) still read: their predictions come from ``predictions.csv``, else
from the ``predictions``, ``validation`` and ``test`` entries of
``results.json``."""
import csv
import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..train.checkpoint import load_checkpoint
from ..train.records import BagRecord, SlideAttention
from ..train.settings import LOGS_DIR, STATE_FILE, Interrupted
from ..transforms.grid_graph import patch_side
from ..utils.errors import MissingFileError, PygSmError
from ..utils.files import atomic_path
from ..utils.stats import percentiles
from ..utils.tables import read_table

#: The version of ``results.json``'s schema (its ``schema`` field).
SCHEMA = 'pyg-sm-run/1'
RESULTS_FILE = 'results.json'
CHECKPOINT_FILE = 'checkpoint.pt'
TRAINING_STATE_FILE = STATE_FILE
FROC_CURVE_FILE = 'froc.png'
KAPLAN_MEIER_FILE = 'km.png'
PREDICTIONS_FILE = 'predictions.csv'
SCORES_DIR = 'scores'
GEOJSON_DIR = 'geojson'
HEATMAPS_DIR = 'heatmaps'
GRAPH_CACHE_DIR = 'graph_cache'
FOLD_DIR = 'fold_{}'
#: ``status`` of ``results.json``.
RUNNING, INTERRUPTED, FINISHED, FAILED = ('running', 'interrupted',
                                          'finished', 'failed')


@dataclasses.dataclass(frozen=True)
class SlidePrediction:
    r"""What a run predicted for one bag: a slide, or a patient's slides
    (:obj:`slide_ids`) with ``--bag-by case``.

    Args:
        slide_id (str): The slide (the patient for a patient's bag).
        label (str, optional): Its true class, :obj:`None` when unknown
            (and for survival).
        probabilities (dict): Class name to predicted probability (empty
            for survival).
        predicted (str, optional): The predicted class: for two classes the
            second when its probability is at least 0.5, else the most
            probable (:obj:`None` for survival).
        logits (list of float, optional): The model's outputs.
        risk (float, optional): Survival: the risk score (higher: shorter
            expected survival).
        time (float, optional): Survival: the observed time, when known.
        event (int, optional): Survival: 1 observed, 0 censored, when
            known.
        survival (dict, optional): Survival with ``nll``: the cut point
            (as text) to the probability of surviving past it.
        slide_ids (list of str, optional): A patient's bag: its slides.
    """
    slide_id: str
    label: Optional[str]
    probabilities: Dict[str, float]
    predicted: Optional[str]
    logits: Optional[List[float]] = None
    risk: Optional[float] = None
    time: Optional[float] = None
    event: Optional[int] = None
    survival: Optional[Dict[str, float]] = None
    slide_ids: Optional[List[str]] = None

    @classmethod
    def from_record(cls, record: BagRecord, classes: Optional[Sequence[str]],
                    cut_points: Sequence[float] = ()) -> 'SlidePrediction':
        r"""From a record of :func:`~pyg_sm.train.predict_slides` (class
        indices) and the class names (:obj:`None` for survival, whose
        survival probabilities are reported at :obj:`cut_points`)."""
        return cls(slide_id=record.slide_id, logits=record.logits,
                   slide_ids=record.slide_ids,
                   **record.prediction_fields(classes, cut_points))

    @classmethod
    def from_json(cls, entry: Dict) -> 'SlidePrediction':
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{'label': None, 'predicted': None,
                      **{k: v for k, v in entry.items() if k in names},
                      'probabilities': dict(entry.get('probabilities')
                                            or {})})

    def to_json(self) -> Dict:
        return dataclasses.asdict(self)

    def per_slide(self) -> Dict[str, 'SlidePrediction']:
        r"""This prediction under each of its slides' ids (a patient's
        prediction is each of its slides')."""
        return {s: self for s in (self.slide_ids or [self.slide_id])}


@dataclasses.dataclass
class TrainResults:
    r"""What ``results.json`` of a training run says of the whole run
    (every fold shares it).

    Args:
        command (str): The command line.
        config (dict): Every setting (:func:`~pyg_sm.runs.config.as_dict`).
        seed (int): The seed.
        versions (dict): The versions of pyg-sm, torch, PyG, Lightning.
        task (dict): The task and what a bag is.
        classes (list, optional): The class names (:obj:`None` for
            survival).
        model (str): The model's name.
        options (dict): Its options.
        graph (dict): The patch-graph settings.
        world_size (int): The processes that trained.
        skipped_slides, skipped_outcomes (list): What was left out.
        graphs (dict): The patch graphs' summary.
        split_by (str, optional): The ``--split-by`` column.
        split_groups (list, optional): The groups on each side of each
            split.
    """
    command: str
    config: Dict
    seed: int
    versions: Dict
    task: Dict
    classes: Optional[List[str]]
    model: str
    options: Dict
    graph: Dict
    world_size: int
    skipped_slides: List = dataclasses.field(default_factory=list)
    skipped_outcomes: List = dataclasses.field(default_factory=list)
    graphs: Optional[Dict] = None
    split_by: Optional[str] = None
    split_groups: Optional[List[Dict]] = None

    def to_json(self) -> Dict:
        content = {'kind': 'train', **dataclasses.asdict(self)}
        content['class_map'] = None if self.classes is None else {
            c: i for i, c in enumerate(self.classes)}
        if self.split_by is None:
            del content['split_by'], content['split_groups']
        return content


@dataclasses.dataclass
class SplitResults:
    r"""What ``results.json`` says of one split (one fold) of a training
    run.

    Args:
        split (dict): The slides of each side (``train``, ``val``,
            ``test``).
        fold (int, optional): The fold, from 1 (:obj:`None` without
            folds).
        history (list): Per epoch, the
            :class:`~pyg_sm.train.records.EpochRecord` entries.
        checkpoint (str, optional): The best checkpoint.
        validation, test (dict, optional): The metrics and predictions of
            the best checkpoint on the validation and test bags.
        heatmaps (list, optional): The heatmaps drawn.
        kaplan_meier (dict, optional): Survival: the Kaplan-Meier groups
            and their log-rank test.
    """
    split: Dict[str, List[str]]
    fold: Optional[int] = None
    history: List[Dict] = dataclasses.field(default_factory=list)
    checkpoint: Optional[str] = None
    validation: Optional[Dict] = None
    test: Optional[Dict] = None
    heatmaps: Optional[List] = None
    kaplan_meier: Optional[Dict] = None
    #: The scored bags of each side, kept in memory (not written).
    records: Dict[str, List] = dataclasses.field(default_factory=dict,
                                                 repr=False)

    def to_json(self) -> Dict:
        content = {f.name: getattr(self, f.name)
                   for f in dataclasses.fields(self) if f.name != 'records'}
        return {k: v for k, v in content.items()
                if v is not None or k in ('split', 'history')}

    @classmethod
    def from_json(cls, entry: Dict) -> 'SplitResults':
        names = {f.name for f in dataclasses.fields(cls)} - {'records'}
        return cls(**{k: v for k, v in entry.items() if k in names})


@dataclasses.dataclass(frozen=True)
class SlideScores:
    r"""The per-patch output of a run for one slide
    (``scores/<slide_id>.h5``).

    Args:
        slide_id (str): The slide.
        coords (Tensor): :math:`(N, 2)` top-left corners, level-0 pixels.
        attention (Tensor): :math:`(N,)` softmax weights, summing to 1.
        attention_logits (Tensor): :math:`(N,)` the values before the
            softmax.
        patch_labels (Tensor, optional): :math:`(N,)` when known.
        patch_size_level0 (float): The side of a patch in level-0 pixels
            (the grid step of the coordinates for files written before it
            was stored).
        attention_std (Tensor, optional): :math:`(N,)` the uncertainty of
            each attention logit (the standard deviation
            :math:`\sigma_f` of a probabilistic model; its logits are the
            mean :math:`\mu_f`).
    """
    slide_id: str
    coords: Tensor
    attention: Tensor
    attention_logits: Tensor
    patch_labels: Optional[Tensor]
    patch_size_level0: float
    attention_std: Optional[Tensor] = None


def _prediction_of_row(row: Dict[str, str]) -> SlidePrediction:
    r"""A row of ``predictions.csv`` (:meth:`RunFolder.write_predictions`)
    read back."""
    def number(key, kind=float):
        return kind(float(row[key])) if row.get(key) else None
    slide_ids = row['slide_ids'].split(';') if 'slide_ids' in row else None
    return SlidePrediction(
        slide_id=row.get('slide_id') or row.get('case_id'),
        label=row.get('label') or None, predicted=row.get('predicted'),
        probabilities={key[len('prob_'):]: float(value)
                       for key, value in row.items()
                       if key.startswith('prob_')},
        risk=number('risk'), time=number('time'),
        event=number('event', int),
        survival={key[len('survival_'):]: float(value)
                  for key, value in row.items()
                  if key.startswith('survival_')} or None,
        slide_ids=slide_ids)


def _write_png(path: Path, image: Any) -> Path:
    r"""A PIL image as a PNG at :obj:`path`, atomically."""
    with atomic_path(path) as temporary:
        image.save(temporary, format='png')
    return path


def _write_json(path: Path, content: Dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2, default=str))


class RunFolder:
    r"""A run folder (see the module's docstring for its layout), to write
    and to read.

    Args:
        path (str or Path): The folder.
        name (str, optional): What to call the run in pictures and the
            viewer. (default: the folder's name)
    """
    def __init__(self, path: Union[str, Path], name: Optional[str] = None):
        self.path = Path(path)
        self.name = name or self.path.resolve().name

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.path)!r})'

    # Where each file lives ------------------------------------------------

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def training_state_path(self) -> Path:
        return self.path / TRAINING_STATE_FILE

    @property
    def logs_dir(self) -> Path:
        r"""``logs/``: the loggers' curves (one folder per ``--logger``)."""
        return self.path / LOGS_DIR

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def scores_dir(self) -> Path:
        return self.path / SCORES_DIR

    @property
    def geojson_dir(self) -> Path:
        return self.path / GEOJSON_DIR

    @property
    def heatmaps_dir(self) -> Path:
        return self.path / HEATMAPS_DIR

    @property
    def graph_cache_dir(self) -> Path:
        return self.path / GRAPH_CACHE_DIR

    def graph_cache(self, config) -> Path:
        r"""Where a run's patch graphs are cached: the config's
        ``graph_cache``, else ``graph_cache/`` in this folder."""
        return config.graph_cache or self.graph_cache_dir

    def scores_path(self, slide_id: str) -> Path:
        return self.scores_dir / f'{slide_id}.h5'

    def geojson_path(self, slide_id: str) -> Path:
        return self.geojson_dir / f'{slide_id}.geojson'

    def heatmap_path(self, slide_id: str) -> Path:
        return self.heatmaps_dir / f'{slide_id}.png'

    def fold(self, k: int) -> 'RunFolder':
        r"""The run folder of fold :obj:`k` (from 1)."""
        return RunFolder(self.path / FOLD_DIR.format(k))

    # Starting a run -------------------------------------------------------

    def holds_run(self) -> bool:
        return self.results_path.is_file()

    def trained_before(self) -> bool:
        r"""Whether a training state (``last.pt``) was written here or in a
        fold: a run got at least one step in."""
        return self.path.is_dir() and any(
            self.path.rglob(TRAINING_STATE_FILE))

    def discard(self) -> None:
        r"""Deletes the folder of a run that never trained."""
        shutil.rmtree(self.path, ignore_errors=True)

    def check_free(self, resume: bool = False, overwrite: bool = False,
                   resumable: bool = True,
                   inputs: Sequence[Optional[Path]] = ()) -> bool:
        r"""Whether :meth:`prepare` may start a run here, checked before
        any work: the folder must be new or empty, or hold a run to
        continue (:obj:`resume`) or to replace (:obj:`overwrite`), and a
        run to replace must not hold any of the run's :obj:`inputs` (the
        data, the checkpoint), which replacing it would delete.
        :obj:`resumable` says whether the command can continue a run
        (``train``). Returns whether a previous run is to be replaced."""
        if resume and overwrite:
            raise PygSmError("'resume' and 'overwrite' exclude each other")
        if resume:
            if not self.holds_run():
                raise MissingFileError(
                    f"resume: {self.path} holds no run to continue (no "
                    f"{RESULTS_FILE})")
            return False
        if self.path.exists() and not self.path.is_dir():
            raise PygSmError(f"{self.path} is a file, not a folder; choose "
                             f"another --out")
        # Patch graphs cached by this run's checks are not another run.
        holds = self.path.is_dir() and any(
            entry.name != GRAPH_CACHE_DIR for entry in self.path.iterdir())
        if holds and not overwrite:
            raise PygSmError(f"{self.path} holds a previous run; pass " + (
                "--resume to continue it or " if resumable else '') +
                "--overwrite to replace it")
        if holds and not self.holds_run():
            raise PygSmError(f"--overwrite: {self.path} is not a pyg-sm run "
                             f"folder (no {RESULTS_FILE}); choose another "
                             f"--out")
        inside = [str(p) for p in inputs if p is not None and holds and
                  self.path.resolve() in (Path(p).resolve(),
                                          *Path(p).resolve().parents)]
        if inside:
            raise PygSmError(f"--overwrite would delete {', '.join(inside)}, "
                             f"which this run reads: it lies in {self.path}; "
                             f"choose another --out")
        return holds

    def prepare(self, resume: bool = False, overwrite: bool = False,
                resumable: bool = True,
                inputs: Sequence[Optional[Path]] = ()) -> None:
        r"""Makes the folder ready for a new run (:meth:`check_free`): a
        run replaced with :obj:`overwrite` has everything it wrote deleted
        first, but the patch graphs of ``graph_cache/``, which are keyed by
        the files and settings they were built from."""
        if not self.check_free(resume, overwrite, resumable, inputs) or \
                resume:
            self.path.mkdir(parents=True, exist_ok=True)
            return
        for entry in self.path.iterdir():
            if entry.name == GRAPH_CACHE_DIR:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def fail(self, error: BaseException) -> None:
        r"""Marks the run in ``results.json`` (and each fold's that is
        still running) as :data:`FAILED` with the reason, or
        :data:`INTERRUPTED` after Ctrl-C: a run never reads ``running``
        after its process ended."""
        interrupted = isinstance(error, (KeyboardInterrupt, Interrupted))
        status = INTERRUPTED if interrupted else FAILED
        reason = str(error) or type(error).__name__
        for run in (self, *self.folds()):
            if not run.holds_run():
                continue
            try:
                content = run.results()
            except ValueError:  # a results.json cut short: rewritten
                content = {}
            if content.get('status', RUNNING) != RUNNING:
                continue
            content.pop('schema', None)
            run.write_results({**content, 'status': status,
                               **({} if interrupted else
                                  {'error': reason})})

    # results.json ---------------------------------------------------------

    def write_results(self, content: Dict) -> Dict:
        r"""Writes ``results.json`` atomically, with the schema version
        first; returns what was written."""
        content = {'schema': SCHEMA, **content}
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.results_path, content)
        return content

    def write_training(self, header: TrainResults,
                       split: Optional[SplitResults], status: str) -> Dict:
        r"""``results.json`` of a training run (or of one fold) in
        :obj:`status`: the run's :obj:`header`, then the split's
        results."""
        return self.write_results({**header.to_json(), **(
            split.to_json() if split is not None else {}),
            'status': status})

    def write_folds(self, header: TrainResults,
                    folds: Sequence[SplitResults], summary: Dict) -> Dict:
        r"""``results.json`` of a cross-validated run: each fold's folder
        and held-out metrics, and their :obj:`summary` over the folds."""
        return self.write_results({
            **header.to_json(), 'status': FINISHED,
            'folds': [{'fold': k + 1, 'dir': str(self.fold(k + 1).path),
                       'validation': f.validation, 'test': f.test}
                      for k, f in enumerate(folds)],
            'summary': summary})

    def results(self) -> Dict:
        r"""The contents of ``results.json``."""
        if not self.results_path.is_file():
            raise MissingFileError(f"{self.path} holds no run (no "
                                   f"{RESULTS_FILE})")
        return json.loads(self.results_path.read_text())

    def folds(self) -> List['RunFolder']:
        r"""The folds' run folders, in order (empty without folds)."""
        found = []
        for path in self.path.glob(FOLD_DIR.format('*')):
            match = re.fullmatch(FOLD_DIR.format(r'(\d+)'), path.name)
            if match and path.is_dir():
                found.append((int(match[1]), RunFolder(path)))
        return [run for _, run in sorted(found, key=lambda pair: pair[0])]

    # The model ------------------------------------------------------------

    def load_model(self) -> torch.nn.Module:
        r"""The trained model of ``checkpoint.pt`` (the best by the run's
        monitor), in eval mode, on the CPU."""
        if not self.checkpoint_path.is_file():
            folds = self.folds()
            hint = (f"; it holds {len(folds)} folds: load one of "
                    f"{[str(f.path) for f in folds[:3]]}") if folds else ''
            raise MissingFileError(f"{self.path} holds no trained model (no "
                                   f"{CHECKPOINT_FILE}){hint}")
        return load_checkpoint(self.checkpoint_path)[0]

    # Slide predictions ----------------------------------------------------

    def write_predictions(self, predictions: Sequence[SlidePrediction],
                          classes: Optional[Sequence[str]]) -> Path:
        r"""``predictions.csv``, one row per bag: its id (``slide_id``, or
        ``case_id`` and its ``slide_ids`` joined by ``;`` for patients'
        bags), then for a classifier the probability of each class
        (``prob_<class>``), the predicted class and, when any is known,
        the true one; for a survival model the ``risk``, the ``time`` and
        ``event`` when known and, with ``nll``, the probability of
        surviving past each cut point (``survival_<cut point>``)."""
        cases = any(p.slide_ids is not None for p in predictions)
        survival = any(p.risk is not None for p in predictions)
        known = any(p.label is not None or p.time is not None
                    for p in predictions)
        cuts = list(next((p.survival for p in predictions if p.survival),
                         None) or {})
        head = ['case_id', 'slide_ids'] if cases else ['slide_id']
        if survival:
            head += ['risk'] + (['time', 'event'] if known else []) + \
                [f'survival_{c}' for c in cuts]
        else:
            head += [*[f'prob_{c}' for c in classes], 'predicted'] + (
                ['label'] if known else [])
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.predictions_path) as temporary, \
                open(temporary, 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(head)
            for p in predictions:
                row = [p.slide_id] + ([';'.join(p.slide_ids or [])]
                                      if cases else [])
                if survival:
                    row.append(f'{p.risk:.6f}')
                    if known:
                        row += ['' if p.time is None else f'{p.time:g}',
                                '' if p.event is None else p.event]
                    row += [f'{p.survival[c]:.6f}' for c in cuts]
                else:
                    row += [f'{p.probabilities[c]:.6f}' for c in classes]
                    row.append(p.predicted)
                    if known:
                        row.append('' if p.label is None else p.label)
                writer.writerow(row)
        return self.predictions_path

    def predictions(self) -> List[SlidePrediction]:
        r"""The bags' predictions: from ``predictions.csv`` (evaluate,
        predict, the demo's models), else from ``results.json`` (its
        ``predictions``, or a training run's ``validation`` and ``test``
        predictions); empty when the folder has neither."""
        if self.predictions_path.is_file():
            return [_prediction_of_row(row) for _, row in read_table(
                self.predictions_path, (), 'predictions table')]
        if not self.holds_run():
            return []
        content = self.results()
        entries = list(content.get('predictions') or [])
        for part in ('validation', 'test'):
            entries += (content.get(part) or {}).get('predictions') or []
        return [SlidePrediction.from_json(entry) for entry in entries]

    # Per-slide scores -----------------------------------------------------

    @property
    def slide_ids(self) -> List[str]:
        r"""The slides with scores, sorted."""
        return sorted(p.stem for p in self.scores_dir.glob('*.h5'))

    def has_scores(self) -> bool:
        return self.scores_dir.is_dir()

    def write_scores(self, slide_id: str, coords: Tensor,
                     attention_logits: Tensor, patch_size_level0: float,
                     patch_labels: Optional[Tensor] = None,
                     attention_std: Optional[Tensor] = None) -> Path:
        r"""``scores/<slide_id>.h5`` with ``coords`` (N, 2), ``attention``
        (the softmax weights of the slide, summing to 1),
        ``attention_logits`` and, when known, ``patch_labels`` (N,) and
        ``attention_std`` (N,); its attributes are the ``slide_id`` and
        ``patch_size_level0``."""
        import h5py

        self.scores_dir.mkdir(parents=True, exist_ok=True)
        path = self.scores_path(slide_id)
        weights = torch.softmax(attention_logits.double(), dim=0)
        with atomic_path(path) as temporary, h5py.File(temporary, 'w') as f:
            f['coords'] = coords.numpy()
            f['attention'] = weights.float().numpy()
            f['attention_logits'] = attention_logits.float().numpy()
            if patch_labels is not None:
                f['patch_labels'] = patch_labels.numpy()
            if attention_std is not None:
                f['attention_std'] = attention_std.float().numpy()
            f.attrs['slide_id'] = slide_id
            f.attrs['patch_size_level0'] = float(patch_size_level0)
        return path

    def write_annotation_labels(self, slide_id: str, coverage,
                                min_coverage: float) -> Path:
        r"""Adds to ``scores/<slide_id>.h5`` the patches' coverage by the
        annotated lesions (``annotation_coverage``, (N,)) and replaces its
        ``patch_labels`` with ``coverage >= min_coverage``: annotations
        take precedence over labels stored with the features (the file's
        ``patch_labels_source`` attribute says which it holds)."""
        import h5py
        import numpy as np

        path = self.scores_path(slide_id)
        coverage = np.asarray(coverage, dtype=np.float32)
        with h5py.File(path, 'a') as f:
            for name in ('annotation_coverage', 'patch_labels'):
                if name in f:
                    del f[name]
            f['annotation_coverage'] = coverage
            f['patch_labels'] = (coverage >= min_coverage).astype(np.uint8)
            f.attrs['patch_labels_source'] = 'annotations'
        return path

    def scores(self, slide_id: str) -> SlideScores:
        r"""The scores of one slide."""
        import h5py

        path = self.scores_path(slide_id)
        if not path.is_file():
            raise MissingFileError(f"slide '{slide_id}': no scores in "
                                   f"{self.scores_dir}")
        with h5py.File(path, 'r') as f:
            side = f.attrs.get('patch_size_level0')
            coords = torch.from_numpy(f['coords'][()])
            return SlideScores(
                slide_id=slide_id, coords=coords,
                attention=torch.from_numpy(f['attention'][()]),
                attention_logits=torch.from_numpy(
                    f['attention_logits'][()]),
                patch_labels=torch.from_numpy(f['patch_labels'][()]).long()
                if 'patch_labels' in f else None,
                patch_size_level0=patch_side(
                    coords, None if side is None else float(side)),
                attention_std=torch.from_numpy(f['attention_std'][()])
                if 'attention_std' in f else None)

    def write_geojson(self, slide_id: str, coords: Tensor,
                      attention_logits: Tensor,
                      patch_size_level0: float,
                      attention_std: Optional[Tensor] = None) -> Path:
        r"""``geojson/<slide_id>.geojson``: a FeatureCollection with one
        square polygon per patch (top-left corner at its coordinates,
        level-0 pixels), whose measurements are the attention weight and
        its percentile within the slide (and, from a probabilistic model,
        ``attention_std``), as QuPath imports detections."""
        self.geojson_dir.mkdir(parents=True, exist_ok=True)
        path = self.geojson_path(slide_id)
        side = patch_size_level0
        weights = torch.softmax(attention_logits.double(), dim=0).tolist()
        ranks = percentiles(attention_logits).tolist()
        corners = coords.double().tolist()
        stds = None if attention_std is None else \
            attention_std.double().tolist()
        with atomic_path(path) as temporary, open(temporary, 'w') as f:
            f.write('{"type": "FeatureCollection", "features": [\n')
            for i, ((x, y), weight, rank) in enumerate(zip(corners, weights,
                                                           ranks)):
                ring = [[x, y], [x + side, y], [x + side, y + side],
                        [x, y + side], [x, y]]
                feature = {'type': 'Feature',
                           'geometry': {'type': 'Polygon',
                                        'coordinates': [ring]},
                           'properties': {
                               'objectType': 'detection',
                               'name': f'patch {i}',
                               'measurements': {
                                   'attention': weight,
                                   'attention_percentile': rank,
                                   **({} if stds is None else
                                      {'attention_std': stds[i]})}}}
                f.write(('' if i == 0 else ',\n') + json.dumps(feature))
            f.write('\n]}\n')
        return path

    def slide_writer(self, geojson: bool = True) -> Callable:
        r"""The ``on_slide`` callback of
        :func:`~pyg_sm.train.score_slides`: writes each slide's scores (and
        GeoJSON) as it is scored."""
        def write(scores: SlideAttention, pos: Tensor,
                  step: Optional[float]) -> None:
            side = patch_side(pos, step)
            self.write_scores(scores.slide_id, pos, scores.attention_logits,
                              side, scores.patch_labels,
                              scores.attention_std)
            if geojson:
                self.write_geojson(scores.slide_id, pos,
                                   scores.attention_logits, side,
                                   scores.attention_std)
        return write

    @property
    def kaplan_meier_path(self) -> Path:
        return self.path / KAPLAN_MEIER_FILE

    def write_kaplan_meier(self, image: Any) -> Path:
        r"""``km.png`` (Kaplan-Meier curves) from a PIL image."""
        return _write_png(self.kaplan_meier_path, image)

    @property
    def froc_curve_path(self) -> Path:
        return self.path / FROC_CURVE_FILE

    def write_froc_curve(self, image: Any) -> Path:
        r"""``froc.png`` (the FROC curve of ``results.json``'s
        ``localization``) from a PIL image."""
        return _write_png(self.froc_curve_path, image)

    def write_heatmap(self, slide_id: str, image: Any) -> Path:
        r"""``heatmaps/<slide_id>.png`` from a PIL image."""
        self.heatmaps_dir.mkdir(parents=True, exist_ok=True)
        return _write_png(self.heatmap_path(slide_id), image)


def scored_runs(folders: Sequence[Union[str, Path, RunFolder]]
                ) -> List[RunFolder]:
    r"""Run folders to show together: each must hold scored slides; runs
    with the same folder name are told apart by their parent folder's
    name."""
    runs = [f if isinstance(f, RunFolder) else RunFolder(f)
            for f in folders]
    for run in runs:
        if not run.has_scores():
            raise MissingFileError(
                f"{run.path} holds no scored slides (no {SCORES_DIR}/ "
                f"folder); give a folder written by pyg-sm predict, "
                f"evaluate, train or demo")
    names = [run.name for run in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f'{run.path.resolve().parent.name}/{run.name}'
    return runs
