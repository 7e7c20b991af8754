"""The probabilistic models on every device against float64 on the CPU:
the fused sampled head and its gradients (the same noise), the KL term,
evaluation seeded on the device, the sample blocks of a large bag, and
float32 weights under autocast."""
import torch
from torch_geometric.data import Batch, Data

import pyg_sm.models.prob_smooth_abmil as module
from devices import grid_graph, relative, sized, with_devices
from pyg_sm import ProbSmoothABMIL
from pyg_sm.data import as_bags
from pyg_sm.nn._sampled_attention import sampled_softmax_head


@with_devices
def test_fused_head_and_gradients_equal_float64_on_the_cpu(device):
    gen = torch.Generator().manual_seed(0)
    sizes = (sized(device, 300, 20_000), sized(device, 200, 12_000))
    n, samples = sum(sizes), sized(device, 50, 1000)
    mu = torch.randn(n, generator=gen, dtype=torch.float64) * 3
    log_var = torch.randn(n, generator=gen, dtype=torch.float64)
    values = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    noise = torch.randn(n, samples, generator=gen, dtype=torch.float64)
    grad = torch.randn(len(sizes), samples, 2, generator=gen,
                       dtype=torch.float64)

    def run(dtype, on):
        leaves = [t.to(on, dtype).requires_grad_()
                  for t in (mu, log_var, values)]
        out, _ = sampled_softmax_head(*leaves[:3], noise.to(on, dtype),
                                      sizes)
        grads = torch.autograd.grad(out, leaves, grad.to(on, dtype))
        return out, grads

    expected, expected_grads = run(torch.float64, 'cpu')
    out, grads = run(torch.float32, device)
    assert relative(out, expected) < 1e-5
    for a, b in zip(grads, expected_grads):
        assert relative(a, b) < 1e-4


@with_devices
def test_training_step_evaluation_and_sample_blocks(device, monkeypatch):
    edge_index, n = grid_graph(sized(device, 900, 40_000))
    gen = torch.Generator().manual_seed(2)
    data = Data(x=torch.randn(n, 16, generator=gen), edge_index=edge_index,
                y=torch.tensor([1.0]))
    batch = Batch.from_data_list([data, data.clone()]).to(device)
    torch.manual_seed(0)
    model = ProbSmoothABMIL((16, ), att_dim=8, n_samples_train=64,
                            n_samples_test=256).to(device)
    model.train()
    logits, terms = model.compute_loss(batch.y, batch)
    sum(terms.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())
    # The KL term on the device equals float64 on the CPU.
    mu, log_var = model.pool.distribution(batch.x)
    kl = model.pool.kl_div(as_bags(batch), mu, log_var)
    cpu = as_bags(batch.cpu())
    expected = model.pool.double().cpu().kl_div(
        cpu, mu.double().cpu(), log_var.double().cpu())
    model.float().to(device)
    assert relative(kl, expected) < 1e-5
    # Evaluation: seeded on the device, the same numbers twice, and the
    # same in small blocks of samples (other noise, the same estimate).
    model.eval()
    with torch.no_grad():
        first = model(batch)
        assert torch.equal(first, model(batch))
        monkeypatch.setattr(module, 'SAMPLE_BLOCK', 3 * batch.num_nodes)
        blocked = model(batch)
    assert blocked.device.type == device.type
    assert relative(blocked, first) < 0.05
    with torch.autocast(device.type, dtype=torch.bfloat16), torch.no_grad():
        half, attention = model(batch, return_att=True)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert attention.shape == (batch.num_nodes, )
