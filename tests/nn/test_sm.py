import warnings

import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.data import Batch, Data
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

import pyg_sm.nn._autograd
from pyg_sm import Sm, SmConvergenceError, SmConvergenceWarning
from reference import (
    dense_adjacency,
    dense_approx,
    dense_exact,
    random_undirected_graph,
    relative_error,
)

ALPHAS = [0.1, 0.3, 0.5, 0.7, 0.9]


def graph(num_nodes=30, num_edges=80, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return random_undirected_graph(num_nodes, num_edges, gen)


def symmetric_weights(edge_index, seed=0):
    """One positive weight per undirected pair, the same both ways."""
    gen = torch.Generator().manual_seed(seed)
    key = torch.minimum(*edge_index) * 10**6 + torch.maximum(*edge_index)
    _, pair = torch.unique(key, return_inverse=True)
    return torch.rand(int(pair.max()) + 1, generator=gen,
                      dtype=torch.float64).add_(0.1), pair


@pytest.mark.parametrize('alpha', ALPHAS)
@pytest.mark.parametrize('fused', [True, False])
def test_approx_matches_dense_recursion(alpha, fused):
    edge_index = graph()
    x = torch.randn(30, 5, dtype=torch.float64)
    out = Sm(alpha, num_steps=10, fused=fused)(x, edge_index)
    expected = dense_approx(x, dense_adjacency(edge_index, 30), alpha, 10)
    assert relative_error(out, expected) < 1e-6


@pytest.mark.parametrize('alpha', ALPHAS)
@pytest.mark.parametrize('fused', [True, False])
def test_exact_matches_dense_solve(alpha, fused):
    edge_index = graph()
    x = torch.randn(30, 5, dtype=torch.float64)
    out = Sm(alpha, mode='exact', fused=fused)(x, edge_index)
    expected = dense_exact(x, dense_adjacency(edge_index, 30), alpha)
    assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize('alpha', ALPHAS)
def test_approx_converges_to_exact(alpha):
    edge_index = graph()
    x = torch.randn(30, 5, dtype=torch.float64)
    approx = Sm(alpha, num_steps=100)(x, edge_index)
    exact = Sm(alpha, mode='exact')(x, edge_index)
    assert relative_error(approx, exact) < 1e-4


@pytest.mark.parametrize('normalize', [True, False])
def test_weighted_graph_matches_dense(normalize):
    edge_index = graph()
    half, pair = symmetric_weights(edge_index)
    weight = half[pair] * (1.0 if normalize else 0.2)
    x = torch.randn(30, 4, dtype=torch.float64)
    adj = dense_adjacency(edge_index, 30, weight, normalize)
    for mode, expected in [('approx', dense_approx(x, adj, 0.6, 10)),
                           ('exact', dense_exact(x, adj, 0.6))]:
        out = Sm(0.6, mode=mode, normalize=normalize)(x, edge_index, weight)
        assert relative_error(out, expected) < 1e-6


def test_directed_graph_approx_uses_incoming_edges():
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    weight = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    x = torch.randn(3, 2, dtype=torch.float64)
    out = Sm(0.5, num_steps=4, normalize=False)(x, edge_index, weight)
    adj = dense_adjacency(edge_index, 3, weight, normalize=False)
    assert adj[1, 0] == 0.2  # edge 0 -> 1 lands in row 1
    assert relative_error(out, dense_approx(x, adj, 0.5, 4)) < 1e-12


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_fused_and_scatter_paths_agree(mode):
    edge_index = graph(200, 900)
    x = torch.randn(200, 16)
    fused = Sm(0.7, mode=mode, fused=True)(x, edge_index)
    scatter = Sm(0.7, mode=mode, fused=False)(x, edge_index)
    torch.testing.assert_close(fused, scatter, rtol=1e-5, atol=1e-6)


def test_fused_path_is_taken_for_plain_edge_index():
    layer = Sm(0.5, num_steps=3)
    calls = []
    layer.register_message_and_aggregate_forward_hook(
        lambda module, inputs, out: calls.append(inputs[0].layout))
    layer(torch.randn(10, 2), graph(10, 20))
    assert calls == [torch.sparse_csr] * 3


def adjacency_forms(edge_index, weight, num_nodes):
    forms = {
        'edge_index': (edge_index, weight),
        'EdgeIndex': (EdgeIndex(edge_index, sparse_size=(num_nodes,
                                                         num_nodes)), weight),
        'EdgeIndex-sorted': (EdgeIndex(edge_index, sparse_size=(
            num_nodes, num_nodes)).sort_by('row')[0], None),
        # PyG's sparse inputs are the transposed adjacency adj_t = A.
        'torch-coo': (to_torch_coo_tensor(edge_index.flip(0), weight,
                                          num_nodes), None),
        'torch-csr': (to_torch_csr_tensor(edge_index.flip(0), weight,
                                          num_nodes), None),
    }
    if WITH_TORCH_SPARSE:
        forms['SparseTensor'] = (SparseTensor.from_edge_index(
            edge_index.flip(0), weight, (num_nodes, num_nodes)), None)
    return forms


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_every_adjacency_form_gives_the_same_result(mode):
    edge_index = graph(40, 120)
    half, pair = symmetric_weights(edge_index)
    weight = half[pair]
    x = torch.randn(40, 6, dtype=torch.float64)
    layer = Sm(0.4, mode=mode)
    expected = layer(x, edge_index, weight)
    forms = adjacency_forms(edge_index, weight, 40)
    # A row-sorted EdgeIndex without weights is the unweighted graph.
    unweighted = layer(x, edge_index)
    for name, (adj, w) in forms.items():
        target = unweighted if name == 'EdgeIndex-sorted' else expected
        torch.testing.assert_close(layer(x, adj, w), target, msg=name)


@pytest.fixture(params=['whole', 'column-blocks'])
def blocks(request, monkeypatch):
    """Runs a test once as is and once with every input split into blocks
    of 2 columns, the path large inputs take."""
    if request.param == 'column-blocks':
        monkeypatch.setitem(pyg_sm.nn._autograd._BLOCKING, 'cpu', (0, 2))
    return request.param


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_column_blocks_give_the_same_result(mode, blocks):
    edge_index = graph()
    x = torch.randn(30, 5, dtype=torch.float64)
    adj = dense_adjacency(edge_index, 30)
    expected = (dense_approx(x, adj, 0.7, 10) if mode == 'approx' else
                dense_exact(x, adj, 0.7))
    assert relative_error(Sm(0.7, mode=mode)(x, edge_index), expected) < 1e-8


@pytest.mark.parametrize('mode', ['approx', 'exact'])
@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('fused', [True, False])
def test_gradcheck(mode, normalize, fused, blocks):
    edge_index = graph(12, 30)
    half, pair = symmetric_weights(edge_index)
    half.requires_grad_()
    scale = 1.0 if normalize else 0.15  # keeps alpha * A contractive
    layer = Sm(mode=mode, normalize=normalize, fused=fused,
               num_steps=6).double()
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        layer.alpha_logit.fill_(0.4)

    def smooth(features, pair_weight, logit):
        return layer(features, edge_index, pair_weight[pair] * scale)

    assert torch.autograd.gradcheck(smooth, (x, half, layer.alpha_logit))


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_gradient_for_float_alpha_and_features_only(mode):
    edge_index = graph(12, 30)
    layer = Sm(0.35, mode=mode, num_steps=5)
    x = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: layer(f, edge_index), (x, ))


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_graphs_of_a_batch_are_independent(mode):
    graphs = []
    for i, n in enumerate([5, 40, 1, 17]):
        edge_index = graph(n, 3 * n, seed=i) if n > 1 else \
            torch.empty(2, 0, dtype=torch.long)
        # Very different scales: a shared stopping test would under-solve
        # the small ones.
        graphs.append(Data(x=torch.randn(n, 3) * 10.0**(2 * i - 3),
                           edge_index=edge_index))
    batch = Batch.from_data_list(graphs)
    layer = Sm(0.8, mode=mode)
    together = layer(batch.x, batch.edge_index, batch=batch.batch)
    for i, data in enumerate(graphs):
        alone = layer(data.x, data.edge_index)
        part = together[batch.ptr[i]:batch.ptr[i + 1]]
        assert relative_error(part, alone) < 1e-5, i


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_isolated_nodes_get_one_minus_alpha_u(mode):
    edge_index = torch.tensor([[0, 1], [1, 0]])
    x = torch.randn(4, 2, dtype=torch.float64)
    out = Sm(0.3, mode=mode)(x, edge_index)
    torch.testing.assert_close(out[2:], 0.7 * x[2:])


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_single_node_and_edgeless_graphs(mode):
    empty = torch.empty(2, 0, dtype=torch.long)
    for num_nodes in [1, 6]:
        x = torch.randn(num_nodes, 3)
        torch.testing.assert_close(Sm(0.25, mode=mode)(x, empty), 0.75 * x)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_dtypes(dtype, mode):
    edge_index = graph()
    x = torch.randn(30, 4, dtype=dtype)
    out = Sm(0.5, mode=mode)(x, edge_index)
    assert out.dtype == dtype
    expected = (dense_approx(x, dense_adjacency(edge_index, 30), 0.5, 10)
                if mode == 'approx' else
                dense_exact(x, dense_adjacency(edge_index, 30), 0.5))
    assert relative_error(out, expected) < (1e-5 if dtype == torch.float32
                                            else 1e-9)


