"""Tests parametrised by device, as PyG's ``withDevice`` / ``onlyCUDA``
decorators do it: ``@with_devices`` runs a test on the CPU and, where CUDA
is available, on the GPU; ``@only_cuda`` marks a test for the GPU alone
(conftest deselects it without CUDA). ``benchmarks/gpu_check.py`` runs
them on a GPU."""
import pytest
import torch

CUDA = torch.cuda.is_available()
#: The devices of this machine.
DEVICES = ['cpu'] + (['cuda'] if CUDA else [])

with_devices = pytest.mark.parametrize(
    'device', [pytest.param(torch.device(name), id=name,
                            marks=[pytest.mark.cuda] if name == 'cuda'
                            else []) for name in DEVICES])
only_cuda = pytest.mark.cuda


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def relative(actual, expected) -> float:
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    return float((actual - expected).norm() /
                 expected.norm().clamp_min(1e-30))


def grid_graph(num_nodes: int):
    from torch_geometric.utils import grid, remove_self_loops

    side = max(2, int(round(num_nodes ** 0.5)))
    edge_index, _ = remove_self_loops(grid(side, side)[0])
    return edge_index, side * side


def sized(device: torch.device, cpu: int, cuda: int) -> int:
    r"""A problem size: small on the CPU (seconds), larger on a GPU."""
    return cuda if device.type == 'cuda' else cpu
