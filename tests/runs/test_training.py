"""pyg_sm.runs.train: any labels, patient splits, the test split, folds,
checks before training, checkpoints, epoch lines and the run folder's
guard."""
import json

import pytest
import torch

from pyg_sm import PygSmError, SlideError
from pyg_sm.runs import RunFolder, TrainConfig, train
from pyg_sm.train import load_checkpoint, model_weights, read_checkpoint
from run_helpers import (
    SMALL,
    copy,
    corrupt,
    score_run,
    slide_ids,
    small_cohort,
    train_run,
    write_labels,
)


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return small_cohort(tmp_path_factory.mktemp('cohort'))


def test_runs_on_one_cohort_share_a_graph_cache(cohort, tmp_path,
                                                monkeypatch):
    import pyg_sm.datasets.slide_dataset as slide_dataset

    built = []
    grid = slide_dataset.GridPatchGraph.edges

    def counting(self, data):
        built.append(data.slide_id)
        return grid(self, data)

    monkeypatch.setattr(slide_dataset.GridPatchGraph, 'edges', counting)
    shared = tmp_path / 'graphs'
    run = train(TrainConfig(data_dir=cohort, out=tmp_path / 'run',
                            graph_cache=shared, **SMALL))
    assert sorted(built) == slide_ids(cohort)  # each slide once
    assert len(list(shared.glob('*.pt'))) == 12
    assert not run.graph_cache_dir.exists()
    score_run('evaluate', cohort, run.checkpoint_path, tmp_path / 'eval',
              graph_cache=shared, heatmaps=0)
    assert len(built) == 12  # read back, not rebuilt
    score_run('predict', cohort, run.checkpoint_path, tmp_path / 'pred',
              heatmaps=0)
    assert len(built) == 24  # its own cache: OUT/graph_cache
    assert len(list((tmp_path / 'pred' / 'graph_cache').glob('*.pt'))) == 12


def test_training_reads_slides_through_worker_processes(cohort, tmp_path):
    results = train_run(cohort, tmp_path / 'run', workers=2)
    assert results['status'] == 'finished' and results['kind'] == 'train'
    assert results['schema'] == 'pyg-sm-run/1'
    assert len(list((tmp_path / 'run' / 'graph_cache').glob('*.pt'))) == 12


