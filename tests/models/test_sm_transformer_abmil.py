"""SmTransformerABMIL and its encoder: a dense float64 reference written from
SPEC.md, both input forms, bags alone and in any batch, dropout in training
only, the reference's signature; torchmil 1.0.x's keywords in the pool."""
import inspect

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import grid, remove_self_loops

from pyg_sm import (
    SmABMIL,
    SmAttentionPool,
    SmTransformerABMIL,
    SmTransformerEncoder,
    batch_to_dense,
)
from pyg_sm.models import build_model
from reference import dense_adjacency, reference_pool, reference_transformer


def bag(h, w, dim=6, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    edge_index, _ = remove_self_loops(grid(h, w)[0])
    return Data(x=torch.randn(h * w, dim, generator=generator, dtype=dtype),
                edge_index=edge_index, y=torch.tensor([float(seed % 2)]))


def bags(dtype=torch.float32, dim=6):
    return [bag(3, 4, dim, 0, dtype), bag(2, 5, dim, 1, dtype),
            bag(4, 4, dim, 2, dtype)]


@pytest.mark.parametrize('n_layers, att_dim, add_self, use_mlp, mode', [
    (1, 8, True, True, 'approx'),
    (1, 8, False, False, 'exact'),
    (2, 6, True, True, 'approx'),   # several layers with add_self: A = D
    (3, 8, False, True, 'exact'),
])
def test_model_matches_the_dense_reference(n_layers, att_dim, add_self,
                                           use_mlp, mode):
    torch.manual_seed(0)
    model = SmTransformerABMIL(
        (6, ), pool_att_dim=5, pool_sm_post=True, transf_att_dim=att_dim,
        transf_n_layers=n_layers, transf_n_heads=2, transf_use_mlp=use_mlp,
        transf_add_self=add_self, transf_sm_alpha=0.4, transf_sm_mode=mode,
        pool_sm_alpha=0.7).double().eval()
    # Every Sm has its own alpha.
    assert len({id(m) for m in model.modules()
                if type(m).__name__ == 'Sm'}) == n_layers + 1
    data = bags(torch.float64)
    batch = Batch.from_data_list(data)
    logits, f = model(batch, return_att=True)
    offset = 0
    for b, one in enumerate(data):
        adj = dense_adjacency(one.edge_index, one.num_nodes)
        encoded = reference_transformer(model.transformer_encoder, one.x, adj)
        z, f_ref = reference_pool(model.pool, encoded, adj)
        logit = z @ model.classifier.weight.double().T + \
            model.classifier.bias.double()
        n = one.num_nodes
        torch.testing.assert_close(f[offset:offset + n], f_ref, rtol=1e-8,
                                   atol=1e-10)
        torch.testing.assert_close(logits[b], logit[0], rtol=1e-8,
                                   atol=1e-10)
        offset += n


def test_graph_and_dense_forms_and_any_batch_agree():
    torch.manual_seed(1)
    model = SmTransformerABMIL((6, ), transf_att_dim=8, transf_n_heads=4,
                               pool_att_dim=4, normalize=False).eval()
    # normalize=False: the graph form takes edge_weight as A, as the dense.
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    data = bags()
    for one in data:
        one.edge_index, one.edge_weight = gcn_norm(
            one.edge_index, None, one.num_nodes, add_self_loops=False)
    batch = Batch.from_data_list(data)
    logits, f = model(batch, return_att=True)
    X, adj, mask = batch_to_dense(batch)
    dense_logits, dense_f = model(X, adj, mask, return_att=True)
    torch.testing.assert_close(dense_logits, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dense_f[mask], f, rtol=1e-5, atol=1e-6)
    assert torch.isinf(dense_f[~mask]).all()
    # A bag alone gives the same numbers as in the batch.
    for b, one in enumerate(batch.to_data_list()):
        alone, f_alone = model(one, return_att=True)
        torch.testing.assert_close(alone, logits[b:b + 1], rtol=1e-5,
                                   atol=1e-6)
        torch.testing.assert_close(
            f_alone, f[batch.ptr[b]:batch.ptr[b + 1]], rtol=1e-5, atol=1e-6)
    # Nodes of the bags in any order (an unsorted batch vector).
    perm = torch.randperm(batch.num_nodes)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    shuffled, f_shuffled = model(
        batch.x[perm], inverse[batch.edge_index],
        edge_weight=batch.edge_weight, batch=batch.batch[perm],
        return_att=True)
    torch.testing.assert_close(shuffled, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f_shuffled, f[perm], rtol=1e-5, atol=1e-6)


def test_encoder_alone_in_both_forms():
    encoder = SmTransformerEncoder(6, att_dim=8, n_heads=2, n_layers=2).eval()
    batch = Batch.from_data_list(bags())
    out = encoder(batch.x, batch.edge_index, batch=batch.batch)
    assert out.shape == (batch.num_nodes, 6)
    assert torch.equal(encoder(batch), out)
    assert 'SmTransformerEncoder(6, 6, n_layers=2' in repr(encoder)


def test_dropout_on_attention_weights_in_training_only():
    torch.manual_seed(2)
    model = SmTransformerABMIL((6, ), transf_att_dim=8, transf_dropout=0.5,
                               pool_att_dim=4)
    batch = Batch.from_data_list(bags())
    model.eval()
    first, second = model(batch), model(batch)
    assert torch.equal(first, second)  # no dropout in eval mode
    model.train()
    torch.manual_seed(3)
    trained = model(batch)
    assert not torch.allclose(trained, first)


def test_compute_loss_predict_classes_and_training():
    torch.manual_seed(4)
    batch = Batch.from_data_list(bags())
    model = SmTransformerABMIL((6, ), transf_att_dim=8, pool_att_dim=4)
    logits, losses = model.compute_loss(batch.y, batch)
    assert logits.shape == (3, ) and set(losses) == {'BCEWithLogitsLoss'}
    losses['BCEWithLogitsLoss'].backward()
    alphas = [m.alpha_logit for m in model.modules()
              if getattr(m, 'alpha_logit', None) is not None]
    assert len(alphas) == 2 and all(a.grad is not None for a in alphas)
    multi = SmTransformerABMIL((6, ), transf_att_dim=8, pool_att_dim=4,
                               num_classes=3)
    logits, att = multi.predict(batch)
    assert logits.shape == (3, 3) and att.shape == (batch.num_nodes, )
    _, losses = multi.compute_loss(torch.tensor([0, 2, 1]), batch)
    assert set(losses) == {'CrossEntropyLoss'}


def test_gradients_match_finite_differences():
    model = SmTransformerABMIL((4, ), transf_att_dim=4, transf_n_heads=2,
                               pool_att_dim=3, transf_sm_alpha=0.3,
                               pool_sm_alpha=0.6).double().eval()
    one = bag(2, 3, dim=4, dtype=torch.float64)
    x = one.x.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: model(x, one.edge_index), (x, ))


