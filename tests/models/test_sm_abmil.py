import inspect
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from pyg_sm import (
    PADDING_ATTENTION,
    SmABMIL,
    SmAttentionPool,
    batch_to_dense,
    dense_to_batch,
)
from reference import (
    ACTS,
    dense_adjacency,
    random_undirected_graph,
    reference_pool,
)


def random_bag(num_nodes, dim=6, seed=0, dtype=torch.float32):
    """A Data bag with a symmetric weighted graph, normalized A as weights
    (so that dense and graph forms see the same A)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, dim, generator=gen, dtype=dtype)
    if num_nodes > 1:
        edge_index = random_undirected_graph(num_nodes, 3 * num_nodes, gen)
    else:
        edge_index = torch.empty(2, 0, dtype=torch.long)
    adj = dense_adjacency(edge_index, num_nodes)  # D^-1/2 W D^-1/2, float64
    weight = adj[edge_index[1], edge_index[0]].to(dtype)
    return Data(x=x, edge_index=edge_index, edge_weight=weight,
                y=torch.tensor([float(seed % 2)]))


def padded(bags, bag_size=None):
    """The reference's dense form of a list of bags, padded at the end."""
    bag_size = bag_size or max(b.num_nodes for b in bags)
    dim = bags[0].x.size(1)
    X = torch.zeros(len(bags), bag_size, dim, dtype=bags[0].x.dtype)
    adj = torch.zeros(len(bags), bag_size, bag_size, dtype=bags[0].x.dtype)
    mask = torch.zeros(len(bags), bag_size, dtype=torch.bool)
    for b, bag in enumerate(bags):
        n = bag.num_nodes
        X[b, :n] = bag.x
        adj[b, bag.edge_index[1], bag.edge_index[0]] = bag.edge_weight
        mask[b, :n] = True
    return X, adj, mask


def model(dim=6, **kwargs):
    kwargs.setdefault('sm_pre', True)
    kwargs.setdefault('sm_layers', 1)
    kwargs.setdefault('sm_post', True)
    return SmABMIL((dim, ), att_dim=8, normalize=False, **kwargs).eval()


SIZES = [7, 1, 12, 4]


