r"""Memory and time of training, evaluating and predicting on cohorts of
TRIDENT-style slides (150,000 patches x 1024 features each, 614 MB of
float32 features per slide), 2 slides against 12.

Each case runs in its own process; its peak memory is the peak of the
summed resident set sizes of that process and its data-loader workers,
sampled every 20 ms (psutil). The slides are read lazily, as ``pyg-sm``
does by default (``in_memory=False``, no loader worker; one case with one
worker); ``in memory (before)`` is what the library did before: every slide
read into memory with ``h5py`` and kept (the old default), the time per
epoch to compare with.

    python benchmarks/cohort_memory.py [--patches 150000] [--dim 1024]

writes benchmarks/results/cohort_memory.{md,json}.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'results'


def make_slides(root: Path, count: int, patches: int, dim: int) -> Path:
    r"""TRIDENT-style HDF5 files: features (N, D) float32, coords (N, 2)
    level-0 pixels on a 256 px grid with ``patch_size_level0``."""
    import h5py
    import numpy as np

    features_dir = root / 'features'
    features_dir.mkdir(parents=True, exist_ok=True)
    side = int(np.ceil(np.sqrt(patches)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)),
                    -1).reshape(-1, 2)[:patches]
    rng = np.random.default_rng(0)
    rows = []
    for index in range(count):
        slide_id = f'slide_{index:03d}'
        path = features_dir / f'{slide_id}.h5'
        rows.append(f'{slide_id},{index % 2}')
        if path.is_file():
            continue
        with h5py.File(path, 'w') as f:
            data = f.create_dataset('features', (patches, dim), 'f4')
            for start in range(0, patches, 16384):
                stop = min(start + 16384, patches)
                data[start:stop] = rng.standard_normal((stop - start, dim),
                                                       dtype=np.float32)
            f['coords'] = (grid * 256 + 1024).astype(np.int64)
            f['coords'].attrs['patch_size_level0'] = 256
    (root / 'labels.csv').write_text('slide_id,label\n' + '\n'.join(rows) +
                                     '\n')
    return root


def run_case(argv, env=None) -> dict:
    r"""Runs a command and samples the summed RSS of its process tree."""
    import psutil

    process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    peak = [0]
    root = psutil.Process(process.pid)

    def sample():
        while process.poll() is None:
            try:
                tree = [root] + root.children(recursive=True)
                total = 0
                for member in tree:
                    try:
                        total += member.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    thread.start()
    out, err = process.communicate()
    thread.join()
    if process.returncode != 0:
        raise RuntimeError(f'{argv} failed:\n{err[-3000:]}')
    lines = [line for line in out.splitlines() if line.startswith('{')]
    return {'peak_rss_gb': peak[0] / 2**30,
            'seconds': time.perf_counter() - start,
            **(json.loads(lines[-1]) if lines else {})}


def train_case(args) -> None:
    r"""In a child process: one or more training epochs with fit()."""
    import torch

    from pyg_sm import SlideDataset
    from pyg_sm.models import build_model
    from pyg_sm.models.registry import SM_ABMIL
    from pyg_sm.train import FitSettings, fit, save_checkpoint

    if args.in_memory:  # the reader of before: a copy in memory, kept
        import pyg_sm.datasets.layouts as layouts
        layouts._h5_array = lambda path, dataset: torch.from_numpy(
            dataset[()])
    ids = [f'slide_{i:03d}' for i in range(args.slides)]
    dataset = SlideDataset(args.data, slide_ids=ids,
                           graph_cache=args.data / 'graph_cache',
                           in_memory=args.in_memory)
    torch.manual_seed(0)
    options = SM_ABMIL.resolve('sm')
    model = build_model(dataset.feature_dim, **options)
    settings = FitSettings(epochs=args.epochs, batch_size=1,
                           workers=0 if args.in_memory else args.workers,
                           monitor='last', validate_every=0, loggers=())
    history = fit(model, dataset, settings,
                  log=lambda line: print(line, file=sys.stderr))
    if args.checkpoint:
        save_checkpoint(args.checkpoint, model, dataset.feature_dim, options,
                        dataset.graph.options(), dataset.classes)
    print(json.dumps({'epoch_seconds': [e.seconds for e in history]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--patches', type=int, default=150_000)
    parser.add_argument('--dim', type=int, default=1024)
    parser.add_argument('--workers', type=int, default=0)
    parser.add_argument('--data', type=Path,
                        default=RESULTS / 'cohort_data')
    parser.add_argument('--case', choices=['train'], default=None)
    parser.add_argument('--slides', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--in-memory', action='store_true')
    parser.add_argument('--checkpoint', type=Path, default=None)
    args = parser.parse_args()
    if args.case == 'train':
        return train_case(args)

    RESULTS.mkdir(exist_ok=True)
    began = time.perf_counter()
    make_slides(args.data, 12, args.patches, args.dim)
    print(f'12 slides of {args.patches} x {args.dim} in {args.data} '
          f'({time.perf_counter() - began:.0f} s)', flush=True)
    me = [sys.executable, __file__, '--data', str(args.data), '--patches',
          str(args.patches), '--dim', str(args.dim), '--workers',
          str(args.workers)]
    checkpoint = RESULTS / 'cohort_checkpoint.pt'
    rows = {}
    # The first run builds the graph cache, as a run's first epoch does.
    for slides in (2, 12):
        rows[f'train lazy, {slides} slides'] = run_case(
            me + ['--case', 'train', '--slides', str(slides),
                  '--checkpoint', str(checkpoint)])
        print(rows[f'train lazy, {slides} slides'], flush=True)
    rows['train lazy, 1 worker, 12 slides'] = run_case(
        me[:-1] + ['1', '--case', 'train', '--slides', '12'])
    print(rows['train lazy, 1 worker, 12 slides'], flush=True)
    for slides in (2, 12):
        rows[f'train in memory (before), {slides} slides'] = run_case(
            me + ['--case', 'train', '--slides', str(slides),
                  '--in-memory'])
        print(rows[f'train in memory (before), {slides} slides'],
              flush=True)
    for command in ('evaluate', 'predict'):
        for slides in (2, 12):
            ids = RESULTS / f'ids_{slides}.txt'
            ids.write_text(''.join(f'slide_{i:03d}\n'
                                   for i in range(slides)))
            out = RESULTS / f'cohort_{command}_{slides}'
            rows[f'{command}, {slides} slides'] = run_case(
                [sys.executable, '-m', 'pyg_sm', command, str(args.data),
                 '--checkpoint', str(checkpoint), '--out', str(out),
                 '--slide-ids', str(ids), '--workers', str(args.workers),
                 '--heatmaps', '0'])
            print(rows[f'{command}, {slides} slides'], flush=True)
    machine = (f'{platform.machine()}, {os.cpu_count()} cores, '
               f'{_memory_gb():.0f} GB, torch '
               f'{__import__("torch").__version__}, Python '
               f'{platform.python_version()}')
    report = _report(rows, args, machine)
    (RESULTS / 'cohort_memory.md').write_text(report)
    (RESULTS / 'cohort_memory.json').write_text(json.dumps(
        {'machine': machine, 'rows': rows}, indent=2))
    print(report)


def _memory_gb() -> float:
    import psutil
    return psutil.virtual_memory().total / 2**30


def _report(rows: dict, args, machine: str) -> str:
    def peak(name):
        return rows[name]['peak_rss_gb']

    lines = [f'Slides of {args.patches:,} patches x {args.dim} features '
             f'(float32), batch size 1, {args.workers} loader worker(s); '
             f'{machine}.', '',
             '| case | peak RSS, 2 slides | peak RSS, 12 slides | 12 / 2 |',
             '|---|---|---|---|']
    for case in ('train lazy', 'train in memory (before)', 'evaluate',
                 'predict'):
        two, twelve = peak(f'{case}, 2 slides'), peak(f'{case}, 12 slides')
        lines.append(f'| {case} | {two:.2f} GB | {twelve:.2f} GB | '
                     f'{twelve / two:.2f} |')
    lines += ['', '| epoch on 12 slides | epoch 1 | epoch 2 |',
              '|---|---|---|']
    for name, case in (('lazy (graphs cached in epoch 1)',
                        'train lazy, 12 slides'),
                       ('lazy, 1 loader worker',
                        'train lazy, 1 worker, 12 slides'),
                       ('in memory (before)',
                        'train in memory (before), 12 slides')):
        first, second = rows[case]['epoch_seconds']
        lines.append(f'| {name} | {first:.1f} s | {second:.1f} s |')
    lines += ['', 'evaluate / predict wall time on 12 slides (scores and '
              'GeoJSON included): '
              f"{rows['evaluate, 12 slides']['seconds']:.0f} s / "
              f"{rows['predict, 12 slides']['seconds']:.0f} s"]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
