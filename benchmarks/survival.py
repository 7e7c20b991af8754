"""A survival epoch against a classification epoch on the same slides
(target: within 10%): SmABMIL trained by ``fit`` on one synthetic cohort
with its label (BCE), the discrete-time NLL and the Cox loss, the epochs
interleaved so that the machine's drift falls on all three alike.

    python benchmarks/survival.py [--slides 48] [--rounds 5]
"""
import argparse
import statistics
import tempfile
import time

import torch

from pyg_sm import SlideDataset, SmABMIL, make_synthetic_slides
from pyg_sm.nn import make_survival_loss, survival_cut_points
from pyg_sm.train import FitSettings, fit


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--slides', type=int, default=48)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as root:
        make_synthetic_slides(root, num_slides=args.slides, feature_dim=256,
                              slide_images=False, task='survival')
        classes = SlideDataset(root, in_memory=True)
        outcomes = SlideDataset(root, in_memory=True, task='survival')
        for dataset in (classes, outcomes):  # load (and build graphs) once
            [dataset[i] for i in range(len(dataset))]
        cuts = survival_cut_points(outcomes.times, outcomes.events, 4)
        setups = {
            'classification (BCE)': (classes, lambda: SmABMIL(256)),
            'survival (nll)': (outcomes, lambda: SmABMIL(
                256, criterion=make_survival_loss('nll', cuts))),
            'survival (cox)': (outcomes, lambda: SmABMIL(
                256, criterion=make_survival_loss('cox'))),
        }
        seconds = {name: [] for name in setups}
        for _ in range(args.rounds):
            for name, (dataset, build) in setups.items():
                torch.manual_seed(0)
                model = build()
                began = time.perf_counter()
                fit(model, dataset, FitSettings(epochs=1, batch_size=4,
                                                 monitor='last',
                                                 validate_every=0,
                                                 loggers=()),
                    log=lambda _: 0)
                seconds[name].append(time.perf_counter() - began)
    patches = sum(d.num_nodes for d in classes._cache.values())
    base = statistics.median(seconds['classification (BCE)'])
    print(f'{args.slides} slides, {patches} patches, D = 256, batch 4, '
          f'median of {args.rounds} epochs each, {torch.get_num_threads()} '
          f'threads\n')
    print('| task | s / epoch | vs classification |\n|---|---|---|')
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f'| {name} | {median:.2f} | {median / base:.3f} |')


if __name__ == '__main__':
    main()
