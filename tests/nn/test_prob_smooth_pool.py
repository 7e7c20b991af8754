"""ProbSmoothAttentionPool against an independent dense float64 reference
(tests/reference.py, from SPEC.md's formulas), in both input forms."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from pyg_sm import batch_to_dense, dense_to_batch
from pyg_sm.data import as_bags, prepare_adjacency
from pyg_sm.nn import ProbSmoothAttentionPool, smoothness_kl
from reference import dense_adjacency, prob_pool_weights, prob_smooth_bag

D = 5


def grid_bag(rows, cols, seed, self_loop=False):
    """A 4-neighbour grid bag with random positive weights (symmetric)."""
    generator = torch.Generator().manual_seed(seed)
    edges = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                edges.append((i, i + 1))
            if r + 1 < rows:
                edges.append((i, i + cols))
    edge_index = torch.tensor(edges).T
    weight = 0.5 + torch.rand(edge_index.size(1), generator=generator)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
    weight = torch.cat([weight, weight])
    if self_loop:  # a self-loop: A_ii enters the variance term
        edge_index = torch.cat([edge_index, torch.tensor([[0], [0]])], 1)
        weight = torch.cat([weight, torch.tensor([0.7])])
    x = torch.randn(rows * cols, D, generator=generator)
    return Data(x=x, edge_index=edge_index, edge_weight=weight)


def batch_of_bags():
    return Batch.from_data_list([grid_bag(3, 4, 1), grid_bag(2, 2, 2),
                                 grid_bag(1, 3, 3, self_loop=True)])


def pool_of(covar_mode='diag', **kwargs):
    torch.manual_seed(0)
    pool = ProbSmoothAttentionPool(D, att_dim=4, covar_mode=covar_mode,
                                   **kwargs).double()
    with torch.no_grad():  # wider weights than the initialization's
        for p in pool.parameters():
            p.mul_(3)
    return pool


@pytest.mark.filterwarnings('ignore:the edges hold self-loops')
@pytest.mark.parametrize('covar_mode', ['diag', 'zero'])
@pytest.mark.parametrize('normalize', [True, False])
def test_matches_the_dense_reference_bag_by_bag(covar_mode, normalize):
    batch = batch_of_bags()
    batch.x = batch.x.double()
    pool = pool_of(covar_mode, normalize=normalize).train()
    torch.manual_seed(7)
    z, f, mu, log_var, kl = pool(batch.x, batch.edge_index, None, True, True,
                                 True, 6, edge_weight=batch.edge_weight,
                                 batch=batch.batch)
    torch.manual_seed(7)  # the same noise, drawn as the pool draws it
    noise = torch.randn(batch.num_nodes, 6, dtype=torch.float64)
    kls = []
    for b, data in enumerate(batch.to_data_list()):
        nodes = batch.batch == b
        A = dense_adjacency(data.edge_index, data.num_nodes,
                            data.edge_weight, normalize)
        ref = prob_smooth_bag(data.x, A, prob_pool_weights(pool),
                              noise[nodes] if covar_mode == 'diag' else None)
        torch.testing.assert_close(mu[nodes].squeeze(-1), ref[0])
        if covar_mode == 'diag':
            torch.testing.assert_close(log_var[nodes].squeeze(-1), ref[1])
        else:
            assert log_var is None
        torch.testing.assert_close(f[nodes], ref[2])
        torch.testing.assert_close(z[b].T, ref[4])
        kls.append(ref[5])
    # The mean over bags of each bag's own (1/N) term.
    torch.testing.assert_close(kl, torch.stack(kls).mean())
    assert f.shape == (batch.num_nodes, 6 if covar_mode == 'diag' else 1)
    assert z.shape == (3, D, f.size(1))


@pytest.mark.filterwarnings('ignore:the edges hold self-loops')
def test_kl_is_linear_in_the_graph_and_differentiable():
    batch = batch_of_bags()
    adjacency = prepare_adjacency(batch.edge_index, batch.edge_weight,
                                  batch.num_nodes, True, torch.float64,
                                  batch=batch.batch)
    mu = torch.randn(batch.num_nodes, dtype=torch.float64,
                     requires_grad=True)
    log_var = torch.randn(batch.num_nodes, dtype=torch.float64,
                          requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m, v: smoothness_kl(m, v, adjacency, batch.batch, 3),
        (mu, log_var))
    assert torch.autograd.gradgradcheck(
        lambda m, v: smoothness_kl(m, v, adjacency, batch.batch, 3),
        (mu, log_var))


def test_dense_form_equals_graph_form_and_ignores_padding():
    batch = batch_of_bags()
    X, adj, mask = batch_to_dense(batch)
    # Padding full of large values would show wherever it leaked.
    X = torch.where(mask[..., None], X, torch.full_like(X, 50.0)).double()
    # The dense form takes adj as A itself: the graph form then too.
    pool = pool_of(normalize=False).train()
    torch.manual_seed(3)
    dense = pool(X, adj.double(), mask, True, True, True, 4)
    graph_batch = dense_to_batch(X, adj.double(), mask)
    torch.manual_seed(3)
    graph = pool(graph_batch.x, graph_batch.edge_index, None, True, True,
                 True, 4, edge_weight=graph_batch.edge_weight,
                 batch=graph_batch.batch)
    torch.testing.assert_close(dense[0], graph[0])
    for d, g in zip(dense[1:4], graph[1:4]):
        torch.testing.assert_close(d[mask], g)
        assert torch.isinf(d[~mask]).all()
    torch.testing.assert_close(dense[4], graph[4])


def test_evaluation_samples_are_seeded_training_ones_are_not():
    batch = batch_of_bags()
    batch.x = batch.x.double()
    pool = pool_of(n_samples_train=5, n_samples_test=7).eval()
    first, second = pool(batch, return_att_samples=True)[1], \
        pool(batch, return_att_samples=True)[1]
    assert first.shape[1] == 7
    torch.testing.assert_close(first, second)
    pool.eval_seed = 1
    assert not torch.allclose(first, pool(batch, return_att_samples=True)[1])
    pool.train()
    a, b = (pool(batch, return_att_samples=True)[1] for _ in range(2))
    assert a.shape[1] == 5 and not torch.allclose(a, b)


def test_zero_mode_has_one_deterministic_sample():
    batch = batch_of_bags()
    pool = pool_of('zero').float().train()
    z, f, mu, log_var = pool(batch, return_att_samples=True,
                             return_att_dist=True, n_samples=50)
    assert f.shape == (batch.num_nodes, 1) and log_var is None
    torch.testing.assert_close(f, mu)
    assert pool.log_diag_Sigma_nn is None
    assert 'log_diag_Sigma_nn' not in str(pool.state_dict().keys())


def test_weights_sum_to_one_per_bag_and_sample_under_autocast():
    batch = batch_of_bags()
    pool = pool_of().float()
    bags = as_bags(batch)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        samples = pool.attend(bags, 9)
    assert samples.weights.dtype == torch.float32
    sums = torch.zeros(3, 9).index_add_(0, batch.batch, samples.weights)
    torch.testing.assert_close(sums, torch.ones(3, 9))
    torch.testing.assert_close(samples.std, torch.exp(0.5 * samples.log_var))


def test_the_graph_is_only_needed_for_the_kl_term():
    batch = batch_of_bags()
    pool = pool_of().float().eval()
    z = pool(batch.x, batch=batch.batch)
    torch.testing.assert_close(z, pool(batch)[0] if isinstance(
        pool(batch), tuple) else pool(batch))
    X, _, mask = batch_to_dense(batch)
    assert pool(X, None, mask).shape == (3, D, pool.n_samples_test)
    with pytest.raises(ValueError, match="'adj'"):
        pool(X, None, mask, return_kl_div=True)


@pytest.mark.parametrize('kwargs, words', [
    (dict(covar_mode='full'), "'covar_mode' must be one of"),
    (dict(n_samples_train=0), "'n_samples_train' must be positive"),
    (dict(n_samples_test=1.5), "'n_samples_test' must be an int"),
    (dict(att_dim=0), "'att_dim' must be positive"),
    (dict(eval_seed=-1), "'eval_seed' must be non-negative"),
])
def test_bad_arguments_name_the_argument(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        ProbSmoothAttentionPool(D, **kwargs)


def test_bad_calls():
    pool = ProbSmoothAttentionPool(D)
    batch = batch_of_bags()
    with pytest.raises(ValueError, match=r"in_dim=5"):
        pool(torch.randn(4, 3), torch.empty(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="'n_samples' must be positive"):
        pool(batch, n_samples=0)


def test_reset_parameters_and_repr():
    pool = ProbSmoothAttentionPool(D, att_dim=3, covar_mode='zero')
    before = pool.mu_f_nn.weight.clone()
    torch.manual_seed(1)
    pool.reset_parameters()
    assert not torch.equal(before, pool.mu_f_nn.weight)
    assert repr(pool) == ("ProbSmoothAttentionPool(5, att_dim=3, "
                          "covar_mode='zero', n_samples_train=1000, "
                          "n_samples_test=5000)")
