"""Survival tables and splits as the field ships them: TCGA tables of
Patch-GCN, MCAT, SurvPath and PORPOISE (censorship = 1 for a censored
patient, slide ids ending in .svs, an unnamed index column, rows without an
outcome), site-held-out splits, and the discrete-time NLL learning what
Cox learns on real outcome distributions."""
import csv

import numpy as np
import pytest

from field_files import (
    TCGA_COLUMNS,
    exponential_outcomes,
    tcga_cohort,
    tcga_slide_ids,
)
from pyg_sm import SlideDataset, make_synthetic_slides
from pyg_sm.runs import PygSmError, RunFolder, TrainConfig
from pyg_sm.train import read_checkpoint, score_slides
from pyg_sm.train.survival import harrell_c_index
from run_helpers import copy, score_run, train_run

TCGA = dict(task='survival', time_column='survival_months',
            censorship_column='censorship')


@pytest.fixture(scope='module')
def tcga(tmp_path_factory):
    return tcga_cohort(tmp_path_factory.mktemp('tcga'),
                       np.random.default_rng(0))


def _rows(root):
    with open(root / 'labels.csv', newline='') as f:
        return list(csv.DictReader(f))


def _write(root, rows):
    with open(root / 'labels.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, TCGA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_the_table_has_the_shape_of_patch_gcns(tcga):
    rows = _rows(tcga)
    assert list(rows[0]) == TCGA_COLUMNS and rows[0][''] == '0'
    assert all(r['slide_id'].endswith('.svs') for r in rows)
    censored = np.mean([r['censorship'] == '1' for r in rows])
    assert 0.5 < censored < 0.62
    assert max(float(r['survival_months']) for r in rows) > 140
    assert len({r['case_id'] for r in rows}) == 359 and len(rows) == 423


def test_censorship_column_reads_event_as_one_minus_it(tcga):
    rows = {r['slide_id'][:-4]: r for r in _rows(tcga)}
    dataset = SlideDataset(tcga, **{k: v for k, v in TCGA.items()})
    assert [e for e in dataset.events] == [
        1 - int(rows[s]['censorship']) for s in dataset.slide_ids]
    assert dataset.notes and 'read as their stem' in dataset.notes[0]
    assert dataset.case_ids[0].startswith('TCGA-')


@pytest.mark.parametrize('settings,words', [
    (dict(event_column='censorship'), "--event-column censorship: a column "
                                      "named 'censorship' holds 1 for a "
                                      "censored patient"),
    (dict(event_column='Censored'), 'pass --censorship-column Censored'),
    (dict(event_column='event', censorship_column='censorship'),
     'not both'),
])
def test_a_censorship_column_as_event_column_is_an_error(tcga, settings,
                                                         words):
    with pytest.raises(PygSmError, match=words):
        TrainConfig(data_dir=tcga, task='survival', **settings)


def test_evaluate_reads_the_checkpoints_censorship_column(tcga, tmp_path):
    data = copy(tcga, tmp_path)
    rows = _rows(data)[:60]
    _write(data, rows)
    run = train_run(data, tmp_path / 'run', epochs=1, heatmaps=0, **TCGA)
    task = read_checkpoint(tmp_path / 'run' / 'checkpoint.pt')['task']
    assert task['censorship_column'] == 'censorship'
    assert task['event_column'] is None
    assert run['task']['censorship_column'] == 'censorship'
    evaluated = score_run('evaluate', data, tmp_path / 'run' /
                          'checkpoint.pt', tmp_path / 'eval', heatmaps=0)
    events = {r['slide_id'][:-4]: 1 - int(r['censorship']) for r in rows}
    assert {p['slide_id']: p['event'] for p in evaluated['predictions']} \
        == events


def test_rows_without_an_outcome_are_an_error_or_skipped(tcga, tmp_path):
    data = copy(tcga, tmp_path)
    rows = _rows(data)[:60]
    rows[3]['survival_months'] = ''
    rows[7]['censorship'] = 'NA'
    _write(data, rows)
    with pytest.raises(PygSmError, match=r"2 row\(s\) .* have no "
                                         r"survival_months or censorship: "
                                         r"TCGA-.*\(line 5\), TCGA-.*\(line "
                                         r"9\); --missing-outcomes skip"):
        train_run(data, tmp_path / 'run', epochs=1, **TCGA)
    assert not (tmp_path / 'run').exists()
    run = train_run(data, tmp_path / 'run', epochs=1, heatmaps=0,
                    missing_outcomes='skip', **TCGA)
    assert run['skipped_outcomes'] == [rows[3]['slide_id'][:-4],
                                       rows[7]['slide_id'][:-4]]
    used = {s for side in run['split'].values() for s in side}
    assert not used & set(run['skipped_outcomes']) and len(used) == 58


# Site-held-out splits -------------------------------------------------------

@pytest.mark.parametrize('split_by,bag_by', [('site', 'slide'),
                                             ('tss', 'case')])
def test_site_held_out_splits(tcga, tmp_path, split_by, bag_by):
    """--split-by site (a column) and tss (no such column: the TCGA
    barcode's site): no site on two sides, patients kept whole, the sides'
    sites in results.json."""
    data = copy(tcga, tmp_path)
    if split_by == 'tss':
        rows = _rows(data)
        for row in rows:
            row.pop('site')
        with open(data / 'labels.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, [c for c in TCGA_COLUMNS
                                        if c != 'site'])
            writer.writeheader()
            writer.writerows(rows)
    run = train_run(data, tmp_path / 'run', epochs=1, heatmaps=0,
                    split_by=split_by, bag_by=bag_by, test_fraction=0.2,
                    **TCGA)
    site_of = {s: c.split('-')[1] for s, c in tcga_slide_ids(
        data / 'labels.csv')}
    sides = {side: {site_of[s] for s in ids}
             for side, ids in run['split'].items()}
    assert all(sides.values())
    assert not (sides['train'] & sides['val'] or sides['train'] &
                sides['test'] or sides['val'] & sides['test'])
    assert run['split_by'] == split_by
    assert run['split_groups'] == [{k: sorted(v) for k, v in sides.items()}]


