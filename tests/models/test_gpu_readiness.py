"""What a GPU run relies on, shown on the CPU: every parameter of every
preset gets a gradient (DDP stops otherwise), old state dicts with the
parameters no longer built still load, the pool's softmax stays float32
under autocast, and attention memory stays linear where torch would use its
math kernel."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch_geometric.data import Batch, Data
from torch_geometric.utils import grid, remove_self_loops

import pyg_sm.nn.attention_pool
import pyg_sm.nn.sm_transformer
from pyg_sm import SmABMIL, SmTransformerABMIL
from pyg_sm.models import MODELS, build_model

SMALL = {'sm_abmil': dict(att_dim=8),
         'sm_transformer_abmil': dict(pool_att_dim=8, transf_att_dim=8,
                                      transf_n_layers=1, transf_n_heads=2),
         'prob_smooth_abmil': dict(att_dim=8, n_samples_train=5),
         'smooth_abmil': dict(att_dim=8),
         'transformer_prob_smooth_abmil': dict(
             pool_att_dim=8, transf_att_dim=8, transf_n_heads=2,
             n_samples_train=5)}
#: Every preset of both models, and the settings that leave a part unused
#: if it is built anyway.
CASES = [(name, dict(preset=preset)) for name, spec in MODELS.items()
         for preset in spec.presets] + [
    ('sm_abmil', dict(sm_layers=1, sm_steps=0)),
    ('sm_abmil', dict(preset='abmil', sm_where='none')),
    ('sm_abmil', dict(preset='abmil', sm_where='mid', sm_steps=0)),
    ('sm_transformer_abmil', dict(preset='sm', transf_use_mlp=False)),
    ('sm_transformer_abmil', dict(preset='reference', transf_use_mlp=False,
                                  transf_sm_steps=0)),
]


def case_id(case):
    name, options = case
    return name + ':' + ','.join(f'{k}={v}' for k, v in options.items())


def batch(dim=6):
    gen = torch.Generator().manual_seed(0)
    data = []
    for i, side in enumerate([4, 5]):
        edge_index, _ = remove_self_loops(grid(side, side)[0])
        data.append(Data(x=torch.randn(side * side, dim, generator=gen),
                         edge_index=edge_index,
                         y=torch.tensor([float(i % 2)])))
    return Batch.from_data_list(data)


def build(name, options):
    options = dict(options)
    preset = options.pop('preset', None)
    resolved = MODELS[name].resolve(preset, **SMALL[name], **options)
    return build_model(6, name, **resolved)


@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_every_parameter_gets_a_gradient(case):
    model = build(*case).train()
    data = batch()
    _, losses = model.compute_loss(data.y, data)
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused


def test_state_dicts_with_parts_no_longer_built_still_load():
    """Checkpoints written before held an Sm in a pool that does not smooth,
    a trainable alpha of a zero-step Sm and a LayerNorm before an absent
    MLP: those entries are dropped, the rest loads strictly."""
    plain = SmABMIL((6, ), att_dim=8)
    assert plain.pool.sm is None
    old = dict(plain.state_dict())
    old['pool.sm.alpha_logit'] = torch.tensor(0.2)
    plain.load_state_dict(old)
    zero = SmABMIL((6, ), att_dim=8, sm_post=True, sm_steps=0)
    assert zero.pool.sm.alpha_logit is None
    zero.load_state_dict(old)
    transformer = SmTransformerABMIL((6, ), transf_att_dim=8,
                                     transf_n_layers=2, transf_n_heads=2,
                                     transf_use_mlp=False,
                                     transf_add_self=False)
    old = dict(transformer.state_dict())
    for k in range(2):
        assert transformer.transformer_encoder.layers[k].norm2 is None
        old[f'transformer_encoder.layers.{k}.norm2.weight'] = torch.ones(8)
        old[f'transformer_encoder.layers.{k}.norm2.bias'] = torch.zeros(8)
    transformer.load_state_dict(old)
    with pytest.raises(RuntimeError, match='Missing key'):
        plain.load_state_dict({})  # the rest stays strict


def test_pool_softmax_stays_float32_under_autocast(monkeypatch):
    """PyG's softmax sums in the tensor's dtype; under fp16/bf16 autocast on
    a GPU those sums drift. A 5,000-patch bag under CPU bf16 autocast gets
    float32 weights that sum to 1, and logits within 5% of float32."""
    weights = []

    def recording_softmax(*args, **kwargs):
        out = softmax(*args, **kwargs)
        weights.append(out)
        return out

    softmax = pyg_sm.nn.attention_pool.softmax
    monkeypatch.setattr(pyg_sm.nn.attention_pool, 'softmax',
                        recording_softmax)
    edge_index, _ = remove_self_loops(grid(50, 100)[0])
    gen = torch.Generator().manual_seed(1)
    data = Data(x=torch.randn(5000, 32, generator=gen) * 3,
                edge_index=edge_index)
    torch.manual_seed(0)
    model = SmABMIL((32, ), sm_layers=1, sm_post=True).eval()
    with torch.no_grad():
        expected = model(data)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            logits = model(data)
    weight = weights[-1]
    assert weight.dtype == torch.float32
    assert abs(float(weight.sum()) - 1) < 1e-5
    assert float((logits.float() - expected).abs().max()) <= \
        0.05 * float(expected.abs().max())


def test_attention_goes_in_blocks_where_torch_would_use_its_math_kernel(
        monkeypatch):
    """Forcing the math backend (as float64 or misaligned heads on a GPU
    do): no call sees more than a block of queries, and the result is the
    whole attention's."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        seen.append(q.size(-2))
        return sdpa(q, k, v, **kwargs)

    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 300, 5, generator=gen) for _ in range(3))
    expected = sdpa(q, k, v)
    monkeypatch.setattr(pyg_sm.nn.sm_transformer.F,
                        'scaled_dot_product_attention', recording)
    with sdpa_kernel([SDPBackend.MATH]):
        out = pyg_sm.nn.sm_transformer._attention(q, k, v, 0.0, block=64)
    assert max(seen) <= 64
    torch.testing.assert_close(out, expected)
    seen.clear()
    pyg_sm.nn.sm_transformer._attention(q, k, v, 0.0, block=64)
    assert seen == [300]  # a fused kernel: the whole bag at once
