r"""``evaluate`` and ``predict``: scoring slides with a trained model into
a run folder.

Every input is checked before the first slide is scored (the checkpoint,
the labels, the slide files, the slide images, the annotations and the
micrometres per pixel they need); the output folder then holds this run
only (``--overwrite`` replaces an earlier one), and a run that fails marks
``results.json`` as failed."""
import dataclasses
import sys
from typing import Dict, List, Optional

import torch

from ..datasets import SlideDataset, SlideImages
from ..datasets.layouts import find_layout
from ..train import distributed, read_checkpoint, score_slides
from ..train.checkpoint import build_from_checkpoint
from ..train.records import BagRecord
from ..train.tasks import Task
from ..utils.errors import PygSmError
from ..utils.text import few, plural
from ..visualize import render_froc_curve
from ._common import (
    check_graphs,
    check_progress,
    command_line,
    make_dataset,
    most_lesioned,
    print_table,
    slide_images,
    slide_list,
    versions,
    world_size,
    write_heatmaps,
)
from .config import SCORE_OUT, ScoreConfig, annotation_classes, as_dict
from .folder import FINISHED, RUNNING, RunFolder, SlidePrediction
from .localizing import (
    AnnotatedSlides,
    check_annotations,
    localization_line,
    measure,
    positive_probabilities,
)
from .training import TASK_REPORTS, as_bags

#: The flags that override the checkpoint's task, and the keys of the
#: task entry they replace.
_TASK_OVERRIDES = {'bag_by': ('bag_by', ),
                   'time_column': ('time_column', ),
                   'event_column': ('event_column', 'censorship_column'),
                   'censorship_column': ('censorship_column',
                                         'event_column')}


def _target(config: ScoreConfig, saved: dict) -> dict:
    r"""The checkpoint's task, with the bag kind and label columns given
    here in place of its own (an event column replaces a censorship column
    and the other way round)."""
    target = dict(saved['task'])
    for name, (key, *replaced) in _TASK_OVERRIDES.items():
        value = getattr(config, name)
        if value is None:
            continue
        if name != 'bag_by' and target['task'] != 'survival':
            raise PygSmError(f"--{name.replace('_', '-')} concerns survival "
                             f"checkpoints; {config.checkpoint} is a "
                             f"classifier")
        target[key] = value
        for other in replaced:
            target[other] = None
    return target


@dataclasses.dataclass
class _Inputs:
    r"""Everything a scoring run reads, checked before it scores."""
    saved: Dict
    target: Dict
    graph: Dict
    dataset: SlideDataset
    images: Optional[SlideImages]
    annotated: Optional[AnnotatedSlides]
    graphs: Dict

    @property
    def bag_noun(self) -> str:
        return 'patient' if self.target['bag_by'] == 'case' else 'slide'

    @property
    def task(self) -> Task:
        return Task.from_entry(self.target, self.saved['classes'])


def _labels_file(config: ScoreConfig, metrics: bool) -> Optional[str]:
    labels = config.labels
    if labels is None and (config.data_dir / 'labels.csv').is_file():
        labels = 'labels.csv'
    if metrics and labels is None and find_layout(
            config.data_dir, config.layout,
            config.features_dir).bag_labels() is None:
        raise PygSmError(f"evaluate needs labels: no labels file "
                         f"{config.data_dir / 'labels.csv'}; 'pyg-sm "
                         f"predict' scores slides without them")
    return labels


def check_whole_cases(dataset: SlideDataset, allow_partial: bool) -> None:
    r"""With patients as bags, every slide that the labels file lists for
    a chosen patient must be chosen too: a patient scored on part of its
    slides is an error naming the patient and the missing slides (a note
    with :obj:`allow_partial`)."""
    table = dataset.label_table
    if table is None or table.case_ids is None:
        return
    chosen = set(dataset.slide_ids)
    patients = {table.case_ids[s] for s in chosen if s in table.case_ids}
    missing: Dict[str, List[str]] = {}
    for slide_id, case in table.case_ids.items():
        if case in patients and slide_id not in chosen:
            missing.setdefault(case, []).append(slide_id)
    if not missing:
        return
    described = few(f"'{case}' (missing {', '.join(slides)})"
                    for case, slides in sorted(missing.items()))
    if not allow_partial:
        raise PygSmError(f"{plural(len(missing), 'patient')} would be scored "
                         f"on part of their slides (--bag-by case): "
                         f"{described}; list every slide of a patient, or "
                         f"pass --partial-cases")
    print(f"note: {plural(len(missing), 'patient')} scored on part of their "
          f"slides (--partial-cases): {described}", file=sys.stderr,
          flush=True)