def test_site_folds_and_their_errors(tcga, tmp_path):
    run = train_run(tcga, tmp_path / 'run', epochs=1, heatmaps=0, folds=4,
                    split_by='site', **TCGA)
    site_of = {s: c.split('-')[1] for s, c in tcga_slide_ids(
        tcga / 'labels.csv')}
    validated = [set(g['val']) for g in run['split_groups']]
    assert all(len(v) == 2 for v in validated)
    assert set.union(*validated) == set(site_of.values())
    with pytest.raises(PygSmError, match="no column 'centre' .--split-by"):
        train_run(tcga, tmp_path / 'x', split_by='centre', **TCGA)
    data = copy(tcga, tmp_path)
    rows = _rows(data)
    rows[1]['site'] = 'ZZ'  # one of patient 0's two slides elsewhere
    _write(data, rows)
    with pytest.raises(PygSmError, match="patient 'TCGA-A1-1000' has "
                                         "slides in two --split-by site "
                                         "groups"):
        train_run(data, tmp_path / 'x', split_by='site', **TCGA)


def test_site_split_without_events_on_a_side_is_an_error(tcga, tmp_path):
    data = copy(tcga, tmp_path)
    rows = _rows(data)
    for row in rows:
        if row['site'] in ('BH', 'E2'):
            row['censorship'] = '1'
        else:
            row['site'] = 'A1'  # every other site merged: 3 groups
    _write(data, rows)
    with pytest.raises(PygSmError, match='split has no observed event'):
        train_run(data, tmp_path / 'run', split_by='site', seed=1,
                  val_fraction=0.2, **TCGA)


def test_tss_needs_tcga_barcodes(tmp_path):
    cohort = make_synthetic_slides(tmp_path / 'c', num_slides=8,
                                   feature_dim=4, slide_images=False)
    with pytest.raises(PygSmError, match=r"8 ids are not TCGA barcodes .* "
                                         r"slide_000, slide_001"):
        train_run(cohort, tmp_path / 'run', split_by='tss')


# The discrete-time NLL on real outcome distributions ------------------------

def _train_c_index(run_dir, dataset_root, split, settings):
    """Harrell's c-index of the trained model on its training slides."""
    model = RunFolder(run_dir).load_model()
    dataset = SlideDataset(dataset_root, slide_ids=split['train'],
                           **{k: v for k, v in settings.items()
                              if k in ('task', 'time_column',
                                       'censorship_column')})
    records = score_slides(model, dataset)
    return harrell_c_index([r.time for r in records],
                           [r.event for r in records],
                           [r.risk for r in records])


@pytest.mark.parametrize('cohort', ['tcga', 'synthetic'])
def test_nll_learns_what_cox_learns(tcga, tmp_path, cohort):
    """Heavy censoring and long-tailed times (the TCGA-like cohort, 56%
    censored, times to 160 months), and our synthetic cohort (hazard
    exp(2 z) of the lesion burden, 30% censored, features off zero): the
    default nll reaches 0.9 of Cox's
    validation c-index on the same split, and its risks are concordant on
    the training slides after one epoch and at the end."""
    if cohort == 'tcga':
        root, settings = tcga, dict(TCGA)
    else:
        root = exponential_outcomes(make_synthetic_slides(
            tmp_path / 'data', num_slides=160, feature_dim=16,
            slide_images=False, seed=2, signal=2.0),
            np.random.default_rng(2))
        settings = dict(task='survival')
    common = dict(heatmaps=0, monitor='last', seed=0,
                  model_options={'att_dim': 16}, **settings)
    cox = train_run(root, tmp_path / 'cox', epochs=8, survival_loss='cox',
                    batch_size=16, **common)
    nll = train_run(root, tmp_path / 'nll', epochs=8, **common)
    assert nll['split'] == cox['split']
    assert nll['validation']['c_index'] >= \
        0.9 * cox['validation']['c_index'], (nll['validation']['c_index'],
                                             cox['validation']['c_index'])
    assert _train_c_index(tmp_path / 'nll', root, nll['split'],
                          settings) > 0.6
    first = train_run(root, tmp_path / 'nll1', epochs=1, **common)
    assert _train_c_index(tmp_path / 'nll1', root, first['split'],
                          settings) > 0.5
