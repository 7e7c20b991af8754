r"""``train``: one training run, or one per fold, into a run folder."""
import dataclasses
import math
import sys
from typing import Dict, List, Optional

import torch

from ..datasets import SlideDataset
from ..datasets.cases import CaseDataset
from ..datasets.labels import read_groups
from ..models import MODELS, build_model
from ..train import (
    Interrupted,
    SurvivalTask,
    Task,
    distributed,
    save_checkpoint,
    score_slides,
)
from ..train.checkpoint import atomic_save, read_checkpoint
from ..train.metrics import mean_and_sd
from ..train.records import EpochRecord, SurvivalRecord
from ..train.settings import check_device
from ..train.splits import fold_slides, read_split_file, split_slides
from ..train.survival import kaplan_meier_groups
from ..train.tasks import TASKS
from ..utils.errors import PygSmError
from ..utils.text import plural
from ..visualize import render_kaplan_meier
from ._common import (
    check_graphs,
    check_progress,
    command_line,
    make_dataset,
    most_lesioned,
    print_table,
    slide_images,
    versions,
    world_size,
    write_heatmaps,
)
from .config import ScoreConfig, TrainConfig, as_dict, default_of
from .folder import (
    FINISHED,
    INTERRUPTED,
    RUNNING,
    RunFolder,
    SlidePrediction,
    SplitResults,
    TrainResults,
)

#: Slides per batch when the best checkpoint scores the held-out slides
#: (as ``evaluate`` does by default).
SCORING_BATCH_SIZE = default_of(ScoreConfig, 'batch_size')


def split_units(config: TrainConfig,
                dataset: SlideDataset) -> Optional[List[str]]:
    r"""What a split keeps on one side, per slide: the
    :obj:`config.split_by` group (each patient within one), else the
    patient (case id), else :obj:`None` (each slide alone)."""
    cases = dataset.case_ids
    if config.split_by is None:
        return cases
    groups = read_groups(dataset.root / (config.labels or 'labels.csv'),
                         config.split_by, dataset.slide_ids, cases)
    if cases is not None:
        seen: Dict[str, str] = {}
        for slide_id, case, group in zip(dataset.slide_ids, cases, groups):
            if seen.setdefault(case, group) != group:
                raise PygSmError(
                    f"patient '{case}' has slides in two --split-by "
                    f"{config.split_by} groups ('{seen[case]}' and "
                    f"'{group}', slide '{slide_id}'): a patient must lie in "
                    f"one group")
    return groups


def _splits(config: TrainConfig, dataset: SlideDataset, task: Task,
            units: Optional[List[str]]) -> List[Dict[str, List[str]]]:
    r"""The run's splits: one, or one per fold, each keeping every unit
    (:func:`split_units`) on one side."""
    ids, labels = dataset.slide_ids, dataset.labels
    if config.split_file is not None:
        splits = [read_split_file(config.split_file, ids)]
    elif config.folds:
        held = split_slides(ids, labels, units, 0.0, config.test_fraction,
                            config.seed)['test']
        rest = [i for i, s in enumerate(ids) if s not in set(held)]
        folds = fold_slides([ids[i] for i in rest], [labels[i] for i in rest],
                            None if units is None else
                            [units[i] for i in rest], config.folds,
                            config.seed)
        splits = [{'train': [s for j, f in enumerate(folds) if j != k
                             for s in f], 'val': folds[k], 'test': held}
                  for k in range(config.folds)]
    else:
        splits = [split_slides(ids, labels, units, config.val_fraction,
                               config.test_fraction, config.seed)]
    for split in splits:
        task.check_split(split, dataset, units,
                         fixed=config.split_file is not None)
    return splits


def split_groups(splits: List[Dict[str, List[str]]], slide_ids: List[str],
                 units: List[str]) -> List[Dict[str, List[str]]]:
    r"""The groups on each side of each split, as ``results.json``
    records them."""
    group_of = dict(zip(slide_ids, units))
    return [{side: sorted({group_of[s] for s in ids})
             for side, ids in split.items()} for split in splits]


def _fold_summary(runs: List[SplitResults], task: Task) -> Dict:
    r"""The mean and sd of each metric over the folds that have it, printed
    with the folds that lack it and why."""
    summary = {}
    for key, why in task.summary.items():
        values = [(r.validation or {}).get(key) for r in runs]
        summary[key] = mean_and_sd(values)
        lacking = [k + 1 for k, v in enumerate(values) if v is None]
        if lacking:
            summary[key]['missing'] = {str(k): why for k in lacking}
        folds = f"{plural(summary[key]['n'], 'fold')}" + (
            f" (fold {', '.join(map(str, lacking))}: {why})"
            if lacking else '')
        if summary[key]['mean'] is None:
            print(f"{key}: - over {folds}")
        else:
            print(f"{key}: {summary[key]['mean']:.3f} ± "
                  f"{summary[key]['sd']:.3f} over {folds}")
    return summary


