"""Property-based tests over random graphs and bags (hypothesis)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch, Data

from pyg_sm import Sm, SmABMIL, batch_to_dense
from reference import dense_adjacency, random_undirected_graph, relative_error

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def graphs(draw, max_nodes=24):
    num_nodes = draw(st.integers(1, max_nodes))
    num_edges = draw(st.integers(0, 4 * num_nodes))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_undirected_graph(num_nodes, num_edges, gen) \
        if num_nodes > 1 else torch.empty(2, 0, dtype=torch.long)
    x = torch.randn(num_nodes, 3, generator=gen, dtype=torch.float64)
    perm = torch.randperm(num_nodes, generator=gen)
    return x, edge_index, perm


def permute(x, edge_index, perm):
    """Node i of the result is node perm[i] of the input."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return x[perm], inverse[edge_index]


@SETTINGS
@given(graphs(), st.sampled_from(['approx', 'exact']),
       st.floats(0.05, 0.95))
def test_sm_is_permutation_equivariant(graph, mode, alpha):
    x, edge_index, perm = graph
    layer = Sm(alpha, mode=mode)
    out = layer(x, edge_index)
    out_p = layer(*permute(x, edge_index, perm))
    torch.testing.assert_close(out_p, out[perm])
    assert torch.isfinite(out).all()


@SETTINGS
@given(graphs(), st.floats(0.05, 0.9))
def test_approx_converges_to_exact(graph, alpha):
    x, edge_index, _ = graph
    exact = Sm(alpha, mode='exact')(x, edge_index)
    errors = [relative_error(Sm(alpha, num_steps=t)(x, edge_index), exact)
              for t in (5, 20, 80)]
    assert errors[2] <= errors[1] + 1e-12 <= errors[0] + 2e-12
    # |alpha A| <= alpha: the error shrinks like alpha^T.
    assert errors[2] <= 2 * alpha**80 + 1e-8


def bag_strategy():
    return st.lists(graphs(max_nodes=12), min_size=1, max_size=4)


def to_bag(graph):
    x, edge_index, _ = graph
    adj = dense_adjacency(edge_index, x.size(0))
    weight = adj[edge_index[1], edge_index[0]]
    return Data(x=x, edge_index=edge_index, edge_weight=weight)


MODEL = SmABMIL((3, ), att_dim=6, sm_pre=True, sm_layers=1, sm_post=True,
                normalize=False).double().eval()


@SETTINGS
@given(graphs(max_nodes=16))
def test_logit_invariant_and_attention_equivariant(graph):
    x, edge_index, perm = graph
    bag = to_bag(graph)
    logit, att = MODEL(bag, return_att=True)
    x_p, edge_index_p = permute(x, edge_index, perm)
    logit_p, att_p = MODEL(to_bag((x_p, edge_index_p, perm)),
                           return_att=True)
    torch.testing.assert_close(logit_p, logit)
    torch.testing.assert_close(att_p, att[perm])


@SETTINGS
@given(bag_strategy(), st.integers(0, 3))
def test_dense_form_equals_graph_form_and_bags_are_independent(graphs_,
                                                               pick):
    bags = [to_bag(g) for g in graphs_]
    batch = Batch.from_data_list(bags)
    logits, att = MODEL(batch, return_att=True)
    X, adj, mask = batch_to_dense(batch)
    logits_dense, att_dense = MODEL(X, adj, mask, return_att=True)
    torch.testing.assert_close(logits_dense, logits)
    torch.testing.assert_close(att_dense[mask], att)
    pick = pick % len(bags)
    alone_logit, alone_att = MODEL(bags[pick], return_att=True)
    torch.testing.assert_close(logits[pick], alone_logit[0])
    torch.testing.assert_close(
        att[batch.ptr[pick]:batch.ptr[pick + 1]], alone_att)
    assert torch.isfinite(logits).all() and torch.isfinite(att).all()
