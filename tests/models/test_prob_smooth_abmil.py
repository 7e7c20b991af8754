"""ProbSmoothABMIL, SmoothABMIL and TransformerProbSmoothABMIL: the head
applied to every sample equals the bag representations' head (float64
reference), both input forms, the loss terms, classes and survival."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from pyg_sm import batch_to_dense
from pyg_sm.data import as_bags
from pyg_sm.models import (
    MODELS,
    ProbSmoothABMIL,
    SmoothABMIL,
    TransformerProbSmoothABMIL,
    build_model,
)
from pyg_sm.models import prob_smooth_abmil as module
from pyg_sm.nn import CoxPHLoss, DiscreteTimeNLLLoss, SurvivalHead

D = 6


def bags(sizes=(7, 4, 9), seed=0):
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        chain = torch.arange(n - 1)
        edge_index = torch.cat([torch.stack([chain, chain + 1]),
                                torch.stack([chain + 1, chain])], 1)
        graphs.append(Data(x=torch.randn(n, D, generator=generator),
                           edge_index=edge_index, num_nodes=n))
    return Batch.from_data_list(graphs)


MODELS_UNDER_TEST = {
    'prob': lambda **kw: ProbSmoothABMIL((D, ), att_dim=4,
                                         n_samples_train=5,
                                         n_samples_test=11, **kw),
    'smooth': lambda **kw: SmoothABMIL((D, ), att_dim=4, **kw),
    'transformer': lambda **kw: TransformerProbSmoothABMIL(
        (D, ), pool_att_dim=4, n_samples_train=5, n_samples_test=11,
        transf_att_dim=8, transf_n_heads=2, **kw),
}


@pytest.mark.parametrize('name', list(MODELS_UNDER_TEST))
def test_sample_logits_equal_the_head_on_each_bag_representation(name):
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST[name]().double().train()
    batch = bags()
    batch.x = batch.x.double()
    torch.manual_seed(4)
    logits, samples = model(batch, return_att=True, return_samples=True)
    # The reference: z^(m) = X^T s^(m) per bag, then the linear head.
    encoded = batch.x if name != 'transformer' else \
        model.transformer_encoder.encode(as_bags(batch))
    reference = []
    for b in range(3):
        nodes = batch.batch == b
        s = torch.softmax(samples[nodes], dim=0)  # (N, M)
        z = s.T @ encoded[nodes]  # (M, D)
        reference.append(model.classifier(z).squeeze(-1))
    torch.testing.assert_close(logits, torch.stack(reference))
    assert logits.shape == (3, samples.size(1))


@pytest.mark.parametrize('name', list(MODELS_UNDER_TEST))
def test_dense_form_equals_graph_form(name):
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST[name]().eval()
    batch = bags()
    X, adj, mask = batch_to_dense(batch)
    X = torch.where(mask[..., None], X, torch.full_like(X, 30.0))
    with torch.no_grad():
        graph = model(batch, return_att=True, return_kl_div=True,
                      return_att_std=True)
        dense = model(X, adj, mask, return_att=True, return_kl_div=True,
                      return_att_std=True)
    # Normalized patch graph in the graph form; A as given in the dense
    # form: the logits, attention and std agree, the KL terms differ.
    torch.testing.assert_close(dense[0], graph[0])
    torch.testing.assert_close(dense[1][mask], graph[1])
    torch.testing.assert_close(dense[2][mask], graph[2])
    assert torch.isinf(dense[1][~mask]).all()
    assert (dense[2][~mask] == 0).all()
    if name == 'smooth':
        assert (graph[2] == 0).all()
    else:
        assert (graph[2] > 0).all()


def test_evaluation_gives_the_same_numbers_twice_and_mu_as_attention():
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST['prob']().eval()
    batch = bags()
    first = model(batch, return_att=True)
    second = model(batch, return_att=True)
    torch.testing.assert_close(first, second)
    mu, _ = model.pool.distribution(batch.x)
    torch.testing.assert_close(first[1], mu)
    model.train()
    assert not torch.equal(model(batch), model(batch))


def test_samples_drawn_in_blocks_without_gradients(monkeypatch):
    torch.manual_seed(0)
    model = ProbSmoothABMIL((D, ), att_dim=4, n_samples_test=200).eval()
    batch = bags()
    with torch.no_grad():
        whole = model(batch, return_samples=True)
    # Blocks of 64 samples (a draw of the seeded noise) and the last of 8:
    # the same samples, the same logits.
    monkeypatch.setattr(module, 'SAMPLE_BLOCK', 70 * batch.num_nodes)
    with torch.no_grad():
        blocked = model(batch, return_samples=True)
    assert blocked.shape == whole.shape == (3, 200)
    torch.testing.assert_close(blocked, whole)


@pytest.mark.parametrize('name, kl_name', [
    ('prob', 'KLDiv'), ('smooth', 'DirEnergy'), ('transformer', 'KLDiv')])
def test_compute_loss_names_and_sums_the_terms(name, kl_name):
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST[name]().train()
    batch = bags()
    Y = torch.tensor([1.0, 0.0, 1.0])
    torch.manual_seed(2)
    logits, terms = model.compute_loss(Y, batch)
    assert set(terms) == {'BCEWithLogitsLoss', kl_name}
    torch.manual_seed(2)
    sampled = model(batch, return_samples=True)
    torch.testing.assert_close(logits, sampled.mean(1))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        sampled, Y[:, None].expand_as(sampled))
    torch.testing.assert_close(terms['BCEWithLogitsLoss'], expected)
    sum(terms.values()).backward()
    assert model.pool.mu_f_nn.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'adj'"):
        model.compute_loss(Y, batch.x, batch=batch.batch)


def test_classes_average_the_criterion_over_samples():
    torch.manual_seed(0)
    model = ProbSmoothABMIL((D, ), att_dim=4, n_samples_train=6,
                            num_classes=3).train()
    batch = bags()
    Y = torch.tensor([2, 0, 1])
    torch.manual_seed(5)
    logits, terms = model.compute_loss(Y, batch)
    torch.manual_seed(5)
    samples = model(batch, return_samples=True)
    assert logits.shape == (3, 3) and samples.shape == (3, 6, 3)
    per_sample = torch.stack([torch.nn.functional.cross_entropy(
        samples[:, m], Y) for m in range(6)])
    torch.testing.assert_close(terms['CrossEntropyLoss'], per_sample.mean())


def test_survival_criteria_over_samples():
    batch = bags()
    Y = torch.tensor([[3.0, 1], [5.0, 0], [1.0, 1]])
    torch.manual_seed(0)
    cox = ProbSmoothABMIL((D, ), att_dim=4, n_samples_train=4,
                          criterion=CoxPHLoss()).train()
    torch.manual_seed(1)
    _, terms = cox.compute_loss(Y, batch)
    torch.manual_seed(1)
    samples = cox(batch, return_samples=True)
    per_sample = torch.stack([CoxPHLoss()(samples[:, m], Y)
                              for m in range(4)])
    torch.testing.assert_close(terms['CoxPHLoss'], per_sample.mean())
    nll = ProbSmoothABMIL((D, ), att_dim=4, n_samples_train=4,
                          criterion=DiscreteTimeNLLLoss([2.0, 4.0])).train()
    assert isinstance(nll.classifier, SurvivalHead)
    logits, _ = nll.compute_loss(Y, batch)
    assert logits.shape == (3, 3)
    assert int(nll.classifier.num_batches_tracked) == 1
    assert nll.classifier.running_mean.abs().sum() > 0
    nll.eval()
    assert nll.risk(nll(batch)).shape == (3, )


def test_torchmil_predict_form_takes_the_mask():
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST['smooth']().eval()
    X, _, mask = batch_to_dense(bags())
    by_keyword = model.predict(X, mask=mask)
    positional = model.predict(X, mask)  # torchmil's predict(X, mask)
    torch.testing.assert_close(positional[0], by_keyword[0])
    torch.testing.assert_close(positional[1], by_keyword[1])
    logits = model.predict(X, mask, return_inst_pred=False)
    torch.testing.assert_close(logits, by_keyword[0])
    with pytest.raises(TypeError, match='by keyword'):
        model.predict(X, mask, False)  # torchmil's third positional


def test_registry_builds_them_and_the_cli_knows_them():
    for name, cls in (('prob_smooth_abmil', ProbSmoothABMIL),
                      ('smooth_abmil', SmoothABMIL),
                      ('transformer_prob_smooth_abmil',
                       TransformerProbSmoothABMIL)):
        spec = MODELS[name]
        model = build_model(D, name, **spec.resolve())
        assert type(model) is cls and model.probabilistic
    assert MODELS['prob_smooth_abmil'].defaults()['n_samples_test'] == 5000
    assert MODELS['transformer_prob_smooth_abmil'].defaults()[
        'transf_n_heads'] == 8  # torchmil 1.0.2's, not SmTransformerABMIL's


def test_repr():
    assert repr(SmoothABMIL((D, ), att_dim=3)) == (
        "SmoothABMIL(in_shape=(6,), feat_ext=Identity(), "
        "pool=ProbSmoothAttentionPool(6, att_dim=3, covar_mode='zero', "
        "n_samples_train=1, n_samples_test=1))")


def test_the_fused_head_equals_the_kept_samples_path():
    # The same noise in the same layout: the training step's fused head
    # and the path that keeps the samples give the same logits.
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST['prob']().double().train()
    batch = bags()
    batch.x = batch.x.double()
    torch.manual_seed(9)
    fused = model(batch, return_samples=True)
    torch.manual_seed(9)
    kept, _ = model(batch, return_att=True, return_samples=True)
    torch.testing.assert_close(fused, kept)
    # An unsorted batch vector: each bag's nodes are gathered first.
    order = torch.randperm(batch.num_nodes)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(batch.num_nodes)
    shuffled = model.eval()(batch.x[order], inverse[batch.edge_index],
                            batch=batch.batch[order], return_att=True)
    alone = model(batch, return_att=True)
    torch.testing.assert_close(shuffled[1], alone[1][order])
    assert shuffled[0].shape == (3, )


def test_a_bag_gets_the_same_evaluation_alone_or_in_any_batch():
    torch.manual_seed(0)
    model = MODELS_UNDER_TEST['prob']().eval()
    batch = bags()
    together = model(batch, return_samples=True)
    for b, data in enumerate(batch.to_data_list()):
        alone = model(Batch.from_data_list([data]), return_samples=True)
        torch.testing.assert_close(alone[0], together[b])
    # The dense form of the same bags, padded: the same samples.
    X, adj, mask = batch_to_dense(batch)
    torch.testing.assert_close(model(X, adj, mask, return_samples=True),
                               together)
