r"""A training step (forward, backward, Adam) of SmTransformerABMIL on one
bag of 4k, 16k and 32k instances (D=256, 4-neighbour grid graph, the
constructor's defaults: A=512 in 4 heads, one layer, pool att_dim 128):
pyg-sm against torchmil 1.0.2's SmTransformerABMIL with a dense and with a
sparse adjacency.

Each case runs in its own process (torchmil from ``.torchmil/``, as ``make
test`` installs it): one warm-up step, then the timed step. Peak memory is
the process's peak resident set size during the timed step (the model, the
inputs, the adjacency and everything the step allocates; Linux ``VmHWM``
after ``/proc/self/clear_refs`` resets it), and ``step_gb`` what the step
added to what the process held before it. A case whose
dense adjacency alone passes 20 GB (``--limit-gb``), or that runs past
``--timeout`` seconds, is reported as not run.

    python benchmarks/transformer.py [--sizes 4096 16384 32768]

writes benchmarks/results/transformer.{md,json}.
"""
import argparse
import json
import time

import cases
from cases import (
    METHODS,
    RESULTS,
    grid_shape,
    peak_rss_gb,
    peak_rss_reset,
    rss_gb,
    run_case,
    torchmil_adjacency,
)

DIM = 256


def one_case(method: str, n: int) -> dict:
    import torch
    from torch_geometric.utils import grid, remove_self_loops

    torch.manual_seed(0)
    h, w = grid_shape(n)
    edge_index, _ = remove_self_loops(grid(h, w)[0])
    keep = (edge_index < n).all(0)
    edge_index = edge_index[:, keep]
    x = torch.randn(n, DIM)
    y = torch.tensor([1.0])
    if method == 'pyg-sm':
        from pyg_sm import SmTransformerABMIL

        model = SmTransformerABMIL((DIM, ))

        def step():
            _, losses = model.compute_loss(y, x, edge_index)
            return losses['BCEWithLogitsLoss']
    else:
        from torchmil.models import SmTransformerABMIL

        model = SmTransformerABMIL((DIM, ))
        adj = torchmil_adjacency(edge_index, n,
                                 dense=method == 'torchmil dense')
        X = x.unsqueeze(0)

        def step():
            _, losses = model.compute_loss(y, X, adj)
            return losses['BCEWithLogitsLoss']
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        optimizer.zero_grad()
        loss = step()
        loss.backward()
        optimizer.step()
        return float(loss)

    train_step()  # warm-up
    before = rss_gb()
    peak_rss_reset()
    start = time.perf_counter()
    loss = train_step()
    seconds = time.perf_counter() - start
    total = peak_rss_gb()
    return {'method': method, 'n': n, 'seconds': seconds,
            'peak_gb': total, 'step_gb': total - before, 'loss': loss,
            'threads': torch.get_num_threads()}


def dense_gb(n: int) -> float:
    # The adjacency, its copy in each bmm's backward, and I + L in exact.
    return 3 * n * n * 4 / 2 ** 30


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[4096, 16384, 32768])
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=METHODS)
    parser.add_argument('--limit-gb', type=float, default=20.0)
    parser.add_argument('--timeout', type=float, default=900)
    parser.add_argument('--case', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case[0], int(args.case[1]))))
        return
    rows = []
    for n in args.sizes:
        for method in args.methods:
            if method == 'torchmil dense' and dense_gb(n) > args.limit_gb:
                rows.append({'method': method, 'n': n, 'skipped':
                             f'dense adjacency over {args.limit_gb} GB'})
                continue
            row = run_case(__file__, method, n, timeout=args.timeout)
            print(row, flush=True)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    machine = cases.machine()
    (RESULTS / 'transformer.json').write_text(json.dumps(
        {'machine': machine, 'rows': rows}, indent=2))
    lines = [f'Training step of SmTransformerABMIL (D={DIM}, A=512, 4 heads, '
             f'1 layer), one bag; {machine}', '',
             '| instances | ' + ' | '.join(f'{m} time / peak' for m in
                                           args.methods) +
             ' | fastest torchmil / pyg-sm |',
             '|---|' + '---|' * (len(args.methods) + 1)]
    for n in args.sizes:
        cells, times = [], {}
        for method in args.methods:
            row = next(r for r in rows if r['n'] == n and
                       r['method'] == method)
            if 'skipped' in row:
                cells.append(f"not run ({row['skipped']})")
            else:
                times[method] = row['seconds']
                cells.append(f"{row['seconds']:.2f} s / "
                             f"{row['peak_gb']:.2f} GB")
        others = [t for m, t in times.items() if m != 'pyg-sm']
        ratio = f"{min(others) / times['pyg-sm']:.1f}x" \
            if others and 'pyg-sm' in times else '-'
        lines.append(f'| {n:,} | ' + ' | '.join(cells) + f' | {ratio} |')
    (RESULTS / 'transformer.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
