"""Survival metrics: Harrell's c-index against a pair-by-pair reference and
scikit-survival on random data with ties and censoring; the other metrics
as the libraries compute them; Kaplan-Meier groups."""
import numpy as np
import pytest

from pyg_sm.train.records import SurvivalRecord
from pyg_sm.train.survival import (
    evaluate_survival,
    harrell_c_index,
    kaplan_meier_groups,
    survival_metrics,
)


def harrell_reference(times, events, risks):
    """Over pairs with t_i < t_j and e_i = 1, the share with r_i > r_j,
    ties in risk counting 1/2; a tie in time between an event (i) and a
    censoring (j) is a pair too (j outlived i), as scikit-survival and
    lifelines count it."""
    concordant = pairs = 0.0
    for i in range(len(times)):
        for j in range(len(times)):
            if events[i] and (times[i] < times[j] or (
                    times[i] == times[j] and not events[j])):
                pairs += 1
                concordant += 1.0 if risks[i] > risks[j] else \
                    0.5 if risks[i] == risks[j] else 0.0
    return concordant / pairs


def _random(seed, n=60):
    rng = np.random.default_rng(seed)
    times = rng.integers(1, 15, n).astype(float)      # many tied times
    events = (rng.random(n) < 0.65).astype(int)       # about 35% censored
    risks = np.round(rng.normal(size=n) - 0.1 * times, 1)  # tied risks
    return times, events, risks


@pytest.mark.parametrize('seed', range(6))
def test_harrell_c_index_equals_reference_and_scikit_survival(seed):
    from sksurv.metrics import concordance_index_censored

    times, events, risks = _random(seed)
    ours = harrell_c_index(times, events, risks)
    theirs = concordance_index_censored(events.astype(bool), times,
                                        risks)[0]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours == pytest.approx(harrell_reference(times, events, risks),
                                 abs=1e-12)


def test_harrell_c_index_without_comparable_pairs():
    assert harrell_c_index([1, 2], [0, 0], [0.1, 0.2]) is None
    assert harrell_c_index([3], [1], [0.1]) is None


def test_survival_metrics_are_the_libraries():
    from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc
    from sksurv.util import Surv

    train_t, train_e, _ = _random(10, 120)
    train_t = train_t + 5  # the training follow-up outlasts the test's
    times, events, risks = _random(11, 50)
    survival = np.sort(np.random.default_rng(0).random((50, 3)),
                       axis=1)[:, ::-1]
    out = survival_metrics(times, events, risks, train_t, train_e,
                           survival, [4.0, 8.0])
    train = Surv.from_arrays(train_e.astype(bool), train_t)
    test = Surv.from_arrays(events.astype(bool), times)
    assert out['c_index_uno'] == pytest.approx(concordance_index_ipcw(
        train, test, risks, tau=train_t.max())[0])
    quartiles = out['time_auc']['times']
    assert quartiles == sorted(set(np.quantile(times[events > 0],
                                               [.25, .5, .75])))
    assert out['time_auc']['mean'] == pytest.approx(cumulative_dynamic_auc(
        train, test, risks, quartiles)[1])
    assert 0 < out['integrated_brier_score'] < 1
    assert out['num_events'] == events.sum() and not out['notes']


def test_metrics_the_data_cannot_give_are_none_with_a_note():
    out = survival_metrics([1.0, 2.0, 3.0], [0, 0, 0], [0.1, 0.2, 0.3],
                           [1.0, 5.0], [1, 1])
    assert out['c_index'] is None and out['time_auc'] is None
    assert out['notes']


def test_evaluate_survival_reads_records():
    records = [SurvivalRecord(f's{i}', time=t, event=e, risk=r)
               for i, (t, e, r) in enumerate(zip(*_random(3, 30)))]
    records.append(SurvivalRecord('unknown', risk=0.0))
    out = evaluate_survival(records, *_random(4, 80)[:2])
    assert out['num_bags'] == 30 and 'integrated_brier_score' not in out


def test_kaplan_meier_groups_and_log_rank():
    from lifelines.statistics import logrank_test

    times, events, risks = _random(5, 80)
    split = kaplan_meier_groups(times, events, risks, float(np.median(risks)))
    high = risks > np.median(risks)
    assert split['p_value'] == pytest.approx(logrank_test(
        times[high], times[~high], events[high], events[~high]).p_value)
    assert set(split['groups']) == {'low risk', 'high risk'}
    one = kaplan_meier_groups(times, events, risks, risks.max())
    assert one['p_value'] is None and list(one['groups']) == ['low risk']
