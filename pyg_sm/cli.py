r"""The ``pyg-sm`` command: ``demo``, ``train DATA_DIR``, ``evaluate DATA_DIR
--checkpoint FILE`` and ``predict DATA_DIR --checkpoint FILE``."""
import argparse
import json
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .datasets import (PredictionFolder, SlideDataset, SlideImages,
                       make_synthetic_slides, prediction_folders)
from .datasets.predictions import PREDICTIONS_FILE
from .datasets.layouts import LAYOUTS, find_layout
from .models import MODELS, build_model
from .models.registry import Option
from .train import (MONITORS, Interrupted, fit, load_checkpoint,
                    read_checkpoint, save_checkpoint)
from .train import distributed
from .train.export import score_slides, write_predictions
from .train.metrics import evaluate_predictions, mean_and_sd
from .train.splits import (check_split, fold_slides, read_split_file,
                           split_slides)
from .utils.files import atomic_path
from .utils.tables import read_table
from .transforms import METHODS, PatchGraph
from .version import __version__
from .visualize import open_viewer, render_heatmap, render_overlay

#: The model of the command line (more join it in MODELS).
DEFAULT_MODEL = 'sm_abmil'
#: The graph settings of ``train`` when no flag is given.
DEFAULT_GRAPH = dict(graph='grid', connectivity=8, patch_size=None,
                     radius=None)
#: Exit status after an interrupt (as a shell reports SIGINT).
INTERRUPTED = 130
#: The lesion signal of the demo's cohort: strong enough that SmABMIL and
#: plain ABMIL both classify its held-out slides well (bag AUROC 1.000 and
#: 0.997 with the defaults), so that the comparison is about localization.
DEMO_SIGNAL = 2.0


