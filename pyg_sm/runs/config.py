r"""The settings of each command, declared once.

Each command of ``pyg-sm`` has a config dataclass whose field names are
its flags with underscores; a field's default is the command's default and
its ``help`` (in the field's metadata) is the flag's help text. The
``pyg-sm`` command builds its flags from these fields, and Python code
builds the same configs (checked when made):

>>> config = TrainConfig(data_dir='cohort', out='run', epochs=30,
...                      task='survival')
>>> config.monitor, config.survival_loss, config.num_bins
('val_c_index', 'nll', 4)
>>> TrainConfig(data_dir='cohort', epochs=0)
Traceback (most recent call last):
...
pyg_sm.utils.errors.PygSmError: 'epochs' (--epochs) must be an integer ...

``pyg_sm.runs.train(config)`` then runs it.
"""
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..datasets.annotations import AnnotationClasses
from ..datasets.cases import BAG_BY
from ..datasets.labels import MISSING_OUTCOMES, check_event_columns
from ..datasets.layouts import LAYOUTS
from ..datasets.slide_dataset import MISSING_SLIDES
from ..models.registry import MODELS
from ..nn.survival import SURVIVAL_LOSSES
from ..train.localization import MIN_COVERAGE
from ..train.settings import (
    LOGGERS,
    LR_SCHEDULERS,
    OPTIMIZERS,
    PRECISIONS,
    FitSettings,
)
from ..train.tasks import CLASS_WEIGHTS, MONITORS, TASKS
from ..transforms import METHODS, PatchGraph
from ..utils.errors import PygSmError
from ..visualize.colors import OVERLAY_STYLES

PathLike = Union[str, Path]
#: The demo's lesion signal: strong enough that SmABMIL and plain ABMIL both
#: classify its held-out slides well (bag AUROC 1.000 and 0.997), so that
#: the comparison is about localization.
DEMO_SIGNAL = 2.0
#: Where ``evaluate`` and ``predict`` write when no ``out`` is given.
SCORE_OUT = {'evaluate': Path('pyg_sm_eval'),
             'predict': Path('pyg_sm_predict')}


def setting(default: Any = dataclasses.MISSING, help: str = '', *,
            choices: Optional[Sequence] = None, unset: Optional[str] = None,
            positional: bool = False, many: bool = False,
            factory: Any = dataclasses.MISSING,
            metavar: Optional[str] = None) -> Any:
    r"""A config field with what the command line shows of it: its
    :obj:`help`, its :obj:`choices`, what an unset (:obj:`None`) value
    means (:obj:`unset`), whether it is a positional argument and whether
    it takes several values (:obj:`many`), and the name of its value in
    the help (:obj:`metavar`; the field's name by default)."""
    metadata = dict(help=help, choices=choices, unset=unset,
                    positional=positional, many=many, metavar=metavar)
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _fit(name: str) -> Any:
    r"""The default of a setting the training engine declares."""
    return FitSettings.__dataclass_fields__[name].default


def default_of(config: type, name: str) -> Any:
    r"""The default of another config's field (declared there once)."""
    return config.__dataclass_fields__[name].default


def _check_count(name: str, value: Optional[int], least: int) -> None:
    if value is not None and (not isinstance(value, int) or value < least):
        raise PygSmError(f"'{name}' (--{name.replace('_', '-')}) must be an "
                         f"integer of at least {least} (got {value!r})")


def _check_choice(name: str, value: Any, choices: Sequence) -> None:
    if value is not None and value not in choices:
        raise PygSmError(f"'{name}' (--{name.replace('_', '-')}) must be one "
                         f"of {list(choices)} (got {value!r})")


#: The package each ``--logger`` needs.
_LOGGER_PACKAGES = {'tensorboard': 'tensorboard', 'wandb': 'wandb',
                    'mlflow': 'mlflow'}


def _check_logger(name: str) -> None:
    import importlib.util

    _check_choice('logger', name, LOGGERS)
    package = _LOGGER_PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is None:
        raise PygSmError(f"--logger {name} needs the {package} package "
                         f"(pip install {package})")


def _as_path(value: Optional[PathLike]) -> Optional[Path]:
    return None if value is None else Path(value)


def _as_list(value: Optional[Union[str, Sequence[str]]]
             ) -> Optional[List[str]]:
    r"""A list setting given as comma-separated text (in Python also a
    list)."""
    return value.split(',') if isinstance(value, str) else value


