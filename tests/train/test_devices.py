"""The device rule under torchrun (torch.cuda patched: 0, 1 and 4 GPUs,
LOCAL_RANK 0 to 3), deterministic algorithms, and the GPUs' random states
in last.pt."""
import pytest
import torch

import ddp_helpers
from pyg_sm import PygSmError
from pyg_sm.train import (
    FitSettings,
    deterministic_algorithms,
    fit,
    resolve_device,
)


@pytest.fixture
def gpus(monkeypatch):
    """Sets how many GPUs torch.cuda reports."""
    for name in ('LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'CUDA_VISIBLE_DEVICES'):
        monkeypatch.delenv(name, raising=False)

    def set_count(count):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: count > 0)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
    return set_count


def launch(monkeypatch, rank, processes):
    monkeypatch.setenv('LOCAL_RANK', str(rank))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', str(processes))


@pytest.mark.parametrize('rank', range(4))
def test_cuda_is_this_process_local_gpu(gpus, monkeypatch, rank):
    gpus(4)
    launch(monkeypatch, rank, 4)
    assert resolve_device('cuda') == torch.device('cuda', rank)
    assert resolve_device(None) == torch.device('cuda', rank)
    assert resolve_device('cuda:2') == torch.device('cuda', 2)  # as given
    assert resolve_device('cpu') == torch.device('cpu')


@pytest.mark.parametrize('rank', range(4))
def test_one_visible_gpu_per_process(gpus, monkeypatch, rank):
    """A launcher that gives each process its own GPU through
    CUDA_VISIBLE_DEVICES: every process sees one, cuda:0."""
    gpus(1)
    launch(monkeypatch, rank, 4)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', str(rank))
    assert resolve_device('cuda') == torch.device('cuda', 0)
    assert resolve_device(None) == torch.device('cuda', 0)


def test_one_gpu_outside_torchrun(gpus):
    gpus(1)
    assert resolve_device('cuda') == torch.device('cuda', 0)
    with pytest.raises(PygSmError, match=r'--device cuda:1: 1 GPU\(s\) are '
                                         r'visible'):
        resolve_device('cuda:1')


@pytest.mark.parametrize('count, rank, processes', [
    (1, 1, 4),  # four processes share one GPU (NCCL cannot)
    (4, 3, 6),
    (4, 0, 6),  # every process of the run says so, not only the extra ones
])
def test_more_processes_than_gpus_names_both_counts(gpus, monkeypatch, count,
                                                     rank, processes):
    gpus(count)
    launch(monkeypatch, rank, processes)
    with pytest.raises(PygSmError, match=f'{processes} processes on this '
                                         f'machine but {count} visible'):
        resolve_device('cuda')


@pytest.mark.parametrize('name', ['cuda', 'cuda:0'])
def test_cuda_without_cuda(gpus, name):
    gpus(0)
    assert resolve_device(None) == torch.device('cpu')
    with pytest.raises(PygSmError, match=f'--device {name}: CUDA is not '
                                         f'available'):
        resolve_device(name)


def test_bad_device_name(gpus):
    gpus(0)
    with pytest.raises(PygSmError, match="--device 'gpu'"):
        resolve_device('gpu')


def test_deterministic_algorithms_are_set_and_restored(monkeypatch):
    monkeypatch.delenv('CUBLAS_WORKSPACE_CONFIG', raising=False)
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
        import os
        assert os.environ['CUBLAS_WORKSPACE_CONFIG'] == ':4096:8'
        # The library's CPU ops all have deterministic versions.
        model = ddp_helpers.fresh_model()
        fit(model, ddp_helpers.bags(), FitSettings(epochs=1, batch_size=2),
            val_set=ddp_helpers.bags()[:3], log=lambda _: None)
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(enabled=False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_last_pt_keeps_and_restores_the_gpus_random_states(monkeypatch,
                                                          tmp_path):
    """Dropout masks on a GPU draw from its generator: last.pt holds every
    GPU's state and a resumed run restores it (torch.cuda patched)."""
    states = [torch.arange(8, dtype=torch.uint8),
              torch.arange(8, 16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: states)
    monkeypatch.setattr(torch.cuda, 'set_rng_state_all', restored.extend)
    options = dict(run_dir=tmp_path, log=lambda _: None,
                   fingerprint={'a': 1})
    settings = FitSettings(epochs=1, batch_size=2, monitor='last',
                           validate_every=0, loggers=())
    fit(ddp_helpers.fresh_model(), ddp_helpers.bags(), settings, **options)
    saved = torch.load(tmp_path / 'last.pt', weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(
        saved['callbacks']['RandomStates']['cuda_rng'], states))
    restored.clear()  # (Lightning's own sanity check sets them back too)
    settings.epochs = 2  # the resumed run trains a second epoch
    fit(ddp_helpers.fresh_model(), ddp_helpers.bags(), settings,
        resume=True, **options)
    assert len(restored) >= 2
    assert all(torch.equal(a, b) for a, b in zip(restored, states))