def _text_type(option: Option):
    """The option's parser, reporting its own message to argparse."""
    def parse(text: str):
        try:
            return option.type(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = option.name
    return parse


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    r"""``--model``, ``--preset`` and a flag per option of every model in
    :data:`MODELS` (an option two models share is one flag). Flags default
    to the chosen preset's value; a flag given overrides it."""
    presets = sorted({name for spec in MODELS.values()
                      for name in spec.presets})
    group = parser.add_argument_group('model')
    group.add_argument('--model', default=DEFAULT_MODEL, choices=list(MODELS),
                       help=f'the model (default: {DEFAULT_MODEL})')
    group.add_argument('--preset', default=None, choices=presets,
                       help="named set of model options (default: the "
                            "model's first preset, 'sm')")
    seen = set()
    for spec in MODELS.values():
        described = '; '.join(
            f"'{name}': {preset.help}" + (' (' + ', '.join(
                f'{key}={value}' for key, value in preset.values.items())
                + ')' if preset.values else '')
            for name, preset in spec.presets.items())
        options = parser.add_argument_group(
            f'{spec.model_class.__name__} options (--model {spec.name})',
            f'Unset options take the value of --preset, else the constructor '
            f'default. Presets: {described}.')
        defaults = spec.resolve()
        for option in spec.options:
            if not option.flag or option.name in seen:
                continue
            seen.add(option.name)
            flag = '--' + option.name.replace('_', '-')
            default = defaults[option.name]
            help = option.help if default is None else \
                f'{option.help} (default: {default})'
            if option.is_switch:
                options.add_argument(flag, dest=option.name, default=None,
                                     action=argparse.BooleanOptionalAction,
                                     help=help)
            else:
                options.add_argument(flag, dest=option.name, default=None,
                                     type=_text_type(option),
                                     choices=option.choices,
                                     metavar=None if option.choices else
                                     option.name.upper(), help=help)


def _add_data_options(parser: argparse.ArgumentParser,
                      graph_from_checkpoint: bool = False) -> None:
    group = parser.add_argument_group('data')
    group.add_argument('data_dir', type=Path,
                       help='folder with the labels file and the features')
    group.add_argument('--labels', default=None,
                       help='CSV of slide_id,label[,case_id], relative to '
                            'DATA_DIR (default: labels.csv)')
    group.add_argument('--layout', default='auto',
                       choices=['auto', *LAYOUTS],
                       help='h5 (features/<id>.h5, TRIDENT), clam '
                            '(pt_files/ + h5_files/), torchmil (.npy '
                            'folders); auto picks by the files found '
                            '(default: auto)')
    group.add_argument('--features-dir', default='features',
                       help='h5 layout: folder of the <slide_id>.h5 files, '
                            'relative to DATA_DIR (default: features)')
    source = 'the checkpoint' if graph_from_checkpoint else None
    group.add_argument('--graph', default=None, choices=list(METHODS),
                       help='patch graph: grid neighbours or a radius '
                            f'(default: {source or "grid"})')
    group.add_argument('--connectivity', type=int, default=None,
                       choices=[4, 8],
                       help='grid graphs: 4 or 8 neighbours '
                            f'(default: {source or 8})')
    group.add_argument('--patch-size', type=float, default=None,
                       help='grid step of the coordinates in pixels '
                            '(default: ' + (source or "each slide's "
                                            "patch_size_level0, else read "
                                            "from its coordinates") + ')')
    group.add_argument('--radius', type=float, default=None,
                       help='linking distance of radius graphs'
                            + (f' (default: {source})' if source else ''))
    group.add_argument('--workers', type=int, default=0,
                       help='processes that read slides ahead (default: 0, '
                            'read in the main process)')
    group.add_argument('--batch-size', type=int, default=None,
                       help='slides per batch (per process under torchrun; '
                            'default: 4 to train, 1 to score)')
    group.add_argument('--device', default=None,
                       help='cpu, cuda, cuda:1, ... (default: the GPU of '
                            'this process if there is one, else cpu)')
    _add_slides_dir(group)


def _add_slides_dir(parser) -> None:
    parser.add_argument('--slides-dir', type=Path, default=None,
                        help='folder of the slide images, <slide_id>.<ext> '
                             'in any format OpenSlide reads (svs, tif, ndpi, '
                             'mrxs, ...): heatmaps are drawn over them '
                             '(default: none, heatmaps on the patch grid)')


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('training')
    group.add_argument('--classes', default=None,
                       help='comma-separated class names in order (default: '
                            'the sorted distinct labels)')
    group.add_argument('--epochs', type=int, default=20,
                       help='passes over the training slides (default: 20)')
    group.add_argument('--lr', type=float, default=1e-3,
                       help='Adam learning rate (default: 0.001)')
    group.add_argument('--weight-decay', type=float, default=1e-4,
                       help='Adam weight decay (default: 0.0001)')
    group.add_argument('--val-fraction', type=float, default=0.25,
                       help='share of the slides held out for validation, by '
                            'patient (case_id) and stratified by label '
                            '(default: 0.25)')
    group.add_argument('--test-fraction', type=float, default=0.0,
                       help='share held out as a test set, evaluated once '
                            'with the best checkpoint (default: 0)')
    group.add_argument('--split-file', type=Path, default=None,
                       help='CSV slide_id,split (train/val/test) that fixes '
                            'the split')
    group.add_argument('--folds', type=int, default=None,
                       help='K-fold cross-validation by patient: K runs in '
                            'OUT/fold_<k>, reported with mean and sd')
    group.add_argument('--monitor', default='val_loss',
                       choices=list(MONITORS),
                       help='validation metric that picks the best '
                            'checkpoint (default: val_loss)')
    group.add_argument('--seed', type=int, default=0,
                       help='seed of the split, the initialization and the '
                            'shuffling (default: 0)')
    group.add_argument('--in-memory', action='store_true',
                       help='keep all slides in memory (small cohorts)')
    group.add_argument('--heatmaps', type=int, default=4,
                       help='validation slides drawn in heatmaps/ '
                            '(default: 4)')
    group.add_argument('--resume', action='store_true',
                       help='continue the run in --out from its last '
                            'checkpoint')
    group.add_argument('--overwrite', action='store_true',
                       help='replace the run in --out (its files are '
                            'deleted first)')


def _model_options(args: argparse.Namespace) -> Dict:
    r"""Every option of the chosen model: the preset's, then the flags. A
    flag of another model is an error."""
    spec = MODELS[args.model]
    own = {option.name for option in spec.options if option.flag}
    others = sorted({option.name for other in MODELS.values()
                     for option in other.options if option.flag} - own)
    stray = ['--' + name.replace('_', '-') for name in others
             if getattr(args, name, None) is not None]
    if stray:
        raise ValueError(f"{', '.join(stray)} belong(s) to another model, "
                         f"not to --model {spec.name}")
    given = {name: getattr(args, name) for name in own
             if getattr(args, name) is not None}
    return spec.resolve(args.preset, **given)


def _graph_options(args: argparse.Namespace,
                   saved: Optional[Dict] = None) -> Dict:
    r"""The patch-graph settings: the flags over :obj:`saved` (a
    checkpoint's, where a flag that differs is an error) or the
    defaults."""
    flags = {'graph': args.graph, 'connectivity': args.connectivity,
             'patch_size': args.patch_size, 'radius': args.radius}
    if saved is None:
        merged = {k: DEFAULT_GRAPH[k] if v is None else v
                  for k, v in flags.items()}
    else:
        saved = {'graph' if k == 'method' else k: v
                 for k, v in saved.items()}
        conflicts = [f'--{k.replace("_", "-")} {v} (checkpoint: '
                     f'{saved.get(k)})' for k, v in flags.items()
                     if v is not None and v != saved.get(k)]
        if conflicts:
            raise ValueError(f"the checkpoint was trained with other patch "
                             f"graphs: {'; '.join(conflicts)}; leave these "
                             f"flags out to use the checkpoint's")
        merged = {k: saved.get(k, DEFAULT_GRAPH[k]) for k in DEFAULT_GRAPH}
    return PatchGraph(merged['graph'], merged['connectivity'],
                      merged['patch_size'], merged['radius']).options()


def _device(args: argparse.Namespace) -> torch.device:
    if args.device is not None:
        return torch.device(args.device)
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return torch.device('cpu')


def _versions() -> Dict[str, str]:
    import torch_geometric

    return {'pyg_sm': __version__, 'torch': torch.__version__,
            'torch_geometric': torch_geometric.__version__,
            'python': platform.python_version()}


def _arguments(args: argparse.Namespace) -> Dict:
    r"""The command's arguments, as results.json records them."""
    return {key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items() if key != 'run'}


def _write_json(path: Path, content: Dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2, default=str))


