r"""The ``pyg-sm`` command: ``demo``, ``train DATA_DIR`` and ``evaluate
DATA_DIR --checkpoint FILE``."""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .datasets import SlideDataset, make_synthetic_slides
from .models import MODELS, build_model
from .models.registry import ModelSpec, Option
from .train import (evaluate_predictions, load_checkpoint, predict_slides,
                    save_checkpoint, train_model)
from .transforms import METHODS, PatchGraph
from .visualize import render_heatmap

#: The model of the command line (more join it in MODELS).
DEFAULT_MODEL = 'sm_abmil'


def _text_type(option: Option):
    """The option's parser, reporting its own message to argparse."""
    def parse(text: str):
        try:
            return option.type(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = option.name
    return parse


def _add_model_options(parser: argparse.ArgumentParser,
                       spec: ModelSpec) -> None:
    r"""A flag per option of :obj:`spec`, and ``--preset``. Flags default to
    the preset's value; a flag given overrides it."""
    presets = '; '.join(
        f"'{name}': {preset.help} (" + ', '.join(
            f'{key}={value}' for key, value in preset.values.items()) + ')'
        for name, preset in spec.presets.items())
    group = parser.add_argument_group(
        f'model ({spec.model_class.__name__} options)',
        f'Unset options take the value of --preset, else the constructor '
        f'default. Presets: {presets}.')
    group.add_argument('--model', default=spec.name, choices=list(MODELS),
                       help=f'the model (default: {spec.name})')
    group.add_argument('--preset', default=spec.default_preset,
                       choices=list(spec.presets),
                       help=f'named set of model options (default: '
                            f'{spec.default_preset})')
    defaults = spec.resolve()
    for option in spec.options:
        if not option.flag:
            continue
        flag = '--' + option.name.replace('_', '-')
        default = defaults[option.name]
        help = option.help if default is None else \
            f'{option.help} (default: {default})'
        if option.is_switch:
            group.add_argument(flag, dest=option.name, default=None,
                               action=argparse.BooleanOptionalAction,
                               help=help)
        else:
            group.add_argument(flag, dest=option.name, default=None,
                               type=_text_type(option),
                               choices=option.choices,
                               metavar=None if option.choices else
                               option.name.upper(), help=help)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('data')
    group.add_argument('data_dir', type=Path,
                       help='folder with the labels file and the features')
    group.add_argument('--labels', default='labels.csv',
                       help='CSV of slide_id,label, relative to DATA_DIR '
                            '(default: labels.csv)')
    group.add_argument('--features-dir', default='features',
                       help='folder of the <slide_id>.h5 feature files, '
                            'relative to DATA_DIR (default: features)')
    group.add_argument('--graph', default='grid', choices=list(METHODS),
                       help='patch graph: grid neighbours or a radius '
                            '(default: grid)')
    group.add_argument('--connectivity', type=int, default=8, choices=[4, 8],
                       help='grid graphs: 4 or 8 neighbours (default: 8)')
    group.add_argument('--patch-size', type=float, default=None,
                       help='grid step of the coordinates (default: read '
                            'from each slide)')
    group.add_argument('--radius', type=float, default=None,
                       help='linking distance of radius graphs')


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('training')
    group.add_argument('--epochs', type=int, default=20,
                       help='passes over the training slides (default: 20)')
    group.add_argument('--lr', type=float, default=1e-3,
                       help='Adam learning rate (default: 0.001)')
    group.add_argument('--batch-size', type=int, default=4,
                       help='slides per step (per process under torchrun; '
                            'default: 4)')
    group.add_argument('--val-fraction', type=float, default=0.25,
                       help='share of the slides held out for validation, '
                            'stratified by label (default: 0.25)')
    group.add_argument('--seed', type=int, default=0,
                       help='seed of the split, the initialization and the '
                            'shuffling (default: 0)')
    group.add_argument('--heatmaps', type=int, default=4,
                       help='number of heatmap PNGs to write (default: 4)')
    group.add_argument('--device', default=None,
                       help='cpu, cuda, cuda:1, ... (default: the GPU of '
                            'this process if there is one, else cpu)')


def _model_options(args: argparse.Namespace) -> Dict:
    r"""Every option of the chosen model: the preset's, then the flags."""
    spec = MODELS[args.model]
    given = {option.name: getattr(args, option.name)
             for option in spec.options
             if option.flag and getattr(args, option.name) is not None}
    return spec.resolve(args.preset, **given)


def _graph_options(args: argparse.Namespace) -> Dict:
    return PatchGraph(args.graph, args.connectivity, args.patch_size,
                      args.radius).options()


def _split(slide_ids: List[str], labels: List[int], fraction: float,
           seed: int):
    """A train/validation split by seed, stratified by label."""
    if not 0 < fraction < 1:
        raise SystemExit(f"--val-fraction must be in (0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in sorted(set(labels)):
        ids = [s for s, y in zip(slide_ids, labels) if y == label]
        order = torch.randperm(len(ids), generator=generator).tolist()
        cut = max(1, round(len(ids) * fraction)) if len(ids) > 1 else 0
        val += [ids[i] for i in order[:cut]]
        train += [ids[i] for i in order[cut:]]
    return train, val


def _write_heatmaps(out: Path, predictions: Dict[str, List[Dict]],
                    count: int) -> List[str]:
    """Heatmaps of the first `count` slides with lesions (else any), one
    attention panel per model, plus the true mask when known."""
    first = next(iter(predictions.values()))
    order = sorted(range(len(first)), key=lambda i: -int(
        first[i]['data'].get('patch_labels', torch.zeros(1)).sum()))
    (out / 'heatmaps').mkdir(parents=True, exist_ok=True)
    written = []
    for i in order[:count]:
        data = first[i]['data']
        panels = [(f'{name} attention', preds[i]['attention'])
                  for name, preds in predictions.items()]
        if 'patch_labels' in data:
            panels.append(('true lesion mask', data.patch_labels.float()))
        path = out / 'heatmaps' / f'{data.slide_id}.png'
        render_heatmap(data.pos, panels, title=f'{data.slide_id} (label '
                       f'{int(data.y.item())})').save(path)
        written.append(str(path))
    return written


def _device(args: argparse.Namespace) -> torch.device:
    if args.device is not None:
        return torch.device(args.device)
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return torch.device('cpu')


def _start_distributed(device: torch.device) -> int:
    """Joins the process group torchrun describes (WORLD_SIZE > 1): gloo on
    the CPU, nccl on GPUs. Returns this process's rank."""
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1:
        return 0
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        'nccl' if device.type == 'cuda' else 'gloo')
    return torch.distributed.get_rank()


def _train_and_evaluate(train_set, eval_set, model_name, options, args,
                        name, device=torch.device('cpu'), rank=0):
    """Trains (in every process) and evaluates (in process 0, which alone
    returns predictions and metrics)."""
    torch.manual_seed(args.seed)
    model = build_model(train_set.feature_dim, model_name,
                        **options).to(device)
    start = time.perf_counter()
    history = train_model(model, train_set, epochs=args.epochs, lr=args.lr,
                          batch_size=args.batch_size, seed=args.seed,
                          progress=sys.stderr.isatty() and rank == 0)
    seconds = time.perf_counter() - start
    if rank != 0:
        return model, None, None
    predictions = predict_slides(model, eval_set)
    metrics = evaluate_predictions(predictions)
    print(f'{name}: trained {args.epochs} epochs in {seconds:.1f} s, final '
          f'loss {history[-1]:.3f}', flush=True)
    return model, predictions, {**metrics, 'train_seconds': seconds,
                                'loss_history': history,
                                'model': model_name, 'options': options}


def _fmt(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.3f}'


def _print_table(results: Dict[str, Dict]) -> None:
    print(f"\n{'model':<10} {'bag AUROC':>10} {'instance AUROC':>15} "
          f"{'bag acc':>8}")
    for name, r in results.items():
        print(f"{name:<10} {_fmt(r['bag_auroc']):>10} "
              f"{_fmt(r['instance_auroc']):>15} {_fmt(r['bag_accuracy']):>8}")


def _predictions_json(predictions: List[Dict]) -> List[Dict]:
    return [{'slide_id': p['slide_id'], 'label': p['label'],
             'logit': p['logit']} for p in predictions]


def demo(args: argparse.Namespace) -> Dict:
    out = Path(args.out)
    data_dir = make_synthetic_slides(out / 'data', num_slides=args.num_slides,
                                     seed=args.seed)
    dataset = SlideDataset(data_dir)
    train_ids, test_ids = _split(dataset.slide_ids, dataset.labels, 0.3,
                                 args.seed)
    train_set = SlideDataset(data_dir, slide_ids=train_ids)
    test_set = SlideDataset(data_dir, slide_ids=test_ids)
    print(f'synthetic dataset: {len(dataset)} slides in {data_dir} '
          f'({len(train_set)} train, {len(test_set)} test)', flush=True)
    args.lr, args.batch_size = 2e-3, 4
    results, predictions = {}, {}
    spec = MODELS[DEFAULT_MODEL]
    # The default model next to the same model without any smoothing.
    for name, preset in [('SmABMIL', 'sm'), ('ABMIL', 'abmil')]:
        _, predictions[name], results[name] = _train_and_evaluate(
            train_set, test_set, spec.name, spec.resolve(preset), args, name)
    _print_table(results)
    results['heatmaps'] = _write_heatmaps(out, predictions, args.heatmaps)
    results['test_predictions'] = {n: _predictions_json(p)
                                   for n, p in predictions.items()}
    (out / 'results.json').write_text(json.dumps(results, indent=2))
    print(f'\nresults: {out / "results.json"}; heatmaps: {out / "heatmaps"}')
    return results


def _dataset(args: argparse.Namespace, slide_ids=None) -> SlideDataset:
    graph = PatchGraph(**_graph_options(args))
    return SlideDataset(args.data_dir, labels=args.labels,
                        features_dir=args.features_dir, slide_ids=slide_ids,
                        graph=graph)


def train(args: argparse.Namespace) -> Optional[Dict]:
    out = Path(args.out)
    device = _device(args)
    rank = _start_distributed(device)
    try:
        dataset = _dataset(args)
        train_ids, val_ids = _split(dataset.slide_ids, dataset.labels,
                                    args.val_fraction, args.seed)
        train_set = _dataset(args, train_ids)
        val_set = _dataset(args, val_ids)
        options = _model_options(args)
        model, predictions, metrics = _train_and_evaluate(
            train_set, val_set, args.model, options, args,
            MODELS[args.model].model_class.__name__, device, rank)
        if rank != 0:
            return None
        out.mkdir(parents=True, exist_ok=True)
        checkpoint = out / 'checkpoint.pt'
        save_checkpoint(checkpoint, model.cpu(), dataset.feature_dim,
                        options, _graph_options(args))
        results = {'validation': metrics, 'train_slides': train_ids,
                   'validation_slides': val_ids,
                   'checkpoint': str(checkpoint),
                   'world_size': int(os.environ.get('WORLD_SIZE', '1')),
                   'validation_predictions': _predictions_json(predictions)}
        results['heatmaps'] = _write_heatmaps(out, {'SmABMIL': predictions},
                                              args.heatmaps)
        _print_table({'SmABMIL': metrics})
        (out / 'results.json').write_text(json.dumps(results, indent=2))
        print(f'\ncheckpoint: {checkpoint}; results: {out / "results.json"}')
        return results
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def evaluate(args: argparse.Namespace) -> Dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, options, graph = load_checkpoint(args.checkpoint)
    for name, value in graph.items():
        setattr(args, 'graph' if name == 'method' else name, value)
    dataset = _dataset(args)
    predictions = predict_slides(model, dataset)
    metrics = evaluate_predictions(predictions)
    _print_table({'SmABMIL': metrics})
    results = {'metrics': metrics, 'checkpoint': str(args.checkpoint),
               'predictions': _predictions_json(predictions),
               'heatmaps': _write_heatmaps(out, {'SmABMIL': predictions},
                                           args.heatmaps)}
    (out / 'results.json').write_text(json.dumps(results, indent=2))
    print(f'\nresults: {out / "results.json"}')
    return results


class _HelpFormatter(argparse.HelpFormatter):
    """Room for the longest flag, so that every help text starts on the
    flag's own line."""
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=52, width=120)


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
                             help='heatmap PNGs to write (default: 4)')
    demo_parser.set_defaults(run=demo)

    train_parser = commands.add_parser(
        'train', formatter_class=_HelpFormatter,
        help='train SmABMIL on DATA_DIR (labels.csv + HDF5 features)')
    _add_data_options(train_parser)
    _add_model_options(train_parser, MODELS[DEFAULT_MODEL])
    _add_training_options(train_parser)
    train_parser.add_argument('--out', default='pyg_sm_run',
                              help='output folder (default: pyg_sm_run)')
    train_parser.set_defaults(run=train)

    eval_parser = commands.add_parser(
        'evaluate', formatter_class=_HelpFormatter,
        help='evaluate a checkpoint on DATA_DIR')
    _add_data_options(eval_parser)
    eval_parser.add_argument('--checkpoint', type=Path, required=True,
                             help='checkpoint.pt written by pyg-sm train')
    eval_parser.add_argument('--out', default='pyg_sm_eval',
                             help='output folder (default: pyg_sm_eval)')
    eval_parser.add_argument('--heatmaps', type=int, default=4,
                             help='heatmap PNGs to write (default: 4)')
    eval_parser.set_defaults(run=evaluate)
    return root


def run(argv: Optional[List[str]] = None) -> Dict:
    r"""Runs one command and returns what it wrote to results.json."""
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'pyg-sm {args.command}: {error}')


def main(argv: Optional[List[str]] = None) -> None:
    run(argv)