def test_half_precision_input_is_smoothed_in_float32():
    edge_index = graph()
    x = torch.randn(30, 4).bfloat16()
    out = Sm(0.5)(x, edge_index)
    assert out.dtype == torch.bfloat16
    expected = dense_approx(x.double(), dense_adjacency(edge_index, 30), 0.5,
                            10)
    assert relative_error(out, expected) < 1e-2


def test_feature_shapes_are_kept():
    edge_index = graph(10, 20)
    layer = Sm(0.5)
    x = torch.randn(10, 2, 3)
    out = layer(x, edge_index)
    assert out.shape == x.shape
    torch.testing.assert_close(out.reshape(10, 6),
                               layer(x.reshape(10, 6), edge_index))
    vector = torch.randn(10)
    assert layer(vector, edge_index).shape == (10, )


def test_zero_steps_is_identity():
    x = torch.randn(5, 2)
    assert torch.equal(Sm(0.5, num_steps=0)(x, graph(5, 8)), x)


def test_trainable_alpha_starts_at_half_and_stays_inside():
    layer = Sm()
    assert float(layer.alpha.detach()) == 0.5
    optimizer = torch.optim.SGD(layer.parameters(), lr=1e6)
    edge_index = graph(10, 20)
    x = torch.randn(10, 2)
    for sign in [1.0, -1.0]:
        for _ in range(3):
            optimizer.zero_grad()
            (sign * layer(x, edge_index).pow(2).sum()).backward()
            optimizer.step()
            alpha = float(layer.alpha.detach())
            assert 0.0 < alpha < 1.0
            assert torch.isfinite(layer(x, edge_index)).all()
    with torch.no_grad():
        for logit in [-1e4, 1e4]:
            layer.alpha_logit.fill_(logit)
            assert 0.0 < float(layer.alpha.detach()) < 1.0
    layer.reset_parameters()
    assert float(layer.alpha.detach()) == 0.5