def task_of(config: TrainConfig,
            classes: Optional[List[str]] = None) -> Task:
    r"""The run's task (before a split's training bags fit it)."""
    return TASKS[config.task].from_settings(config, classes)


def target_of(config: TrainConfig) -> Dict:
    r"""What the run predicts, as ``results.json`` records it: the task and
    what a bag is."""
    return {**task_of(config, []).entry(), 'bag_by': config.bag_by}


def as_bags(dataset: SlideDataset, bag_by: str):
    r"""The bags of :obj:`dataset`: its slides, or its patients
    (:class:`~pyg_sm.datasets.cases.CaseDataset`)."""
    return CaseDataset(dataset) if bag_by == 'case' else dataset



def _build(config: TrainConfig, feature_dim: int, options: Dict,
           criterion=None):
    try:
        return build_model(feature_dim, config.model, criterion, **options)
    except PygSmError:
        raise
    except (TypeError, ValueError) as error:
        raise PygSmError(f"--model {config.model}: {error}") from error


def _inputs_of(config: TrainConfig) -> list:
    r"""The paths a training run reads, which its output folder must not
    hold when it replaces an earlier run."""
    return [config.data_dir, config.slides_dir, config.split_file,
            config.patches_dir]


def train(config: TrainConfig) -> RunFolder:
    r"""Trains :obj:`config.model` on the labelled slides of
    :obj:`config.data_dir` as ``pyg-sm train`` does, and returns the run
    folder :obj:`config.out`.

    It splits the slides by patient (or by :obj:`config.split_file`, or
    into :obj:`config.folds` folds, each in ``fold_<k>/``), checks every
    slide file before the first epoch, writes ``last.pt`` every epoch and
    ``checkpoint.pt`` when the :obj:`config.monitor` metric improves,
    scores the validation (and test) slides with the best checkpoint,
    draws heatmaps and writes ``results.json``. :obj:`config.resume`
    continues an interrupted run. Under ``torchrun`` each process trains on
    its share; process 0 writes.

    Raises:
        PygSmError: a problem with the settings, the labels or the files,
            before anything is trained.
        Interrupted: on SIGINT, after the current step, with the state
            saved; the run continues with :obj:`resume`.
    """
    out = RunFolder(config.out)
    device = distributed.resolve_device(config.device)
    check_device(config.fit_settings(), device)
    with distributed.deterministic_algorithms(config.deterministic):
        return _train(config, out, device)


@dataclasses.dataclass
class _Run:
    r"""What every split of a training run shares."""
    config: TrainConfig
    dataset: SlideDataset
    task: Task
    options: Dict
    graph: Dict
    out: RunFolder
    device: torch.device
    rank: int
    header: Dict
    images: object = None

    def subset(self, ids: List[str]):
        config = self.config
        return as_bags(make_dataset(
            config, config, config.labels or 'labels.csv', ids,
            self.dataset.classes, self.out.graph_cache(config),
            config.in_memory, quiet=True, target=target_of(config)),
            config.bag_by)

    def save_best(self, folder: RunFolder, task: Task, split: Dict):
        r"""The best-checkpoint writer of one split."""
        config = self.config

        def save(model, record: EpochRecord) -> None:
            save_checkpoint(folder.checkpoint_path, model,
                            self.dataset.feature_dim, self.options,
                            self.graph, self.dataset.classes,
                            task={**task.entry(), 'bag_by': config.bag_by},
                            epoch=record.epoch, monitor=config.monitor,
                            value=record.get(config.monitor),
                            train_slides=split['train'],
                            preset=config.preset or
                            MODELS[config.model].default_preset)
        return save

    def fingerprint(self, split: Dict) -> Dict:
        r"""The settings a resumed split must share with its start."""
        config = self.config
        return {'model': config.model, 'options': self.options,
                'graph': self.graph, 'classes': self.dataset.classes,
                'seed': config.seed, 'split': split,
                'task': target_of(config),
                'fit': dataclasses.asdict(config.fit_settings())}


