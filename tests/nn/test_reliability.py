"""Serialization, determinism, torch.compile, dtypes and autocast."""
import io

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import grid, remove_self_loops

from pyg_sm import Sm, SmABMIL
from pyg_sm.train import train_model
from reference import relative_error

#: The documented tolerance of CPU autocast (bfloat16) against float32.
AUTOCAST_TOLERANCE = 5e-2


def bags():
    gen = torch.Generator().manual_seed(0)
    out = []
    for i, side in enumerate([5, 7, 6, 8]):
        edge_index, _ = remove_self_loops(grid(side, side)[0])
        out.append(Data(x=torch.randn(side * side, 5, generator=gen),
                        edge_index=edge_index,
                        y=torch.tensor([float(i % 2)])))
    return out


def model(**kwargs):
    torch.manual_seed(0)
    return SmABMIL((5, ), att_dim=8, sm_pre=True, sm_layers=1, sm_post=True,
                   **kwargs)


def outputs(net, batch):
    with torch.no_grad():
        return net.eval()(batch, return_att=True)


def test_state_dict_and_whole_model_round_trip():
    batch = Batch.from_data_list(bags())
    for options in [dict(), dict(sm_alpha=0.3, sm_mode='exact',
                                 sm_spectral_norm=True)]:
        net = model(**options)
        with torch.no_grad():
            net.pool.sm.alpha_logit.fill_(0.7) if net.pool.sm.alpha_logit \
                is not None else None
        expected = outputs(net, batch)
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        buffer.seek(0)
        fresh = model(**options)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        for a, b in zip(outputs(fresh, batch), expected):
            assert torch.equal(a, b)
        buffer = io.BytesIO()
        torch.save(net, buffer)
        buffer.seek(0)
        whole = torch.load(buffer, weights_only=False)
        for a, b in zip(outputs(whole, batch), expected):
            assert torch.equal(a, b)


def test_fixed_seed_gives_identical_training_runs():
    runs = []
    for _ in range(2):
        net = model()
        train_model(net, bags(), epochs=3, batch_size=2, seed=5,
                    progress=False)
        runs.append(net.state_dict())
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_torch_compile_matches_eager(caplog):
    """The input checks run eagerly (they read values on the host): no
    dynamo warning about a .item() graph break."""
    batch = Batch.from_data_list(bags())
    net = model().eval()
    eager = net(batch.x, batch.edge_index, batch=batch.batch,
                return_att=True)
    compiled = torch.compile(net)
    out = compiled(batch.x, batch.edge_index, batch=batch.batch,
                   return_att=True)
    for a, b in zip(out, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    logits, _ = compiled(batch.x, batch.edge_index, batch=batch.batch,
                         return_att=True)
    net.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        compiled(batch.x, batch.edge_index, batch=batch.batch), batch.y)
    loss.backward()
    assert net.pool.sm.alpha_logit.grad is not None
    assert not [r for r in caplog.records
                if 'Tensor.item()' in r.getMessage()]


def test_float64_model():
    batch = Batch.from_data_list(bags())
    batch.x = batch.x.double()
    net = model().double()
    logits, att = outputs(net, batch)
    assert logits.dtype == att.dtype == torch.float64
    single = outputs(model(), Batch.from_data_list(bags()))
    assert relative_error(single[0], logits) < 1e-5


def test_cpu_autocast_bfloat16_within_documented_tolerance():
    batch = Batch.from_data_list(bags())
    net = model().eval()
    logits, att = outputs(net, batch)
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        logits_bf16, att_bf16 = net(batch, return_att=True)
    assert relative_error(logits_bf16, logits) < AUTOCAST_TOLERANCE
    assert relative_error(att_bf16, att) < AUTOCAST_TOLERANCE
    layer = Sm(0.5)
    x = torch.randn(36, 4)
    edge_index, _ = remove_self_loops(grid(6, 6)[0])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert layer(x, edge_index).dtype == torch.float32  # no downcast


def test_devices_follow_the_inputs():
    """Every tensor the layer and model create lives where the inputs do
    (meta tensors would fail on any stray CPU tensor in the arithmetic)."""
    batch = Batch.from_data_list(bags())
    net = model()
    assert all(p.device.type == 'cpu' for p in net.parameters())
    logits, att = net(batch, return_att=True)
    assert logits.device == att.device == batch.x.device
