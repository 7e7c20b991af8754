r"""What the side-by-side benchmarks share: each case in a process of its
own (torchmil from ``.torchmil/1.0.2`` on its path), its peak memory from
Linux's ``VmHWM``, and the machine they ran on."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCHMIL = ROOT / '.torchmil'
#: Where each benchmark writes its table and rows.
RESULTS = ROOT / 'benchmarks' / 'results'
#: The side-by-side methods: pyg-sm, torchmil with a dense and with a
#: sparse adjacency.
METHODS = ('pyg-sm', 'torchmil dense', 'torchmil sparse')


def grid_shape(n: int):
    side = 1
    while side * side < n:
        side *= 2
    return (side, n // side) if n % side == 0 else (side, -(-n // side))


def peak_rss_reset():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets the peak RSS (VmHWM)


def peak_rss_gb() -> float:
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 2 ** 20
    return float('nan')


def rss_gb() -> float:
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 2 ** 20
    return float('nan')


def torchmil_adjacency(edge_index, n: int, dense: bool):
    r"""The normalized :math:`(1, N, N)` adjacency torchmil takes (dense,
    or sparse COO): ``adj[0, i, j]`` weighs the edge j -> i, as pyg-sm's
    :math:`\mathbf{A}`."""
    import torch
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    index, weight = gcn_norm(edge_index, None, n, add_self_loops=False)
    if dense:
        adj = torch.zeros(1, n, n)
        adj[0, index[1], index[0]] = weight
        return adj
    return torch.sparse_coo_tensor(
        torch.stack([torch.zeros_like(index[0]), index[1], index[0]]),
        weight, (1, n, n)).coalesce()


def run_case(script: str, method: str, n: int, extra=(),
             timeout: float = 900) -> dict:
    r"""``python script --case method n *extra`` in a process of its own
    (torchmil's methods with torchmil 1.0.2 on the path): the JSON row it
    prints last, or a row that says why it did not run."""
    env = dict(os.environ)
    if method.startswith('torchmil'):
        env['PYTHONPATH'] = os.pathsep.join(
            [str(TORCHMIL / '1.0.2'), str(TORCHMIL / 'deps')])
    try:
        done = subprocess.run(
            [sys.executable, script, '--case', method, str(n),
             *map(str, extra)], capture_output=True, text=True, env=env,
            timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'method': method, 'n': n, 'skipped': f'over {timeout:.0f} s'}
    if done.returncode != 0:
        return {'method': method, 'n': n,
                'skipped': done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    return (f'{platform.machine()}, {os.cpu_count()} cores, torch '
            f'{torch.__version__}')
