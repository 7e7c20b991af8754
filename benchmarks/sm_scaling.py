"""Time and peak memory of Sm forward + backward on 8-neighbour grid "slide"
graphs, against the computations users would otherwise run, and of SmABMIL
in its graph and dense forms.

Each (method, size) runs in a fresh process, so that its peak memory is its
own, under a memory cap (--memory-gb) so that a case that does not fit fails
cleanly. Results go to benchmarks/results/ as CSV and markdown, plus log-log
plots when matplotlib is installed.

    python benchmarks/sm_scaling.py                       # the full tables
    python benchmarks/sm_scaling.py --nodes 4096 16384 --models none  # quick
"""
import argparse
import csv
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

METHODS = {
    'pyg-sm approx': 'Sm(mode="approx") on edge_index (this library)',
    'pyg-sm exact': 'Sm(mode="exact"), conjugate gradient (this library)',
    'spmm loop': 'g = (1-a) x + a (A_csr @ g) under autograd (the '
                 "reference's sparse path)",
    'appnp': "PyG APPNP on edge_index (gather/scatter)",
    'dense approx': 'the recursion with torch.bmm on the N x N matrix',
    'dense exact': 'torch.linalg.solve on the N x N matrix',
    'torchmil': "torchmil's Sm on the dense matrix (when installed)",
}
MODEL_CASES = {
    'graph': 'SmABMIL graph form, 32 bags x 5k nodes (PyG Batch)',
    'dense': 'SmABMIL dense form, 32 bags x 5k nodes, dense adj',
    'dense-coo': 'SmABMIL dense form, 32 bags x 5k nodes, sparse COO adj',
    'train-1m': 'SmABMIL training step, one 1M-node bag, sm_pre + '
                'sm_layers=1 + sm_post, trainable alpha',
}
# Largest graph each dense method is tried on: 65k nodes need 17 GB for the
# matrix alone, and an N^3 solve past 8k nodes takes minutes on 2 cores.
DENSE_LIMIT = {'dense approx': 16384, 'dense exact': 8192, 'torchmil': 16384}
ALPHA = 0.5


def grid_graph(num_nodes: int):
    from torch_geometric.utils import grid, remove_self_loops
    side = int(round(num_nodes**0.5))
    edge_index, _ = grid(side, side)
    edge_index, _ = remove_self_loops(edge_index)
    return edge_index, side * side


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def build_step(method: str, num_nodes: int, dim: int, steps: int):
    """Returns a function running one forward + backward w.r.t. x."""
    from torch_geometric.nn import APPNP
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.utils import to_torch_csr_tensor

    from pyg_sm import Sm

    edge_index, num_nodes = grid_graph(num_nodes)
    x = torch.randn(num_nodes, dim, requires_grad=True)

    def normalized_csr():
        ei, w = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
        return to_torch_csr_tensor(ei.flip(0), w, num_nodes)

    if method.startswith('pyg-sm'):
        layer = Sm(ALPHA, num_steps=steps, mode=method.split()[1])
        forward = lambda: layer(x, edge_index)  # noqa: E731
    elif method == 'spmm loop':
        adj = normalized_csr()

        def forward():
            g = x
            for _ in range(steps):
                g = (1 - ALPHA) * x + ALPHA * (adj @ g)
            return g
    elif method == 'torchmil':
        from torchmil.nn import Sm as TorchmilSm
        adj = normalized_csr().to_dense()[None]
        layer = TorchmilSm(alpha=ALPHA, num_steps=steps, mode='approx')
        forward = lambda: layer(x[None], adj)[0]  # noqa: E731
    elif method == 'appnp':
        layer = APPNP(K=steps, alpha=1 - ALPHA, add_self_loops=False)
        forward = lambda: layer(x, edge_index)  # noqa: E731
    else:
        adj = normalized_csr().to_dense()
        if method == 'dense approx':

            def forward():
                g = x
                for _ in range(steps):
                    g = (1 - ALPHA) * x + ALPHA * torch.bmm(
                        adj[None], g[None])[0]
                return g
        else:
            gamma = ALPHA / (1 - ALPHA)
            system = (1 + gamma) * torch.eye(num_nodes) - gamma * adj
            del adj
            forward = lambda: torch.linalg.solve(system, x)  # noqa: E731

    # The upstream gradient is an input of the backward pass, as x is of the
    # forward pass: both exist before the measured step.
    upstream = torch.randn(num_nodes, dim)

    def step():
        x.grad = None
        forward().backward(upstream)

    return step