def as_dict(config) -> Dict:
    r"""A config as JSON-like values (paths as text), as ``results.json``
    records it."""
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return {f.name: plain(getattr(config, f.name))
            for f in dataclasses.fields(config)}


@dataclasses.dataclass(kw_only=True)
class GraphConfig:
    r"""The patch graph of every slide."""
    graph: str = setting('grid', 'patch graph: grid neighbours or a radius',
                         choices=tuple(METHODS))
    connectivity: int = setting(8, 'grid graphs: 4 or 8 neighbours',
                                choices=(4, 8))
    patch_size: Optional[float] = setting(
        None, 'patch side in level-0 pixels for slides whose files do not '
              "say it (TRIDENT's patch_size_level0, CLAM's patch_size x "
              'downsample come first and must agree)',
        unset='the most common distance between neighbouring patches')
    radius: Optional[float] = setting(
        None, 'linking distance of radius graphs (needed by --graph radius)')

    def patch_graph(self) -> PatchGraph:
        r"""The transform that builds each slide's graph."""
        return PatchGraph(self.graph, self.connectivity, self.patch_size,
                          self.radius)

    def graph_options(self) -> Dict:
        r"""The settings as checkpoints record them (``method``, ...)."""
        return self.patch_graph().options()


_GRAPH_FIELDS = tuple(f.name for f in dataclasses.fields(GraphConfig))


def _from_checkpoint(name: str) -> Any:
    r"""A graph setting that defaults to the checkpoint's."""
    metadata = GraphConfig.__dataclass_fields__[name].metadata
    return setting(None, metadata['help'], choices=metadata['choices'],
                   unset="the checkpoint's")


@dataclasses.dataclass(kw_only=True)
class CohortConfig:
    r"""Where the slides are, how to read them and where to draw them."""
    data_dir: Path = setting(help='folder with the labels file and the '
                                  'features', positional=True)
    labels: Optional[str] = setting(
        None, 'CSV of slide_id,label[,case_id], relative to DATA_DIR',
        unset='labels.csv; optional for predict')
    layout: str = setting(
        'auto', 'h5 (features/<id>.h5, TRIDENT), clam (pt_files/ + '
                'h5_files/), torchmil (.npy folders); auto picks by the '
                'files found', choices=('auto', *LAYOUTS))
    features_dir: str = setting(
        'features', 'h5 layout: folder of the <slide_id>.h5 files, relative '
                    'to DATA_DIR')
    patches_dir: Optional[Path] = setting(
        None, "clam layout: the folder of create_patches_fp.py's "
              "<slide_id>.h5, whose coords attributes (patch_size, "
              "downsample) give the patch side", unset='patches/ beside '
                                                      'h5_files/')
    allow_sparse_graphs: bool = setting(
        False, 'go on when slides get patch graphs that link few or no '
               'patches (by default an error before the first epoch or the '
               'first slide scored)')
    missing_slides: str = setting(
        'error', 'slides listed (in the labels or --slide-ids) without a '
                 'feature file: error (all reported at once) or skip (left '
                 'out; the results list them)', choices=MISSING_SLIDES)
    missing_outcomes: str = setting(
        'error', 'survival: rows without a time or an event (empty, NA): '
                 'error (all reported at once) or skip (left out with a '
                 'note; the results list them)', choices=MISSING_OUTCOMES)
    workers: int = setting(0, 'processes that read slides ahead (0: read in '
                              'the main process)')
    device: Optional[str] = setting(
        None, 'cpu, cuda (this process\'s GPU: LOCAL_RANK among the '
              'visible ones under torchrun), cuda:1 (as given), ...',
        unset='cuda if there is a GPU, else cpu')
    slides_dir: Optional[Path] = setting(
        None, 'folder of the slide images, <slide_id>.<ext> in any format '
              'OpenSlide reads (svs, tif, ndpi, mrxs, ...): heatmaps are '
              'drawn over them', unset='none, heatmaps on the patch grid')
    heatmaps: int = setting(4, 'slides drawn in heatmaps/ (validation '
                               'slides when training)')
    overlay_style: str = setting(
        'ramp', 'how attention is painted over the tissue: ramp (the '
                'opacity grows with the percentile: the lowest half nearly '
                'transparent, the top decile opaque) or flat (every patch '
                'at --opacity)', choices=OVERLAY_STYLES)
    graph_cache: Optional[Path] = setting(
        None, "folder of the slides' patch graphs, built once and keyed by "
              "the file and the graph settings: runs on one cohort may "
              "share it", unset='OUT/graph_cache')

    def __post_init__(self):
        self.data_dir = _as_path(self.data_dir)
        self.patches_dir = _as_path(self.patches_dir)
        self.graph_cache = _as_path(self.graph_cache)
        self.slides_dir = _as_path(self.slides_dir)
        _check_choice('layout', self.layout, ('auto', *LAYOUTS))
        _check_choice('missing_slides', self.missing_slides, MISSING_SLIDES)
        _check_choice('missing_outcomes', self.missing_outcomes,
                      MISSING_OUTCOMES)
        _check_choice('overlay_style', self.overlay_style, OVERLAY_STYLES)
        _check_count('workers', self.workers, 0)
        _check_count('heatmaps', self.heatmaps, 0)