def test_constructor_has_torchmil_0_1_0_order_and_defaults():
    parameters = list(inspect.signature(SmTransformerABMIL).parameters
                      .values())
    reference = [
        ('in_shape', inspect.Parameter.empty), ('pool_att_dim', 128),
        ('pool_act', 'tanh'), ('pool_sm_mode', 'approx'),
        ('pool_sm_alpha', 'trainable'), ('pool_sm_layers', 1),
        ('pool_sm_steps', 10), ('pool_sm_pre', False),
        ('pool_sm_post', False), ('pool_sm_spectral_norm', False),
        ('feat_ext', None), ('transf_att_dim', 512), ('transf_n_layers', 1),
        ('transf_n_heads', 4), ('transf_use_mlp', True),
        ('transf_add_self', True), ('transf_dropout', 0.0),
        ('transf_sm_alpha', 'trainable'), ('transf_sm_mode', 'approx'),
        ('transf_sm_steps', 10), ('criterion', None)]
    for parameter, (name, default) in zip(parameters, reference):
        assert parameter.name == name
        if default is not None:
            assert parameter.default == default, name
    assert parameters[len(reference)].name == 'num_classes'
    assert parameters[len(reference)].kind == inspect.Parameter.KEYWORD_ONLY


def test_errors():
    with pytest.raises(ValueError, match="'att_dim' .* multiple of 'n_heads'"):
        SmTransformerABMIL((6, ), transf_att_dim=10, transf_n_heads=4)
    with pytest.raises(ValueError, match="add_self with 2 layers"):
        SmTransformerABMIL((6, ), transf_n_layers=2, transf_att_dim=8)
    with pytest.raises(ValueError, match="'dropout' must lie in"):
        SmTransformerABMIL((6, ), transf_dropout=1.0)
    with pytest.raises(ValueError, match="'transf_att_dim'|'att_dim'"):
        SmTransformerABMIL((6, ), transf_att_dim=0)
    model = SmTransformerABMIL((6, ), transf_att_dim=8)
    with pytest.raises(ValueError, match='in_dim=6'):
        model(torch.randn(5, 7), torch.zeros(2, 0, dtype=torch.long))


def test_in_shape_as_torchmil_reads_it():
    # torchmil's tests pass in_shape=(bag_size, feat_dim): D is the last
    # dimension of feat_ext(zeros(1, *in_shape)).
    for cls in (SmABMIL, SmTransformerABMIL):
        model = cls(in_shape=(50, 6))
        assert model.feature_dim == 6
        X = torch.randn(2, 50, 6)
        adj = torch.zeros(2, 50, 50)
        assert model(X, adj).shape == (2, )