def saved_elements(layer, x, edge_index):
    saved = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x, edge_index)
    return sum(saved)


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_saved_memory_does_not_grow_with_iterations(mode):
    """Nothing per iteration is kept for backward: what autograd saves is
    O(N * F) for 2 or 200 steps (or solver iterations)."""
    edge_index = graph(50, 150)
    x = torch.randn(50, 4, requires_grad=True)
    few = saved_elements(Sm(num_steps=2, mode=mode, tol=1e-2), x, edge_index)
    many = saved_elements(Sm(num_steps=200, mode=mode, tol=1e-7), x,
                          edge_index)
    assert few == many <= 2 * x.numel() + 2 * edge_index.size(1)


def test_cached_adjacency_is_reused():
    edge_index = graph(20, 50)
    x = torch.randn(20, 3)
    layer = Sm(0.5, cached=True)
    first = layer(x, edge_index)
    # The cache ignores the edges passed later, as PyG's cached=True does.
    torch.testing.assert_close(layer(x, graph(20, 10, seed=3)), first)
    with pytest.raises(ValueError, match='cached=True'):
        layer(torch.randn(21, 3), edge_index)
    layer.reset_parameters()
    assert not torch.allclose(layer(x, graph(20, 10, seed=3)), first)


def test_duplicate_edges_count_twice_on_both_paths():
    edge_index = torch.tensor([[0, 0, 1, 1, 2], [1, 1, 0, 2, 1]])
    x = torch.randn(3, 2, dtype=torch.float64)
    adj = dense_adjacency(edge_index, 3)
    for fused in [True, False]:
        out = Sm(0.5, fused=fused)(x, edge_index)
        assert relative_error(out, dense_approx(x, adj, 0.5, 10)) < 1e-12


