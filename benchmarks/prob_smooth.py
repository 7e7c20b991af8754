r"""A training step (forward, backward, Adam) of ProbSmoothABMIL on one bag
of 1k, 4k, 16k and 32k instances (D=256, 4-neighbour grid graph, torchmil
1.0.2's defaults: att_dim 128, M = 1000 attention samples, the criterion
over the samples plus the KL term): pyg-sm against torchmil 1.0.2's
ProbSmoothABMIL with a dense and with a sparse adjacency.

Each case runs in its own process (torchmil from ``.torchmil/``, as ``make
test`` installs it): three warm-up steps, then the median of ``--repeat``
timed steps. The peak is the process's peak resident set size during the
timed steps (the interpreter, torch, the model, the inputs, the adjacency
and the step), and the step memory what the steps added to what the
process held before them.

    python benchmarks/prob_smooth.py [--sizes 1024 4096 16384 32768]

writes benchmarks/results/prob_smooth.{md,json}.
"""
import argparse
import json
import statistics
import time

from cases import (
    METHODS,
    RESULTS,
    grid_shape,
    machine,
    peak_rss_gb,
    peak_rss_reset,
    rss_gb,
    run_case,
    torchmil_adjacency,
)

DIM = 256
SAMPLES = 1000


def one_case(method: str, n: int, repeat: int) -> dict:
    import torch
    from torch_geometric.utils import grid, remove_self_loops

    torch.manual_seed(0)
    h, w = grid_shape(n)
    edge_index, _ = remove_self_loops(grid(h, w)[0])
    edge_index = edge_index[:, (edge_index < n).all(0)]
    x = torch.randn(n, DIM)
    y = torch.tensor([1.0])
    if method == 'pyg-sm':
        from pyg_sm import ProbSmoothABMIL

        model = ProbSmoothABMIL((DIM, ), n_samples_train=SAMPLES)

        def step():
            _, losses = model.compute_loss(y, x, edge_index)
            return sum(losses.values())
    else:
        from torchmil.models import ProbSmoothABMIL

        model = ProbSmoothABMIL((DIM, ), n_samples_train=SAMPLES)
        adj = torchmil_adjacency(edge_index, n,
                                 dense=method == 'torchmil dense')
        X = x.unsqueeze(0)

        def step():
            _, losses = model.compute_loss(y, X, adj)
            return sum(losses.values())
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        optimizer.zero_grad()
        loss = step()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for _ in range(3):  # warm-up: the allocator and the kernels
        train_step()
    before = rss_gb()
    peak_rss_reset()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        loss = train_step()
        times.append(time.perf_counter() - start)
    total = peak_rss_gb()
    return {'method': method, 'n': n, 'seconds': statistics.median(times),
            'peak_gb': total, 'step_gb': total - before, 'loss': loss,
            'threads': torch.get_num_threads()}


def table(rows, sizes, methods, machine) -> str:
    lines = [f'Training step of ProbSmoothABMIL (D={DIM}, att_dim 128, '
             f'M = {SAMPLES} samples, criterion + KL), one bag; {machine}',
             '', '| instances | ' + ' | '.join(
                 f'{m}: time / step memory / peak' for m in methods) +
             ' | fastest torchmil / pyg-sm |',
             '|---|' + '---|' * (len(methods) + 1)]
    for n in sizes:
        cells, times = [], {}
        for method in methods:
            row = next(r for r in rows if r['n'] == n and
                       r['method'] == method)
            if 'skipped' in row:
                cells.append(f"not run ({row['skipped']})")
            else:
                times[method] = row['seconds']
                cells.append(f"{row['seconds'] * 1000:.0f} ms / "
                             f"{row['step_gb'] * 1024:.0f} MB / "
                             f"{row['peak_gb']:.2f} GB")
        others = [t for m, t in times.items() if m != 'pyg-sm']
        ratio = f"{min(others) / times['pyg-sm']:.1f}x" \
            if others and 'pyg-sm' in times else '-'
        lines.append(f'| {n:,} | ' + ' | '.join(cells) + f' | {ratio} |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[1024, 4096, 16384, 32768])
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=METHODS)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--timeout', type=float, default=900)
    parser.add_argument('--case', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case[0], int(args.case[1]),
                                  int(args.case[2]))))
        return
    rows = []
    for n in args.sizes:
        for method in args.methods:
            row = run_case(__file__, method, n, [args.repeat],
                           args.timeout)
            print(row, flush=True)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    ran_on = machine()
    (RESULTS / 'prob_smooth.json').write_text(json.dumps(
        {'machine': ran_on, 'rows': rows}, indent=2))
    text = table(rows, args.sizes, args.methods, ran_on)
    (RESULTS / 'prob_smooth.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