def build_model_step(case: str, dim: int, steps: int):
    """One forward + backward (a training step for train-1m) of SmABMIL."""
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    from pyg_sm import SmABMIL, batch_to_dense

    bags, nodes = (1, 2**20) if case == 'train-1m' else (32, 5000)
    data_list = []
    for _ in range(bags):
        edge_index, num_nodes = grid_graph(nodes)
        data_list.append(Data(x=torch.randn(num_nodes, dim),
                              edge_index=edge_index,
                              y=torch.randint(0, 2, (1, )).float()))
    batch = Batch.from_data_list(data_list)
    if case == 'graph' or case == 'train-1m':
        inputs = (batch, )
    else:
        # The dense form takes A itself: normalize once, as a user would.
        batch.edge_index, batch.edge_weight = gcn_norm(
            batch.edge_index, None, batch.num_nodes, add_self_loops=False)
        inputs = batch_to_dense(batch, sparse=case == 'dense-coo')
    # The dense form never normalizes adj; the graph form normalizes W.
    model = SmABMIL((dim, ), sm_pre=True, sm_layers=1, sm_post=True,
                    sm_steps=steps, normalize=case in ('graph', 'train-1m'))
    del data_list
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad()
        _, losses = model.compute_loss(batch.y, *inputs)
        losses['BCEWithLogitsLoss'].backward()
        if case == 'train-1m':
            optimizer.step()

    return step


def worker(method, num_nodes, dim, steps, repeats, budget_s):
    torch.manual_seed(0)
    if method in MODEL_CASES:
        step = build_model_step(method, dim, steps)
    else:
        step = build_step(method, num_nodes, dim, steps)
    rss_before = current_rss_mb()
    times = []
    while len(times) < repeats:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    print(json.dumps({
        'median_s': statistics.median(times),
        'runs': len(times),
        'peak_mb': peak_rss_mb() - rss_before,
    }))


def run_case(method, num_nodes, args):
    if num_nodes > DENSE_LIMIT.get(method, float('inf')):
        too_slow = method == 'dense exact' and num_nodes <= 16384
        return {'status': 'skipped: N^3 solve' if too_slow
                else 'does not fit'}
    command = [sys.executable, __file__, '--worker', method,
               '--nodes', str(num_nodes), '--dim', str(args.dim),
               '--steps', str(args.steps), '--repeats', str(args.repeats),
               '--budget', str(args.budget),
               '--memory-gb', str(args.memory_gb)]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {'status': f'over {args.timeout} s'}
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ['killed'])[-1]
        out_of_memory = done.returncode in (-9, 137) or any(
            word in error for word in ('memory', 'MemoryError', 'alloc'))
        return {'status': f'over {args.memory_gb:g} GB' if out_of_memory
                else error[:80]}
    return {'status': 'ok', **json.loads(done.stdout.strip().splitlines()[-1])}


def write_outputs(rows, args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fields = ['method', 'nodes', 'status', 'median_s', 'peak_mb', 'runs']
    with open(out / 'sm_scaling.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)

    machine = (f'{platform.processor() or platform.machine()}, '
               f'{os.cpu_count()} cores, torch {torch.__version__}, '
               f'{torch.get_num_threads()} threads')
    sizes = sorted({r['nodes'] for r in rows})
    lines = [f'Sm forward + backward, 8-neighbour grid, D={args.dim}, '
             f'T={args.steps}, alpha={ALPHA}; median seconds / peak MB above '
             f'the inputs ({machine}).', '',
             '| method | ' + ' | '.join(f'{n:,} nodes' for n in sizes) + ' |',
             '|---|' + '---|' * len(sizes)]
    for method in dict.fromkeys(r['method'] for r in rows):
        cells = []
        for n in sizes:
            r = next(r for r in rows if r['method'] == method and
                     r['nodes'] == n)
            cells.append(f"{r['median_s']:.3g} s / {r['peak_mb']:,.0f} MB"
                         if r['status'] == 'ok' else r['status'])
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Time ratios (method / pyg-sm approx):', '',
              '| method | ' + ' | '.join(f'{n:,}' for n in sizes) + ' |',
              '|---|' + '---|' * len(sizes)]
    base = {r['nodes']: r for r in rows if r['method'] == 'pyg-sm approx'}
    for method in dict.fromkeys(r['method'] for r in rows):
        cells = []
        for n in sizes:
            r = next(r for r in rows if r['method'] == method and
                     r['nodes'] == n)
            ok = r['status'] == 'ok' and base.get(n, {}).get('status') == 'ok'
            cells.append(f"{r['median_s'] / base[n]['median_s']:.2f}x"
                         if ok else '-')
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    (out / 'sm_scaling.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib not installed: no plots')
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in dict.fromkeys(r['method'] for r in rows):
        done = [r for r in rows if r['method'] == method and
                r['status'] == 'ok']
        if not done:
            continue
        nodes = [r['nodes'] for r in done]
        axes[0].plot(nodes, [r['median_s'] for r in done], 'o-', label=method)
        axes[1].plot(nodes, [max(r['peak_mb'], 1) for r in done], 'o-',
                     label=method)
    for ax, label in zip(axes, ['median time (s)', 'peak memory (MB)']):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('nodes')
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f'Sm forward + backward, D={args.dim}, T={args.steps} '
                 f'({machine})', fontsize=9)
    fig.tight_layout()
    fig.savefig(out / 'sm_scaling.png', dpi=110)


