r"""``train``: one training run, or one per fold, into a run folder."""
import sys
from typing import Dict, List, Optional

import torch

from ..datasets import SlideDataset
from ..datasets.cases import CaseDataset
from ..datasets.labels import read_groups
from ..models import MODELS, build_model
from ..nn.survival import make_survival_loss, survival_cut_points
from ..train import Interrupted, fit, save_checkpoint, score_slides
from ..train import distributed
from ..train.checkpoint import atomic_save, read_checkpoint
from ..train.metrics import evaluate_predictions, mean_and_sd
from ..train.splits import (check_split, check_survival_split, fold_slides,
                            read_split_file, split_slides)
from ..train.survival import evaluate_survival, kaplan_meier_groups
from ..utils.errors import PygSmError
from ..utils.text import plural
from ..visualize import render_kaplan_meier
from ._common import (check_graphs, check_progress, command_line, make_dataset,
                      most_lesioned, print_table, slide_images, versions,
                      world_size, write_heatmaps)
from .config import ScoreConfig, TrainConfig, as_dict, default_of
from .folder import (FINISHED, INTERRUPTED, RUNNING, RunFolder,
                     SlidePrediction)

#: Slides per batch when the best checkpoint scores the held-out slides
#: (as ``evaluate`` does by default).
SCORING_BATCH_SIZE = default_of(ScoreConfig, 'batch_size')
#: The metrics summarized over folds (mean and sd).
FOLD_SUMMARY = {'classification': ('bag_auroc', 'balanced_accuracy',
                                   'bag_accuracy', 'instance_auroc'),
                'survival': ('c_index', 'c_index_uno', 'mean_time_auc',
                             'integrated_brier_score', 'instance_auroc')}
#: Why a fold may lack a metric of :data:`FOLD_SUMMARY`.
WHY_MISSING = {
    'bag_auroc': 'its validation slides are of one class',
    'balanced_accuracy': 'it has no labelled validation slide',
    'bag_accuracy': 'it has no labelled validation slide',
    'instance_auroc': 'its validation slides have no patch labels of both '
                      'kinds',
    'c_index': 'its validation bags have no comparable pair',
    'c_index_uno': 'its validation bags have no comparable pair within the '
                   'training times',
    'mean_time_auc': 'its validation times fall outside the training times',
    'integrated_brier_score': 'only --survival-loss nll gives survival '
                              'curves'}


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