def _check_inputs(config: ScoreConfig, metrics: bool, rank: int,
                  graph_cache) -> _Inputs:
    r"""Reads and checks every input of a scoring run, all before the first
    slide is scored."""
    saved = read_checkpoint(config.checkpoint)
    graph = config.graph_config(saved['graph'])
    target = _target(config, saved)
    images = slide_images(config.slides_dir)
    labels = _labels_file(config, metrics)
    slide_ids = None if config.slide_ids is None else \
        slide_list(config.slide_ids)
    dataset = make_dataset(config, graph, labels, slide_ids,
                           saved['classes'], graph_cache, target=target)
    if metrics and not dataset.has_labels:
        raise PygSmError(f"evaluate needs labels ({config.data_dir}); "
                         f"'pyg-sm predict' scores slides without them")
    if target['bag_by'] == 'case':
        as_bags(dataset, 'case')  # the case ids and labels
        if slide_ids is not None and rank == 0:
            check_whole_cases(dataset, config.partial_cases)
    annotated = None
    if config.annotations is not None:
        annotated = _check_annotations(
            config, dataset, Task.from_entry(target, saved['classes']))
        if rank == 0:
            annotated.report()
    trained_on = set((saved.get('info') or {}).get('train_slides') or
                     ()) & set(dataset.slide_ids)
    if metrics and trained_on and rank == 0:
        print(f"warning: {len(trained_on)} of "
              f"{plural(len(dataset.slide_ids), 'slide')} were in the "
              f"checkpoint's training split (e.g. "
              f"{few(sorted(trained_on), 3)}): their metrics are not "
              f"held-out ones", file=sys.stderr, flush=True)
    dataset.check(check_progress(sys.stderr.isatty() and rank == 0),
                  shard=distributed.world())
    graphs = check_graphs(dataset, graph, config.allow_sparse_graphs, rank)
    return _Inputs(saved, target, graph.graph_options(), dataset, images,
                   annotated, graphs)


def _check_annotations(config: ScoreConfig, dataset: SlideDataset,
                       task: Task) -> AnnotatedSlides:
    names = task.label_names(dataset.labels)
    labels = dict(zip(dataset.slide_ids, names or
                      [None] * len(dataset.slide_ids)))
    return check_annotations(config.annotations, dataset.slide_ids, labels,
                             task.positive_class, annotation_classes(config),
                             config.slides_dir, config.mpp)


def _inputs_of(config: ScoreConfig) -> list:
    r"""The paths a scoring run reads, which its output folder must not
    hold when it replaces an earlier run."""
    return [config.data_dir, config.checkpoint, config.slides_dir,
            config.annotations, config.patches_dir]


