r"""``evaluate`` and ``predict``: scoring slides with a trained model into
a run folder."""
import sys
from typing import Optional

import torch

from ..datasets.layouts import find_layout
from ..train import distributed, read_checkpoint, score_slides
from ..train.checkpoint import build_from_checkpoint
from ..train.metrics import evaluate_predictions
from ..utils.errors import PygSmError
from ..visualize import render_froc_curve
from ._common import (check_progress, command_line, make_dataset,
                      most_lesioned, print_table, slide_images, slide_list,
                      versions, world_size, write_heatmaps)
from .config import SCORE_OUT, ScoreConfig, as_dict
from .folder import FINISHED, RunFolder, SlidePrediction
from .localizing import localization_line, localize
from .training import as_bags, survival_results, write_kaplan_meier


def _target(config: ScoreConfig, saved: dict) -> dict:
    r"""The checkpoint's task, with the bag kind and label columns given
    here in place of its own."""
    target = dict(saved['task'])
    for name in ('bag_by', 'time_column', 'event_column'):
        if getattr(config, name) is not None:
            if name != 'bag_by' and target['task'] != 'survival':
                raise PygSmError(f"--{name.replace('_', '-')} concerns "
                                 f"survival checkpoints; "
                                 f"{config.checkpoint} is a classifier")
            target[name] = getattr(config, name)
    return target


def _score(config: ScoreConfig, kind: str) -> Optional[RunFolder]:
    metrics = kind == 'evaluate'
    out = RunFolder(config.out or SCORE_OUT[kind])
    device = distributed.resolve_device(config.device)
    rank = distributed.start(device)
    try:
        saved = read_checkpoint(config.checkpoint)
        graph = config.graph_config(saved['graph'])
        classes = saved['classes']
        target = _target(config, saved)
        survival = target['task'] == 'survival'
        labels = config.labels
        if labels is None and (config.data_dir / 'labels.csv').is_file():
            labels = 'labels.csv'
        if metrics and labels is None and find_layout(
                config.data_dir, config.layout,
                config.features_dir).bag_labels() is None:
            raise PygSmError(f"evaluate needs labels: no labels file "
                             f"{config.data_dir / 'labels.csv'}; 'pyg-sm "
                             f"predict' scores slides without them")
        slide_ids = None if config.slide_ids is None else \
            slide_list(config.slide_ids)
        dataset = make_dataset(config, graph, labels, slide_ids, classes,
                               out.graph_cache(config), target=target)
        if metrics and not dataset.has_labels:
            raise PygSmError(f"evaluate needs labels ({config.data_dir}); "
                             f"'pyg-sm predict' scores slides without them")
        trained_on = set((saved.get('info') or {}).get('train_slides') or
                         ()) & set(
            dataset.slide_ids)
        if metrics and trained_on and rank == 0:
            print(f"warning: {len(trained_on)} of {len(dataset.slide_ids)} "
                  f"slides were in the checkpoint's training split (e.g. "
                  f"{', '.join(sorted(trained_on)[:3])}): their metrics are "
                  f"not held-out ones", file=sys.stderr, flush=True)
        if rank == 0:
            out.path.mkdir(parents=True, exist_ok=True)
        dataset.check(check_progress(sys.stderr.isatty() and rank == 0),
                      shard=distributed.world())
        model = build_from_checkpoint(saved)
        records = score_slides(model.to(device),
                               as_bags(dataset, target['bag_by']),
                               out.slide_writer(),
                               batch_size=config.batch_size,
                               workers=config.workers)
        if rank != 0:
            return None
        cuts = target.get('cut_points') or ()
        predictions = [SlidePrediction.from_record(r, classes, cuts)
                       for r in records]
        out.write_predictions(predictions, classes)
        results = {'kind': kind, 'status': FINISHED,
                   'command': command_line(), 'config': as_dict(config),
                   'versions': versions(),
                   'checkpoint': str(config.checkpoint),
                   'task': {k: v for k, v in target.items()
                            if not k.startswith('train_')},
                   'classes': classes,
                   'class_map': None if classes is None else
                   {c: i for i, c in enumerate(classes)},
                   'model': saved['model'], 'graph': graph.graph_options(),
                   'predictions': [p.to_json() for p in predictions],
                   'world_size': world_size(),
                   'skipped_slides': dataset.skipped_slides}
        if config.annotations is not None:
            results['localization'] = localize(
                out, config.annotations, config.annotation_classes,
                config.min_coverage, config.mpp, config.slides_dir,
                classes=classes, write=True)
        if metrics and survival:
            results['metrics'] = survival_results(records, target, cuts)
            print_table({saved['model']: results['metrics']})
            if target.get('median_train_risk') is not None:
                results['kaplan_meier'] = write_kaplan_meier(
                    out, records, target['median_train_risk'],
                    target['time_column'], 'evaluated')
        elif metrics:
            results['metrics'] = evaluate_predictions(records, classes)
            froc = {}
            if 'localization' in results:
                # The annotations take precedence over stored labels.
                located = results['localization']
                results['metrics']['instance_auroc'] = \
                    located['instance_auroc']
                froc = {'froc': located['froc']['score']}
            results['metrics']['instance_labels'] = (
                'annotations' if 'localization' in results
                else 'patch_labels')
            print_table({saved['model']: {**results['metrics'], **froc}})
        if 'localization' in results:
            print(localization_line(results['localization']))
            out.write_froc_curve(render_froc_curve(
                {saved['model']: results['localization']['froc']}))
        results['heatmaps'] = write_heatmaps(
            out, most_lesioned(records, config.heatmaps),
            [RunFolder(out.path, type(model).__name__)],
            slide_images(config.slides_dir), [predictions],
            overlay_style=config.overlay_style,
            annotations=config.annotations,
            lesion_classes=config.annotation_classes)
        out.write_results(results)
        print(f"\n{len(records)} slides: {out.predictions_path}, "
              f"{out.scores_dir}, {out.geojson_dir}, {out.results_path}")
        return out
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def evaluate(config: ScoreConfig) -> Optional[RunFolder]:
    r"""Scores the labelled slides of :obj:`config.data_dir` with
    :obj:`config.checkpoint`, as ``pyg-sm evaluate`` does: per slide
    ``scores/<slide_id>.h5`` and ``geojson/<slide_id>.geojson``,
    ``predictions.csv``, heatmaps, and ``results.json`` with the metrics
    (bag AUROC, accuracy, balanced accuracy, the confusion matrix and,
    with patch labels, the instance AUROC of the attention). Returns the
    run folder (:obj:`None` in processes other than 0 under ``torchrun``,
    which each score their share)."""
    return _score(config, 'evaluate')


def predict(config: ScoreConfig) -> Optional[RunFolder]:
    r"""Scores slides with or without labels, as ``pyg-sm predict`` does:
    the files of :func:`evaluate` without the metrics."""
    return _score(config, 'predict')