def test_checkpoint_rebuilds_the_transformer(tmp_path):
    from pyg_sm.train import load_checkpoint, save_checkpoint

    options = dict(transf_att_dim=8, pool_att_dim=4, pool_sm_post=True)
    model = build_model(6, 'sm_transformer_abmil', **options).eval()
    save_checkpoint(tmp_path / 'c.pt', model, 6, options,
                    dict(method='grid'))
    loaded, loaded_options, _ = load_checkpoint(tmp_path / 'c.pt')
    assert type(loaded) is SmTransformerABMIL
    batch = Batch.from_data_list(bags())
    assert torch.equal(loaded.eval()(batch), model(batch))


# torchmil 1.0.x's keywords --------------------------------------------------

@pytest.mark.parametrize('where', ['early', 'mid', 'late', 'none'])
@pytest.mark.parametrize('normalized', [False, True])
def test_sm_where_places_sm_as_torchmil_1_0(where, normalized):
    pool = SmAttentionPool(6, att_dim=5, sm_alpha=0.6, sm_where=where,
                           spectral_norm=normalized).double().eval()
    assert len(pool.mlp) == 0
    assert (pool.sm_pre, pool.sm_mid, pool.sm_post) == (
        where == 'early', where == 'mid', where == 'late')
    expected = {'early': ('proj1', 'proj2'), 'none': ('proj1', 'proj2'),
                'mid': ('proj2', ), 'late': ()}[where] if normalized else ()
    assert pool.spectral_norm_layers == expected
    one = bag(3, 4, dtype=torch.float64)
    z, f = pool(one, return_att=True)
    adj = dense_adjacency(one.edge_index, one.num_nodes)
    z_ref, f_ref = reference_pool(pool, one.x, adj)
    torch.testing.assert_close(f, f_ref, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(z[0], z_ref, rtol=1e-8, atol=1e-10)


def test_both_generations_run_with_keywords_and_do_not_mix():
    SmABMIL((6, ), sm_layers=1, sm_pre=True, sm_spectral_norm=True)
    model = SmABMIL((6, ), sm_where='mid', spectral_norm=True)
    assert model.pool.sm_mid and model.pool.spectral_norm_layers == (
        'proj2', )
    assert SmABMIL((6, ), spectral_norm=False).pool.sm_pre  # 1.0's default
    SmTransformerABMIL((6, ), pool_sm_where='late', pool_spectral_norm=True,
                       transf_att_dim=8)
    for cls, kwargs, message in [
            (SmABMIL, dict(sm_where='early', sm_post=True),
             r'sm_where \(torchmil 1.0.x\) cannot be mixed with sm_post '
             r'\(torchmil 0.1.0\)'),
            (SmABMIL, dict(spectral_norm=True, sm_spectral_norm=True),
             'spectral_norm .* cannot be mixed with sm_spectral_norm'),
            (SmAttentionPool, dict(in_dim=6, sm_where='mid', sm_layers=2),
             'cannot be mixed with sm_layers'),
            (SmTransformerABMIL, dict(in_shape=(6, ), pool_sm_where='late',
                                      pool_sm_pre=True),
             'pool_sm_where .* cannot be mixed with pool_sm_pre'),
            (SmABMIL, dict(sm_where='middle'), "'sm_where' must be one of"),
            (SmTransformerABMIL, dict(in_shape=(6, ),
                                      pool_sm_where='nowhere'),
             "'pool_sm_where' must be one of")]:
        args = {'in_shape': (6, )} if cls is SmABMIL else {}
        with pytest.raises(ValueError, match=message):
            cls(**args, **kwargs)


def test_attention_in_blocks_equals_attention_whole():
    from pyg_sm.nn.sm_transformer import _attention, per_bag_attention

    torch.manual_seed(5)
    q, k, v = (torch.randn(1, 2, 50, 4, dtype=torch.float64,
                           requires_grad=True) for _ in range(3))
    whole = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    # Dropout 0 through the block path: the same attention and gradients.
    from pyg_sm.nn import sm_transformer
    blocks = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        part, k, v) for part in q.split(16, dim=-2)], dim=-2)
    torch.testing.assert_close(blocks, whole)
    # With dropout, blocks are recomputed in the backward with the same
    # dropout masks: the gradient is that of the forward that ran.
    torch.manual_seed(6)
    out = _attention(q, k, v, 0.3, block=16)
    grad, = torch.autograd.grad(out.sum(), q)
    torch.manual_seed(6)  # the same blocks, kept by autograd
    plain = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        part, k, v, dropout_p=0.3) for part in q.split(16, dim=-2)], dim=-2)
    torch.testing.assert_close(out, plain)
    torch.testing.assert_close(grad, torch.autograd.grad(plain.sum(), q)[0])
    # Bags of a batch in blocks, heads split and merged back.
    rows = torch.randn(30, 8)
    groups = (None, [12, 18])
    a = per_bag_attention(rows, rows, rows, groups, heads=2, block=5)
    b = per_bag_attention(rows, rows, rows, groups, heads=2, block=100)
    torch.testing.assert_close(a, b)
    assert sm_transformer.QUERY_BLOCK == 1024