def _score(config: ScoreConfig, kind: str) -> Optional[RunFolder]:
    metrics = kind == 'evaluate'
    out = RunFolder(config.out or SCORE_OUT[kind])
    device = distributed.resolve_device(config.device)
    rank = distributed.start(device)
    started, existed = False, out.path.exists()
    try:
        if rank == 0:  # before any work, as again when it starts
            out.check_free(overwrite=config.overwrite, resumable=False,
                           inputs=_inputs_of(config))
        inputs = _check_inputs(config, metrics, rank, out.graph_cache(config))
        results = {'kind': kind, 'status': RUNNING,
                   'command': command_line(), 'config': as_dict(config),
                   'versions': versions(),
                   'checkpoint': str(config.checkpoint)}
        if rank == 0:
            out.prepare(overwrite=config.overwrite, resumable=False,
                        inputs=_inputs_of(config))
            out.write_results(results)
            started = True
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        model = build_from_checkpoint(inputs.saved)
        records = score_slides(model.to(device),
                               as_bags(inputs.dataset,
                                       inputs.target['bag_by']),
                               out.slide_writer(),
                               batch_size=config.batch_size,
                               workers=config.workers, task=inputs.task)
        if rank != 0:
            return None
        _report(config, kind, out, inputs, records, results)
        return out
    except BaseException as error:
        if started:
            out.fail(error)
        elif not existed and rank == 0:
            out.discard()  # only the patch graphs its checks cached
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _report(config: ScoreConfig, kind: str, out: RunFolder,
            inputs: _Inputs, records: List[BagRecord],
            results: Dict) -> None:
    r"""The files of a scored run: predictions, metrics, localization,
    pictures and ``results.json``."""
    saved, target, dataset = inputs.saved, inputs.target, inputs.dataset
    classes = saved['classes']
    preset = (saved.get('info') or {}).get('preset')
    # The table's row: the model and its preset (sm_abmil:abmil is ABMIL).
    name = saved['model'] + ('' if preset is None else f':{preset}')
    task = inputs.task
    predictions = [SlidePrediction.from_record(r, classes,
                                               task.curve_points)
                   for r in records]
    out.write_predictions(predictions, classes)
    results.update({
        'task': {k: v for k, v in target.items()
                 if not k.startswith('train_')},
        'classes': classes,
        'class_map': None if classes is None else
        {c: i for i, c in enumerate(classes)},
        'model': name, 'graph': inputs.graph,
        'predictions': [p.to_json() for p in predictions],
        'world_size': world_size(),
        'skipped_slides': dataset.skipped_slides,
        'skipped_outcomes': dataset.skipped_outcomes,
        'graphs': inputs.graphs})
    if inputs.annotated is not None:
        positive = None if classes is None else classes[-1]
        results['localization'] = measure(
            out, inputs.annotated,
            positive_probabilities(predictions, positive),
            config.min_coverage, write=True)
    located = results.get('localization')
    if kind == 'evaluate':
        results['metrics'] = task.metrics(records)
        if located is not None:
            # The annotations take precedence over stored labels.
            for metric in ('instance_auroc', 'uncertainty_auroc'):
                if metric in located:
                    results['metrics'][metric] = located[metric]
        results['metrics']['instance_labels'] = (
            'annotations' if located is not None else 'patch_labels')
        print_table({name: {**results['metrics'], **(
            {'froc': located['froc']['score']} if located else {})}})
        report = TASK_REPORTS.get(task.name)
        if report is not None:
            results.update(report.evaluated(out, records, target))
    if located is not None:
        print(localization_line(located))
        out.write_froc_curve(render_froc_curve({name: located['froc']}))
    results['heatmaps'] = write_heatmaps(
        out, most_lesioned(records, config.heatmaps),
        [RunFolder(out.path, name)], inputs.images, [predictions],
        overlay_style=config.overlay_style,
        outlines=None if inputs.annotated is None
        else inputs.annotated.areas)
    results['status'] = FINISHED
    out.write_results(results)
    print(f"\n{plural(len(records), inputs.bag_noun)}: "
          f"{out.predictions_path}, {out.scores_dir}, {out.geojson_dir}, "
          f"{out.results_path}")


def evaluate(config: ScoreConfig) -> Optional[RunFolder]:
    r"""Scores the labelled slides of :obj:`config.data_dir` with
    :obj:`config.checkpoint`, as ``pyg-sm evaluate`` does: per slide
    ``scores/<slide_id>.h5`` and ``geojson/<slide_id>.geojson``,
    ``predictions.csv``, heatmaps, and ``results.json`` with the metrics
    (bag AUROC, accuracy, balanced accuracy, the confusion matrix and,
    with patch labels, the instance AUROC of the attention). Every input
    is checked first; a folder holding another run needs
    :obj:`config.overwrite`. Returns the run folder (:obj:`None` in
    processes other than 0 under ``torchrun``, which each score their
    share)."""
    return _score(config, 'evaluate')


def predict(config: ScoreConfig) -> Optional[RunFolder]:
    r"""Scores slides with or without labels, as ``pyg-sm predict`` does:
    the files of :func:`evaluate` without the metrics."""
    return _score(config, 'predict')