def test_nonconvergence_warns_or_raises_with_residual():
    edge_index = graph(60, 200)
    x = torch.randn(60, 3, dtype=torch.float64)
    with pytest.warns(SmConvergenceWarning, match='relative residual'):
        Sm(0.99, mode='exact', max_iter=2)(x, edge_index)
    with pytest.raises(SmConvergenceError, match='max_iter=2'):
        Sm(0.99, mode='exact', max_iter=2,
           on_nonconvergence='raise')(x, edge_index)
    with warnings.catch_warnings():
        warnings.simplefilter('error', SmConvergenceWarning)
        Sm(0.99, mode='exact', tol=1e-3)(x, edge_index)


def test_exact_mode_refuses_to_pass_off_a_nonsymmetric_solve():
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    weight = torch.tensor([0.9, 0.1, 0.9, 0.1])
    with pytest.raises(SmConvergenceError):
        Sm(0.9, mode='exact', normalize=False, max_iter=50,
           on_nonconvergence='raise')(torch.randn(4, 2), edge_index, weight)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(mode='fast'), ValueError, 'mode'),
    (dict(alpha=1.0), ValueError, 'alpha'),
    (dict(alpha=0.0), ValueError, 'alpha'),
    (dict(alpha=-0.5), ValueError, 'alpha'),
    (dict(alpha='learned'), ValueError, 'alpha'),
    (dict(alpha=True), TypeError, 'alpha'),
    (dict(alpha=None), TypeError, 'alpha'),
    (dict(num_steps=-1), ValueError, 'num_steps'),
    (dict(num_steps=2.5), TypeError, 'num_steps'),
    (dict(max_iter=-3), ValueError, 'max_iter'),
    (dict(tol=0.0), ValueError, 'tol'),
    (dict(on_nonconvergence='ignore'), ValueError, 'on_nonconvergence'),
    (dict(flow='target_to_source'), ValueError, 'flow'),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Sm(**kwargs)