@pytest.mark.parametrize('sm_mode', ['approx', 'exact'])
def test_dense_form_equals_graph_form(sm_mode):
    bags = [random_bag(n, seed=i) for i, n in enumerate(SIZES)]
    net = model(sm_mode=sm_mode)
    X, adj, mask = padded(bags)
    logits_dense, att_dense = net(X, adj, mask, return_att=True)
    logits_sparse, att_sparse = net(X, adj.to_sparse(), mask,
                                    return_att=True)
    batch = Batch.from_data_list(bags)
    logits_graph, att_graph = net(batch, return_att=True)
    torch.testing.assert_close(logits_dense, logits_graph, rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(att_dense[mask], att_graph, rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(logits_sparse, logits_dense)
    torch.testing.assert_close(att_sparse, att_dense)
    assert logits_dense.shape == (4, ) and att_dense.shape == mask.shape
    assert (att_dense[~mask] == PADDING_ATTENTION).all()


def test_graph_form_with_tensors_and_with_batch_object_agree():
    bags = [random_bag(n, seed=i) for i, n in enumerate(SIZES)]
    batch = Batch.from_data_list(bags)
    net = model()
    by_object = net(batch, return_att=True)
    by_tensors = net(batch.x, batch.edge_index, edge_weight=batch.edge_weight,
                     batch=batch.batch, return_att=True)
    for a, b in zip(by_object, by_tensors):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('sm_mode', ['approx', 'exact'])
def test_bag_alone_equals_bag_in_any_batch(sm_mode):
    bags = [random_bag(n, seed=i) for i, n in enumerate(SIZES)]
    net = model(sm_mode=sm_mode)
    target = 2
    alone_logit, alone_att = net(bags[target], return_att=True)
    batch_logit, batch_att = net(Batch.from_data_list(bags), return_att=True)
    offset = sum(SIZES[:target])
    X, adj, mask = padded(bags, bag_size=20)  # extra padding everywhere
    dense_logit, dense_att = net(X, adj, mask, return_att=True)
    for logit, att in [(batch_logit, batch_att[offset:offset + 12]),
                       (dense_logit, dense_att[target, :12])]:
        torch.testing.assert_close(logit[target], alone_logit[0], rtol=1e-5,
                                   atol=1e-6)
        torch.testing.assert_close(att, alone_att, rtol=1e-5, atol=1e-6)


def test_padding_never_influences_outputs():
    bags = [random_bag(n, seed=i) for i, n in enumerate(SIZES)]
    net = model()
    X, adj, mask = padded(bags)
    before = net(X, adj, mask, return_att=True)
    X[~mask] = 1e6
    adj[~mask] = 7.0
    adj.transpose(1, 2)[~mask] = -3.0
    after = net(X, adj, mask, return_att=True)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)


FLAGS = list(itertools.product([False, True], [0, 1, 2], [False, True],
                               list(ACTS), [False, True]))


@pytest.mark.parametrize('sm_pre, sm_layers, sm_post, act, spectral', FLAGS)
def test_pool_matches_dense_reference(sm_pre, sm_layers, sm_post, act,
                                      spectral):
    bags = [random_bag(n, seed=i, dtype=torch.float64)
            for i, n in enumerate([9, 5])]
    pool = SmAttentionPool(6, att_dim=5, act=act, sm_alpha=0.6,
                           sm_layers=sm_layers, sm_pre=sm_pre,
                           sm_post=sm_post, sm_spectral_norm=spectral,
                           sm_mode='approx' if sm_layers != 1 else 'exact')
    pool = pool.double().eval()
    batch = Batch.from_data_list(bags)
    z, f = pool(batch, return_att=True)
    offset = 0
    for b, bag in enumerate(bags):
        adj = dense_adjacency(bag.edge_index, bag.num_nodes, bag.edge_weight,
                              normalize=True)
        z_ref, f_ref = reference_pool(pool, bag.x, adj)
        n = bag.num_nodes
        torch.testing.assert_close(z[b], z_ref, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(f[offset:offset + n], f_ref, rtol=1e-8,
                                   atol=1e-10)
        offset += n


def test_spectral_norm_is_on_every_linear_layer_or_none():
    with_norm = SmAttentionPool(6, sm_layers=2, sm_spectral_norm=True)
    without = SmAttentionPool(6, sm_layers=2)
    linears = lambda p: [p.proj1, *p.mlp, p.proj2]  # noqa: E731
    assert all(hasattr(m, 'weight_orig') for m in linears(with_norm))
    assert not any(hasattr(m, 'weight_orig') for m in linears(without))
    for reset in [False, True]:
        if reset:
            with_norm.reset_parameters()
        # One power iteration per training forward, as in the reference.
        with_norm.train()
        for _ in range(30):
            with_norm(torch.randn(3, 6), torch.tensor([[0], [1]]))
        with_norm.eval()
        for layer in linears(with_norm):
            norm = torch.linalg.matrix_norm(layer.weight.detach(), 2)
            assert abs(float(norm) - 1.0) < 0.05


@pytest.mark.parametrize('sm_mode', ['approx', 'exact'])
def test_permuting_a_bag_permutes_attention_and_keeps_the_logit(sm_mode):
    bag = random_bag(15, seed=3)
    net = model(sm_mode=sm_mode)
    perm = torch.randperm(15)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(15)
    permuted = Data(x=bag.x[perm], edge_index=inverse[bag.edge_index],
                    edge_weight=bag.edge_weight)
    logit, att = net(bag, return_att=True)
    logit_p, att_p = net(permuted, return_att=True)
    torch.testing.assert_close(logit_p, logit, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(att_p, att[perm], rtol=1e-5, atol=1e-6)


def test_constructor_signature_matches_the_reference():
    params = list(inspect.signature(SmABMIL).parameters.values())
    expected = [('in_shape', inspect.Parameter.empty), ('att_dim', 128),
                ('att_act', 'tanh'), ('sm_mode', 'approx'),
                ('sm_alpha', 'trainable'), ('sm_layers', 0), ('sm_steps', 10),
                ('sm_pre', False), ('sm_post', False),
                ('sm_spectral_norm', False)]
    assert [(p.name, p.default) for p in params[:10]] == expected
    assert params[10].name == 'feat_ext'
    assert type(params[10].default) is torch.nn.Identity
    assert params[11].name == 'criterion'
    assert type(params[11].default) is torch.nn.BCEWithLogitsLoss
    method_params = {
        'forward': ['X', 'adj', 'mask', 'return_att'],
        'compute_loss': ['Y', 'X', 'adj', 'mask'],
        'predict': ['X', 'adj', 'mask', 'return_inst_pred'],
    }
    for name, names in method_params.items():
        signature = inspect.signature(getattr(SmABMIL, name))
        assert list(signature.parameters)[1:len(names) + 1] == names
    assert inspect.signature(SmABMIL.predict).parameters[
        'return_inst_pred'].default is True


def test_in_shape_goes_through_the_feature_extractor():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.BatchNorm1d(4))
    net = SmABMIL((3, 8, 8), att_dim=8, feat_ext=cnn)
    assert net.pool.in_dim == 4 and cnn.training
    X = torch.randn(2, 5, 3, 8, 8)
    adj = torch.eye(5).repeat(2, 1, 1) * 0.0
    logits, att = net(X, adj, return_att=True)
    assert logits.shape == (2, ) and att.shape == (2, 5)
    linear = SmABMIL((10, ), feat_ext=torch.nn.Linear(10, 3))
    assert linear.pool.in_dim == 3
    assert SmABMIL(7).pool.in_dim == 7


def test_compute_loss_and_predict_in_both_forms():
    bags = [random_bag(n, seed=i) for i, n in enumerate(SIZES)]
    net = model()
    batch = Batch.from_data_list(bags)
    X, adj, mask = padded(bags)
    logits, losses = net.compute_loss(batch.y, batch)
    dense_logits, dense_losses = net.compute_loss(batch.y, X, adj, mask)
    assert list(losses) == ['BCEWithLogitsLoss']
    torch.testing.assert_close(losses['BCEWithLogitsLoss'],
                               F.binary_cross_entropy_with_logits(
                                   logits, batch.y))
    torch.testing.assert_close(dense_losses['BCEWithLogitsLoss'],
                               losses['BCEWithLogitsLoss'])
    torch.testing.assert_close(dense_logits, logits)
    logits_only = net.predict(X, adj, mask, return_inst_pred=False)
    torch.testing.assert_close(logits_only, logits)
    _, inst = net.predict(batch)
    assert inst.shape == (batch.num_nodes, )


def separable_bags(num_bags=16):
    """Positive bags hold a few instances shifted along the first axis."""
    gen = torch.Generator().manual_seed(0)
    bags = []
    for i in range(num_bags):
        n = 6 + i % 5
        bag = random_bag(n, seed=i)
        bag.x = torch.randn(n, 6, generator=gen)
        label = i % 2
        if label:
            bag.x[:2, 0] += 4.0
        bag.y = torch.tensor([float(label)])
        bags.append(bag)
    return bags


@pytest.mark.parametrize('form', ['graph', 'dense'])
def test_training_lowers_the_loss(form):
    bags = separable_bags()
    net = model().train()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    batch = Batch.from_data_list(bags)
    X, adj, mask = padded(bags)
    inputs = (batch, ) if form == 'graph' else (X, adj, mask)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        _, loss = net.compute_loss(batch.y, *inputs)
        loss['BCEWithLogitsLoss'].backward()
        optimizer.step()
        losses.append(float(loss["BCEWithLogitsLoss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_round_trip_dense_batch_dense_is_exact():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(3, 6, 2, 2, generator=gen)
    mask = torch.rand(3, 6, generator=gen) > 0.3
    mask[:, 1] = True
    adj = torch.rand(3, 6, 6, generator=gen) * (torch.rand(3, 6, 6) > 0.5)
    adj = adj * mask[:, :, None] * mask[:, None, :]  # non-symmetric on purpose
    X = X * mask[:, :, None, None]
    Y = torch.tensor([0.0, 1.0, 1.0])
    for layout in [adj, adj.to_sparse()]:
        batch = dense_to_batch(X, layout, mask, Y)
        assert batch.num_graphs == 3 and torch.equal(batch.y, Y)
        assert batch.x.shape == (int(mask.sum()), 2, 2)
        X2, adj2, mask2 = batch_to_dense(batch)
        assert torch.equal(X2, X) and torch.equal(mask2, mask)
        assert torch.equal(adj2, adj)
        _, sparse_adj, _ = batch_to_dense(batch, sparse=True)
        assert sparse_adj.is_sparse and torch.equal(sparse_adj.to_dense(),
                                                    adj)


def test_batch_to_dense_of_a_plain_pyg_batch_packs_bags_left():
    bags = [random_bag(n, seed=i) for i, n in enumerate(SIZES)]
    X, adj, mask = batch_to_dense(Batch.from_data_list(bags))
    X_ref, adj_ref, mask_ref = padded(bags)
    assert torch.equal(X, X_ref) and torch.equal(mask, mask_ref)
    torch.testing.assert_close(adj, adj_ref)


def test_sparse_adjacency_of_a_huge_bag_is_never_densified():
    """N = 300,000: a dense (N, N) float tensor would need 360 GB."""
    num_nodes = 300_000
    X = torch.randn(1, num_nodes, 4)
    i = torch.arange(num_nodes - 1)
    indices = torch.stack([torch.zeros_like(i), i, i + 1])
    indices = torch.cat([indices, indices[[0, 2, 1]]], dim=1)
    adj = torch.sparse_coo_tensor(indices, torch.full((indices.size(1), ),
                                                      0.5),
                                  (1, num_nodes, num_nodes))
    batch = dense_to_batch(X, adj)
    assert batch.edge_index.size(1) == 2 * (num_nodes - 1)
    logits, att = SmABMIL((4, ), att_dim=4)(X, adj, return_att=True)
    assert att.shape == (1, num_nodes) and torch.isfinite(logits).all()


def test_errors():
    net = SmABMIL((6, ))
    X = torch.randn(2, 5, 6)
    adj = torch.zeros(2, 5, 5)
    cases = [
        (lambda: SmABMIL((6, ), att_act='sigmoid'), ValueError, 'act'),
        (lambda: SmABMIL((6, ), sm_mode='fast'), ValueError, 'sm_mode'),
        (lambda: SmABMIL((6, ), sm_layers=-1), ValueError, 'sm_layers'),
        (lambda: SmABMIL((6, ), sm_alpha=2.0), ValueError, 'alpha'),
        (lambda: SmABMIL((6, ), feat_ext=torch.nn.Linear(7, 2)), ValueError,
         'feat_ext'),
        (lambda: net(X, torch.zeros(2, 5, 4)), ValueError, 'adj'),
        (lambda: net(X, torch.zeros(3, 5, 5)), ValueError, 'adj'),
        (lambda: net(X, adj, torch.ones(2, 4)), ValueError, 'mask'),
        (lambda: net(X, adj, torch.tensor([[1, 1, 0, 0, 0]] * 2 + [[0] * 5])),
         ValueError, 'mask'),
        (lambda: net(X, adj, torch.tensor([[1, 1, 0, 0, 0], [0] * 5])),
         ValueError, r'bag\(s\) \[1\]'),
        (lambda: net(X, adj.long()), TypeError, 'adj'),
        (lambda: net(X, adj.to_sparse_csr()), TypeError, 'adj'),
        (lambda: net.compute_loss(torch.zeros(3), X, adj), ValueError, "'Y'"),
        (lambda: net.compute_loss(torch.zeros(2, 1), X, adj), ValueError,
         "'Y'"),
        (lambda: net(torch.randn(4, 5), torch.tensor([[0, 1], [1, 0]]),
                     batch=torch.tensor([0, 0, 2, 2])), ValueError,
         r'graph\(s\) \[1\]'),
        (lambda: net(torch.randn(4, 6), torch.tensor([[0, 1], [1, 0]]),
                     mask=torch.ones(4)), ValueError, 'mask'),
        (lambda: net(torch.randn(4, 6)), ValueError, 'adj'),
        (lambda: net(Batch.from_data_list([random_bag(3)]), adj), ValueError,
         'either'),
        (lambda: dense_to_batch(X, adj, Y=torch.zeros(3)), ValueError, "'Y'"),
        (lambda: SmAttentionPool(6)(torch.randn(3, 4),
                                    torch.tensor([[0], [1]])),
         ValueError, 'in_dim'),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_empty_graph_in_a_pyg_batch_is_an_error():
    bags = [random_bag(3), Data(x=torch.empty(0, 6),
                                edge_index=torch.empty(2, 0,
                                                       dtype=torch.long),
                                edge_weight=torch.empty(0),
                                y=torch.tensor([0.0]))]
    with pytest.raises(ValueError, match=r'graph\(s\) \[1\]'):
        SmABMIL((6, ))(Batch.from_data_list(bags))


def test_repr():
    assert repr(SmAttentionPool(6, att_dim=4, sm_post=True)) == (
        "SmAttentionPool(6, att_dim=4, act='gelu', sm_layers=1, "
        "sm_post=True, sm=Sm(alpha='trainable', mode='approx', "
        "num_steps=10))")
    assert 'SmABMIL(in_shape=(6,)' in repr(SmABMIL((6, )))


def test_pyg_keyword_names_and_size():
    """model(x=, edge_index=, batch=) as PyG users write it; size= counts
    graphs a batch vector cannot show (its empty last ones are errors, as
    every empty bag is, instead of vanishing)."""
    from torch_geometric.utils import grid, remove_self_loops

    edge_index, _ = remove_self_loops(grid(3, 3)[0])
    data = Batch.from_data_list([
        Data(x=torch.randn(9, 4), edge_index=edge_index) for _ in range(2)])
    torch.manual_seed(0)
    model = SmABMIL((4, ), att_dim=4, sm_post=True).eval()
    expected = model(data.x, data.edge_index, batch=data.batch)
    torch.testing.assert_close(model(x=data.x, edge_index=data.edge_index,
                                     batch=data.batch), expected)
    torch.testing.assert_close(model(data.x, data.edge_index,
                                     batch=data.batch, size=2), expected)
    logits, losses = model.compute_loss(torch.tensor([0.0, 1.0]),
                                        x=data.x, edge_index=data.edge_index,
                                        batch=data.batch)
    torch.testing.assert_close(logits, expected)
    z = model.pool(data.x, data.edge_index, batch=data.batch, size=2)
    assert z.shape == (2, 4)
    with pytest.raises(ValueError, match=r'graph\(s\) \[2\]'):
        model.pool(data.x, data.edge_index, batch=data.batch, size=3)
    # Soft binary labels stay allowed.
    model.compute_loss(torch.tensor([0.1, 0.9]), data)


def test_torchmil_1_0_positions_warn():
    """SmABMIL((D,), 16, 'tanh', 'approx', 0.5, 10) means sm_steps=10 in
    torchmil 1.0.x; here positions follow 0.1.0 (sm_layers=10), which
    warns once."""
    with pytest.warns(UserWarning, match='sm_layers=10: more than 4') as w:
        model = SmABMIL((4, ), 16, 'tanh', 'approx', 0.5, 10)
    assert len(w) == 1 and model.pool.sm_layers == 10
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        SmABMIL((4, ), 16, 'tanh', 'approx', 0.5, 4)
        SmABMIL((4, ), sm_steps=10)