def _train(config: TrainConfig, out: RunFolder,
           device: torch.device) -> RunFolder:
    rank = distributed.start(device)
    prepared = False
    try:
        graph = config.graph_options()
        options = config.resolved_model_options()
        target = target_of(config)
        if rank == 0:  # before any work, as again when it starts
            out.check_free(config.resume, config.overwrite,
                           inputs=_inputs_of(config))
        images = slide_images(config.slides_dir)  # checked before training
        dataset = make_dataset(config, config, config.labels or 'labels.csv',
                               classes=config.classes,
                               cache=out.graph_cache(config), target=target)
        if not dataset.has_labels:
            raise PygSmError(f'{config.data_dir}: training needs labels')
        if config.bag_by == 'case':
            CaseDataset(dataset)  # checks the case ids and labels early
        task = task_of(config, dataset.classes)
        units = split_units(config, dataset)
        splits = _splits(config, dataset, task, units)
        options['num_classes'] = task.num_outputs
        if rank == 0:
            out.prepare(config.resume, config.overwrite,
                        inputs=_inputs_of(config))
            prepared = not config.resume
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        dataset.check(check_progress(sys.stderr.isatty() and rank == 0),
                      shard=distributed.world())
        graphs = check_graphs(dataset, config, config.allow_sparse_graphs,
                              rank)
        header = TrainResults(
            command=command_line(), config=as_dict(config), seed=config.seed,
            versions=versions(), task=target, classes=dataset.classes,
            model=config.model, options=options, graph=graph,
            world_size=world_size(), skipped_slides=dataset.skipped_slides,
            skipped_outcomes=dataset.skipped_outcomes, graphs=graphs,
            split_by=config.split_by,
            split_groups=None if config.split_by is None else split_groups(
                splits, dataset.slide_ids, units))
        run = _Run(config, dataset, task, options, graph, out, device, rank,
                   header, images)
        results = []
        for k, split in enumerate(splits):
            fold = k + 1 if len(splits) > 1 else None
            results.append(_train_one(run, split, fold))
        if rank != 0:
            return out
        if len(results) > 1:
            out.write_folds(header, results, _fold_summary(results, task))
        else:
            out.write_training(header, results[0], FINISHED)
        print(f'\nresults: {out.results_path}')
        return out
    except BaseException as error:
        if prepared and not out.trained_before():
            # Nothing trained, nothing to keep: a folder left behind would
            # only make the next run ask for --resume or --overwrite.
            out.discard()
        elif rank == 0 and not isinstance(error, Interrupted):
            out.fail(error)  # an interrupted run has said so already
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _announce(run: _Run, split: Dict, folder: RunFolder) -> None:
    noun = 'patient' if run.config.bag_by == 'case' else 'slide'
    dataset = run.dataset
    case_of = dict(zip(dataset.slide_ids, dataset.case_ids or
                       dataset.slide_ids))
    sizes = {name: len({case_of[s] for s in ids}) if noun == 'patient'
             else len(ids) for name, ids in split.items()}
    print(f"training on {plural(sizes['train'], noun)}, validating on "
          f"{sizes['val']}" + (f", testing on {sizes['test']}"
                               if split['test'] else '') +
          f' ({folder.path})', file=sys.stderr, flush=True)


def _train_one(run: _Run, split: Dict[str, List[str]],
               fold: Optional[int]) -> SplitResults:
    r"""One training run (one fold) in its folder (the run folder itself
    without folds): checkpoints every epoch, the best one by the monitor,
    the final evaluation of the best checkpoint on the validation and test
    slides."""
    config, out, rank = run.config, run.out, run.rank
    folder = out if fold is None else out.fold(fold)
    folder.path.mkdir(parents=True, exist_ok=True)
    train_set, val_set = run.subset(split['train']), run.subset(split['val'])
    # The cut points, the class weights and Uno's censoring distribution
    # come from the training bags of this split.
    task = run.task.fitted(train_set)
    result = SplitResults(split=split, fold=fold)
    if config.resume and fold is not None and folder.holds_run():
        # Every process reads it: they skip a finished fold together.
        previous = folder.results()
        if previous.get('status') == FINISHED:
            print(f'{folder.path}: finished before, kept', flush=True)
            return SplitResults.from_json(previous)
    resume = config.resume and folder.training_state_path.is_file()
    if rank == 0:
        folder.write_training(run.header, result, RUNNING)
    torch.manual_seed(config.seed)
    model = _build(config, run.dataset.feature_dim, run.options,
                   task.criterion())
    task.prepare(model)
    model = model.to(run.device)
    save_best = run.save_best(folder, task, split)
    _announce(run, split, folder)
    from ..train.loop import fit  # Lightning, loaded to train only
    try:
        history = fit(model, train_set,
                      config.fit_settings(sys.stderr.isatty() and rank == 0),
                      task=task, val_set=val_set, run_dir=folder.path,
                      save_best=save_best,
                      fingerprint=run.fingerprint(split), resume=resume)
    except Interrupted:
        if rank == 0:
            folder.write_training(run.header, result, INTERRUPTED)
            if fold is not None:
                out.write_training(run.header, None, INTERRUPTED)
        raise
    result.history = [record.to_json() for record in history]
    if rank == 0 and not folder.checkpoint_path.is_file():
        # The monitored metric was never finite: keep the final model.
        save_best(model, EpochRecord(epoch=len(history), train_loss=math.nan))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    best = folder.load_model().to(run.device)
    result.checkpoint = str(folder.checkpoint_path)
    report = TASK_REPORTS.get(task.name)
    threshold = report.prepare(best, train_set, folder, config, rank, task) \
        if report else None
    for name, ids in (('validation', split['val']), ('test', split['test'])):
        if ids:
            _evaluate(run, folder, task, best, name, val_set if
                      name == 'validation' else run.subset(ids), result)
    if rank != 0:
        return result
    if report:
        report.write(folder, result, task, threshold,
                     'test' if split['test'] else 'validation')
    folder.write_training(run.header, result, FINISHED)
    print(f'checkpoint: {folder.checkpoint_path}', flush=True)
    return result