def test_forward_errors():
    layer = Sm(0.5)
    x = torch.randn(5, 2)
    good = torch.tensor([[0, 1], [1, 0]])
    cases = [
        ((x, good.float()), TypeError, 'edge_index'),
        ((x, good[0]), ValueError, 'edge_index'),
        ((x, torch.zeros(3, 2, dtype=torch.long)), ValueError, 'edge_index'),
        ((x, torch.tensor([[0, 5], [5, 0]])), ValueError, r'\[0, 4\]'),
        ((x, torch.tensor([[0, -1], [-1, 0]])), ValueError, 'edge_index'),
        ((x, good, torch.ones(3)), ValueError, 'edge_weight'),
        ((x, good, torch.ones(2, 1)), ValueError, 'edge_weight'),
        ((x, good, torch.ones(2, dtype=torch.long)), TypeError,
         'edge_weight'),
        ((x, good, torch.tensor([1.0, -1.0])), ValueError, 'non-negative'),
        ((x.long(), good), TypeError, "'x'"),
        ((x, [[0, 1], [1, 0]]), TypeError, 'edge_index'),
        ((x, to_torch_csr_tensor(good, size=4)), ValueError, 'size'),
        ((x, to_torch_csr_tensor(good, size=5), torch.ones(2)), ValueError,
         "'edge_weight' must be None"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            layer(*args)
    with pytest.raises(ValueError, match='batch'):
        layer(x, good, batch=torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match='batch'):
        layer(x, good, batch=torch.zeros(5))


def test_negative_weights_are_allowed_without_normalization():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    weight = torch.tensor([-0.5, -0.5], dtype=torch.float64)
    x = torch.randn(2, 1, dtype=torch.float64)
    out = Sm(0.5, normalize=False)(x, edge_index, weight)
    adj = dense_adjacency(edge_index, 2, weight, normalize=False)
    assert relative_error(out, dense_approx(x, adj, 0.5, 10)) < 1e-12


def test_repr():
    assert repr(Sm()) == "Sm(alpha='trainable', mode='approx', num_steps=10)"
    assert repr(Sm(0.25, mode='exact')) == "Sm(alpha=0.25, mode='exact')"


def test_float_alpha_is_used_exactly_in_float64():
    """A float alpha was once stored in float32 (0.7 -> 0.69999999)."""
    edge_index = graph()
    x = torch.randn(30, 3, dtype=torch.float64)
    out = Sm(0.7, num_steps=10)(x, edge_index)
    expected = dense_approx(x, dense_adjacency(edge_index, 30), 0.7, 10)
    assert relative_error(out, expected) < 1e-13


def test_int32_and_int64_indices_agree():
    edge_index = graph()
    x = torch.randn(30, 3)
    layer = Sm(0.5)
    torch.testing.assert_close(layer(x, edge_index.int()),
                               layer(x, edge_index))
    for fused in [True, False]:
        out = Sm(0.5, fused=fused)(x, EdgeIndex(edge_index.int(),
                                                sparse_size=(30, 30)))
        torch.testing.assert_close(out, layer(x, edge_index))


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_cpu_autocast_runs_in_full_precision(mode):
    edge_index = graph()
    x = torch.randn(30, 8, requires_grad=True)
    lin = torch.nn.Linear(8, 8)
    layer = Sm(mode=mode)
    reference = layer(lin(x), edge_index)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(lin(x), edge_index)
        assert out.dtype == torch.bfloat16
        out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert relative_error(out, reference) < 2e-2  # bfloat16 linear layer


def test_adjacency_is_a_valid_csr_from_shuffled_duplicate_edges():
    """Unsorted input with repeated edges becomes torch's CSR contract
    (rows of sorted, distinct columns; what cuSPARSE relies on) with the
    duplicates summed, for A and for the A^T of the backward; Sm and its
    gradient then equal the dense reference of the summed weights."""
    from pyg_sm.data import prepare_adjacency
    from pyg_sm.nn.sm import _Propagation

    edge_index = graph(num_edges=60)
    gen = torch.Generator().manual_seed(3)
    weight = torch.rand(edge_index.size(1), generator=gen,
                        dtype=torch.float64) + 0.1
    repeat = torch.randint(edge_index.size(1), (40, ), generator=gen)
    shuffle = torch.randperm(edge_index.size(1) + 40, generator=gen)
    edges = torch.cat([edge_index, edge_index[:, repeat]], 1)[:, shuffle]
    weights = torch.cat([weight, weight[repeat]])[shuffle]
    adjacency = prepare_adjacency(edges, weights, 30, False, torch.float64)
    assert adjacency.edge_index.size(1) == edge_index.size(1)
    layer = Sm(0.5, normalize=False)
    propagation = _Propagation(layer, adjacency.edge_index,
                               adjacency.edge_weight)
    for transpose in (False, True):
        csr = propagation._sparse_matrix(transpose)
        torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(),
                                csr.values(), csr.shape,
                                check_invariants=True)
    dense = dense_adjacency(edges, 30, weights, normalize=False)
    torch.testing.assert_close(
        propagation._sparse_matrix(False).to_dense(), dense)
    x = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    out = Sm(0.5)(x, edges, weights)
    expected = dense_approx(x, dense_adjacency(edges, 30, weights), 0.5, 10)
    assert relative_error(out, expected) < 1e-12
    grad = torch.randn_like(out)
    (actual, ) = torch.autograd.grad(out, x, grad)
    (wanted, ) = torch.autograd.grad(expected, x, grad)
    assert relative_error(actual, wanted) < 1e-12


def test_zero_approx_steps_build_no_alpha_and_old_state_dicts_load():
    """An approx Sm of zero steps is the identity: a trainable alpha would
    get no gradient (which stops DDP), so none is built, and a state dict
    that holds one (written before) still loads."""
    layer = Sm('trainable', num_steps=0)
    assert layer.alpha_logit is None and not list(layer.parameters())
    assert float(layer.alpha) == 0.5
    layer.load_state_dict({'alpha_logit': torch.tensor(0.3)})
    assert Sm('trainable', num_steps=0, mode='exact').alpha_logit is not None
    with pytest.raises(RuntimeError, match='alpha_logit'):
        Sm(0.3).load_state_dict({'alpha_logit': torch.tensor(0.3)})


def test_cached_adjacency_follows_the_layer():
    """Sm(cached=True) moves its cached graph with .to() (a CPU adjacency
    after .to('cuda') would fail): the dtype conversion shows it here."""
    edge_index = graph()
    layer = Sm(0.5, cached=True)
    x = torch.randn(30, 3)
    expected = layer(x.double(), edge_index)
    assert layer._cached_adjacency.edge_weight.dtype == torch.float64
    layer.float()
    cached = layer._cached_adjacency
    assert cached.edge_weight.dtype == torch.float32
    assert isinstance(cached.edge_index, EdgeIndex)
    assert cached.edge_index.sort_order == 'col'
    torch.testing.assert_close(layer(x, edge_index), expected.float())


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_exact_mode_refuses_non_finite_input(bad):
    x = torch.randn(30, 3)
    x[4, 1] = bad
    with pytest.raises(ValueError, match='input holds NaN or infinite'):
        Sm(0.5, mode='exact')(x, graph())
    x = torch.randn(30, 3, requires_grad=True)
    out = Sm(0.5, mode='exact')(x, graph())
    with pytest.raises(ValueError, match='gradient holds NaN or infinite'):
        out.backward(torch.full_like(out, bad))


@pytest.mark.parametrize('mode', ['approx', 'exact'])
def test_twice_differentiable(mode):
    """Gradient penalties and Hessian-vector products keep Sm's part:
    gradgradcheck in x, alpha and the edge weights, and the Hessian-vector
    product equals the dense float64 reference's (and PyG's APPNP's, the
    same operator, in approx mode)."""
    from torch_geometric.nn import APPNP

    edge_index = graph(num_nodes=12, num_edges=30)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(12, 2, dtype=torch.float64, generator=gen,
                    requires_grad=True)
    weight, pair = symmetric_weights(edge_index)
    weight = weight.requires_grad_()
    layer = Sm('trainable', mode=mode, num_steps=4, tol=1e-12).double()
    torch.autograd.gradgradcheck(
        lambda u, w: layer(u, edge_index, w[pair]), (x, weight))

    x = torch.randn(30, 3, dtype=torch.float64, generator=gen,
                    requires_grad=True)
    edge_index = graph()
    adj = dense_adjacency(edge_index, 30)

    def hessian_vector(function):
        gx, = torch.autograd.grad(function(x).pow(2).sum(), x,
                                  create_graph=True)
        return torch.autograd.grad(gx.sum(), x)[0]

    ours = hessian_vector(lambda u: Sm(0.3, mode=mode)(u, edge_index))
    if mode == 'approx':
        expected = hessian_vector(lambda u: dense_approx(u, adj, 0.3, 10))
        appnp = APPNP(10, alpha=0.7, add_self_loops=False)
        assert relative_error(ours, hessian_vector(
            lambda u: appnp(u, edge_index))) < 1e-10
    else:
        expected = hessian_vector(lambda u: dense_exact(u, adj, 0.3))
    assert relative_error(ours, expected) < 1e-8


def test_dense_form_as_torchmil_calls_it():
    """Sm(X, adj[, mask=]) with X (B, N, D) and adj (B, N, N) (dense or
    sparse COO), adj taken as A itself: each bag's graph form, zeros at
    padding (tests/models/test_from_torchmil.py checks torchmil's own
    numbers)."""
    gen = torch.Generator().manual_seed(5)
    adj = torch.rand(2, 6, 6, generator=gen, dtype=torch.float64)
    adj = (adj + adj.transpose(1, 2)) / 12 * (adj > 0.5)
    adj = adj * (1 - torch.eye(6, dtype=torch.float64))
    X = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]).bool()
    for mode in ('approx', 'exact'):
        layer = Sm(0.4, mode=mode)
        for a in (adj, adj.to_sparse()):
            out = layer(X, a, mask=mask)
            assert out.shape == X.shape
            assert (out[0, 4:] == 0).all()
            for b in range(2):
                n = int(mask[b].sum())
                expected = (dense_approx(X[b, :n], adj[b, :n, :n], 0.4, 10)
                            if mode == 'approx' else
                            dense_exact(X[b, :n], adj[b, :n, :n], 0.4))
                assert relative_error(out[b, :n], expected) < 1e-9
        unmasked = layer(X, adj)
        assert relative_error(unmasked[1], out[1]) < 1e-12


