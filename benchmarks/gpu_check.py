"""The GPU check: one script to run the moment a GPU is at hand.

It prints one PASS/FAIL line per check (INFO for what it only reports) and
writes them, with their figures, to JSON; the timings also go to a markdown
table (docs/benchmarks/gpu.md on a GPU). In order:

1. versions and the device;
2. the device tests (``tests/devices.py``'s ``with_devices`` and
   ``only_cuda``: Sm against float64 on the CPU, autocast, determinism, a
   transformer step's memory, ``pyg-sm train --device`` alone and under
   ``torchrun``), run by pytest, whose cuda variants exist on a GPU;
3. timings: Sm forward + backward at 100k and 1M nodes, F=512, both modes,
   against the memory-bandwidth floor measured in the same run (the bytes
   the recursion must move divided by a device-to-device copy's rate), and
   SmABMIL / SmTransformerABMIL training steps at 16k and 100k patches
   against torchmil 1.0.2 (from ``.torchmil/``, when present).

    python benchmarks/gpu_check.py                      # cuda, < 8 minutes
    python benchmarks/gpu_check.py --device cpu --tiny --timings-only
                                                        # seconds; the tests
"""
import argparse
import contextlib
import json
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TORCHMIL = ROOT / '.torchmil'
#: Problem sizes: the GPU's, and --tiny's (seconds on a CPU).
SIZES = {
    False: dict(compare_nodes=20_000, compare_dim=64, blocked_nodes=70_000,
                blocked_dim=64, autocast_nodes=5_000, transformer_nodes=20_000,
                train_slides=24, sm_nodes=(100_000, 1_000_000), sm_dim=512,
                model_nodes=(16_384, 100_000), feature_dim=512, repeats=5),
    True: dict(compare_nodes=400, compare_dim=8, blocked_nodes=700,
               blocked_dim=8, autocast_nodes=5_000, transformer_nodes=1_500,
               train_slides=8, sm_nodes=(4_096, ), sm_dim=16,
               model_nodes=(1_024, ), feature_dim=16, repeats=1),
}
ALPHA, STEPS = 0.5, 10


class Checks:
    r"""Runs the checks in order, printing a line for each."""
    def __init__(self):
        self.results = []

    def run(self, name, function, *args):
        began = time.perf_counter()
        try:
            status, detail, figures = function(*args)
        except Exception as error:  # a failing check must not stop the rest
            status, detail = 'FAIL', f'{type(error).__name__}: {error}'
            figures = {'traceback': traceback.format_exc()}
        seconds = time.perf_counter() - began
        self.results.append({'check': name, 'status': status,
                             'detail': detail, 'seconds': seconds,
                             **figures})
        print(f'{status:4}  {name}: {detail} ({seconds:.1f} s)', flush=True)

    @property
    def failed(self):
        return [r['check'] for r in self.results if r['status'] == 'FAIL']


def verdict(ok):
    return 'PASS' if ok else 'FAIL'


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(function, device, repeats):
    r"""Median seconds of :obj:`repeats` calls after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        began = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def grid_graph(num_nodes):
    from torch_geometric.utils import grid, remove_self_loops
    side = max(2, int(round(num_nodes**0.5)))
    edge_index, _ = remove_self_loops(grid(side, side)[0])
    return edge_index, side * side


def relative(actual, expected):
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    return float((actual - expected).norm() /
                 expected.norm().clamp_min(1e-30))


def reset_peak(device):
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


# 1 -------------------------------------------------------------------------
def check_versions(device):
    import torch_geometric

    import pyg_sm
    figures = {'torch': torch.__version__,
               'torch_geometric': torch_geometric.__version__,
               'pyg_sm': pyg_sm.__version__,
               'python': platform.python_version(),
               'cuda': torch.version.cuda, 'device': str(device)}
    if device.type == 'cuda':
        properties = torch.cuda.get_device_properties(device)
        figures.update(gpu=properties.name,
                       gpu_memory_gb=properties.total_memory / 2**30,
                       capability='.'.join(map(str, torch.cuda.
                                               get_device_capability(device))))
        where = f"{properties.name}, CUDA {torch.version.cuda}"
    else:
        where = f'{platform.processor() or platform.machine()} CPU'
    return 'PASS', (f"torch {torch.__version__}, PyG "
                    f"{torch_geometric.__version__}, {where}"), figures


# 2 -------------------------------------------------------------------------
#: The tests parametrised by device (tests/devices.py): on a GPU they run
#: on it as well as on the CPU, with the GPU-only ones.
DEVICE_TESTS = ('tests/nn/test_sm_on_devices.py',
                'tests/train/test_training_on_devices.py',
                'tests/models/test_gpu_readiness.py',
                'tests/models/test_prob_smooth_on_devices.py')


def check_device_tests(device, sizes):
    r"""The correctness checks: pytest on the device tests; a GPU run
    includes their ``cuda`` variants."""
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
               *DEVICE_TESTS]
    done = subprocess.run(command, capture_output=True, text=True,
                          cwd=ROOT, timeout=1200)
    summary = (done.stdout.strip().splitlines() or [''])[-1]
    ran_on_gpu = device.type == 'cuda' and '[cuda' in done.stdout + \
        subprocess.run([*command, '--co', '-q'], capture_output=True,
                       text=True, cwd=ROOT).stdout
    ok = done.returncode == 0 and (device.type != 'cuda' or ran_on_gpu)
    return verdict(ok), summary, {'returncode': done.returncode,
                                  'output_tail': done.stdout[-4000:]}


# 8 -------------------------------------------------------------------------
def copy_rate(device):
    r"""Bytes per second a device-to-device copy moves (read + write)."""
    source = torch.empty(2**26 if device.type == 'cuda' else 2**22,
                         device=device)
    target = torch.empty_like(source)
    seconds = timed(lambda: target.copy_(source), device, 5)
    return 2 * source.numel() * 4 / seconds


def sm_floor_bytes(nodes, edges, dim):
    r"""What T steps forward and T back must move at least, in float32:
    per step, the previous iterate read and the new one written, U (or the
    gradient) read, and the CSR's int32 indices and float32 values."""
    return 2 * STEPS * (3 * nodes * dim * 4 + 8 * edges)