def _progress(enabled: bool):
    from tqdm.auto import tqdm

    return (lambda items: tqdm(items, desc='checking slides', leave=False)) \
        if enabled else None


def _dataset(args: argparse.Namespace, graph: Dict, labels: Optional[str],
             slide_ids=None, classes=None, cache: Optional[Path] = None,
             in_memory: bool = False) -> SlideDataset:
    return SlideDataset(
        args.data_dir, labels=labels, features_dir=args.features_dir,
        slide_ids=slide_ids, layout=args.layout, classes=classes,
        graph=PatchGraph(graph['method'], graph['connectivity'],
                         graph['patch_size'], graph['radius']),
        graph_cache=cache, in_memory=in_memory)


def _record_json(record: Dict, classes: Sequence[str]) -> Dict:
    return {'slide_id': record['slide_id'],
            'label': None if record['label'] is None
            else classes[record['label']],
            'probabilities': dict(zip(classes, record['probabilities'])),
            'predicted': classes[record['prediction']],
            'logits': record['logits']}


def _heatmap_slides(records: List[Dict], count: int) -> List[str]:
    r"""The :obj:`count` slides to draw: those with the most lesion patches
    first, when patch labels exist, else the first ones."""
    def lesions(record):
        labels = record.get('patch_labels')
        return 0 if labels is None else -int((labels > 0).sum())
    return [r['slide_id'] for r in sorted(records, key=lesions)[:count]]


def _slide_images(args: argparse.Namespace) -> Optional[SlideImages]:
    return None if args.slides_dir is None else SlideImages(args.slides_dir)


def _run_title(slide_id: str, predictions: Dict[str, Dict[str, Dict]]) -> str:
    r"""The slide id, its label when known and each run's predicted
    probability (of the positive class for two classes, else of the
    predicted class); :obj:`predictions` maps a run name to its per-slide
    predictions (``label``, ``predicted``, ``probabilities``)."""
    known = [p[slide_id] for p in predictions.values() if slide_id in p]
    label = next((p['label'] for p in known if p.get('label') is not None),
                 None)
    title = slide_id + ('' if label is None else f', label {label}')
    parts = []
    for name, per_slide in predictions.items():
        p = per_slide.get(slide_id)
        if not p or not p.get('probabilities'):
            continue
        classes = list(p['probabilities'])
        if len(classes) == 2:
            parts.append((f'p({classes[1]})', f"{name} "
                          f"{p['probabilities'][classes[1]]:.2f}"))
        else:
            parts.append(('predicted', f"{name} {p['predicted']} "
                          f"({p['probabilities'][p['predicted']]:.2f})"))
    if parts:
        title += f'; {parts[0][0]}: ' + ', '.join(text for _, text in parts)
    return title


def _write_heatmaps(out: Path, slide_ids: Sequence[str],
                    runs: Sequence[PredictionFolder],
                    slides: Optional[SlideImages] = None,
                    predictions: Optional[Sequence[Dict]] = None,
                    top_k: int = 8, opacity: float = 0.5) -> List[str]:
    r"""``out/heatmaps/<slide_id>.png`` per slide: each run's attention
    over the slide image (:func:`~pyg_sm.visualize.render_overlay`, with
    the top-k gallery) when :obj:`slides` has it, else on the patch grid
    (:func:`~pyg_sm.visualize.render_heatmap`), with the true lesions when
    the scores hold patch labels. :obj:`predictions` (one per run, slide id
    to prediction) gives the titles; by default the runs' own."""
    if not slide_ids:
        return []
    (out / 'heatmaps').mkdir(parents=True, exist_ok=True)
    if predictions is None:
        predictions = [run.predictions for run in runs]
    named = {run.name: p for run, p in zip(runs, predictions)}
    written = []
    for slide_id in slide_ids:
        scores = [run.read_scores(slide_id) for run in runs]
        first = scores[0]
        attention = {run.name: s['attention_logits']
                     for run, s in zip(runs, scores)}
        title = _run_title(slide_id, named)
        path = out / 'heatmaps' / f'{slide_id}.png'
        if slides is not None and slide_id in slides:
            slide = slides.open(slide_id)
            try:
                image = render_overlay(
                    slide, first['coords'], attention,
                    first['patch_size_level0'], first['patch_labels'],
                    title=title, top_k=top_k, opacity=opacity)
            finally:
                slide.close()
        else:
            image = render_heatmap(first['coords'], attention,
                                   first['patch_labels'], title=title)
        with atomic_path(path) as temporary:
            image.save(temporary, format='png')
        written.append(str(path))
    return written


