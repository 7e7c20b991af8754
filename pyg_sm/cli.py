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

from .datasets import SlideDataset
from .heatmaps import save_heatmap
from .training import (MODEL_OPTIONS, build_model, evaluate_predictions,
                       load_checkpoint, predict_slides, save_checkpoint,
                       train_model)
from .transforms import PatchGraph

# The model the demo compares with plain ABMIL (the same model, no Sm).
DEMO_SM_OPTIONS = dict(sm_layers=1, sm_post=True, sm_alpha='trainable')
ABMIL_OPTIONS = dict(sm_layers=0, sm_pre=False, sm_post=False)


def _alpha(value: str):
    if value == 'trainable':
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'trainable' or a float in (0, 1), got {value!r}")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('model (SmABMIL options)')
    group.add_argument('--att-dim', type=int, default=128)
    group.add_argument('--att-act', default='tanh',
                       choices=['tanh', 'relu', 'gelu'])
    group.add_argument('--sm-mode', default='approx',
                       choices=['approx', 'exact'])
    group.add_argument('--sm-alpha', type=_alpha, default='trainable')
    group.add_argument('--sm-layers', type=int, default=1)
    group.add_argument('--sm-steps', type=int, default=10)
    group.add_argument('--sm-pre', action='store_true')
    group.add_argument('--sm-post', action=argparse.BooleanOptionalAction,
                       default=True)
    group.add_argument('--sm-spectral-norm', action='store_true')
    group.add_argument('--normalize', action=argparse.BooleanOptionalAction,
                       default=True,
                       help='symmetric normalization of the patch graph')


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('data')
    group.add_argument('data_dir', type=Path)
    group.add_argument('--labels', default='labels.csv')
    group.add_argument('--features-dir', default='features')
    group.add_argument('--graph', default='grid', choices=['grid', 'radius'])
    group.add_argument('--connectivity', type=int, default=8, choices=[4, 8])
    group.add_argument('--patch-size', type=float, default=None,
                       help='grid step of the coordinates (default: read '
                            'from each slide)')
    group.add_argument('--radius', type=float, default=None,
                       help='linking distance of radius graphs')


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('training')
    group.add_argument('--epochs', type=int, default=20)
    group.add_argument('--lr', type=float, default=1e-3)
    group.add_argument('--batch-size', type=int, default=4)
    group.add_argument('--val-fraction', type=float, default=0.25)
    group.add_argument('--seed', type=int, default=0)
    group.add_argument('--heatmaps', type=int, default=4,
                       help='number of heatmap PNGs to write')
    group.add_argument('--device', default=None,
                       help='cpu, cuda, cuda:1, ... (default: the GPU of '
                            'this process if there is one, else cpu)')


def _model_options(args: argparse.Namespace) -> Dict:
    return {name: getattr(args, name) for name in MODEL_OPTIONS}


def _graph_options(args: argparse.Namespace) -> Dict:
    return dict(method=args.graph, connectivity=args.connectivity,
                patch_size=args.patch_size, radius=args.radius)


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
        save_heatmap(path, data.pos, panels,
                     title=f'{data.slide_id} (label {int(data.y.item())})')
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


def _train_and_evaluate(train_set, eval_set, options, args, name,
                        device=torch.device('cpu'), rank=0):
    """Trains (in every process) and evaluates (in process 0, which alone
    returns predictions and metrics)."""
    torch.manual_seed(args.seed)
    model = build_model(train_set.feature_dim, **options).to(device)
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
                                'options': options}


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
    from .synthetic import make_synthetic_slides

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
    for name, options in [('SmABMIL', DEMO_SM_OPTIONS),
                          ('ABMIL', ABMIL_OPTIONS)]:
        _, predictions[name], results[name] = _train_and_evaluate(
            train_set, test_set, options, args, name)
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
            train_set, val_set, options, args, 'SmABMIL', device, rank)
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog='pyg-sm', description='Sm attention MIL on slide graphs.')
    commands = root.add_subparsers(dest='command', required=True)

    demo_parser = commands.add_parser(
        'demo', help='train SmABMIL and ABMIL on a synthetic dataset and '
                     'compare localization')
    demo_parser.add_argument('--out', default='pyg_sm_demo')
    demo_parser.add_argument('--num-slides', type=int, default=160)
    demo_parser.add_argument('--epochs', type=int, default=20)
    demo_parser.add_argument('--seed', type=int, default=0)
    demo_parser.add_argument('--heatmaps', type=int, default=4)
    demo_parser.set_defaults(run=demo)

    train_parser = commands.add_parser(
        'train', help='train SmABMIL on DATA_DIR (labels.csv + HDF5 '
                      'features)')
    _add_data_options(train_parser)
    _add_model_options(train_parser)
    _add_training_options(train_parser)
    train_parser.add_argument('--out', default='pyg_sm_run')
    train_parser.set_defaults(run=train)

    eval_parser = commands.add_parser(
        'evaluate', help='evaluate a checkpoint on DATA_DIR')
    _add_data_options(eval_parser)
    eval_parser.add_argument('--checkpoint', type=Path, required=True)
    eval_parser.add_argument('--out', default='pyg_sm_eval')
    eval_parser.add_argument('--heatmaps', type=int, default=4)
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