def time_sm(device, sizes, rate):
    from pyg_sm import Sm
    rows = []
    for nodes in sizes['sm_nodes']:
        edge_index, nodes = grid_graph(nodes)
        edge_index = edge_index.to(device)
        x = torch.randn(nodes, sizes['sm_dim'], device=device,
                        requires_grad=True)
        upstream = torch.randn_like(x)
        floor = sm_floor_bytes(nodes, edge_index.size(1), sizes['sm_dim']) \
            / rate
        for mode in ('approx', 'exact'):
            # The exact mode's work depends on its iteration count: its
            # floor is not a fixed number of passes.
            layer = Sm(ALPHA, num_steps=STEPS, mode=mode)

            def step():
                x.grad = None
                layer(x, edge_index).backward(upstream)
            reset_peak(device)
            seconds = timed(step, device, sizes['repeats'])
            approx = mode == 'approx'
            rows.append({'case': f'Sm {mode} fwd+bwd', 'nodes': nodes,
                         'dim': sizes['sm_dim'], 'seconds': seconds,
                         'floor_seconds': floor if approx else None,
                         'ratio_to_floor': seconds / floor if approx
                         else None, 'peak_gb': peak_gb(device)})
    return rows


@contextlib.contextmanager
def torchmil_on_path():
    r"""torchmil 1.0.2 importable, as ``make`` installs it, and forgotten
    after (0.1.0 has the same package name)."""
    paths = [str(TORCHMIL / '1.0.2'), str(TORCHMIL / 'deps')]
    sys.path[:0] = paths
    try:
        yield
    finally:
        for path in paths:
            sys.path.remove(path)
        for name in [m for m in sys.modules
                     if m == 'torchmil' or m.startswith('torchmil.')]:
            del sys.modules[name]