def _fmt(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.3f}'


def _print_table(results: Dict[str, Dict]) -> None:
    print(f"\n{'model':<10} {'bag AUROC':>10} {'instance AUROC':>15} "
          f"{'bag acc':>8} {'bal acc':>8}")
    for name, r in results.items():
        print(f"{name:<10} {_fmt(r['bag_auroc']):>10} "
              f"{_fmt(r['instance_auroc']):>15} {_fmt(r['bag_accuracy']):>8} "
              f"{_fmt(r['balanced_accuracy']):>8}")


def demo(args: argparse.Namespace) -> Dict:
    out = Path(args.out)
    data_dir = make_synthetic_slides(out / 'data', num_slides=args.num_slides,
                                     seed=args.seed, signal=args.signal)
    dataset = SlideDataset(data_dir, in_memory=True)
    split = split_slides(dataset.slide_ids, dataset.labels,
                         val_fraction=0.3, seed=args.seed)
    train_set = SlideDataset(data_dir, slide_ids=split['train'],
                             in_memory=True)
    test_set = SlideDataset(data_dir, slide_ids=split['val'], in_memory=True)
    print(f'synthetic dataset: {len(dataset)} slides in {data_dir} '
          f'({len(train_set)} train, {len(test_set)} test), slide images in '
          f"{data_dir / 'slides'}", flush=True)
    spec = MODELS[DEFAULT_MODEL]
    results, runs = {}, []
    # The default model next to the same model without any smoothing; each
    # scores the held-out slides into a prediction folder of its own.
    for name, preset in [('SmABMIL', 'sm'), ('ABMIL', 'abmil')]:
        torch.manual_seed(args.seed)
        model = build_model(dataset.feature_dim, spec.name,
                            **spec.resolve(preset))
        history = fit(model, train_set, epochs=args.epochs, lr=2e-3,
                      batch_size=4, seed=args.seed, log=lambda _: None,
                      progress=sys.stderr.isatty())
        seconds = sum(entry['seconds'] for entry in history)
        records = score_slides(model, test_set, out / name)
        write_predictions(out / name / PREDICTIONS_FILE, records,
                          dataset.classes)
        runs.append(PredictionFolder(out / name))
        print(f'{name}: trained {args.epochs} epochs in {seconds:.1f} s, '
              f"final loss {history[-1]['train_loss']:.3f}", flush=True)
        results[name] = {**evaluate_predictions(records, dataset.classes),
                         'train_seconds': seconds,
                         'loss_history': [e['train_loss'] for e in history],
                         'options': spec.resolve(preset),
                         'test_predictions': [_record_json(
                             r, dataset.classes) for r in records]}
    _print_table(results)
    results['heatmaps'] = _write_heatmaps(
        out, _heatmap_slides(records, args.heatmaps), runs,
        SlideImages(data_dir / 'slides'))
    _write_json(out / 'results.json', results)
    print(f'\nresults: {out / "results.json"}; attention over the slides: '
          f'{out / "heatmaps"}\nexplore them: ' + shlex.join(
              ['pyg-sm', 'view', *(str(run.folder) for run in runs),
               '--slides-dir', str(data_dir / 'slides')]))
    return results