def _evaluate(run: _Run, folder: RunFolder, task: Task, best, name: str,
              bags, result: SplitResults) -> None:
    r"""Scores :obj:`bags` with the best model into :obj:`result`'s
    :obj:`name` entry (and the validation heatmaps)."""
    records = score_slides(best, bags, folder.slide_writer(geojson=False),
                           batch_size=SCORING_BATCH_SIZE,
                           workers=run.config.workers, task=task)
    if run.rank != 0:  # process 0 gathers the records and writes
        return
    metrics = task.metrics(records)
    predictions = [SlidePrediction.from_record(r, run.dataset.classes,
                                               task.curve_points)
                   for r in records]
    setattr(result, name, {**metrics, 'predictions': [
        p.to_json() for p in predictions]})
    result.records[name] = records
    print_table({name: metrics})
    if name == 'validation':
        result.heatmaps = write_heatmaps(
            folder, most_lesioned(records, run.config.heatmaps),
            [RunFolder(folder.path, type(best).__name__)], run.images,
            [predictions], overlay_style=run.config.overlay_style)


class SurvivalReport:
    r"""What a survival run adds after training: the median risk of the
    training bags under the best model (recorded in the checkpoint; it
    splits the Kaplan-Meier groups, and ``evaluate`` splits new bags at
    it) and ``km.png`` of the held-out bags."""
    @staticmethod
    def prepare(model, train_set, folder: RunFolder, config: TrainConfig,
                rank: int, task: Task) -> Optional[float]:
        records = score_slides(model, train_set,
                               batch_size=SCORING_BATCH_SIZE,
                               workers=config.workers, task=task)
        if rank != 0:
            return None
        threshold = float(torch.tensor([r.risk for r in records]).median())
        checkpoint = read_checkpoint(folder.checkpoint_path)
        checkpoint['task']['median_train_risk'] = threshold
        atomic_save(checkpoint, folder.checkpoint_path)
        return threshold

    @staticmethod
    def write(folder: RunFolder, result: SplitResults, task: SurvivalTask,
              threshold: float, which: str) -> None:
        records = result.records.get(which)
        if records is not None:
            result.kaplan_meier = write_kaplan_meier(
                folder, records, threshold, task.time_column, which)


    @staticmethod
    def evaluated(folder: RunFolder, records: List[SurvivalRecord],
                  target: Dict) -> Dict:
        r"""``evaluate``'s additions: ``km.png`` of the evaluated bags,
        split at the checkpoint's median training risk."""
        if target.get('median_train_risk') is None:
            return {}
        return {'kaplan_meier': write_kaplan_meier(
            folder, records, target['median_train_risk'],
            target['time_column'], 'evaluated')}


#: What a task adds to a run after training, by task name.
TASK_REPORTS = {SurvivalTask.name: SurvivalReport}


def write_kaplan_meier(folder: RunFolder, records: List[SurvivalRecord],
                       threshold: float, time_column: str,
                       which: str) -> Optional[Dict]:
    r"""``km.png`` of the bags of :obj:`records` with a known time, split
    at :obj:`threshold`; returns the log-rank result (or :obj:`None`
    without such bags)."""
    known = [r for r in records if r.time is not None]
    if not known:
        return None
    split = kaplan_meier_groups([r.time for r in known],
                                [r.event for r in known],
                                [r.risk for r in known], threshold)
    folder.write_kaplan_meier(render_kaplan_meier(
        split['groups'], split['p_value'],
        title=f'{which} bags by median training risk',
        time_label=time_column))
    return {'bags': which, 'threshold': threshold,
            'logrank_p_value': split['p_value'],
            'group_sizes': {name: int(fitter.event_observed.size)
                            for name, fitter in split['groups'].items()},
            'path': str(folder.kaplan_meier_path)}
