"""The survival criteria against dense float64 references written from the
definitions, against scikit-survival's Cox partial likelihood, with
gradients, and inside the models."""
import numpy as np
import pytest
import torch

from pyg_sm import SmABMIL, SmTransformerABMIL
from pyg_sm.nn import (
    CoxPHLoss,
    DiscreteTimeNLLLoss,
    make_survival_loss,
    survival_cut_points,
)


def _targets(n, seed, ties=True):
    g = torch.Generator().manual_seed(seed)
    times = torch.randint(1, 8 if ties else 10_000, (n, ),
                          generator=g).double()
    events = (torch.rand(n, generator=g) < 0.6).double()
    events[0] = 1
    return torch.stack([times, events], dim=1)


def cox_reference(r, Y):
    """-(1/E) sum_{i: e_i = 1} [r_i - log sum_{j: t_j >= t_i} exp(r_j)],
    one pair at a time."""
    t, e = Y[:, 0], Y[:, 1]
    at_risk = (t.unsqueeze(0) >= t.unsqueeze(1)).double()  # [i, j]
    log_sets = torch.log((at_risk * torch.exp(r).unsqueeze(0)).sum(1))
    E = e.sum()
    return -((r - log_sets) * e).sum() / E if E > 0 else r.sum() * 0


def nll_reference(logits, Y, cuts):
    """SPEC's formula bag by bag: uncensored -log S_{y-1} - log h_y,
    censored -log S_y, 1-based intervals [c_{k-1}, c_k)."""
    losses = []
    bounds = [0.0] + list(cuts) + [float('inf')]
    for row, (t, e) in zip(logits, Y.tolist()):
        h = torch.sigmoid(row)
        y = next(k for k in range(1, len(bounds))
                 if bounds[k - 1] <= t < bounds[k])
        S = [torch.ones((), dtype=row.dtype)]
        for k in range(1, len(h) + 1):
            S.append(S[-1] * (1 - h[k - 1]))
        losses.append(-torch.log(S[y - 1]) - torch.log(h[y - 1]) if e
                      else -torch.log(S[y]))
    return torch.stack(losses).mean()


@pytest.mark.parametrize('seed', range(4))
def test_cox_equals_the_pairwise_reference_with_gradients(seed):
    Y = _targets(17, seed)
    r = torch.randn(17, dtype=torch.float64, requires_grad=True)
    r_ref = r.detach().clone().requires_grad_()
    loss = CoxPHLoss()(r, Y)
    expected = cox_reference(r_ref, Y)
    assert torch.allclose(loss, expected, rtol=1e-12, atol=1e-12)
    loss.backward()
    expected.backward()
    assert torch.allclose(r.grad, r_ref.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda v: CoxPHLoss()(v, Y), (r, ))


@pytest.mark.parametrize('seed', range(3))
def test_cox_equals_scikit_survival_partial_likelihood(seed):
    from sksurv.linear_model.coxph import CoxPHOptimizer

    Y = _targets(25, seed)
    r = torch.randn(25, dtype=torch.float64)
    times, events = Y[:, 0].numpy(), Y[:, 1].numpy().astype(bool)
    optimizer = CoxPHOptimizer(r.numpy()[:, None], events, times,
                               alpha=np.zeros(1), ties='breslow')
    # scikit-survival averages over all samples; SPEC over the events.
    theirs = optimizer.nlog_likelihood(np.ones(1)) * 25 / events.sum()
    assert float(CoxPHLoss()(r, Y)) == pytest.approx(theirs, rel=1e-10)


def test_cox_batch_without_event_contributes_nothing():
    r = torch.randn(4, requires_grad=True)
    Y = torch.tensor([[1.0, 0], [2, 0], [3, 0], [4, 0]])
    loss = CoxPHLoss()(r, Y)
    loss.backward()
    assert loss.item() == 0 and torch.equal(r.grad, torch.zeros(4))