def _prepare_out(out: Path, args: argparse.Namespace) -> None:
    r"""A run folder is new, resumed (``--resume``) or replaced
    (``--overwrite``, which deletes the old run's files first)."""
    if args.resume and args.overwrite:
        raise ValueError('--resume and --overwrite exclude each other')
    holds = out.is_dir() and any(out.iterdir())
    if args.resume:
        if not (out / 'results.json').is_file():
            raise FileNotFoundError(f"--resume: {out} holds no run to "
                                    f"continue (no results.json)")
        return
    if holds and not args.overwrite:
        raise ValueError(f"{out} holds a previous run; pass --resume to "
                         f"continue it or --overwrite to replace it")
    if holds:
        if not (out / 'results.json').is_file():
            raise ValueError(f"--overwrite: {out} is not a pyg-sm run folder "
                             f"(no results.json); choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _resume_command() -> str:
    argv = [a for a in sys.argv[1:] if a not in ('--overwrite', '--resume')]
    return shlex.join(['pyg-sm', *argv, '--resume'])


def _splits(args, dataset: SlideDataset) -> List[Dict[str, List[str]]]:
    r"""The run's splits: one, or one per fold."""
    ids, labels, cases = dataset.slide_ids, dataset.labels, dataset.case_ids
    if args.split_file is not None:
        if args.folds:
            raise ValueError('--split-file and --folds exclude each other')
        splits = [read_split_file(args.split_file, ids)]
    elif args.folds:
        held = split_slides(ids, labels, cases, 0.0, args.test_fraction,
                            args.seed)['test']
        rest = [i for i, s in enumerate(ids) if s not in set(held)]
        folds = fold_slides([ids[i] for i in rest], [labels[i] for i in rest],
                            None if cases is None else
                            [cases[i] for i in rest], args.folds, args.seed)
        splits = [{'train': [s for j, f in enumerate(folds) if j != k
                             for s in f], 'val': folds[k], 'test': held}
                  for k in range(args.folds)]
    else:
        splits = [split_slides(ids, labels, cases, args.val_fraction,
                               args.test_fraction, args.seed)]
    for split in splits:
        check_split(split, ids, labels, dataset.classes, cases)
    return splits


def train(args: argparse.Namespace) -> Optional[Dict]:
    out = Path(args.out)
    if args.epochs < 1:
        raise ValueError(f'--epochs must be at least 1 (got {args.epochs})')
    device = _device(args)
    rank = distributed.start(device)
    try:
        if rank == 0:
            _prepare_out(out, args)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        graph = _graph_options(args)
        classes = None if args.classes is None else args.classes.split(',')
        dataset = _dataset(args, graph, args.labels or 'labels.csv',
                           classes=classes, cache=out / 'graph_cache')
        if not dataset.has_labels:
            raise ValueError(f'{args.data_dir}: training needs labels')
        splits = _splits(args, dataset)
        dataset.check(_progress(sys.stderr.isatty() and rank == 0),
                      shard=distributed.world())
        options = {**_model_options(args),
                   'num_classes': 1 if len(dataset.classes) == 2
                   else len(dataset.classes)}
        results = {'status': 'running', 'command': sys.argv,
                   'arguments': _arguments(args), 'seed': args.seed,
                   'versions': _versions(), 'classes': dataset.classes,
                   'class_map': {c: i for i, c in enumerate(dataset.classes)},
                   'model': args.model, 'options': options, 'graph': graph,
                   'world_size': int(os.environ.get('WORLD_SIZE', '1'))}
        runs = []
        for k, split in enumerate(splits):
            run_dir = out / f'fold_{k + 1}' if len(splits) > 1 else out
            run = _train_one(args, dataset, split, options, graph, run_dir,
                             device, rank, results)
            runs.append(run)
        if rank != 0:
            return None
        if len(runs) > 1:
            results['folds'] = [{'fold': k + 1, 'dir': str(out / f'fold_'
                                                           f'{k + 1}'),
                                 'validation': r['validation'],
                                 'test': r.get('test')}
                                for k, r in enumerate(runs)]
            results['summary'] = {
                key: mean_and_sd([r['validation'][key] for r in runs])
                for key in ('bag_auroc', 'balanced_accuracy', 'bag_accuracy',
                            'instance_auroc')}
            for key, value in results['summary'].items():
                if value['mean'] is not None:
                    print(f"{key}: {value['mean']:.3f} +- {value['sd']:.3f} "
                          f"over {value['n']} folds")
        else:
            results.update(runs[0])
        results['status'] = 'finished'
        _write_json(out / 'results.json', results)
        print(f'\nresults: {out / "results.json"}')
        return results
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train_one(args, dataset: SlideDataset, split: Dict[str, List[str]],
               options: Dict, graph: Dict, run_dir: Path, device, rank: int,
               results: Dict) -> Dict:
    r"""One training run (one fold) in :obj:`run_dir`: checkpoints every
    epoch, the best one by ``--monitor``, the final evaluation of the best
    checkpoint on the validation and test slides."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.out) / 'graph_cache'

    def subset(ids):
        return _dataset(args, graph, args.labels or 'labels.csv', ids,
                        dataset.classes, cache, args.in_memory)

    train_set, val_set = subset(split['train']), subset(split['val'])
    run = {'split': split}
    run_results = run_dir / 'results.json'
    if args.resume and run_dir != Path(args.out) and run_results.is_file():
        # Every process reads it: they skip a finished fold together.
        previous = json.loads(run_results.read_text())
        if previous.get('status') == 'finished':
            print(f'{run_dir}: finished before, kept', flush=True)
            return previous
    fingerprint = {'model': args.model, 'options': options, 'graph': graph,
                   'classes': dataset.classes, 'seed': args.seed,
                   'lr': args.lr, 'weight_decay': args.weight_decay,
                   'batch_size': args.batch_size or 4, 'split': split,
                   'monitor': args.monitor}
    resume = args.resume and (run_dir / 'last.pt').is_file()
    if rank == 0:
        _write_json(run_results, {**results, **run, 'status': 'running'})
    torch.manual_seed(args.seed)
    model = build_model(dataset.feature_dim, args.model, **options).to(
        device)
    checkpoint = run_dir / 'checkpoint.pt'

    def save_best(best_model, entry):
        save_checkpoint(checkpoint, best_model, dataset.feature_dim, options,
                        graph, dataset.classes, epoch=entry['epoch'],
                        monitor=args.monitor, value=entry[args.monitor])

    print(f"training on {len(split['train'])} slides, validating on "
          f"{len(split['val'])}" + (f", testing on {len(split['test'])}"
                                    if split['test'] else '') +
          f' ({run_dir})', file=sys.stderr, flush=True)
    try:
        history = fit(model, train_set, epochs=args.epochs, lr=args.lr,
                      weight_decay=args.weight_decay,
                      batch_size=args.batch_size or 4, seed=args.seed,
                      workers=args.workers, val_set=val_set,
                      classes=dataset.classes, monitor=args.monitor,
                      run_dir=run_dir, save_best=save_best,
                      fingerprint=fingerprint, resume=resume,
                      progress=sys.stderr.isatty() and rank == 0)
    except Interrupted as stop:
        if rank == 0:
            _write_json(run_results,
                        {**results, **run, 'status': 'interrupted'})
            _write_json(Path(args.out) / 'results.json',
                        {**results, 'status': 'interrupted'})
            print(f'{stop}\nresume with: {_resume_command()}',
                  file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None
    run['history'] = history
    if rank == 0 and not checkpoint.is_file():  # the monitor was never finite
        save_best(model, {'epoch': len(history), args.monitor: None})
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    best, _, _ = load_checkpoint(checkpoint)
    best = best.to(device)
    model_class_name = type(best).__name__
    run['checkpoint'] = str(checkpoint)
    for name, ids in (('validation', split['val']), ('test', split['test'])):
        if not ids:
            continue
        part = subset(ids)
        records = score_slides(best, part, run_dir,
                               batch_size=args.batch_size or 1,
                               workers=args.workers, geojson=False)
        if rank != 0:  # process 0 gathers the records and writes
            continue
        metrics = evaluate_predictions(records, dataset.classes)
        run[name] = {**metrics, 'predictions': [
            _record_json(r, dataset.classes) for r in records]}
        _print_table({f'{name}': metrics})
        if name == 'validation':
            run['heatmaps'] = _write_heatmaps(
                run_dir, _heatmap_slides(records, args.heatmaps),
                [PredictionFolder(run_dir, model_class_name)],
                _slide_images(args), [{p['slide_id']: p for p in
                                       run[name]['predictions']}])
    if rank != 0:
        return run
    _write_json(run_results, {**results, **run, 'status': 'finished'})
    print(f'checkpoint: {checkpoint}', flush=True)
    return run


def _slide_list(path: Path) -> List[str]:
    r"""Slide ids, one per line, or a CSV with a ``slide_id`` column."""
    if not path.is_file():
        raise FileNotFoundError(f"no slide list {path}")
    first = path.read_text(encoding='utf-8-sig').split('\n', 1)[0]
    if ',' in first:
        return [row['slide_id'] for _, row in
                read_table(path, ('slide_id', ), 'slide list')]
    return [line.strip() for line in path.read_text(
        encoding='utf-8-sig').splitlines() if line.strip()]


def score(args: argparse.Namespace, metrics: bool) -> Optional[Dict]:
    r"""``predict`` (and ``evaluate``, which adds metrics): scores the
    slides, writes per-slide files, the predictions table and results."""
    out = Path(args.out)
    device = _device(args)
    rank = distributed.start(device)
    try:
        saved = read_checkpoint(args.checkpoint)
        graph = _graph_options(args, saved['graph'])
        classes = saved['classes']
        labels = args.labels
        if labels is None and (args.data_dir / 'labels.csv').is_file():
            labels = 'labels.csv'
        if metrics and labels is None and find_layout(
                args.data_dir, args.layout,
                args.features_dir).bag_labels() is None:
            raise ValueError(f"evaluate needs labels: no labels file "
                             f"{args.data_dir / 'labels.csv'}; 'pyg-sm "
                             f"predict' scores slides without them")
        slide_ids = None if args.slide_ids is None else \
            _slide_list(args.slide_ids)
        dataset = _dataset(args, graph, labels, slide_ids, classes,
                           out / 'graph_cache')
        if metrics and not dataset.has_labels:
            raise ValueError(f"evaluate needs labels ({args.data_dir}); "
                             f"'pyg-sm predict' scores slides without them")
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        dataset.check(_progress(sys.stderr.isatty() and rank == 0),
                      shard=distributed.world())
        model, _, _ = load_checkpoint(args.checkpoint)
        records = score_slides(model.to(device), dataset, out,
                               batch_size=args.batch_size or 1,
                               workers=args.workers)
        if rank != 0:
            return None
        write_predictions(out / 'predictions.csv', records, classes)
        predictions = [_record_json(r, classes) for r in records]
        results = {'command': sys.argv, 'arguments': _arguments(args),
                   'versions': _versions(), 'checkpoint': str(
                       args.checkpoint), 'classes': classes,
                   'class_map': {c: i for i, c in enumerate(classes)},
                   'graph': graph, 'predictions': predictions,
                   'world_size': int(os.environ.get('WORLD_SIZE', '1'))}
        if metrics:
            results['metrics'] = evaluate_predictions(records, classes)
            _print_table({saved['model']: results['metrics']})
        results['heatmaps'] = _write_heatmaps(
            out, _heatmap_slides(records, args.heatmaps),
            [PredictionFolder(out, type(model).__name__)],
            _slide_images(args), [{p['slide_id']: p for p in predictions}])
        _write_json(out / 'results.json', results)
        print(f"\n{len(records)} slides: {out / 'predictions.csv'}, "
              f"{out / 'scores'}, {out / 'geojson'}, {out / 'results.json'}")
        return results
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def heatmap(args: argparse.Namespace) -> Dict:
    r"""``heatmap RUN [RUN ...]``: attention pictures of scored slides, the
    runs side by side, over the slide images when ``--slides-dir`` has
    them."""
    if args.top_k < 0:
        raise ValueError(f'--top-k must be 0 or more (got {args.top_k})')
    if not 0 <= args.opacity <= 1:
        raise ValueError(f'--opacity must be within [0, 1] (got '
                         f'{args.opacity})')
    runs = prediction_folders(args.runs)
    slide_ids = runs[0].slide_ids if args.slide_ids is None else \
        _slide_list(args.slide_ids)
    missing = [(run.name, s) for run in runs for s in slide_ids
               if s not in run.slide_ids]
    if missing:
        raise ValueError('no scores for ' + ', '.join(
            f"slide '{s}' in {name}" for name, s in missing[:5]) +
            (f' and {len(missing) - 5} more' if len(missing) > 5 else ''))
    slides = _slide_images(args)
    written = _write_heatmaps(Path(args.out), slide_ids, runs, slides,
                              top_k=args.top_k, opacity=args.opacity)
    on_image = 0 if slides is None else sum(s in slides for s in slide_ids)
    print(f'{len(written)} heatmaps in {Path(args.out) / "heatmaps"} '
          f'({on_image} over slide images, {len(written) - on_image} on the '
          f'patch grid)')
    return {'heatmaps': written}


def view(args: argparse.Namespace) -> Dict:
    r"""``view RUN [RUN ...]``: the local deep-zoom viewer, until
    Ctrl-C."""
    import logging

    logging.basicConfig(level=logging.INFO if args.log_requests
                        else logging.WARNING, format='%(message)s')
    server = open_viewer(args.runs, args.slides_dir,
                         host=args.host, port=args.port)
    images = 0 if server.slides is None else sum(
        s in server.slides for s in server.slide_ids)
    print(f'pyg-sm viewer: {len(server.slide_ids)} slides ({images} with '
          f'images), {len(server.runs)} run(s)\nopen {server.url} in a '
          f'browser; Ctrl-C stops it', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('stopped', file=sys.stderr)
    finally:
        server.server_close()
    return {'url': server.url}


def evaluate(args: argparse.Namespace) -> Optional[Dict]:
    return score(args, metrics=True)


def predict(args: argparse.Namespace) -> Optional[Dict]:
    return score(args, metrics=False)


class _HelpFormatter(argparse.HelpFormatter):
    """Room for the longest flag, so that every help text starts on the
    flag's own line."""
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=52, width=120)