def _splits(config: TrainConfig, dataset: SlideDataset,
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
        if dataset.task == 'survival':
            check_survival_split(split, ids, dataset.events, units)
        else:
            check_split(split, ids, labels, dataset.classes, units,
                        both_classes_held_out=config.split_file is None)
    return splits


def split_groups(splits: List[Dict[str, List[str]]], slide_ids: List[str],
                 units: List[str]) -> List[Dict[str, List[str]]]:
    r"""The groups on each side of each split, as ``results.json``
    records them."""
    group_of = dict(zip(slide_ids, units))
    return [{side: sorted({group_of[s] for s in ids})
             for side, ids in split.items()} for split in splits]


def _fold_summary(runs: List[Dict], task: str) -> Dict:
    r"""The mean and sd of each metric over the folds that have it, printed
    with the folds that lack it and why."""
    summary = {}
    for key in FOLD_SUMMARY[task]:
        values = [r['validation'].get(key) for r in runs]
        summary[key] = mean_and_sd(values)
        lacking = [k + 1 for k, v in enumerate(values) if v is None]
        if lacking:
            summary[key]['missing'] = {str(k): WHY_MISSING[key]
                                       for k in lacking}
        folds = f"{plural(summary[key]['n'], 'fold')}" + (
            f" (fold {', '.join(map(str, lacking))}: {WHY_MISSING[key]})"
            if lacking else '')
        if summary[key]['mean'] is None:
            print(f"{key}: - over {folds}")
        else:
            print(f"{key}: {summary[key]['mean']:.3f} ± "
                  f"{summary[key]['sd']:.3f} over {folds}")
    return summary


def target_of(config: TrainConfig) -> Dict:
    r"""What the run predicts, as checkpoints record it: the task, what a
    bag is and, for survival, the label columns and the criterion."""
    target = {'task': config.task, 'bag_by': config.bag_by}
    if config.task == 'survival':
        target.update(time_column=config.time_column,
                      event_column=config.event_column,
                      censorship_column=config.censorship_column,
                      survival_loss=config.survival_loss)
    return target


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
    with distributed.deterministic_algorithms(config.deterministic):
        return _train(config, out, device)


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
        units = split_units(config, dataset)
        splits = _splits(config, dataset, units)
        if config.task == 'survival':
            options['num_classes'] = config.num_bins \
                if config.survival_loss == 'nll' else 1
        else:
            options['num_classes'] = 1 if len(dataset.classes) == 2 \
                else len(dataset.classes)
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
        results = {'kind': 'train', 'status': RUNNING,
                   'command': command_line(), 'config': as_dict(config),
                   'seed': config.seed, 'versions': versions(),
                   'task': target, 'classes': dataset.classes,
                   'class_map': None if dataset.classes is None else
                   {c: i for i, c in enumerate(dataset.classes)},
                   'model': config.model, 'options': options, 'graph': graph,
                   'world_size': world_size(),
                   'skipped_slides': dataset.skipped_slides,
                   'skipped_outcomes': dataset.skipped_outcomes,
                   'graphs': graphs}
        if config.split_by is not None:
            results['split_by'] = config.split_by
            results['split_groups'] = split_groups(
                splits, dataset.slide_ids, units)
        runs = []
        for k, split in enumerate(splits):
            folder = out.fold(k + 1) if len(splits) > 1 else out
            runs.append(_train_one(config, dataset, split, options, graph,
                                   out, folder, device, rank, results,
                                   fold=k + 1 if len(splits) > 1 else None,
                                   target=target, images=images))
        if rank != 0:
            return out
        if len(runs) > 1:
            results['folds'] = [{'fold': k + 1,
                                 'dir': str(out.fold(k + 1).path),
                                 'validation': r['validation'],
                                 'test': r.get('test')}
                                for k, r in enumerate(runs)]
            results['summary'] = _fold_summary(runs, config.task)
        else:
            results.update(runs[0])
        results['status'] = FINISHED
        out.write_results(results)
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


def _train_one(config: TrainConfig, dataset: SlideDataset,
               split: Dict[str, List[str]], options: Dict, graph: Dict,
               out: RunFolder, folder: RunFolder, device: torch.device,
               rank: int, results: Dict, fold: Optional[int],
               target: Dict, images=None) -> Dict:
    r"""One training run (one fold) in :obj:`folder`, inside the run
    folder :obj:`out` (the same folder without folds): checkpoints every
    epoch, the best one by the monitor, the final evaluation of the best
    checkpoint on the validation and test slides."""
    folder.path.mkdir(parents=True, exist_ok=True)
    cache = out.graph_cache(config)

    def subset(ids):
        return as_bags(make_dataset(
            config, config, config.labels or 'labels.csv', ids,
            dataset.classes, cache, config.in_memory, quiet=True,
            target=target), config.bag_by)

    train_set, val_set = subset(split['train']), subset(split['val'])
    survival = config.task == 'survival'
    if survival:
        # The cut points (nll) and the censoring distribution (Uno's
        # c-index) come from the training bags of this split.
        times, events = list(train_set.times), list(train_set.events)
        try:
            cuts = survival_cut_points(times, events, config.num_bins) \
                if config.survival_loss == 'nll' else []
        except ValueError as error:
            raise PygSmError(f"--num-bins {config.num_bins}: {error}") \
                from error
        target = {**target, 'train_times': times, 'train_events': events}
    run = {'split': split} if fold is None else {'fold': fold,
                                                 'split': split}
    if config.resume and fold is not None and folder.holds_run():
        # Every process reads it: they skip a finished fold together.
        previous = folder.results()
        if previous.get('status') == FINISHED:
            print(f'{folder.path}: finished before, kept', flush=True)
            return previous
    fingerprint = {'model': config.model, 'options': options, 'graph': graph,
                   'classes': dataset.classes, 'seed': config.seed,
                   'lr': config.lr, 'weight_decay': config.weight_decay,
                   'batch_size': config.batch_size, 'split': split,
                   'monitor': config.monitor,
                   'task': {k: v for k, v in target.items()
                            if not k.startswith('train_')}}
    resume = config.resume and folder.training_state_path.is_file()
    if rank == 0:
        folder.write_results({**results, **run, 'status': RUNNING})
    torch.manual_seed(config.seed)
    model = _build(config, dataset.feature_dim, options, make_survival_loss(
        config.survival_loss, cuts) if survival else None)
    if survival:
        model.start_at_baseline(times, events)
    model = model.to(device)

    def save_best(best_model, entry):
        save_checkpoint(folder.checkpoint_path, best_model,
                        dataset.feature_dim, options, graph, dataset.classes,
                        task=target, epoch=entry['epoch'],
                        monitor=config.monitor,
                        value=entry.get(config.monitor),
                        train_slides=split['train'],
                        preset=config.preset or
                        MODELS[config.model].default_preset)

    noun = 'patient' if config.bag_by == 'case' else 'slide'
    case_of = dict(zip(dataset.slide_ids, dataset.case_ids or
                       dataset.slide_ids))
    sizes = {name: len({case_of[s] for s in ids}) if noun == 'patient'
             else len(ids) for name, ids in split.items()}
    print(f"training on {plural(sizes['train'], noun)}, validating on "
          f"{sizes['val']}" + (f", testing on {sizes['test']}"
                               if split['test'] else '') +
          f' ({folder.path})', file=sys.stderr, flush=True)
    try:
        history = fit(model, train_set, epochs=config.epochs, lr=config.lr,
                      weight_decay=config.weight_decay,
                      batch_size=config.batch_size, seed=config.seed,
                      workers=config.workers, val_set=val_set,
                      classes=dataset.classes, monitor=config.monitor,
                      run_dir=folder.path, save_best=save_best,
                      fingerprint=fingerprint, resume=resume,
                      progress=sys.stderr.isatty() and rank == 0,
                      validate_every=config.validate_every)
    except Interrupted:
        if rank == 0:
            folder.write_results({**results, **run, 'status': INTERRUPTED})
            if fold is not None:
                out.write_results(
                    {**results, 'status': INTERRUPTED})
        raise
    run['history'] = history
    if rank == 0 and not folder.checkpoint_path.is_file():
        # The monitored metric was never finite: keep the final model.
        save_best(model, {'epoch': len(history), config.monitor: None})
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    best = folder.load_model().to(device)
    run['checkpoint'] = str(folder.checkpoint_path)
    if survival:
        threshold = _record_median_risk(best, train_set, folder, config,
                                        rank)
    evaluated = None
    for name, ids in (('validation', split['val']), ('test', split['test'])):
        if not ids:
            continue
        records = score_slides(best, val_set if name == 'validation' else
                               subset(ids),
                               folder.slide_writer(geojson=False),
                               batch_size=SCORING_BATCH_SIZE,
                               workers=config.workers)
        if rank != 0:  # process 0 gathers the records and writes
            continue
        if survival:
            metrics = survival_results(records, target, cuts)
            evaluated = records
        else:
            metrics = evaluate_predictions(records, dataset.classes)
        predictions = [SlidePrediction.from_record(r, dataset.classes, cuts
                                                   if survival else ())
                       for r in records]
        run[name] = {**metrics, 'predictions': [p.to_json()
                                                for p in predictions]}
        print_table({name: metrics})
        if name == 'validation':
            run['heatmaps'] = write_heatmaps(
                folder, most_lesioned(records, config.heatmaps),
                [RunFolder(folder.path, type(best).__name__)],
                images, [predictions], overlay_style=config.overlay_style)
    if rank != 0:
        return run
    if survival and evaluated is not None:
        run['kaplan_meier'] = write_kaplan_meier(
            folder, evaluated, threshold, target['time_column'],
            'test' if split['test'] else 'validation')
    folder.write_results({**results, **run, 'status': FINISHED})
    print(f'checkpoint: {folder.checkpoint_path}', flush=True)
    return run


def _record_median_risk(model, train_set, folder: RunFolder,
                        config: TrainConfig, rank: int) -> Optional[float]:
    r"""The median risk of the training bags under the best model, which
    splits the Kaplan-Meier groups, recorded in the checkpoint (evaluate
    splits new bags at it)."""
    records = score_slides(model, train_set, batch_size=SCORING_BATCH_SIZE,
                           workers=config.workers)
    if rank != 0:
        return None
    threshold = float(torch.tensor([r['risk'] for r in records]).median())
    checkpoint = read_checkpoint(folder.checkpoint_path)
    checkpoint['task']['median_train_risk'] = threshold
    atomic_save(checkpoint, folder.checkpoint_path)
    return threshold


def survival_results(records: List[Dict], target: Dict,
                     cut_points: List[float]) -> Dict:
    r"""The survival metrics of scored bags against the training bags of
    :obj:`target` (a checkpoint's task entry), with ``mean_time_auc``."""
    metrics = evaluate_survival(records, target['train_times'],
                                target['train_events'], cut_points)
    metrics['mean_time_auc'] = (metrics.get('time_auc') or {}).get('mean')
    return metrics


def write_kaplan_meier(folder: RunFolder, records: List[Dict],
                       threshold: float, time_column: str,
                       which: str) -> Optional[Dict]:
    r"""``km.png`` of the bags of :obj:`records` with a known time, split
    at :obj:`threshold`; returns the log-rank result (or :obj:`None`
    without such bags)."""
    known = [r for r in records if r.get('time') is not None]
    if not known:
        return None
    split = kaplan_meier_groups([r['time'] for r in known],
                                [r['event'] for r in known],
                                [r['risk'] for r in known], threshold)
    folder.write_kaplan_meier(render_kaplan_meier(
        split['groups'], split['p_value'],
        title=f'{which} bags by median training risk',
        time_label=time_column))
    return {'bags': which, 'threshold': threshold,
            'logrank_p_value': split['p_value'],
            'group_sizes': {name: int(fitter.event_observed.size)
                            for name, fitter in split['groups'].items()},
            'path': str(folder.kaplan_meier_path)}