@pytest.mark.parametrize('seed', range(4))
def test_nll_equals_the_formula_with_gradients(seed):
    Y = _targets(13, seed, ties=False)
    Y[:, 0] = Y[:, 0] / 100
    Y[1, 0] = 20.0   # exactly on a cut point: the interval it starts
    cuts = [20.0, 45.5, 70.0]
    logits = torch.randn(13, 4, dtype=torch.float64, requires_grad=True)
    ref_logits = logits.detach().clone().requires_grad_()
    criterion = DiscreteTimeNLLLoss(cuts)
    loss = criterion(logits, Y)
    expected = nll_reference(ref_logits, Y, cuts)
    assert torch.allclose(loss, expected, rtol=1e-12, atol=1e-12)
    loss.backward()
    expected.backward()
    assert torch.allclose(logits.grad, ref_logits.grad, rtol=1e-10,
                          atol=1e-12)
    assert torch.autograd.gradcheck(lambda v: criterion(v, Y), (logits, ))


def test_nll_survival_and_risk():
    criterion = DiscreteTimeNLLLoss([1.0, 2.0])
    logits = torch.randn(5, 3, dtype=torch.float64)
    h = torch.sigmoid(logits)
    S = torch.cumprod(1 - h, dim=1)
    assert torch.allclose(criterion.survival(logits), S)
    assert torch.allclose(criterion.risk(logits), -S.sum(1))
    assert criterion.num_outputs == 3
    assert 'cut_points=[1, 2]' in repr(criterion)
    # The cut points travel with the module but not in its state dict.
    assert 'cut_points' not in criterion.state_dict()


def test_cut_points_are_event_time_quantiles():
    times = [1, 2, 3, 4, 5, 6, 7, 8, 100, 200]
    events = [1] * 8 + [0, 0]
    cuts = survival_cut_points(times, events, 4)
    assert cuts == pytest.approx(np.quantile(np.arange(1, 9), [.25, .5, .75])
                                 .tolist())
    assert survival_cut_points(times, events, 1) == []
    with pytest.raises(ValueError, match='fewer intervals'):
        survival_cut_points([5] * 6, [1] * 6, 4)
    with pytest.raises(ValueError, match='at least one observed event'):
        survival_cut_points([1, 2], [0, 0], 2)


@pytest.mark.parametrize('bad,words', [
    ([2.0, 1.0], 'strictly increasing'), ([0.0, 1.0], 'positive'),
    ([1.0, float('nan')], 'finite')])
def test_bad_cut_points(bad, words):
    with pytest.raises(ValueError, match=words):
        DiscreteTimeNLLLoss(bad)


@pytest.mark.parametrize('Y,words', [
    (torch.tensor([1.0, 0.0]), 'shape'),
    (torch.tensor([[-1.0, 1], [2, 0]]), 'non-negative'),
    (torch.tensor([[float('inf'), 1], [2, 0]]), 'finite'),
    (torch.tensor([[1.0, 2], [2, 0]]), 'events must be 0'),
])
@pytest.mark.parametrize('loss', ['cox', 'nll'])
def test_models_check_survival_targets(Y, words, loss):
    criterion = make_survival_loss(loss, [1.5, 3.0])
    model = SmABMIL(8, criterion=criterion)
    data_x, edges = torch.randn(6, 8), torch.tensor([[0, 1, 3], [1, 2, 4]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match=words):
        model.compute_loss(Y, data_x, edges, batch=batch)


@pytest.mark.parametrize('model_class', [SmABMIL, SmTransformerABMIL])
@pytest.mark.parametrize('loss', ['cox', 'nll'])
def test_models_train_on_survival_targets(model_class, loss):
    torch.manual_seed(0)
    criterion = make_survival_loss(loss, [1.5, 3.0])
    model = model_class(8, criterion=criterion)
    assert model.task == 'survival'
    assert model.num_classes == criterion.num_outputs
    x, edges = torch.randn(6, 8), torch.tensor([[0, 1, 3], [1, 2, 4]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    Y = torch.tensor([[1.0, 1], [4.0, 0]])
    logits, losses = model.compute_loss(Y, x, edges, batch=batch)
    (loss_value, ) = losses.values()
    loss_value.backward()
    assert model.risk(logits).shape == (2, )
    assert all(p.grad is not None for p in model.classifier.parameters())
    with pytest.raises(ValueError, match="'num_classes' \\(2\\)"):
        model_class(8, criterion=make_survival_loss('nll', [1.0, 2.0]),
                    num_classes=2)