def _add_scoring_options(parser: argparse.ArgumentParser,
                         default_out: str) -> None:
    parser.add_argument('--checkpoint', type=Path, required=True,
                        help='checkpoint.pt written by pyg-sm train')
    parser.add_argument('--slide-ids', type=Path, default=None,
                        help='file of the slide ids to score, one per line '
                             '(default: those of the labels file, else every '
                             'feature file)')
    parser.add_argument('--out', default=default_out,
                        help=f'output folder (default: {default_out})')
    parser.add_argument('--heatmaps', type=int, default=4,
                        help='slides drawn in heatmaps/ (default: 4)')


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog='pyg-sm', description='Sm attention MIL on slide graphs.',
        formatter_class=_HelpFormatter)
    commands = root.add_subparsers(dest='command', required=True)

    demo_parser = commands.add_parser(
        'demo', formatter_class=_HelpFormatter,
        help='train SmABMIL and ABMIL on a synthetic dataset and '
             'compare localization')
    demo_parser.add_argument('--out', default='pyg_sm_demo',
                             help='output folder (default: pyg_sm_demo)')
    demo_parser.add_argument('--num-slides', type=int, default=160,
                             help='synthetic slides to make (default: 160)')
    demo_parser.add_argument('--epochs', type=int, default=20,
                             help='training epochs (default: 20)')
    demo_parser.add_argument('--seed', type=int, default=0,
                             help='seed of the data, split and training '
                                  '(default: 0)')
    demo_parser.add_argument('--heatmaps', type=int, default=4,
                             help='slides drawn in heatmaps/ (default: 4)')
    demo_parser.add_argument('--signal', type=float, default=DEMO_SIGNAL,
                             help='shift of lesion patches, in standard '
                                  'deviations along a few feature directions '
                                  f'(default: {DEMO_SIGNAL})')
    demo_parser.set_defaults(run=demo)

    train_parser = commands.add_parser(
        'train', formatter_class=_HelpFormatter,
        help='train a model on DATA_DIR (labels + slide features)')
    _add_data_options(train_parser)
    _add_model_options(train_parser)
    _add_training_options(train_parser)
    train_parser.add_argument('--out', default='pyg_sm_run',
                              help='output folder (default: pyg_sm_run)')
    train_parser.set_defaults(run=train)

    heatmap_parser = commands.add_parser(
        'heatmap', formatter_class=_HelpFormatter,
        help='draw the attention of one or more runs over the slide images '
             '(or on the patch grid without them)')
    heatmap_parser.add_argument(
        'runs', nargs='+', type=Path, metavar='RUN_DIR',
        help='folders written by predict, evaluate, train or demo (with '
             'scores/); two or more are drawn side by side')
    _add_slides_dir(heatmap_parser)
    heatmap_parser.add_argument('--slide-ids', type=Path, default=None,
                                help='file of the slide ids to draw, one per '
                                     'line (default: every slide of the '
                                     'first run)')
    heatmap_parser.add_argument('--top-k', type=int, default=8,
                                help='patches of highest attention shown at '
                                     'full resolution per run (default: 8)')
    heatmap_parser.add_argument('--opacity', type=float, default=0.5,
                                help='opacity of the attention over the '
                                     'tissue, 0 to 1 (default: 0.5)')
    heatmap_parser.add_argument('--out', default='pyg_sm_heatmaps',
                                help='output folder; PNGs go to OUT/heatmaps '
                                     '(default: pyg_sm_heatmaps)')
    heatmap_parser.set_defaults(run=heatmap)

    view_parser = commands.add_parser(
        'view', formatter_class=_HelpFormatter,
        help='start the local deep-zoom viewer of slides and attention')
    view_parser.add_argument(
        'runs', nargs='+', type=Path, metavar='RUN_DIR',
        help='folders written by predict, evaluate, train or demo (with '
             'scores/); several give a run switch')
    _add_slides_dir(view_parser)
    view_parser.add_argument('--host', default='127.0.0.1',
                             help='address to listen on (default: 127.0.0.1, '
                                  'this machine only)')
    view_parser.add_argument('--port', type=int, default=0,
                             help='port to listen on (default: 0, a free one)')
    view_parser.add_argument('--log-requests', action='store_true',
                             help='log every request on stderr')
    view_parser.set_defaults(run=view)

    for name, command, out, help in (
            ('evaluate', evaluate, 'pyg_sm_eval',
             'score the labelled slides of DATA_DIR with a checkpoint and '
             'report metrics'),
            ('predict', predict, 'pyg_sm_predict',
             'score slides (labels optional) with a checkpoint: '
             'predictions.csv, scores/, geojson/')):
        scoring = commands.add_parser(name, formatter_class=_HelpFormatter,
                                      help=help)
        _add_data_options(scoring, graph_from_checkpoint=True)
        _add_scoring_options(scoring, out)
        scoring.set_defaults(run=command)
    return root


def run(argv: Optional[List[str]] = None) -> Optional[Dict]:
    r"""Runs one command and returns what it wrote to results.json."""
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, FloatingPointError,
            ImportError) as error:
        raise SystemExit(f'pyg-sm {args.command}: {error}')


def main(argv: Optional[List[str]] = None) -> None:
    run(argv)
