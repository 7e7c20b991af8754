r"""Survival metrics of risk scores, by the libraries made for them:
scikit-survival for the concordance, the time-dependent AUC and the
integrated Brier score, lifelines for Kaplan-Meier curves and the log-rank
test (see :doc:`/math`, survival heads)."""
from typing import Dict, Optional, Sequence

import numpy as np

from .metrics import attention_metrics, instance_auroc


def _structured(times: Sequence[float], events: Sequence[int]):
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(events, dtype=bool),
                            np.asarray(times, dtype=np.float64))


def harrell_c_index(times: Sequence[float], events: Sequence[int],
                    risks: Sequence[float]) -> Optional[float]:
    r"""Harrell's c-index: over the pairs :math:`(i, j)` with :math:`t_i <
    t_j` and :math:`e_i = 1`, the share with :math:`r_i > r_j` (ties in
    risk count :math:`1/2`), by scikit-survival's
    ``concordance_index_censored``; :obj:`None` without a comparable
    pair. As in scikit-survival and lifelines, an event and a censoring
    at the same time also make a pair (the censored bag outlived the
    other)."""
    from sksurv.metrics import concordance_index_censored

    events = np.asarray(events, dtype=bool)
    if not events.any() or len(events) < 2:
        return None
    try:
        return float(concordance_index_censored(
            events, np.asarray(times, dtype=np.float64),
            np.asarray(risks, dtype=np.float64))[0])
    except ValueError:  # no comparable pair (every time tied)
        return None


def _inside(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.unique(values[(values >= low) & (values < high)])


def survival_metrics(times: Sequence[float], events: Sequence[int],
                     risks: Sequence[float], train_times: Sequence[float],
                     train_events: Sequence[int],
                     survival: Optional[np.ndarray] = None,
                     cut_points: Optional[Sequence[float]] = None) -> Dict:
    r"""Metrics of risk scores against observed times and events:

    - ``c_index``: Harrell's (:func:`harrell_c_index`);
    - ``c_index_uno``: Uno's, the pairs weighted by the inverse
      probability of censoring estimated on the training bags
      (scikit-survival's ``concordance_index_ipcw``, truncated at the
      largest training time);
    - ``time_auc``: the cumulative/dynamic AUC at the quartiles of the
      event times (scikit-survival's ``cumulative_dynamic_auc``), with its
      ``times``, ``auc`` and ``mean``;
    - ``integrated_brier_score`` when :obj:`survival` (the :math:`(n, K)`
      survival probabilities past each interval of :obj:`cut_points`, as
      :class:`~pyg_sm.nn.DiscreteTimeNLLLoss` gives them) is given, on 50
      times from the 10th to the 90th percentile of the observed times.

    A metric that the data cannot give (no event, too few bags, times
    outside the training range) is :obj:`None`, and ``notes`` says why.
    """
    from sksurv.metrics import (
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )

    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events, dtype=np.int64)
    risks = np.asarray(risks, dtype=np.float64)
    train = _structured(train_times, train_events)
    test = _structured(times, events)
    horizon = float(np.max(train_times))
    out: Dict = {'c_index': harrell_c_index(times, events, risks),
                 'c_index_uno': None, 'time_auc': None,
                 'num_bags': int(len(times)), 'num_events': int(events.sum()),
                 'notes': []}
    observed = times[events > 0]
    try:
        out['c_index_uno'] = float(concordance_index_ipcw(
            train, test, risks, tau=horizon)[0])
    except (ValueError, ZeroDivisionError) as error:
        out['notes'].append(f"Uno's c-index: {error}")
    quartiles = _inside(np.quantile(observed, [0.25, 0.5, 0.75])
                        if observed.size else np.array([]),
                        times.min(), min(times.max(), horizon))
    if quartiles.size:
        try:
            auc, mean = cumulative_dynamic_auc(train, test, risks, quartiles)
            out['time_auc'] = {'times': quartiles.tolist(),
                               'auc': [float(a) for a in auc],
                               'mean': float(mean)}
        except ValueError as error:
            out['notes'].append(f'time-dependent AUC: {error}')
    else:
        out['notes'].append('time-dependent AUC: no event time inside the '
                            'follow-up')
    if survival is not None:
        out['integrated_brier_score'] = None
        grid = _inside(np.linspace(*np.quantile(times, [0.1, 0.9]), 50),
                       times.min(), min(times.max(), horizon))
        if grid.size >= 2:
            cuts = np.asarray(cut_points or [], dtype=np.float64)
            # S(t) before interval k's end: 1 in the first interval, then
            # S_{k-1} (survived the earlier intervals).
            steps = np.concatenate([np.ones((len(times), 1)),
                                    np.asarray(survival)], axis=1)
            estimate = steps[:, np.searchsorted(cuts, grid, side='right')]
            try:
                out['integrated_brier_score'] = float(integrated_brier_score(
                    train, test, estimate, grid))
            except ValueError as error:
                out['notes'].append(f'integrated Brier score: {error}')
        else:
            out['notes'].append('integrated Brier score: too few distinct '
                                'times')
    return out


def evaluate_survival(records: Sequence, train_times: Sequence[float],
                      train_events: Sequence[int],
                      cut_points: Optional[Sequence[float]] = None) -> Dict:
    r"""The :func:`survival_metrics` of the bags of
    :func:`~pyg_sm.train.predict_slides` whose time is known, and the
    instance AUROC of the attention values where patch labels exist."""
    known = [r for r in records if r.time is not None]
    if not known:
        return {'c_index': None, 'instance_auroc': instance_auroc(records),
                'num_bags': 0, 'notes': ['no bag with a known time']}
    survival = None
    if known[0].survival is not None:
        survival = np.array([r.survival for r in known], dtype=np.float64)
    metrics = survival_metrics([r.time for r in known],
                               [r.event for r in known],
                               [r.risk for r in known], train_times,
                               train_events, survival, cut_points)
    metrics.update(attention_metrics(known))
    return metrics


def kaplan_meier_groups(times: Sequence[float], events: Sequence[int],
                        risks: Sequence[float], threshold: float) -> Dict:
    r"""The bags split at :obj:`threshold` (the median training risk):
    each group's Kaplan-Meier curve (lifelines' ``KaplanMeierFitter``) and
    the log-rank test between them (``logrank_test``). Returns
    ``{'groups': {name: fitter}, 'p_value': ..., 'threshold': ...}``;
    ``p_value`` is :obj:`None` when a group is empty."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events, dtype=np.int64)
    high = np.asarray(risks, dtype=np.float64) > threshold
    groups = {}
    for name, members in (('low risk', ~high), ('high risk', high)):
        if members.any():
            fitter = KaplanMeierFitter(label=f'{name} (n={members.sum()})')
            groups[name] = fitter.fit(times[members], events[members])
    p_value = None
    if high.any() and (~high).any():
        p_value = float(logrank_test(times[high], times[~high],
                                     events[high], events[~high]).p_value)
    return {'groups': groups, 'p_value': p_value,
            'threshold': float(threshold)}