def write_table(out, stem, rows, label_fields, caption, label):
    """rows -> stem.csv and a markdown table stem.md of label + time and
    peak memory."""
    with open(out / f'{stem}.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=label_fields + [
            'status', 'median_s', 'peak_mb', 'runs'], extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    lines = [caption, '',
             '| ' + ' | '.join(label_fields + ['time', 'peak memory']) + ' |',
             '|---' * (len(label_fields) + 2) + '|']
    for r in rows:
        cells = ([f"{r['median_s']:.3g} s", f"{r['peak_mb']:,.0f} MB"]
                 if r['status'] == 'ok' else [r['status'], '-'])
        lines.append('| ' + ' | '.join(label(r) + cells) + ' |')
    (out / f'{stem}.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


def write_steps_outputs(rows, num_nodes, args):
    write_table(Path(args.out), 'memory_vs_steps', rows, ['method', 'steps'],
                f'Peak memory of forward + backward vs num_steps T, '
                f'{num_nodes:,} nodes, D={args.dim}.',
                lambda r: [r['method'], str(r['steps'])])


def write_model_outputs(rows, args):
    write_table(Path(args.out), 'smabmil', rows, ['case'],
                f'SmABMIL (D={args.dim}, att_dim=128, sm_pre, sm_layers=1, '
                f'sm_post, T={args.steps}), forward + backward; median '
                f'seconds, peak MB above the inputs.',
                lambda r: [MODEL_CASES[r['case']]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, nargs='+',
                        default=[4096, 16384, 65536, 262144])
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument('--dim', type=int, default=256)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--budget', type=float, default=60.0,
                        help='stop repeating a case after this many seconds')
    parser.add_argument('--timeout', type=int, default=900)
    parser.add_argument('--memory-gb', type=float, default=20.0,
                        help='address-space cap of each case')
    parser.add_argument('--models', nargs='+', default=list(MODEL_CASES),
                        choices=list(MODEL_CASES) + ['none'])
    parser.add_argument('--memory-steps', type=int, nargs='*',
                        default=[10, 50],
                        help='T values of the memory-vs-steps table, run at '
                             'the largest size up to 262,144 nodes')
    parser.add_argument('--out', default=str(Path(__file__).parent /
                                             'results'))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        limit = int(args.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        worker(args.worker, args.nodes[0], args.dim, args.steps,
               args.repeats, args.budget)
        return
    if 'torchmil' in args.methods and \
            importlib.util.find_spec('torchmil') is None:
        args.methods.remove('torchmil')
    rows = []
    for num_nodes in args.nodes:
        for method in args.methods:
            result = run_case(method, num_nodes, args)
            rows.append({'method': method, 'nodes': num_nodes, **result})
            print(f'{method:>14} {num_nodes:>8}: {result}', flush=True)
    write_outputs(rows, args)
    sizes = [n for n in args.nodes if n <= 262144]
    if args.memory_steps and sizes:
        steps_rows = []
        for steps in args.memory_steps:
            for method in ['pyg-sm approx', 'spmm loop']:
                result = run_case(method, max(sizes),
                                  argparse.Namespace(**{**vars(args),
                                                        'steps': steps}))
                steps_rows.append({'method': method, 'steps': steps,
                                   **result})
                print(f'{method:>14} T={steps}: {result}', flush=True)
        write_steps_outputs(steps_rows, max(sizes), args)
    model_rows = []
    for case in [c for c in args.models if c != 'none']:
        result = run_case(case, 0, args)
        model_rows.append({'case': case, **result})
        print(f'{case:>14}: {result}', flush=True)
    if model_rows:
        write_model_outputs(model_rows, args)


if __name__ == '__main__':
    main()
