"""Training on every device (the checks that benchmarks/gpu_check.py once
ran itself): bitwise identical runs with deterministic algorithms, a
SmTransformerABMIL step with dropout in float32 and float64 (on a GPU
without the quadratic attention matrix), and ``pyg-sm train`` with
``--device``, alone and under ``torchrun``."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch_geometric.data import Data

from devices import grid_graph, sized, synchronize, with_devices
from pyg_sm import SmTransformerABMIL, make_synthetic_slides
from pyg_sm.train import FitSettings, deterministic_algorithms, fit


def _bags(count, nodes, dim, seed):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        edge_index, n = grid_graph(nodes + 7 * i)
        out.append(Data(x=torch.randn(n, dim, generator=gen),
                        edge_index=edge_index, slide_id=f's{i}',
                        y=torch.tensor([float(i % 2)])))
    return out


@with_devices
def test_deterministic_runs_are_bitwise_identical(device):
    data = _bags(6, 300, 16, seed=2)
    states = []
    with deterministic_algorithms():
        for _ in range(2):
            torch.manual_seed(0)
            model = SmTransformerABMIL(
                (16, ), transf_att_dim=16, transf_n_layers=1,
                transf_n_heads=2, transf_dropout=0.1, pool_sm_layers=1,
                pool_sm_post=True).to(device)
            fit(model, data, FitSettings(epochs=2, batch_size=2,
                                         monitor='last', validate_every=0,
                                         loggers=()), log=lambda _: None)
            states.append({k: v.cpu() for k, v in model.state_dict().items()})
    differing = [k for k in states[0]
                 if not torch.equal(states[0][k], states[1][k])]
    assert not differing


@with_devices
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_transformer_step_with_dropout(device, dtype):
    edge_index, n = grid_graph(sized(device, 1_500, 20_000))
    torch.manual_seed(0)
    model = SmTransformerABMIL(
        (32, ), transf_att_dim=100, transf_n_heads=4, transf_n_layers=2,
        transf_add_self=False, transf_dropout=0.1)
    model = model.to(device=device, dtype=dtype).train()
    x = torch.randn(n, 32, device=device, dtype=dtype)
    y = torch.ones(1, device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters())
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    _, losses = model.compute_loss(y, x, edge_index.to(device))
    loss = sum(losses.values())
    loss.backward()
    optimizer.step()
    synchronize(device)
    assert torch.isfinite(loss)
    if device.type == 'cuda':
        # The math kernel would hold a (heads, n, n) matrix per layer.
        quadratic = 4 * n * n * (8 if dtype == torch.float64 else 4)
        assert torch.cuda.max_memory_allocated(device) < quadratic / 4


@with_devices
@pytest.mark.parametrize('launcher', ['alone', 'torchrun'])
def test_pyg_sm_train_on_the_device(device, launcher, tmp_path):
    data = make_synthetic_slides(tmp_path / 'data', num_slides=8,
                                 slide_images=False, seed=0)
    out = tmp_path / 'run'
    command = [sys.executable, '-m', 'pyg_sm', 'train', str(data),
               '--epochs', '2', '--heatmaps', '0', '--device', device.type,
               '--out', str(out)]
    if launcher == 'torchrun':
        command[1:2] = ['-m', 'torch.distributed.run', '--nproc-per-node',
                        '1', '--master-port',
                        str(29_500 + os.getpid() % 1000), '-m']
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=600, env={**os.environ,
                                            'OMP_NUM_THREADS': '1'})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / 'results.json').read_text())
    assert results['status'] == 'finished'
    assert results['world_size'] == 1