def model_step(library, model_name, nodes, dim, device):
    r"""One training step of :obj:`model_name` from :obj:`library` on one
    bag of :obj:`nodes` patches: returns the step function."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    edge_index, nodes = grid_graph(nodes)
    x = torch.randn(nodes, dim, device=device)
    y = torch.ones(1, device=device)
    if library == 'pyg-sm':
        import pyg_sm
        model = getattr(pyg_sm, model_name)((dim, )).to(device)
        edges = edge_index.to(device)

        def loss():
            return sum(model.compute_loss(y, x, edges)[1].values())
    else:
        import torchmil.models
        model = getattr(torchmil.models, model_name)((dim, )).to(device)
        index, weight = gcn_norm(edge_index, None, nodes,
                                 add_self_loops=False)
        # torchmil's adj[i, j] weighs j -> i, as pyg-sm's A; sparse COO (a
        # dense (1, N, N) matrix would not fit at 100k patches).
        adj = torch.sparse_coo_tensor(
            torch.stack([torch.zeros_like(index[0]), index[1], index[0]]),
            weight, (1, nodes, nodes)).coalesce().to(device)
        inputs = x.unsqueeze(0)

        def loss():
            return sum(model.compute_loss(y, inputs, adj)[1].values())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    return step, nodes


def time_models(device, sizes):
    rows = []
    have_torchmil = (TORCHMIL / '1.0.2').is_dir()
    for model_name in ('SmABMIL', 'SmTransformerABMIL'):
        for nodes in sizes['model_nodes']:
            row = {'case': f'{model_name} training step', 'nodes': nodes}
            for library in ('pyg-sm', 'torchmil 1.0.2'):
                if library != 'pyg-sm' and not have_torchmil:
                    row[library] = 'not installed'
                    continue
                context = torchmil_on_path() if library != 'pyg-sm' \
                    else contextlib.nullcontext()
                try:
                    with context:
                        step, row['nodes'] = model_step(
                            library, model_name, nodes,
                            sizes['feature_dim'], device)
                        reset_peak(device)
                        row[library] = timed(step, device, sizes['repeats'])
                        row[f'{library} peak_gb'] = peak_gb(device)
                except Exception as error:  # reported, e.g. out of memory
                    row[library] = f'{type(error).__name__}: ' \
                                   f'{str(error).splitlines()[0][:80]}'
                del step
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
            rows.append(row)
    return rows


def check_timings(device, sizes, markdown):
    rate = copy_rate(device)
    sm_rows = time_sm(device, sizes, rate)
    model_rows = time_models(device, sizes)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(timings_markdown(device, rate, sm_rows, model_rows))
    approx = [r['ratio_to_floor'] for r in sm_rows if 'approx' in r['case']]
    detail = (f"copy {rate / 1e9:.0f} GB/s; Sm approx fwd+bwd at "
              f"{', '.join(f'{r:.1f}x' for r in approx)} the bandwidth floor "
              f"(target: within 3x); table in {markdown}")
    return 'INFO', detail, {'copy_bytes_per_second': rate, 'sm': sm_rows,
                            'models': model_rows}


def seconds_text(value):
    if value is None or isinstance(value, str):
        return value or '-'
    if value < 0.01:
        return f'{value * 1000:.2f} ms'
    return f'{value:.3f} s' if value < 10 else f'{value:.1f} s'


def timings_markdown(device, rate, sm_rows, model_rows):
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' \
        else f'{platform.machine()} CPU'
    lines = [f'# GPU check timings ({name}, torch {torch.__version__})', '',
             f'Device-to-device copy: {rate / 1e9:.0f} GB/s (read + write).',
             '', '| case | nodes | F | time | bandwidth floor | ratio | '
                 'peak memory |', '|---|---|---|---|---|---|---|']
    for r in sm_rows:
        peak = '-' if r['peak_gb'] is None else f"{r['peak_gb']:.2f} GB"
        lines.append(f"| {r['case']} | {r['nodes']:,} | {r['dim']} | "
                     f"{seconds_text(r['seconds'])} | "
                     f"{seconds_text(r['floor_seconds'])} | " +
                     ('-' if r['ratio_to_floor'] is None
                        else f"{r['ratio_to_floor']:.1f}x") + f" | {peak} |")
    lines += ['', '| model step | patches | pyg-sm | torchmil 1.0.2 '
                  '(sparse adj) | torchmil / pyg-sm |',
              '|---|---|---|---|---|']
    for r in model_rows:
        ours, theirs = r['pyg-sm'], r['torchmil 1.0.2']
        ratio = f'{theirs / ours:.1f}x' if not isinstance(ours, str) and \
            not isinstance(theirs, str) else '-'
        lines.append(f"| {r['case']} | {r['nodes']:,} | {seconds_text(ours)} "
                     f"| {seconds_text(theirs)} | {ratio} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda',
                        help='the device to check (default: cuda)')
    parser.add_argument('--tiny', action='store_true',
                        help='small sizes: the same timings in seconds')
    parser.add_argument('--timings-only', action='store_true',
                        help='leave out the device tests (pytest)')
    parser.add_argument('--json', type=Path,
                        default=HERE / 'results' / 'gpu_check.json',
                        help='where the results go (default: '
                             'benchmarks/results/gpu_check.json)')
    parser.add_argument('--markdown', type=Path, default=None,
                        help='where the timings table goes (default: '
                             'docs/benchmarks/gpu.md on a GPU, next to '
                             '--json otherwise)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: CUDA is not available here')
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', torch.cuda.current_device())
    markdown = args.markdown or (
        ROOT / 'docs' / 'benchmarks' / 'gpu.md'
        if device.type == 'cuda' and not args.tiny
        else args.json.with_suffix('.md'))
    sizes = SIZES[args.tiny]
    checks = Checks()
    checks.run('1 versions', check_versions, device)
    if not args.timings_only:
        checks.run('2 device tests', check_device_tests, device, sizes)
    checks.run('3 timings', check_timings, device, sizes, markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({'device': str(device),
                                     'tiny': args.tiny,
                                     'checks': checks.results}, indent=1,
                                    default=str))
    failed = checks.failed
    print(f"\n{len(checks.results) - len(failed)} of {len(checks.results)} "
          f"checks passed or reported" + (f"; failed: {', '.join(failed)}"
                                          if failed else '') +
          f'\nresults: {args.json}\ntimings: {markdown}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