def test_string_labels_three_classes_bom_and_extra_columns(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    names = ['lung', 'colon', 'breast']
    write_labels(root, [(s, names[i % 3], f'note {i}') for i, s in
                        enumerate(slide_ids(root))],
                 header=('slide_id', 'label', 'comment'), bom=True)
    run = tmp_path / 'run'
    results = train_run(root, run, val_fraction=0.34)
    assert results['classes'] == ['breast', 'colon', 'lung']
    assert results['class_map'] == {'breast': 0, 'colon': 1, 'lung': 2}
    assert results['options']['num_classes'] == 3
    saved = read_checkpoint(run / 'checkpoint.pt')
    assert saved['classes'] == ['breast', 'colon', 'lung']
    validation = results['validation']
    assert validation['auroc_kind'] == 'macro one-vs-rest'
    assert len(validation['confusion_matrix']) == 3
    assert sum(validation['class_counts'].values()) == \
        validation['num_slides']
    prediction = validation['predictions'][0]
    assert set(prediction['probabilities']) == set(names)
    assert sum(prediction['probabilities'].values()) == pytest.approx(1)

    out = tmp_path / 'pred'
    score_run('predict', root, run / 'checkpoint.pt', out, heatmaps=0)
    predictions = RunFolder(out).predictions()
    assert list(predictions[0].probabilities) == ['breast', 'colon', 'lung']
    assert {p.predicted for p in predictions} <= set(names)
    with open(out / 'predictions.csv') as f:
        assert f.readline().strip() == \
            'slide_id,prob_breast,prob_colon,prob_lung,predicted,label'


def test_classes_order_the_classes(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    write_labels(root, [(s, ['no', 'yes'][i % 2]) for i, s in
                        enumerate(slide_ids(root))])
    results = train_run(root, tmp_path / 'run', classes=['yes', 'no'])
    assert results['classes'] == ['yes', 'no']
    assert results['options']['num_classes'] == 1  # two classes: one logit
    with pytest.raises(PygSmError, match='not among the classes'):
        train_run(root, tmp_path / 'r2', classes='yes,maybe')


@pytest.mark.parametrize('rows, words', [
    (lambda ids: [(s, 'a') for s in ids], 'one class only'),
    (lambda ids: [(ids[0], 'a'), (ids[1], 'b')], 'split is empty'),
])
def test_cohorts_that_cannot_be_split_stop_before_training(
        cohort, tmp_path, rows, words):
    root = copy(cohort, tmp_path)
    write_labels(root, rows(slide_ids(root)))
    with pytest.raises(PygSmError, match=words):
        train_run(root, tmp_path / 'run')
    assert not (tmp_path / 'run').exists()  # nothing left that blocks


@pytest.mark.parametrize('settings, words', [
    (dict(epochs=0), "'epochs' .--epochs. must be an integer of at least 1"),
    (dict(folds=1), "'folds'"),
    (dict(monitor='val_f1'), "'monitor'"),
    (dict(resume=True, overwrite=True), 'exclude each other'),
    (dict(split_file='s.csv', folds=3), 'exclude each other'),
    (dict(lr=-1.0), "'lr'"),
    (dict(validate_every=0), '--validate-every 0 goes with --monitor last'),
])
def test_settings_are_checked_when_the_config_is_made(settings, words):
    with pytest.raises(PygSmError, match=words):
        TrainConfig(data_dir='data', **settings)


def test_bad_model_options_are_user_errors(cohort, tmp_path):
    with pytest.raises(PygSmError, match='--model sm_abmil'):
        train_run(cohort, tmp_path / 'run', model_options={'att_dim': 0})
    with pytest.raises(PygSmError, match="unknown preset 'fancy'"):
        train_run(cohort, tmp_path / 'run2', preset='fancy')


@pytest.mark.parametrize('how, words', [
    ('zero-byte', 'empty'), ('garbage', 'cannot be read'),
    ('truncated', 'cannot be read'), ('nan', 'NaN'),
])
def test_every_file_is_checked_before_training(cohort, tmp_path, how,
                                               words):
    root = copy(cohort, tmp_path)
    corrupt(root, 'slide_007', how)
    with pytest.raises(SlideError, match=f"slide 'slide_007' .*{words}"):
        train_run(root, tmp_path / 'run')
    # Nothing trained, nothing left: the next run needs no --overwrite.
    assert not (tmp_path / 'run').exists()


def test_case_ids_split_file_test_set_and_folds(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    ids = slide_ids(root)
    write_labels(root, [(s, i % 2, f'patient{i // 2 % 3}{i % 2}')
                        for i, s in enumerate(ids)],
                 header=('slide_id', 'label', 'case_id'))
    results = train_run(root, tmp_path / 'run', test_fraction=0.3)
    case = {s: f'patient{i // 2 % 3}{i % 2}' for i, s in enumerate(ids)}
    parts = results['split']
    for a in parts:
        for b in parts:
            if a < b:
                assert {case[s] for s in parts[a]}.isdisjoint(
                    {case[s] for s in parts[b]})
    assert results['test']['num_slides'] == len(parts['test']) > 0

    side = {'patient00': 'train', 'patient01': 'train', 'patient10': 'val',
            'patient11': 'val', 'patient20': 'test', 'patient21': 'train'}
    with open(tmp_path / 'split.csv', 'w') as f:
        f.write('slide_id,split\n' + ''.join(f'{s},{side[case[s]]}\n'
                                             for s in ids))
    fixed = train_run(root, tmp_path / 'fixed',
                      split_file=tmp_path / 'split.csv')
    for name in ('train', 'val', 'test'):
        assert fixed['split'][name] == [s for s in ids
                                        if side[case[s]] == name]
    assert fixed['test']['num_slides'] == len(fixed['split']['test'])
    with open(tmp_path / 'leaky.csv', 'w') as f:
        f.write('slide_id,split\n' + ''.join(
            f"{s},{['train', 'val'][i % 2 == 0 and i < 4]}\n"
            for i, s in enumerate(ids)))
    with pytest.raises(PygSmError, match='more than one split'):
        train_run(root, tmp_path / 'leaky',
                  split_file=tmp_path / 'leaky.csv')

    folds = train(TrainConfig(data_dir=root, out=tmp_path / 'folds', folds=3,
                              **SMALL))
    results = folds.results()
    assert len(results['folds']) == 3
    assert results['summary']['balanced_accuracy']['n'] == 3
    assert [f.path.name for f in folds.folds()] == ['fold_1', 'fold_2',
                                                    'fold_3']
    for k, fold in enumerate(folds.folds(), start=1):
        assert fold.checkpoint_path.is_file()
        content = fold.results()
        assert content['schema'] == 'pyg-sm-run/1' and content['fold'] == k
        assert content['status'] == 'finished'
        assert type(fold.load_model()).__name__ == 'SmABMIL'
    with pytest.raises(PygSmError, match='holds 3 folds'):
        folds.load_model()


def test_epoch_lines_checkpoints_and_out_guard(cohort, tmp_path, capfd):
    run = tmp_path / 'run'
    train(TrainConfig(data_dir=cohort, out=run, epochs=3,
                      model_options={'att_dim': 8},
                      monitor='val_balanced_accuracy'))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('epoch ')]
    assert len(lines) == 3 and 'val loss' in lines[0] and ' s' in lines[0]
    state = torch.load(run / 'last.pt', weights_only=True)
    assert len(state['history']) == 3 and state['step'] == 0
    assert state['format'] == 'pyg-sm-train/2'
    best = read_checkpoint(run / 'checkpoint.pt')
    assert best['info']['monitor'] == 'val_balanced_accuracy'
    assert not [p for p in run.rglob('*') if '.tmp' in p.name]
    results = json.loads((run / 'results.json').read_text())
    assert [e['epoch'] for e in results['history']] == [1, 2, 3]
    assert results['versions']['pyg_sm'] and results['seed'] == 0
    assert results['config']['epochs'] == 3
    assert results['config']['data_dir'] == str(cohort)

    with pytest.raises(PygSmError, match='--resume .* --overwrite'):
        train_run(cohort, run)
    (run / 'stale.txt').write_text('from the old run')
    train_run(cohort, run, overwrite=True)
    assert not (run / 'stale.txt').exists()
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('not a run')
    with pytest.raises(PygSmError, match='not a pyg-sm run folder'):
        train_run(cohort, tmp_path / 'other', overwrite=True)


def test_monitor_last_keeps_the_final_epoch(cohort, tmp_path, capfd):
    run = train(TrainConfig(data_dir=cohort, out=tmp_path / 'run',
                            monitor='last', validate_every=0, **SMALL))
    lines = [line for line in capfd.readouterr().err.splitlines()
             if line.startswith('epoch ')]
    assert len(lines) == 2 and not any('val loss' in x for x in lines)
    assert run.results()['validation']['num_slides'] > 0  # once, at the end
    best = read_checkpoint(run.checkpoint_path)
    assert best['info']['epoch'] == 2
    final = model_weights(torch.load(run.training_state_path,
                                     weights_only=True))
    for name, value in best['state_dict'].items():
        assert torch.equal(value, final[name]), name


def test_train_then_evaluate_give_the_same_logits(cohort, tmp_path):
    run = tmp_path / 'run'
    results = train_run(cohort, run, heatmaps=2, connectivity=4,
                        model_options={'att_dim': 8, 'sm_alpha': 0.3,
                                       'sm_pre': True})
    assert results['validation']['num_slides'] == len(
        results['split']['val']) > 0
    assert set(results['split']['train']).isdisjoint(results['split']['val'])
    assert len(list((run / 'heatmaps').glob('*.png'))) == 2
    model, options, graph = load_checkpoint(run / 'checkpoint.pt')
    assert options['sm_alpha'] == 0.3 and options['sm_pre']
    assert graph['connectivity'] == 4

    evaluation = score_run('evaluate', cohort, run / 'checkpoint.pt',
                           tmp_path / 'eval', heatmaps=1)
    logits = {p['slide_id']: p['logits'] for p in evaluation['predictions']}
    assert len(logits) == 12
    for p in results['validation']['predictions']:
        assert logits[p['slide_id']] == pytest.approx(p['logits'], abs=1e-6)
    assert 0.0 <= evaluation['metrics']['instance_auroc'] <= 1.0


def test_train_and_score_the_transformer(tmp_path):
    from pyg_sm import make_synthetic_slides

    data = make_synthetic_slides(tmp_path / 'data', num_slides=8,
                                 feature_dim=6)
    run = tmp_path / 'run'
    train(TrainConfig(data_dir=data, out=run, model='sm_transformer_abmil',
                      model_options=dict(transf_att_dim=16, transf_n_heads=2,
                                         pool_att_dim=4,
                                         transf_sm_alpha=0.3),
                      epochs=1, heatmaps=0))
    saved = read_checkpoint(run / 'checkpoint.pt')
    assert saved['model'] == 'sm_transformer_abmil'
    assert saved['options']['transf_att_dim'] == 16
    assert saved['options']['pool_sm_post'] is True  # the 'sm' preset
    assert saved['options']['transf_sm_alpha'] == 0.3
    scored = score_run('predict', data, run / 'checkpoint.pt',
                       tmp_path / 'scored', heatmaps=0)
    assert len(scored['predictions']) == 8
    with pytest.raises(PygSmError, match="unknown preset 'abmil'"):
        train(TrainConfig(data_dir=data, out=tmp_path / 'y',
                          model='sm_transformer_abmil', preset='abmil'))


def test_deterministic_run_equals_the_default_one_on_the_cpu(
        cohort, tmp_path, monkeypatch):
    """--deterministic turns torch's deterministic algorithms (and the
    cuBLAS setting they need) on while the run trains (every operation the
    library runs on the CPU has one) and restores them after; on the CPU
    the run was deterministic already."""
    import os

    import pyg_sm.train.loop as loop

    seen = []
    fit = loop.fit

    def watched(*args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(),
                     os.environ.get('CUBLAS_WORKSPACE_CONFIG')))
        return fit(*args, **kwargs)
    monkeypatch.setattr(loop, 'fit', watched)
    plain = train_run(cohort, tmp_path / 'plain', heatmaps=0)
    strict = train_run(cohort, tmp_path / 'strict', heatmaps=0,
                       deterministic=True)
    assert seen[0][0] is False and seen[1] == (True, ':4096:8')
    assert not torch.are_deterministic_algorithms_enabled()
    assert strict['config']['deterministic'] is True
    assert strict['history'] == [
        {**entry, 'seconds': later['seconds']}
        for entry, later in zip(plain['history'], strict['history'])]
    first = load_checkpoint(tmp_path / 'plain' / 'checkpoint.pt')[0]
    second = load_checkpoint(tmp_path / 'strict' / 'checkpoint.pt')[0]
    for (name, a), b in zip(first.state_dict().items(),
                            second.state_dict().values()):
        assert torch.equal(a, b), name


def test_engine_flags_reach_the_run_and_its_folder(cohort, tmp_path, capfd):
    run = train(TrainConfig(
        data_dir=cohort, out=tmp_path / 'run', epochs=6, patience=1,
        lr_scheduler='cosine', optimizer='adamw', class_weights='balanced',
        balanced_sampling=True, logger=['csv', 'tensorboard'],
        accumulate_grad_batches=2, precision='bf16-mixed', lr=0.0,
        model_options={'att_dim': 8}, heatmaps=0))
    results = run.results()
    # lr 0: nothing improves after the first validation; patience 1.
    assert len(results['history']) == 2
    assert results['config']['optimizer'] == 'adamw'
    assert results['versions']['lightning']
    assert (run.logs_dir / 'csv' / 'metrics.csv').is_file()
    assert list((run.logs_dir / 'tensorboard').glob('events.*'))
    assert read_checkpoint(run.checkpoint_path)['info']['epoch'] == 1


def test_settings_a_resumed_run_must_share(cohort, tmp_path):
    run = tmp_path / 'run'
    train_run(cohort, run, epochs=1)
    with pytest.raises(PygSmError, match=r'other settings \(fit\)'):
        train_run(cohort, run, epochs=1, optimizer='sgd', resume=True)


@pytest.mark.parametrize('settings, words', [
    (dict(task='survival', class_weights='balanced'),
     '--class-weights concerns classification'),
    (dict(logger=['csv', 'neptune']), "'logger' (--logger) must be one of"),
    (dict(device='cpu', precision='16-mixed'), 'CUDA only'),
])
def test_engine_settings_are_checked_first(cohort, tmp_path, settings,
                                           words):
    with pytest.raises(PygSmError, match=words.replace('(', r'\(')
                       .replace(')', r'\)')):
        train(TrainConfig(data_dir=cohort, out=tmp_path / 'run',
                          **settings))
    assert not (tmp_path / 'run').exists()
