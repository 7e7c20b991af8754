"""The Sm operator on every device against float64 on the CPU (the checks
that benchmarks/gpu_check.py once ran itself): pyg-sm's sparse products
into NaN-filled buffers, approx and exact, fused and scatter, a batch of
graphs, the column-blocked path, gradcheck in float64, and float32
attention under autocast."""
import pytest
import torch
from torch_geometric.data import Batch, Data

import pyg_sm.nn._autograd as blocks
import pyg_sm.nn.attention_pool as pool_module
from devices import grid_graph, only_cuda, relative, sized, with_devices
from pyg_sm import Sm, SmABMIL
from pyg_sm.data import prepare_adjacency
from pyg_sm.nn.sm import _Propagation

ALPHA = 0.5


@with_devices
@pytest.mark.parametrize('transpose', [False, True])
def test_products_into_nan_buffers_with_unsorted_duplicate_edges(
        device, transpose):
    gen = torch.Generator().manual_seed(0)
    n, dim = 2_000, 16
    source = torch.randint(n, (8 * n, ), generator=gen)
    target = torch.randint(n, (8 * n, ), generator=gen)
    weight = torch.rand(8 * n, generator=gen)
    x = torch.randn(n, dim, generator=gen)
    dense = torch.zeros(n, n).index_put_((target, source), weight,
                                         accumulate=True)
    adjacency = prepare_adjacency(torch.stack([source, target]).to(device),
                                  weight.to(device), n, False, torch.float32)
    propagation = _Propagation(Sm(ALPHA, normalize=False),
                               adjacency.edge_index, adjacency.edge_weight)
    buffer = torch.full((n, dim), float('nan'), device=device)
    propagation.matmul(x.to(device), transpose=transpose, out=buffer)
    assert relative(buffer, (dense.T if transpose else dense) @ x) < 1e-5


@with_devices
@pytest.mark.parametrize('mode', ['approx', 'exact'])
@pytest.mark.parametrize('fused', [True, False])
def test_sm_and_its_gradient_equal_float64_on_the_cpu(device, mode, fused):
    edge_index, n = grid_graph(sized(device, 400, 20_000))
    gen = torch.Generator().manual_seed(1)
    dim = sized(device, 8, 64)
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    grad = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    reference = x.clone().requires_grad_()
    expected = Sm(ALPHA, mode=mode)(reference, edge_index)
    expected_grad, = torch.autograd.grad(expected, reference, grad)
    inputs = x.float().to(device).requires_grad_()
    out = Sm(ALPHA, mode=mode, fused=fused)(inputs, edge_index.to(device))
    out_grad, = torch.autograd.grad(out, inputs, grad.float().to(device))
    assert relative(out, expected) < 1e-4
    assert relative(out_grad, expected_grad) < 1e-4


@with_devices
@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_a_batch_equals_each_graph_alone(device, mode):
    gen = torch.Generator().manual_seed(2)
    graphs = []
    for size in (sized(device, 100, 5_000), sized(device, 44, 2_222), 64):
        edges, size = grid_graph(size)
        graphs.append(Data(x=torch.randn(size, 8, generator=gen,
                                         dtype=torch.float64),
                           edge_index=edges))
    batch = Batch.from_data_list(graphs).to(device)
    layer = Sm(ALPHA, mode=mode)
    out = layer(batch.x.float(), batch.edge_index, batch=batch.batch)
    alone = torch.cat([layer(g.x, g.edge_index) for g in graphs])
    assert relative(out, alone) < 1e-4


@with_devices
@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_column_blocks_equal_one_block(device, mode, monkeypatch):
    edge_index, m = grid_graph(sized(device, 700, 70_000))
    wide = torch.randn(m, sized(device, 8, 64), device=device)
    layer = Sm(ALPHA, mode=mode)
    inputs = wide.clone().requires_grad_()
    whole = layer(inputs, edge_index.to(device))
    whole_grad, = torch.autograd.grad(whole.sum(), inputs)
    monkeypatch.setitem(blocks._BLOCKING, device.type, (0, 16))
    inputs = wide.clone().requires_grad_()
    split = layer(inputs, edge_index.to(device))
    split_grad, = torch.autograd.grad(split.sum(), inputs)
    assert relative(split, whole) < 1e-4
    assert relative(split_grad, whole_grad) < 1e-4


@with_devices
@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_gradcheck_of_x_alpha_and_edge_weights(device, mode):
    small, count = grid_graph(25)
    small = small.to(device)
    layer = Sm('trainable', mode=mode, num_steps=4, tol=1e-12).to(device)
    weights = torch.rand(small.size(1), dtype=torch.float64,
                         device=device) + 0.5
    inputs = torch.randn(count, 2, dtype=torch.float64, device=device,
                         requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u, w: layer(u, small, w), (inputs, weights.requires_grad_()))


def _attention_under_autocast(device, dtype):
    edge_index, n = grid_graph(5_000)
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

    pool_module.softmax = recording
    try:
        with torch.no_grad():
            expected = model(data)
            with torch.autocast(device.type, dtype=dtype):
                logits = model(data)
    finally:
        pool_module.softmax = softmax
    return weights[-1], logits, expected


@with_devices
def test_bf16_autocast_keeps_float32_attention(device):
    weight, logits, expected = _attention_under_autocast(device,
                                                         torch.bfloat16)
    assert weight.dtype == torch.float32
    assert abs(float(weight.double().sum()) - 1) < 1e-5
    assert float((logits.float() - expected).abs().max() /
                 expected.abs().max()) <= 0.05


@only_cuda
def test_fp16_autocast_keeps_float32_attention():
    weight, logits, expected = _attention_under_autocast(
        torch.device('cuda'), torch.float16)
    assert weight.dtype == torch.float32
    assert abs(float(weight.double().sum()) - 1) < 1e-5
    assert float((logits.float() - expected).abs().max() /
                 expected.abs().max()) <= 0.05