def test_self_loops_warn_once_and_edge_attr_is_not_a_weight(monkeypatch):
    from torch_geometric.utils import add_self_loops

    import pyg_sm.data.adjacency
    from pyg_sm import SmABMIL

    monkeypatch.setattr(pyg_sm.data.adjacency, '_warned', set())
    edge_index = graph()
    looped, _ = add_self_loops(edge_index, num_nodes=30)
    x = torch.randn(30, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        Sm(0.5)(x, edge_index)
        assert not caught
        Sm(0.5)(x, looped)
        Sm(0.5)(x, looped)
    assert [str(w.message).split(':')[0] for w in caught] == [
        'the edges hold self-loops']
    data = Data(x=x, edge_index=edge_index,
                edge_attr=torch.rand(edge_index.size(1)))
    with pytest.warns(UserWarning, match='edge_attr is not read'):
        SmABMIL((4, ), att_dim=4)(data)
    data.edge_weight = data.edge_attr
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        SmABMIL((4, ), att_dim=4)(data)


def test_to_hetero_bipartite_edge_type_says_what_sm_needs():
    from torch_geometric.data import HeteroData
    from torch_geometric.nn import to_hetero

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sm = Sm(0.5)

        def forward(self, x, edge_index):
            return self.sm(x, edge_index)

    data = HeteroData()
    data['a'].x, data['b'].x = torch.randn(4, 3), torch.randn(5, 3)
    data['a', 'to', 'b'].edge_index = torch.tensor([[0, 1], [2, 3]])
    data['a', 'near', 'a'].edge_index = torch.tensor([[0, 1], [1, 0]])
    net = to_hetero(Net(), data.metadata(), aggr='sum')
    with pytest.raises(ValueError, match='one node type'):
        net(data.x_dict, data.edge_index_dict)
    del data['a', 'to', 'b']
    net = to_hetero(Net(), data.metadata(), aggr='sum')
    assert net(data.x_dict, data.edge_index_dict)['a'].shape == (4, 3)