@dataclasses.dataclass(kw_only=True)
class TrainConfig(GraphConfig, CohortConfig):
    r"""``pyg-sm train``: every setting of a training run.

    :obj:`model_options` are the model's constructor options over those of
    :obj:`preset` (e.g. ``{'att_dim': 64}``); :meth:`from_recipe` starts
    from a named set of training settings (:data:`RECIPES`)."""
    out: Path = setting(Path('pyg_sm_run'), 'output folder (the run folder)')
    task: str = setting(
        'classification', 'classification (a label column) or survival (a '
                          'time and an event column)', choices=tuple(TASKS))
    time_column: str = setting(
        'time', 'survival: the column of the labels file with each '
                "slide's time (any unit)")
    event_column: Optional[str] = setting(
        None, 'survival: the column with 1 where the event was observed '
              'at that time, 0 where the slide was censored',
        unset='event, unless --censorship-column is given')
    censorship_column: Optional[str] = setting(
        None, 'survival: the column with 1 where the slide was censored, 0 '
              'where the event was observed (censorship in Patch-GCN, MCAT, '
              'SurvPath and PORPOISE tables); excludes --event-column',
        unset='none: --event-column')
    survival_loss: str = setting(
        'nll', 'survival: nll (discrete-time hazards over --num-bins '
               'intervals, as Patch-GCN) or cox (partial likelihood, Breslow '
               'ties, over each batch: needs --batch-size 2 or more)',
        choices=SURVIVAL_LOSSES)
    num_bins: int = setting(
        4, 'survival with nll: intervals, cut at the quantiles of the '
           "training slides' event times")
    bag_by: str = setting(
        'slide', 'what a bag is: a slide, or a patient (case: the case_id '
                 "column; the patient's slides as one graph without edges "
                 'between slides)', choices=BAG_BY)
    model: str = setting('sm_abmil', 'the model', choices=tuple(MODELS))
    preset: Optional[str] = setting(
        None, 'named set of model options', unset="the model's first preset")
    model_options: Dict[str, Any] = setting(
        help="the model's options over the preset's", factory=dict)
    classes: Optional[List[str]] = setting(
        None, 'class names in order (on the command line: comma-separated)',
        unset='the sorted distinct labels')
    epochs: int = setting(_fit('epochs'), 'passes over the training slides')
    lr: float = setting(_fit('lr'), 'learning rate (the peak of '
                                    '--lr-scheduler onecycle)')
    weight_decay: float = setting(_fit('weight_decay'),
                                  "the optimizer's weight decay")
    optimizer: str = setting(_fit('optimizer'),
                             'adam, adamw or sgd (momentum 0.9)',
                             choices=OPTIMIZERS)
    lr_scheduler: str = setting(
        _fit('lr_scheduler'), 'none, cosine (to 0 over the epochs), plateau '
                              '(divided by 10 after 2 validations without '
                              'improvement of --monitor) or onecycle (per '
                              'step)', choices=LR_SCHEDULERS)
    batch_size: int = setting(_fit('batch_size'),
                              'slides per batch (per process under '
                              'torchrun)')
    accumulate_grad_batches: int = setting(
        _fit('accumulate_grad_batches'), 'batches whose gradients add up '
                                         'before each optimizer step',
        metavar='K')
    precision: str = setting(
        _fit('precision'), '32, bf16-mixed (CPU or GPU) or 16-mixed (CUDA '
                           'only)', choices=PRECISIONS)
    class_weights: str = setting(
        'none', "classification: balanced weighs each class's loss by the "
                'inverse of its share of the training slides',
        choices=CLASS_WEIGHTS)
    balanced_sampling: bool = setting(
        _fit('balanced_sampling'), "draw each epoch's slides with "
                                   'replacement, each class as often '
                                   '(survival: each event status)')
    patience: Optional[int] = setting(
        _fit('patience'), 'stop after this many validations without '
                          'improvement of --monitor',
        unset='none: train every epoch')
    logger: List[str] = setting(
        help='where the curves go, under OUT/logs (comma-separated): csv, '
             'tensorboard, wandb (offline unless WANDB_MODE=online), '
             'mlflow (OUT/logs/mlruns unless MLFLOW_TRACKING_URI is set)',
        factory=lambda: list(_fit('loggers')))
    num_nodes: int = setting(
        _fit('num_nodes'), 'machines of a multi-node run (torchrun --nnodes '
                           "or SLURM's nodes)")
    val_fraction: float = setting(
        0.25, 'share of the slides held out for validation, by patient '
              '(case_id) and stratified by label (survival: by event)')
    test_fraction: float = setting(
        0.0, 'share held out as a test set, evaluated once with the best '
             'checkpoint')
    split_file: Optional[Path] = setting(
        None, 'CSV slide_id,split (train/val/test) that fixes the split')
    split_by: Optional[str] = setting(
        None, 'a column of the labels file that groups the split (every '
              'side and fold): no value on two sides, e.g. site for '
              'site-held-out validation; tss without such a column takes '
              "the tissue source site from the TCGA barcode (TCGA-XX-...)",
        unset='patients (case_id), else slides')
    folds: Optional[int] = setting(
        None, 'K-fold cross-validation by patient: K runs in OUT/fold_<k>, '
              'reported with mean and sd')
    monitor: Optional[str] = setting(
        None, 'validation metric that picks the best checkpoint (last: the '
              'final epoch)', choices=tuple(MONITORS),
        unset='val_loss; val_c_index for survival')
    validate_every: int = setting(
        _fit('validate_every'), 'score the validation slides after every '
                                'N-th epoch (0: only once, with the final '
                                'model; needs --monitor last)')
    seed: int = setting(_fit('seed'), 'seed of the split, the '
                                      'initialization and the shuffling')
    deterministic: bool = setting(
        False, "deterministic algorithms only (torch's, and the cuBLAS "
               "setting they need), meant to give bitwise identical runs "
               "for a fixed --seed on a GPU too (not yet run on one), at "
               "some speed; an operation without one stops the run, "
               "naming it")
    in_memory: bool = setting(False, 'keep all slides in memory (small '
                                     'cohorts)')
    resume: bool = setting(False, 'continue the run in --out from its last '
                                  'checkpoint')
    overwrite: bool = setting(False, 'replace the run in --out (its files '
                                     'are deleted first)')

    def __post_init__(self):
        super().__post_init__()
        self.out = _as_path(self.out)
        self.split_file = _as_path(self.split_file)
        self.classes = _as_list(self.classes)
        _check_choice('task', self.task, tuple(TASKS))
        _check_choice('survival_loss', self.survival_loss, SURVIVAL_LOSSES)
        check_event_columns(self.event_column, self.censorship_column)
        if self.event_column is None and self.censorship_column is None:
            self.event_column = 'event'
        _check_choice('bag_by', self.bag_by, BAG_BY)
        _check_count('num_bins', self.num_bins, 1)
        if self.monitor is None:
            self.monitor = TASKS[self.task].default_monitor
        _check_choice('model', self.model, tuple(MODELS))
        _check_choice('monitor', self.monitor, tuple(MONITORS))
        foreign = {m for name, task in TASKS.items() if name != self.task
                   for m in task.monitors}
        if self.monitor in foreign:
            raise PygSmError(f"--monitor {self.monitor} does not apply to "
                             f"--task {self.task} (its monitors: "
                             f"{[m for m in MONITORS if m not in foreign]})")
        if self.task == 'survival' and self.classes is not None:
            raise PygSmError('--classes concerns classification, not '
                             '--task survival')
        if self.task == 'survival' and self.survival_loss == 'cox' and \
                self.batch_size < 2:
            raise PygSmError(f"--survival-loss cox compares the bags of a "
                             f"batch: it needs --batch-size 2 or more (got "
                             f"{self.batch_size})")
        _check_choice('graph', self.graph, tuple(METHODS))
        _check_count('folds', self.folds, 2)
        self.logger = _as_list(self.logger)
        _check_choice('class_weights', self.class_weights, CLASS_WEIGHTS)
        if self.task != 'classification' and self.class_weights != 'none':
            raise PygSmError(f'--class-weights concerns classification, '
                             f'not --task {self.task}')
        for name in self.logger:
            _check_logger(name)
        self.fit_settings()  # checks the engine's settings
        for name in ('lr', 'weight_decay'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise PygSmError(f"'{name}' (--{name.replace('_', '-')}) "
                                 f"must be a non-negative number (got "
                                 f"{value!r})")
        if self.resume and self.overwrite:
            raise PygSmError('--resume and --overwrite exclude each other')
        if self.split_file is not None and self.folds:
            raise PygSmError('--split-file and --folds exclude each other')
        if self.split_file is not None and self.split_by is not None:
            raise PygSmError('--split-file and --split-by exclude each other')

    def fit_settings(self, progress: bool = False) -> FitSettings:
        r"""The engine's settings (:class:`~pyg_sm.train.FitSettings`)."""
        names = set(FitSettings.__dataclass_fields__) - {'loggers',
                                                          'progress'}
        return FitSettings(**{n: getattr(self, n) for n in names},
                           loggers=tuple(self.logger), progress=progress)

    @classmethod
    def from_recipe(cls, recipe: Optional[str] = None,
                    **settings) -> 'TrainConfig':
        r"""The settings of :obj:`recipe` (a name in :data:`RECIPES`),
        then :obj:`settings`."""
        if recipe is None:
            return cls(**settings)
        if recipe not in RECIPES:
            raise PygSmError(f"unknown recipe {recipe!r} (known: "
                             f"{list(RECIPES)})")
        return cls(**{**RECIPES[recipe].settings, **settings})

    @classmethod
    def from_file(cls, path: PathLike, recipe: Optional[str] = None,
                  **settings) -> 'TrainConfig':
        r"""The settings of a YAML file (every field a key, as
        :meth:`to_yaml` writes them) over those of :obj:`recipe`, then
        :obj:`settings` (the command line's flags); the file's
        ``model_options`` and those of :obj:`settings` merge."""
        saved = read_settings(path, cls)
        options = {**(saved.pop('model_options', None) or {}),
                   **(settings.pop('model_options', None) or {})}
        recipe = settings.pop('recipe', saved.pop('recipe', recipe))
        settings = {**saved, **settings}
        if settings.get('data_dir') is None:
            raise PygSmError('DATA_DIR is required (or data_dir in '
                             '--config)')
        return cls.from_recipe(recipe, **settings, model_options=options)

    def to_yaml(self) -> str:
        r"""Every setting as YAML, which :meth:`from_file` (``pyg-sm train
        --config``) reads back to the same config."""
        import yaml

        return '# pyg-sm train --config FILE: every flag is a key\n' + \
            yaml.safe_dump(as_dict(self), sort_keys=False)

    def resolved_model_options(self) -> Dict[str, Any]:
        r"""Every option of the model: its defaults, the preset's, then
        :obj:`model_options`."""
        spec = MODELS[self.model]
        if self.preset is not None and self.preset not in spec.presets:
            raise PygSmError(f"unknown preset {self.preset!r} of --model "
                             f"{spec.name} (known: {list(spec.presets)})")
        return spec.resolve(self.preset, **self.model_options)


def read_settings(path: PathLike, config: type) -> Dict[str, Any]:
    r"""The settings of a YAML file, checked against the fields of
    :obj:`config` (an unknown key names the file, the key and the known
    ones)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PygSmError(f"--config {path}: no such file")
    try:
        saved = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = '' if mark is None else \
            f' at line {mark.line + 1}, column {mark.column + 1}'
        problem = getattr(error, 'problem', None) or type(error).__name__
        raise PygSmError(f"--config {path}: not YAML{where} ({problem})") \
            from None
    saved = saved or {}
    if not isinstance(saved, dict):
        raise PygSmError(f"--config {path}: expected a mapping of settings "
                         f"(key: value), got {type(saved).__name__}")
    known = {f.name for f in dataclasses.fields(config)} | {'recipe'}
    saved = {str(k).replace('-', '_'): v for k, v in saved.items()}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise PygSmError(f"--config {path}: unknown setting(s) {unknown} "
                         f"(known: {sorted(known)})")
    return saved


@dataclasses.dataclass(frozen=True)
class Recipe:
    r"""A named set of training settings, and what it is for."""
    help: str
    settings: Dict[str, Any]


#: Named training settings (``pyg-sm train --recipe NAME``); flags given
#: override them.
RECIPES: Dict[str, Recipe] = {
    'demo': Recipe("the demo's: the final epoch's model, scored once on a "
                   'held-out 30%',
                   dict(lr=2e-3, val_fraction=0.3, monitor='last',
                        validate_every=0, in_memory=True)),
}


@dataclasses.dataclass(kw_only=True)
class ScoreConfig(CohortConfig):
    r"""``pyg-sm evaluate`` and ``pyg-sm predict``: scoring slides with a
    trained model. The patch-graph settings are the checkpoint's; one given
    here must equal it."""
    checkpoint: Path = setting(help='checkpoint.pt written by pyg-sm train')
    out: Optional[Path] = setting(
        None, 'output folder', unset='pyg_sm_eval for evaluate, '
                                     'pyg_sm_predict for predict')
    slide_ids: Optional[Union[Path, List[str]]] = setting(
        None, 'the slides to score: a file of ids, one per line or a CSV '
              'with a slide_id column (in Python also a list)',
        unset="those of the labels file, else every feature file")
    batch_size: int = setting(1, 'slides per batch (per process under '
                                 'torchrun)')
    graph: Optional[str] = _from_checkpoint('graph')
    connectivity: Optional[int] = _from_checkpoint('connectivity')
    patch_size: Optional[float] = _from_checkpoint('patch_size')
    radius: Optional[float] = _from_checkpoint('radius')
    annotations: Optional[Path] = setting(
        None, "folder of the slides' lesion outlines, <slide_id>.geojson "
              "(QuPath), .json or .xml (ASAP, CAMELYON16): the scores are "
              "then measured against them (instance metrics, FROC)",
        unset='none')
    annotation_classes: Optional[List[str]] = setting(
        None, 'the annotation classes (or ASAP groups) that are lesions, '
              'comma-separated', unset='every class that is not an '
                                       'exclusion')
    exclusion_classes: Optional[List[str]] = setting(
        None, 'annotation classes subtracted from the lesions besides '
              "_2, negative (CAMELYON16), Exclusion and QuPath's Ignore*, "
              'comma-separated', unset='those')
    min_coverage: float = setting(
        MIN_COVERAGE, 'a patch is a lesion patch when the lesions cover at '
                      'least this share of it')
    mpp: Optional[float] = setting(
        None, 'micrometres per level-0 pixel for slides whose image does '
              'not say (the FROC dilates lesions by 75 um)',
        unset="each slide image's openslide.mpp-x")
    bag_by: Optional[str] = setting(
        None, TrainConfig.__dataclass_fields__['bag_by'].metadata['help'],
        choices=BAG_BY, unset="the checkpoint's")
    time_column: Optional[str] = setting(
        None, TrainConfig.__dataclass_fields__['time_column'].metadata[
            'help'], unset="the checkpoint's")
    event_column: Optional[str] = setting(
        None, TrainConfig.__dataclass_fields__['event_column'].metadata[
            'help'], unset="the checkpoint's")
    censorship_column: Optional[str] = setting(
        None, TrainConfig.__dataclass_fields__['censorship_column'].metadata[
            'help'], unset="the checkpoint's")
    partial_cases: bool = setting(
        False, '--bag-by case with --slide-ids: score a patient whose '
               'slides are only partly listed (a note names them; by '
               'default an error)')
    overwrite: bool = setting(
        False, 'replace the run in --out (the files it wrote are deleted '
               'first)')

    def __post_init__(self):
        super().__post_init__()
        self.checkpoint = _as_path(self.checkpoint)
        self.out = _as_path(self.out)
        self.annotations = _as_path(self.annotations)
        if isinstance(self.slide_ids, str):
            self.slide_ids = Path(self.slide_ids)
        self.annotation_classes = _as_list(self.annotation_classes)
        self.exclusion_classes = _as_list(self.exclusion_classes)
        annotation_classes(self)
        _check_count('batch_size', self.batch_size, 1)
        _check_choice('bag_by', self.bag_by, BAG_BY)
        check_event_columns(self.event_column, self.censorship_column)
        if not 0 < self.min_coverage <= 1:
            raise PygSmError(f"'min_coverage' (--min-coverage) must lie in "
                             f"(0, 1] (got {self.min_coverage})")
        if self.mpp is not None and not self.mpp > 0:
            raise PygSmError(f"'mpp' (--mpp) must be positive (got "
                             f"{self.mpp})")

    def graph_config(self, saved: Dict) -> GraphConfig:
        r"""The checkpoint's graph settings :obj:`saved`; a setting given
        here that differs is an error."""
        saved = {'graph' if k == 'method' else k: v for k, v in
                 saved.items()}
        conflicts = [f'--{k.replace("_", "-")} {getattr(self, k)} '
                     f'(checkpoint: {saved.get(k)})' for k in _GRAPH_FIELDS
                     if getattr(self, k) is not None and
                     getattr(self, k) != saved.get(k)]
        if conflicts:
            raise PygSmError(f"the checkpoint was trained with other patch "
                             f"graphs: {'; '.join(conflicts)}; leave these "
                             f"out to use the checkpoint's")
        return GraphConfig(**{k: saved.get(k, default_of(GraphConfig, k))
                              for k in _GRAPH_FIELDS})


def annotation_classes(config) -> AnnotationClasses:
    r"""The lesion and exclusion classes a config names
    (``--annotation-classes``, ``--exclusion-classes``)."""
    return AnnotationClasses(config.annotation_classes,
                             config.exclusion_classes or ())


def _setting_of(config: type, name: str):
    r"""A setting declared once in :obj:`config`, for configs that do not
    derive from it."""
    field = config.__dataclass_fields__[name]
    return setting(field.default, field.metadata['help'],
                   choices=field.metadata.get('choices'),
                   unset=field.metadata.get('unset'),
                   positional=field.metadata.get('positional', False),
                   many=field.metadata.get('many', False),
                   metavar=field.metadata.get('metavar'))


@dataclasses.dataclass(kw_only=True)
class InspectConfig(GraphConfig):
    r"""``pyg-sm inspect``: the patch graphs of every feature file of a
    cohort, before training."""
    data_dir: Path = _setting_of(CohortConfig, 'data_dir')
    layout: str = _setting_of(CohortConfig, 'layout')
    features_dir: str = _setting_of(CohortConfig, 'features_dir')
    patches_dir: Optional[Path] = _setting_of(CohortConfig, 'patches_dir')
    graph_cache: Optional[Path] = setting(
        None, CohortConfig.__dataclass_fields__['graph_cache'].metadata[
            'help'], unset='none: graphs are built and not kept')
    worst: int = setting(10, 'slides listed, lowest mean degree first')

    def __post_init__(self):
        self.data_dir = _as_path(self.data_dir)
        self.patches_dir = _as_path(self.patches_dir)
        self.graph_cache = _as_path(self.graph_cache)
        _check_choice('layout', self.layout, ('auto', *LAYOUTS))
        _check_choice('graph', self.graph, tuple(METHODS))
        _check_count('worst', self.worst, 0)


@dataclasses.dataclass(kw_only=True)
class HeatmapConfig:
    r"""``pyg-sm heatmap``: attention pictures of scored runs."""
    runs: List[Path] = setting(
        help='folders written by predict, evaluate, train or demo (with '
             'scores/); two or more are drawn side by side',
        positional=True, many=True)
    out: Path = setting(Path('pyg_sm_heatmaps'),
                        'output folder; PNGs go to OUT/heatmaps')
    slides_dir: Optional[Path] = setting(
        None, CohortConfig.__dataclass_fields__['slides_dir'].metadata[
            'help'], unset='none, heatmaps on the patch grid')
    slide_ids: Optional[Union[Path, List[str]]] = setting(
        None, 'the slides to draw: a file of ids, one per line (in Python '
              'also a list)', unset='every slide of the first run')
    top_k: int = setting(8, 'patches of highest attention shown at full '
                            'resolution per run')
    opacity: float = setting(0.5, 'opacity of the attention over the '
                                  'tissue in the flat style, 0 to 1')
    overlay_style: str = _setting_of(CohortConfig, 'overlay_style')
    annotations: Optional[Path] = setting(
        None, "folder of the slides' lesion outlines (as for evaluate): "
              "drawn over the slide images", unset='none')
    annotation_classes: Optional[List[str]] = _setting_of(
        ScoreConfig, 'annotation_classes')
    exclusion_classes: Optional[List[str]] = _setting_of(
        ScoreConfig, 'exclusion_classes')

    def __post_init__(self):
        self.runs = [Path(r) for r in self.runs]
        self.out = _as_path(self.out)
        self.slides_dir = _as_path(self.slides_dir)
        self.annotations = _as_path(self.annotations)
        if isinstance(self.slide_ids, str):
            self.slide_ids = Path(self.slide_ids)
        self.annotation_classes = _as_list(self.annotation_classes)
        self.exclusion_classes = _as_list(self.exclusion_classes)
        annotation_classes(self)
        if not self.runs:
            raise PygSmError('heatmap needs at least one run folder')
        _check_count('top_k', self.top_k, 0)
        _check_choice('overlay_style', self.overlay_style, OVERLAY_STYLES)
        if not isinstance(self.opacity, (int, float)) or \
                not 0 <= self.opacity <= 1:
            raise PygSmError(f"'opacity' (--opacity) must be within [0, 1] "
                             f"(got {self.opacity!r})")


@dataclasses.dataclass(kw_only=True)
class ViewConfig:
    r"""``pyg-sm view``: the local deep-zoom viewer."""
    runs: List[Path] = setting(
        help='folders written by predict, evaluate, train or demo (with '
             'scores/); several give a run switch', positional=True,
        many=True)
    slides_dir: Optional[Path] = setting(
        None, CohortConfig.__dataclass_fields__['slides_dir'].metadata[
            'help'], unset='none, attention on a blank background')
    host: str = setting('127.0.0.1', 'address to listen on (127.0.0.1: this '
                                     'machine only)')
    port: int = setting(0, 'port to listen on (0: a free one)')
    log_requests: bool = setting(False, 'log every request on stderr')
    overlay_style: str = _setting_of(CohortConfig, 'overlay_style')
    annotations: Optional[Path] = setting(
        None, "folder of the slides' lesion outlines (as for evaluate): "
              "a layer the page turns on and off", unset='none')
    annotation_classes: Optional[List[str]] = _setting_of(
        ScoreConfig, 'annotation_classes')
    exclusion_classes: Optional[List[str]] = _setting_of(
        ScoreConfig, 'exclusion_classes')

    def __post_init__(self):
        self.runs = [Path(r) for r in self.runs]
        self.slides_dir = _as_path(self.slides_dir)
        self.annotations = _as_path(self.annotations)
        self.annotation_classes = _as_list(self.annotation_classes)
        self.exclusion_classes = _as_list(self.exclusion_classes)
        annotation_classes(self)
        if not self.runs:
            raise PygSmError('view needs at least one run folder')
        _check_count('port', self.port, 0)
        _check_choice('overlay_style', self.overlay_style, OVERLAY_STYLES)


@dataclasses.dataclass(kw_only=True)
class DemoConfig:
    r"""``pyg-sm demo``: SmABMIL, ProbSmoothABMIL and plain ABMIL trained
    (the ``demo`` recipe) and evaluated on synthetic slides."""
    out: Path = setting(Path('pyg_sm_demo'), 'output folder')
    num_slides: int = setting(160, 'synthetic slides to make')
    epochs: int = setting(default_of(TrainConfig, 'epochs'), 'training epochs')
    seed: int = setting(default_of(TrainConfig, 'seed'),
                        'seed of the data, split and training')
    heatmaps: int = setting(default_of(CohortConfig, 'heatmaps'),
                            'held-out slides drawn in heatmaps/')
    signal: float = setting(
        DEMO_SIGNAL, 'shift of lesion patches, in standard deviations along '
                     'a few feature directions')
    task: str = setting(
        'classification', 'classification (lesion or not) or survival (a '
                          'time that shortens with the lesion burden, about '
                          '30% censored)', choices=tuple(TASKS))

    def __post_init__(self):
        self.out = _as_path(self.out)
        _check_choice('task', self.task, tuple(TASKS))
        _check_count('num_slides', self.num_slides, 4)
        _check_count('epochs', self.epochs, 1)
        _check_count('heatmaps', self.heatmaps, 0)
