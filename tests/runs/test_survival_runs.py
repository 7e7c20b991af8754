"""Survival runs: the labels, their errors before training, patients as
bags, training with both losses, evaluate / predict reading the task from
the checkpoint, folds, the outputs and the CLI flags."""
import csv
import math

import pytest
import torch
from torch_geometric.data import Batch

from pyg_sm import SlideDataset, SmABMIL, make_synthetic_slides
from pyg_sm.datasets.cases import CaseDataset, merge_slides
from pyg_sm.runs import PygSmError, RunFolder, TrainConfig
from pyg_sm.train import read_checkpoint
from run_helpers import score_run, train_run


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return make_synthetic_slides(tmp_path_factory.mktemp('survival'),
                                 num_slides=16, feature_dim=6, seed=3,
                                 slide_images=False, task='survival')


def _rows(root):
    with open(root / 'labels.csv') as f:
        return list(csv.DictReader(f))


def _write(root, rows, columns=None):
    columns = columns or list(rows[0])
    with open(root / 'labels.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def _with_cases(root, tmp_path, name='cases'):
    r"""The cohort with patients of two slides (the second slide of each
    pair takes the first one's outcome)."""
    import shutil

    data = shutil.copytree(root, tmp_path / name)
    rows = _rows(data)
    for i, row in enumerate(rows):
        row['case_id'] = f'patient_{i // 2}'
        row['label'] = str(i // 2 % 2)
        if i % 2:
            for column in ('time', 'event'):
                row[column] = rows[i - 1][column]
    _write(data, rows)
    return data


def test_synthetic_survival_cohort(cohort):
    rows = _rows(cohort)
    events = [int(r['event']) for r in rows]
    assert {'slide_id', 'label', 'time', 'event'} <= set(rows[0])
    assert 0 < sum(events) < len(events)
    assert all(float(r['time']) > 0 for r in rows)
    dataset = SlideDataset(cohort, task='survival')
    assert dataset.classes is None and dataset.labels == events
    assert dataset[0].y.shape == (1, 2)
    assert dataset[0].y[0].tolist() == [float(rows[0]['time']), events[0]]


@pytest.mark.parametrize('edit,words', [
    (lambda r: r.pop('time'), "no column 'time' (--time-column)"),
    (lambda r: r.pop('event'), "no column 'event' (--event-column)"),
    (lambda r: r.update(time='-3'), "slide 'slide_002': column 'time'"),
    (lambda r: r.update(time=''), "have no time or event: slide_002 (line "
                                  "4); --missing-outcomes skip"),
    (lambda r: r.update(time='nan'), "have no time or event: slide_002"),
    (lambda r: r.update(event='NA'), "have no time or event: slide_002"),
    (lambda r: r.update(time='inf'), 'finite time'),
    (lambda r: r.update(time='soon'), 'not a number'),
    (lambda r: r.update(event='2'), "column 'event' (--event-column)"),
    (lambda r: r.update(event='yes'), 'not a number'),
])
def test_bad_survival_labels_name_the_slide_and_column(cohort, tmp_path,
                                                       edit, words):
    import shutil

    data = shutil.copytree(cohort, tmp_path / 'data')
    rows = _rows(data)
    for row in rows if 'column' in words and 'no column' in words \
            else rows[2:3]:
        edit(row)
    _write(data, rows, list(rows[0]) if 'no column' not in words
           else list(rows[0]))
    with pytest.raises(PygSmError, match=words.replace('(', r'\(')
                       .replace(')', r'\)')):
        train_run(data, tmp_path / 'run', task='survival')
    assert not (tmp_path / 'run').exists()


def test_a_patient_with_two_outcomes_is_an_error(cohort, tmp_path):
    data = _with_cases(cohort, tmp_path)
    rows = _rows(data)
    rows[1]['time'] = '999'
    _write(data, rows)
    with pytest.raises(PygSmError, match="patient 'patient_0' has different "
                                         "outcomes"):
        train_run(data, tmp_path / 'run', task='survival')


def test_no_event_in_training_or_validation_stops_before_training(
        cohort, tmp_path):
    import shutil

    data = shutil.copytree(cohort, tmp_path / 'data')
    rows = _rows(data)
    for row in rows:
        row['event'] = '0'
    _write(data, rows)
    with pytest.raises(PygSmError, match='no slide of the cohort has an '
                                         'observed event'):
        train_run(data, tmp_path / 'run', task='survival')
    rows[0]['event'] = '1'
    _write(data, rows)
    with pytest.raises(PygSmError, match='split has no observed event'):
        train_run(data, tmp_path / 'run', task='survival')
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('settings,words', [
    (dict(survival_loss='cox', batch_size=1), '--batch-size 2 or more'),
    (dict(monitor='val_auroc'), 'does not apply to --task survival'),
    (dict(classes=['a', 'b']), '--classes concerns classification'),
    (dict(num_bins=0), 'num_bins'),
])
def test_bad_survival_settings(settings, words):
    with pytest.raises(PygSmError, match=words):
        TrainConfig(data_dir='x', task='survival', **settings)
    assert TrainConfig(data_dir='x', task='survival').monitor == \
        'val_c_index'
    assert TrainConfig(data_dir='x').monitor == 'val_loss'


def test_a_patient_bag_is_the_disjoint_union_of_its_slides(cohort,
                                                            tmp_path):
    data = _with_cases(cohort, tmp_path)
    slides = SlideDataset(data, task='survival')
    cases = CaseDataset(slides)
    assert len(cases) == len(slides) // 2
    assert cases.slide_ids_of(0) == ['slide_000', 'slide_001']
    bag = cases[0]
    first, second = slides[0], slides[1]
    union = Batch.from_data_list([first, second])
    assert torch.equal(bag.x, union.x)
    assert torch.equal(bag.edge_index, union.edge_index)
    assert bag.slide_ids == ['slide_000', 'slide_001']
    assert torch.equal(bag.slide_part, union.batch)
    torch.manual_seed(0)
    model = SmABMIL(6).eval()
    with torch.no_grad():
        logit, att = model(bag.x, bag.edge_index, return_att=True)
        # One graph without edges between the slides: the model sees the
        # union, and the softmax runs over all of the patient's patches.
        expected, expected_att = model(union.x, union.edge_index,
                                       return_att=True)
        apart = model(union.x, union.edge_index, batch=union.batch)
    assert torch.allclose(logit, expected)
    assert torch.allclose(att, expected_att)
    assert apart.shape == (2, )  # as two bags, two logits
    assert float(torch.softmax(att, 0).sum()) == pytest.approx(1.0)
    assert merge_slides([first], 'p').num_nodes == first.num_nodes


def test_bags_by_case_need_case_ids(cohort):
    with pytest.raises(PygSmError, match='need a case_id column'):
        CaseDataset(SlideDataset(cohort, task='survival'))


@pytest.mark.parametrize('loss', ['nll', 'cox'])
def test_survival_training_evaluate_and_predict(cohort, tmp_path, loss):
    results = train_run(cohort, tmp_path / 'run', task='survival',
                        survival_loss=loss, num_bins=3, batch_size=4)
    assert results['task']['task'] == 'survival'
    validation = results['validation']
    assert 0 <= validation['c_index'] <= 1
    assert 'val_c_index' in results['history'][-1]
    if loss == 'cox':
        assert 'batches_without_events' in results['history'][-1]
    saved = read_checkpoint(tmp_path / 'run' / 'checkpoint.pt')
    task = saved['task']
    assert task['survival_loss'] == loss and task['time_column'] == 'time'
    assert len(task['train_times']) == len(results['split']['train'])
    assert math.isfinite(task['median_train_risk'])
    if loss == 'nll':
        assert len(task['cut_points']) == 2
    assert (tmp_path / 'run' / 'km.png').is_file()
    assert results['kaplan_meier']['bags'] == 'validation'
    # evaluate and predict read the task from the checkpoint.
    evaluated = score_run('evaluate', cohort, tmp_path / 'run' /
                          'checkpoint.pt', tmp_path / 'eval', heatmaps=1)
    metrics = evaluated['metrics']
    assert {'c_index', 'c_index_uno', 'time_auc', 'instance_auroc'} <= \
        set(metrics)
    assert ('integrated_brier_score' in metrics) == (loss == 'nll')
    run = RunFolder(tmp_path / 'eval')
    assert run.kaplan_meier_path.is_file()
    with open(run.predictions_path) as f:
        header = next(csv.reader(f))
    assert header[:4] == ['slide_id', 'risk', 'time', 'event']
    assert len([h for h in header if h.startswith('survival_')]) == \
        (2 if loss == 'nll' else 0)
    predictions = run.predictions()
    assert all(p.risk is not None for p in predictions)
    assert run.scores(predictions[0].slide_id).attention.sum() == \
        pytest.approx(1.0, abs=1e-5)
    predicted = score_run('predict', cohort, tmp_path / 'run' /
                          'checkpoint.pt', tmp_path / 'pred', heatmaps=0)
    assert 'metrics' not in predicted
    if loss == 'nll':
        # Against annotations: a survival model's detections are scored by
        # the attention alone (it predicts no class probability).
        located = score_run('evaluate', cohort, tmp_path / 'run' /
                            'checkpoint.pt', tmp_path / 'located',
                            heatmaps=0, annotations=cohort / 'annotations',
                            mpp=2.0)['localization']
        assert located['slides_used'] and \
            0 <= located['froc']['score'] <= 1


def test_bags_by_case_train_and_export_each_slide(cohort, tmp_path):
    data = _with_cases(cohort, tmp_path)
    results = train_run(data, tmp_path / 'run', task='survival',
                        bag_by='case', num_bins=2)
    assert results['task']['bag_by'] == 'case'
    validation = results['validation']['predictions']
    assert all(len(p['slide_ids']) == 2 for p in validation)
    evaluated = score_run('evaluate', data, tmp_path / 'run' /
                          'checkpoint.pt', tmp_path / 'eval', heatmaps=1)
    run = RunFolder(tmp_path / 'eval')
    assert len(run.slide_ids) == 16           # every slide has its scores
    with open(run.predictions_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and rows[0]['slide_ids'].count(';') == 1
    assert evaluated['heatmaps']
    # Per slide: the weights within the slide, the logits of the patient.
    scores = run.scores('slide_000')
    assert float(scores.attention.sum()) == pytest.approx(1.0, abs=1e-5)
    # Classification by patient works too.
    classified = train_run(data, tmp_path / 'classified', bag_by='case')
    assert classified['validation']['num_slides'] == \
        len(classified['validation']['predictions'])


def test_folds_report_mean_and_sd(cohort, tmp_path, capsys):
    results = train_run(cohort, tmp_path / 'run', task='survival', folds=2,
                        num_bins=2)
    summary = results['summary']
    assert summary['c_index']['n'] == 2
    assert 'c_index: ' in capsys.readouterr().out


def test_cli_survival_flags(cohort, tmp_path):
    from pyg_sm.cli import main

    status = main(['train', str(cohort), '--out', str(tmp_path / 'run'),
                   '--task', 'survival', '--survival-loss', 'cox',
                   '--time-column', 'time', '--event-column', 'event',
                   '--bag-by', 'slide', '--num-bins', '3', '--epochs', '1',
                   '--att-dim', '8', '--heatmaps', '0'])
    assert status in (0, None)
    saved = read_checkpoint(tmp_path / 'run' / 'checkpoint.pt')
    assert saved['task']['survival_loss'] == 'cox'
    status = main(['evaluate', str(cohort), '--checkpoint',
                   str(tmp_path / 'run' / 'checkpoint.pt'), '--out',
                   str(tmp_path / 'eval'), '--heatmaps', '0', '--bag-by',
                   'slide', '--time-column', 'time', '--event-column',
                   'event'])
    assert status in (0, None)
    assert (tmp_path / 'eval' / 'km.png').is_file()
