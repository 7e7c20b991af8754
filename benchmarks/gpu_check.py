"""The GPU check: one script to run the moment a GPU is at hand.

It prints one PASS/FAIL line per check (INFO for what it only reports) and
writes them, with their figures, to JSON; the timings also go to a markdown
table (docs/benchmarks/gpu.md on a GPU). In order:

1. versions and the device;
2. torch's raw CSR ``addmm`` (beta=0) into a NaN-filled ``out``, with
   unsorted rows and duplicate edges, against dense (INFO: what cuSPARSE
   does with what torch's CSR contract forbids), then pyg-sm's product on
   the same edges;
3. Sm on the device against float64 on the CPU: approx and exact, fused
   and scatter, a batch of graphs, the column-blocked path (N=70k), and
   gradcheck in float64;
4. bitwise identical training runs with deterministic algorithms on;
5. fp16/bf16 autocast on a 5,000-patch bag: float32 attention weights that
   sum to 1, logits within 5% of float32;
6. a SmTransformerABMIL training step with dropout (att_dim 100 / 4 heads,
   float32 and float64), with its peak memory;
7. ``pyg-sm train`` for 2 epochs on synthetic demo data with ``--device``,
   and under ``torchrun --nproc-per-node 1``;
8. timings: Sm forward + backward at 100k and 1M nodes, F=512, both modes,
   against the memory-bandwidth floor measured in the same run (the bytes
   the recursion must move divided by a device-to-device copy's rate), and
   SmABMIL / SmTransformerABMIL training steps at 16k and 100k patches
   against torchmil 1.0.2 (from ``.torchmil/``, when present).

    python benchmarks/gpu_check.py                      # cuda, < 8 minutes
    python benchmarks/gpu_check.py --device cpu --tiny  # seconds; the tests
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
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
def check_csr_addmm(device, sizes):
    from pyg_sm import Sm
    from pyg_sm.data import prepare_adjacency
    from pyg_sm.nn.sm import _Propagation

    gen = torch.Generator().manual_seed(0)
    n, dim = 2_000, 16
    source = torch.randint(n, (8 * n, ), generator=gen)
    target = torch.randint(n, (8 * n, ), generator=gen)
    weight = torch.rand(8 * n, generator=gen)
    x = torch.randn(n, dim, generator=gen)
    dense = torch.zeros(n, n).index_put_((target, source), weight,
                                         accumulate=True)
    expected = dense @ x
    # torch's CSR contract forbids this: rows of unsorted, repeated columns.
    order = torch.argsort(target, stable=True)
    crow = torch._convert_indices_from_coo_to_csr(target[order], n)
    with warnings_off():
        raw = torch.sparse_csr_tensor(crow, source[order], weight[order],
                                      (n, n)).to(device)
    out = torch.full((n, dim), float('nan'), device=device)
    torch.addmm(out, raw, x.to(device), beta=0.0, out=out)
    raw_error = relative(out, expected)
    raw_nan = bool(out.isnan().any())
    # pyg-sm: coalesced CSR, the buffer zeroed on a GPU.
    edge_index = torch.stack([source, target]).to(device)
    adjacency = prepare_adjacency(edge_index, weight.to(device), n, False,
                                  torch.float32)
    propagation = _Propagation(Sm(0.5, normalize=False), adjacency.edge_index,
                               adjacency.edge_weight)
    ours = {}
    for transpose in (False, True):
        buffer = torch.full((n, dim), float('nan'), device=device)
        propagation.matmul(x.to(device), transpose=transpose, out=buffer)
        ours[transpose] = relative(buffer, (dense.T if transpose else dense)
                                   @ x)
    ok = max(ours.values()) < 1e-5
    return verdict(ok), (
        f"pyg-sm A x and A^T x into NaN buffers: rel. error "
        f"{ours[False]:.1e} / {ours[True]:.1e}; raw torch CSR (unsorted, "
        f"duplicates): rel. error {raw_error:.1e}, NaN in out: {raw_nan}"), {
            'raw_relative_error': raw_error, 'raw_nan': raw_nan,
            'pyg_sm_relative_error': ours[False],
            'pyg_sm_transposed_relative_error': ours[True]}


@contextlib.contextmanager
def warnings_off():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


# 3 -------------------------------------------------------------------------
def check_sm_against_cpu(device, sizes):
    from torch_geometric.data import Batch, Data

    from pyg_sm import Sm

    n, dim = sizes['compare_nodes'], sizes['compare_dim']
    edge_index, n = grid_graph(n)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    grad = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    errors = {}
    for mode in ('approx', 'exact'):
        reference = x.clone().requires_grad_()
        expected = Sm(ALPHA, mode=mode)(reference, edge_index)
        expected_grad, = torch.autograd.grad(expected, reference, grad)
        for fused in (True, False):
            inputs = x.float().to(device).requires_grad_()
            out = Sm(ALPHA, mode=mode, fused=fused)(inputs,
                                                    edge_index.to(device))
            out_grad, = torch.autograd.grad(out, inputs,
                                            grad.float().to(device))
            key = f"{mode} {'fused' if fused else 'scatter'}"
            errors[key] = max(relative(out, expected),
                              relative(out_grad, expected_grad))
    # A batch of three graphs of different sizes, exact mode (one stopping
    # test per graph) and approx, against each graph alone.
    graphs = []
    for size in (n // 4, n // 9, 64):
        edges, size = grid_graph(size)
        graphs.append(Data(x=torch.randn(size, dim, generator=gen,
                                         dtype=torch.float64),
                           edge_index=edges))
    batch = Batch.from_data_list(graphs).to(device)
    for mode in ('approx', 'exact'):
        layer = Sm(ALPHA, mode=mode)
        out = layer(batch.x.float(), batch.edge_index, batch=batch.batch)
        alone = torch.cat([layer(g.x, g.edge_index) for g in graphs])
        errors[f'{mode} batched'] = relative(out, alone)
    # The column-blocked path, forced, against one block.
    import pyg_sm.nn._autograd as blocks
    edge_index, m = grid_graph(sizes['blocked_nodes'])
    wide = torch.randn(m, sizes['blocked_dim'], device=device)
    for mode in ('approx', 'exact'):
        layer = Sm(ALPHA, mode=mode)
        inputs = wide.clone().requires_grad_()
        whole = layer(inputs, edge_index.to(device))
        whole_grad, = torch.autograd.grad(whole.sum(), inputs)
        saved = dict(blocks._BLOCKING)
        blocks._BLOCKING[device.type] = (0, 16)
        try:
            inputs = wide.clone().requires_grad_()
            split = layer(inputs, edge_index.to(device))
            split_grad, = torch.autograd.grad(split.sum(), inputs)
        finally:
            blocks._BLOCKING.clear()
            blocks._BLOCKING.update(saved)
        errors[f'{mode} blocked N={m}'] = max(relative(split, whole),
                                              relative(split_grad, whole_grad))
    # gradcheck in float64 on the device: x, alpha and the edge weights.
    small, count = grid_graph(25)
    small = small.to(device)
    gradchecks = {}
    for mode in ('approx', 'exact'):
        layer = Sm('trainable', mode=mode, num_steps=4, tol=1e-12).to(device)
        weights = torch.rand(small.size(1), dtype=torch.float64,
                             device=device) + 0.5
        inputs = torch.randn(count, 2, dtype=torch.float64, device=device,
                             requires_grad=True)
        gradchecks[mode] = torch.autograd.gradcheck(
            lambda u, w: layer(u, small, w), (inputs,
                                              weights.requires_grad_()))
    worst = max(errors.values())
    gradcheck = all(gradchecks.values())
    ok = worst < 1e-4 and gradcheck
    return verdict(ok), (f'largest relative error {worst:.1e} over '
                         f'{len(errors)} cases; gradcheck '
                         f'{"passed" if gradcheck else "failed"}'), {
                             'relative_errors': errors,
                             'gradcheck': gradchecks}


# 4 -------------------------------------------------------------------------
def bags(count, nodes, dim, seed):
    from torch_geometric.data import Data
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        edge_index, n = grid_graph(nodes + 7 * i)
        out.append(Data(x=torch.randn(n, dim, generator=gen),
                        edge_index=edge_index, slide_id=f's{i}',
                        y=torch.tensor([float(i % 2)])))
    return out


def check_determinism(device, sizes):
    from pyg_sm import SmTransformerABMIL
    from pyg_sm.train import deterministic_algorithms, fit

    data = bags(6, 300, 16, seed=2)
    states = []
    with deterministic_algorithms():
        for _ in range(2):
            torch.manual_seed(0)
            model = SmTransformerABMIL(
                (16, ), transf_att_dim=16, transf_n_layers=1,
                transf_n_heads=2, transf_dropout=0.1, pool_sm_layers=1,
                pool_sm_post=True).to(device)
            fit(model, data, epochs=2, batch_size=2, log=lambda _: None)
            states.append({k: v.cpu() for k, v in model.state_dict().items()})
    differing = [k for k in states[0]
                 if not torch.equal(states[0][k], states[1][k])]
    return verdict(not differing), (
        'two runs bitwise identical' if not differing else
        f'{len(differing)} tensors differ, e.g. {differing[0]}'), {
            'differing': differing}


# 5 -------------------------------------------------------------------------
def check_autocast(device, sizes):
    import pyg_sm.nn.attention_pool as pool_module
    from torch_geometric.data import Data

    from pyg_sm import SmABMIL

    edge_index, n = grid_graph(sizes['autocast_nodes'])
    gen = torch.Generator().manual_seed(3)
    data = Data(x=torch.randn(n, 32, generator=gen) * 3,
                edge_index=edge_index).to(device)
    torch.manual_seed(0)
    model = SmABMIL((32, ), sm_layers=1, sm_post=True).to(device).eval()
    weights = []
    softmax = pool_module.softmax

    def recording(*args, **kwargs):
        weights.append(softmax(*args, **kwargs))
        return weights[-1]

    dtypes = [torch.float16, torch.bfloat16] if device.type == 'cuda' \
        else [torch.bfloat16]
    figures, ok = {}, True
    pool_module.softmax = recording
    try:
        with torch.no_grad():
            expected = model(data)
            for dtype in dtypes:
                with torch.autocast(device.type, dtype=dtype):
                    logits = model(data)
                weight = weights[-1]
                total = float(weight.double().sum())
                error = float((logits.float() - expected).abs().max() /
                              expected.abs().max())
                name = str(dtype).split('.')[-1]
                figures[name] = {'weight_dtype': str(weight.dtype),
                                 'weight_sum': total,
                                 'logit_relative_error': error}
                ok &= weight.dtype == torch.float32 and \
                    abs(total - 1) < 1e-5 and error <= 0.05
    finally:
        pool_module.softmax = softmax
    detail = '; '.join(f"{k}: weights {v['weight_dtype'].split('.')[-1]} sum "
                       f"to {v['weight_sum']:.7f}, logits within "
                       f"{100 * v['logit_relative_error']:.2f}%"
                       for k, v in figures.items())
    return verdict(ok), f'{n} patches, {detail}', figures


# 6 -------------------------------------------------------------------------
def check_transformer_step(device, sizes):
    from pyg_sm import SmTransformerABMIL

    edge_index, n = grid_graph(sizes['transformer_nodes'])
    figures, ok = {}, True
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        model = SmTransformerABMIL(
            (32, ), transf_att_dim=100, transf_n_heads=4, transf_n_layers=2,
            transf_add_self=False, transf_dropout=0.1)
        model = model.to(device=device, dtype=dtype).train()
        x = torch.randn(n, 32, device=device, dtype=dtype)
        y = torch.ones(1, device=device, dtype=dtype)
        edges = edge_index.to(device)
        optimizer = torch.optim.Adam(model.parameters())
        reset_peak(device)
        began = time.perf_counter()
        _, losses = model.compute_loss(y, x, edges)
        loss = sum(losses.values())
        loss.backward()
        optimizer.step()
        synchronize(device)
        seconds = time.perf_counter() - began
        peak = peak_gb(device)
        # The math kernel would hold (heads, n, n) per layer.
        quadratic = 4 * n * n * (8 if dtype == torch.float64 else 4) / 2**30
        name = str(dtype).split('.')[-1]
        figures[name] = {'seconds': seconds, 'peak_gb': peak,
                         'quadratic_gb': quadratic,
                         'finite': bool(torch.isfinite(loss))}
        ok &= bool(torch.isfinite(loss)) and (peak is None or
                                              peak < quadratic / 4)
    detail = '; '.join(
        f"{k}: {v['seconds']:.2f} s" + (
            f", peak {v['peak_gb']:.2f} GB (one (heads, n, n) matrix: "
            f"{v['quadratic_gb']:.1f} GB)" if v['peak_gb'] is not None
            else '') for k, v in figures.items())
    return verdict(ok), f'{n} patches, dropout 0.1, {detail}', figures


# 7 -------------------------------------------------------------------------
def check_cli_training(device_name, sizes, workdir):
    from pyg_sm import make_synthetic_slides

    data = make_synthetic_slides(workdir / 'data',
                                 num_slides=sizes['train_slides'],
                                 slide_images=False, seed=0)
    common = ['train', str(data), '--epochs', '2', '--heatmaps', '0',
              '--device', device_name]
    commands = {
        'pyg-sm train': [sys.executable, '-m', 'pyg_sm', *common, '--out',
                         str(workdir / 'run')],
        'torchrun --nproc-per-node 1': [
            sys.executable, '-m', 'torch.distributed.run',
            '--nproc-per-node', '1', '--master-port', str(29_500 + os.getpid()
                                                         % 1000),
            '-m', 'pyg_sm', *common, '--out', str(workdir / 'run-ddp')],
    }
    figures, ok = {}, True
    for name, command in commands.items():
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=300)
        out_dir = Path(command[command.index('--out') + 1])
        results = out_dir / 'results.json'
        status = json.loads(results.read_text()).get('status') \
            if results.is_file() else None
        figures[name] = {'returncode': done.returncode, 'status': status,
                         'seconds': time.perf_counter() - began,
                         'stderr_tail': done.stderr[-2000:]}
        ok &= done.returncode == 0 and status == 'finished'
    detail = '; '.join(f"{k}: exit {v['returncode']}, {v['status']}, "
                       f"{v['seconds']:.0f} s" for k, v in figures.items())
    return verdict(ok), detail, figures


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
                        help='small sizes: the same checks in seconds')
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
    with tempfile.TemporaryDirectory() as workdir:
        checks.run('1 versions', check_versions, device)
        checks.run('2 CSR addmm', check_csr_addmm, device, sizes)
        checks.run('3 Sm against the CPU', check_sm_against_cpu, device,
                   sizes)
        checks.run('4 determinism', check_determinism, device, sizes)
        checks.run('5 autocast', check_autocast, device, sizes)
        checks.run('6 transformer step', check_transformer_step, device,
                   sizes)
        checks.run('7 pyg-sm train', check_cli_training, args.device, sizes,
                   Path(workdir))
        checks.run('8 timings', check_timings, device, sizes, markdown)
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
