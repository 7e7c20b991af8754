r"""The training engine's overhead (target: an epoch at most 5% slower):
``fit`` on Lightning against the hand-written loop it replaced (pyg-sm
0.3.0's: the same epoch order, ``train_step`` per batch, ``validate``, and
the training state saved after each epoch), side by side in one run, the
runs interleaved so that the machine's drift falls on both alike.

Two cases: the survival benchmark's 96 synthetic slides (D = 256, in
memory, the discrete-time NLL, batch 4: short steps, where a per-step cost
shows most) and TRIDENT-style slides read lazily from HDF5 (150,000 patches
x 1024 features each, batch 1, as the cohort benchmark's). An epoch's time
is the time between two epochs' ends (validation and the state file
included), the median over the epochs after the first (which builds the
graphs); each run also reports its whole wall time (Lightning's start-up
included).

    python benchmarks/engine_overhead.py [--rounds 6] [--cohort-rounds 3]

writes benchmarks/results/engine_overhead.{md,json}.
"""
import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'results'
sys.path.insert(0, str(HERE))


def handwritten_fit(model, train_set, val_set, settings, state_path):
    r"""pyg-sm 0.3.0's loop (its per-step work: the batch moved to the
    model's device, the step, the running sums, the disabled progress
    bar), without its resume and Ctrl-C plumbing: returns each epoch's
    seconds."""
    from tqdm.auto import tqdm

    from pyg_sm.train import make_optimizer, train_step, validate
    from pyg_sm.train.checkpoint import atomic_save

    device = next(model.parameters()).device
    optimizer = make_optimizer(model, settings)
    ends = [time.perf_counter()]
    for epoch in range(settings.epochs):
        sampler = DistributedSampler(range(len(train_set)), num_replicas=1,
                                     rank=0, shuffle=True, seed=settings.seed)
        sampler.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=settings.batch_size,
                            sampler=list(sampler))
        model.train()
        totals = [0.0, 0]
        for batch in tqdm(loader, disable=True):
            batch = batch.to(device)
            loss = train_step(model, model.criterion, optimizer, batch)
            totals[0] += loss * batch.num_graphs
            totals[1] += batch.num_graphs
        validate(model, val_set, batch_size=settings.batch_size)
        atomic_save({'epoch': epoch + 1, 'model': model.state_dict(),
                     'optimizer': optimizer.state_dict(),
                     'rng': torch.get_rng_state()}, state_path)
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends, ends[1:])]


def lightning_fit(model, train_set, val_set, settings, run_dir):
    from lightning.pytorch.callbacks import Callback

    from pyg_sm.train import fit

    class EpochEnds(Callback):
        r"""When each epoch ends, its state saved (the last callback)."""
        def __init__(self):
            self.ends = []

        def on_train_start(self, trainer, module):
            self.ends.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, module):
            self.ends.append(time.perf_counter())
    ends = EpochEnds()
    fit(model, train_set, settings, val_set=val_set, run_dir=run_dir,
        log=lambda _: None, callbacks=[ends])
    return [b - a for a, b in zip(ends.ends, ends.ends[1:])]


def survival_case(root: Path):
    from pyg_sm import SlideDataset, SmABMIL, make_synthetic_slides
    from pyg_sm.nn import make_survival_loss, survival_cut_points

    make_synthetic_slides(root, num_slides=96, feature_dim=256,
                          slide_images=False, task='survival')
    dataset = SlideDataset(root, in_memory=True, task='survival')
    [dataset[i] for i in range(len(dataset))]  # graphs built once
    train_set = torch.utils.data.Subset(dataset, range(72))
    val_set = torch.utils.data.Subset(dataset, range(72, 96))
    cuts = survival_cut_points(dataset.times[:72], dataset.events[:72], 4)

    def build():
        torch.manual_seed(0)
        return SmABMIL(256, criterion=make_survival_loss('nll', cuts))
    return '96 synthetic slides, survival (nll), batch 4', train_set, \
        val_set, build, 4


def cohort_case(root: Path, slides: int, patches: int, dim: int):
    from cohort_memory import make_slides

    from pyg_sm import SlideDataset, SmABMIL

    make_slides(root, slides, patches, dim)
    dataset = SlideDataset(root, graph_cache=root / 'graph_cache')
    train_set = torch.utils.data.Subset(dataset, range(slides - 1))
    val_set = torch.utils.data.Subset(dataset, [slides - 1])

    def build():
        torch.manual_seed(0)
        return SmABMIL(dim)
    return (f'{slides} TRIDENT-style slides of {patches:,} x {dim}, lazy, '
            f'batch 1'), train_set, val_set, build, 1


def measure(case, rounds: int, epochs: int, workdir: Path):
    from pyg_sm.train import FitSettings

    name, train_set, val_set, build, batch_size = case
    settings = FitSettings(epochs=epochs, batch_size=batch_size,
                           monitor='val_loss')
    epoch_times = {'hand-written loop': [], 'Lightning fit': []}
    wall = {key: [] for key in epoch_times}
    for r in range(rounds):
        for engine in epoch_times:
            run_dir = workdir / f'{name[:2]}-{engine[:4]}{r}'
            run_dir.mkdir(parents=True, exist_ok=True)
            began = time.perf_counter()
            if engine == 'hand-written loop':
                seconds = handwritten_fit(build(), train_set, val_set,
                                          settings, run_dir / 'last.pt')
            else:
                seconds = lightning_fit(build(), train_set, val_set,
                                        settings, run_dir)
            wall[engine].append(time.perf_counter() - began)
            epoch_times[engine].extend(seconds[1:])
    medians = {k: statistics.median(v) for k, v in epoch_times.items()}
    return {'case': name, 'epoch_seconds': medians,
            'ratio': medians['Lightning fit'] / medians['hand-written loop'],
            'run_seconds': {k: statistics.median(v) for k, v in wall.items()},
            'epochs': epochs, 'rounds': rounds}


def markdown(rows) -> str:
    lines = [f'Engine overhead, {platform.machine()}, '
             f'{torch.get_num_threads()} threads, torch {torch.__version__}'
             f', Python {platform.python_version()} '
             f'(`python benchmarks/engine_overhead.py`)', '',
             '| case | hand-written loop, s / epoch | Lightning fit, '
             's / epoch | ratio | whole run (hand / Lightning) |',
             '|---|---|---|---|---|']
    for row in rows:
        e, w = row['epoch_seconds'], row['run_seconds']
        lines.append(f"| {row['case']} | {e['hand-written loop']:.3f} | "
                     f"{e['Lightning fit']:.3f} | {row['ratio']:.3f} | "
                     f"{w['hand-written loop']:.1f} s / "
                     f"{w['Lightning fit']:.1f} s |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--cohort-rounds', type=int, default=3)
    parser.add_argument('--cohort-slides', type=int, default=4)
    parser.add_argument('--patches', type=int, default=150_000)
    parser.add_argument('--dim', type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        cases = ((survival_case(root / 'survival'), args.rounds),
                 (cohort_case(root / 'cohort', args.cohort_slides,
                              args.patches, args.dim), args.cohort_rounds))
        for case, rounds in cases:
            rows.append(measure(case, rounds, args.epochs, root / 'runs'))
            print(markdown(rows), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'engine_overhead.json').write_text(json.dumps(rows, indent=1))
    (RESULTS / 'engine_overhead.md').write_text(markdown(rows))


if __name__ == '__main__':
    main()
