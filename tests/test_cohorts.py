"""Real cohorts: lazy reading and graph caching, any labels, patient
splits, checks before training, checkpoints and resume, predict/export."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pyg_sm import SlideDataset, make_synthetic_slides
from pyg_sm.cli import run as main
from pyg_sm.datasets.layouts import SlideError
from pyg_sm.train import classification_metrics, read_checkpoint
from pyg_sm.train.splits import fold_slides, split_slides
from pyg_sm.transforms import GridPatchGraph

ROOT = Path(__file__).resolve().parent.parent
SMALL = ['--epochs', '2', '--att-dim', '8', '--heatmaps', '1']


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return make_synthetic_slides(tmp_path_factory.mktemp('cohort'),
                                 num_slides=12, feature_dim=6, seed=4)


def copy(cohort, tmp_path, name='data'):
    import shutil
    return Path(shutil.copytree(cohort, tmp_path / name))


def write_labels(root, rows, header=('slide_id', 'label'), bom=False):
    with open(root / 'labels.csv', 'w', newline='',
              encoding='utf-8-sig' if bom else 'utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def slide_ids(root):
    return sorted(p.stem for p in (root / 'features').glob('*.h5'))


# Memory that stays flat ----------------------------------------------------

def test_slides_are_read_lazily_and_graphs_built_once(cohort, tmp_path):
    calls = []

    class CountingGraph(GridPatchGraph):
        def edges(self, data):
            calls.append(data.slide_id)
            return super().edges(data)

    cache = tmp_path / 'cache'
    dataset = SlideDataset(cohort, graph=CountingGraph(), graph_cache=cache)
    first = [dataset[i].edge_index for i in range(len(dataset))]
    assert not dataset._cache and len(calls) == len(dataset)
    again = SlideDataset(cohort, graph=CountingGraph(), graph_cache=cache)
    for i in range(len(again)):
        assert torch.equal(again[i].edge_index, first[i])
    assert len(calls) == len(dataset)  # read back, not rebuilt
    # Other graph settings, or a changed file, give another key.
    SlideDataset(cohort, graph=CountingGraph(connectivity=4),
                 graph_cache=cache)[0]
    assert len(calls) == len(dataset) + 1
    path = dataset.path(dataset.slide_ids[1])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    again[1]
    assert len(calls) == len(dataset) + 2


def test_training_reads_slides_through_worker_processes(cohort, tmp_path):
    results = main(['train', str(cohort), '--out', str(tmp_path / 'run'),
                    '--workers', '2', *SMALL])
    assert results['status'] == 'finished'
    assert len(list((tmp_path / 'run' / 'graph_cache').glob('*.pt'))) == 12


# Any labels, multi-class ---------------------------------------------------

def test_string_labels_three_classes_bom_and_extra_columns(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    names = ['lung', 'colon', 'breast']
    write_labels(root, [(s, names[i % 3], f'note {i}') for i, s in
                        enumerate(slide_ids(root))],
                 header=('slide_id', 'label', 'comment'), bom=True)
    run = tmp_path / 'run'
    results = main(['train', str(root), '--out', str(run), *SMALL,
                    '--val-fraction', '0.34'])
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
    main(['predict', str(root), '--checkpoint', str(run / 'checkpoint.pt'),
          '--out', str(out), '--heatmaps', '0'])
    with open(out / 'predictions.csv') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ['slide_id', 'prob_breast', 'prob_colon',
                             'prob_lung', 'predicted', 'label']
    assert {r['predicted'] for r in rows} <= set(names)


def test_classes_flag_orders_the_classes(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    write_labels(root, [(s, ['no', 'yes'][i % 2]) for i, s in
                        enumerate(slide_ids(root))])
    results = main(['train', str(root), '--out', str(tmp_path / 'run'),
                    *SMALL, '--classes', 'yes,no'])
    assert results['classes'] == ['yes', 'no']
    assert results['options']['num_classes'] == 1  # two classes: one logit
    with pytest.raises(SystemExit, match='not among the classes'):
        main(['train', str(root), '--out', str(tmp_path / 'r2'), *SMALL,
              '--classes', 'yes,maybe'])


def test_metrics_binary_and_multiclass():
    from sklearn.metrics import roc_auc_score

    labels = [0, 0, 1, 1, 1]
    p = np.array([0.1, 0.6, 0.5, 0.9, 0.4])
    binary = classification_metrics(labels, np.stack([1 - p, p], 1),
                                    ['a', 'b'])
    assert binary['bag_auroc'] == pytest.approx(roc_auc_score(labels, p))
    # Probability 0.5 counts as positive.
    assert binary['confusion_matrix'] == [[1, 1], [1, 2]]
    assert binary['balanced_accuracy'] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert 'at least 0.5' in binary['decision']
    assert binary['class_counts'] == {'a': 2, 'b': 3}
    probs = np.array([[.7, .2, .1], [.2, .5, .3], [.1, .2, .7],
                      [.3, .4, .3], [.6, .3, .1], [.2, .2, .6]])
    multi = classification_metrics([0, 1, 2, 1, 0, 2], probs, 'xyz')
    assert multi['bag_auroc'] == pytest.approx(roc_auc_score(
        [0, 1, 2, 1, 0, 2], probs, multi_class='ovr', average='macro'))
    assert multi['bag_accuracy'] == 1.0
    one_class = np.array([[.9, .1], [.8, .2]])
    assert classification_metrics([0, 0], one_class, 'ab')['bag_auroc'] \
        is None


@pytest.mark.parametrize('rows, words', [
    (lambda ids: [(s, 'a') for s in ids], 'one class only'),
    (lambda ids: [(ids[0], 'a'), (ids[1], 'b')], 'split is empty'),
])
def test_cohorts_that_cannot_be_split_stop_before_training(
        cohort, tmp_path, rows, words):
    root = copy(cohort, tmp_path)
    write_labels(root, rows(slide_ids(root)))
    with pytest.raises(SystemExit, match=words):
        main(['train', str(root), '--out', str(tmp_path / 'run'), *SMALL])
    assert not (tmp_path / 'run' / 'last.pt').exists()


def test_zero_epochs_is_a_message(cohort, tmp_path):
    with pytest.raises(SystemExit, match='--epochs must be at least 1'):
        main(['train', str(cohort), '--out', str(tmp_path / 'run'),
              '--epochs', '0'])


# Splits by patient ---------------------------------------------------------

def test_split_keeps_patients_together_and_is_stratified():
    ids = [f's{i}' for i in range(60)]
    cases = [f'p{i // 3}' for i in range(60)]  # 20 patients, 3 slides each
    labels = [(i // 3) % 2 for i in range(60)]
    split = split_slides(ids, labels, cases, 0.25, 0.2, seed=3)
    sides = {}
    for name, part in split.items():
        for s in part:
            sides.setdefault(cases[ids.index(s)], set()).add(name)
    assert all(len(s) == 1 for s in sides.values())
    assert sorted(sum(split.values(), [])) == sorted(ids)
    for name in ('val', 'test'):
        assert {labels[ids.index(s)] for s in split[name]} == {0, 1}
    folds = fold_slides(ids, labels, cases, 4, seed=1)
    assert sorted(sum(folds, [])) == sorted(ids)
    for fold in folds:
        assert {cases[ids.index(s)] for s in fold}.isdisjoint(
            {cases[ids.index(s)] for f in folds if f is not fold for s in f})
        assert {labels[ids.index(s)] for s in fold} == {0, 1}
    # Without case ids each slide is its own patient: the old split.
    plain = split_slides(ids, labels, None, 0.25, 0.0, seed=3)
    assert len(plain['val']) == 16 and not plain['test']


def test_case_ids_split_file_test_set_and_folds(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    ids = slide_ids(root)
    write_labels(root, [(s, i % 2, f'patient{i // 2 % 3}{i % 2}')
                        for i, s in enumerate(ids)],
                 header=('slide_id', 'label', 'case_id'))
    results = main(['train', str(root), '--out', str(tmp_path / 'run'),
                    *SMALL, '--test-fraction', '0.3'])
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
    fixed = main(['train', str(root), '--out', str(tmp_path / 'fixed'),
                  *SMALL, '--split-file', str(tmp_path / 'split.csv')])
    for name in ('train', 'val', 'test'):
        assert fixed['split'][name] == [s for s in ids
                                        if side[case[s]] == name]
    assert fixed['test']['num_slides'] == len(fixed['split']['test'])
    with open(tmp_path / 'leaky.csv', 'w') as f:
        f.write('slide_id,split\n' + ''.join(
            f"{s},{['train', 'val'][i % 2 == 0 and i < 4]}\n"
            for i, s in enumerate(ids)))
    with pytest.raises(SystemExit, match='more than one split'):
        main(['train', str(root), '--out', str(tmp_path / 'leaky'), *SMALL,
              '--split-file', str(tmp_path / 'leaky.csv')])

    folds = main(['train', str(root), '--out', str(tmp_path / 'folds'),
                  *SMALL, '--folds', '3'])
    assert len(folds['folds']) == 3
    assert folds['summary']['balanced_accuracy']['n'] == 3
    assert all((tmp_path / 'folds' / f'fold_{k}' / 'checkpoint.pt').is_file()
               for k in (1, 2, 3))


# Long runs that survive ----------------------------------------------------

def corrupt(root, name, how):
    path = root / 'features' / f'{name}.h5'
    if how == 'zero-byte':
        path.write_bytes(b'')
    elif how == 'garbage':
        path.write_bytes(os.urandom(4096))
    elif how == 'truncated':
        data = path.read_bytes()
        path.write_bytes(data[:len(data) * 2 // 3])
    elif how == 'nan':
        with h5py.File(path, 'r+') as f:
            features = f['features'][()]
            features[-1, 0] = np.nan
            f['features'][...] = features


@pytest.mark.parametrize('how, words', [
    ('zero-byte', 'empty'), ('garbage', 'cannot be read'),
    ('truncated', 'cannot be read'), ('nan', 'NaN'),
])
def test_every_file_is_checked_before_training(cohort, tmp_path, how,
                                               words):
    root = copy(cohort, tmp_path)
    corrupt(root, 'slide_007', how)
    with pytest.raises(SystemExit, match=f"slide 'slide_007' .*{words}"):
        main(['train', str(root), '--out', str(tmp_path / 'run'), *SMALL])
    assert not (tmp_path / 'run' / 'last.pt').exists()
    with pytest.raises(SlideError, match=str(root / 'features')):
        SlideDataset(root).check()


def test_each_process_checks_its_share_of_the_files(cohort, tmp_path):
    root = copy(cohort, tmp_path)
    corrupt(root, 'slide_002', 'garbage')
    dataset = SlideDataset(root, labels=None, slide_ids=slide_ids(root)[:2]
                           + slide_ids(root)[3:])  # headers of 002 unread
    dataset.slide_ids.insert(2, 'slide_002')
    dataset.check(shard=(2, 1))  # slides 1, 3, 5, ...: all sound
    with pytest.raises(SlideError, match="slide 'slide_002'"):
        dataset.check(shard=(2, 0))


def test_epoch_lines_checkpoints_and_out_guard(cohort, tmp_path, capfd):
    run = tmp_path / 'run'
    main(['train', str(cohort), '--out', str(run), '--epochs', '3',
          '--att-dim', '8', '--monitor', 'val_balanced_accuracy'])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('epoch ')]
    assert len(lines) == 3 and 'val loss' in lines[0] and ' s' in lines[0]
    state = torch.load(run / 'last.pt', weights_only=True)
    assert state['epoch'] == 3 and len(state['history']) == 3
    best = read_checkpoint(run / 'checkpoint.pt')
    assert best['info']['monitor'] == 'val_balanced_accuracy'
    assert not [p for p in run.rglob('*') if '.tmp' in p.name]
    results = json.loads((run / 'results.json').read_text())
    assert [e['epoch'] for e in results['history']] == [1, 2, 3]
    assert results['versions']['pyg_sm'] and results['seed'] == 0
    assert results['arguments']['epochs'] == 3
    assert 'run' not in results['arguments']

    with pytest.raises(SystemExit, match='--resume .* --overwrite'):
        main(['train', str(cohort), '--out', str(run), *SMALL])
    (run / 'stale.txt').write_text('from the old run')
    main(['train', str(cohort), '--out', str(run), *SMALL, '--overwrite'])
    assert not (run / 'stale.txt').exists()
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('not a run')
    with pytest.raises(SystemExit, match='not a pyg-sm run folder'):
        main(['train', str(cohort), '--out', str(tmp_path / 'other'),
              *SMALL, '--overwrite'])


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
        tmp_path):
    from pyg_sm.utils.files import atomic_path

    path = tmp_path / 'results.json'
    path.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            temporary.write_text('half')
            raise RuntimeError('crash while writing')
    assert path.read_text() == 'old' and list(tmp_path.iterdir()) == [path]
    with atomic_path(path) as temporary:
        temporary.write_text('new')
    assert path.read_text() == 'new' and list(tmp_path.iterdir()) == [path]


def train_command(data, out, *extra):
    return [sys.executable, '-m', 'pyg_sm', 'train', str(data), '--out',
            str(out), '--epochs', '30', '--att-dim', '8', '--heatmaps', '0',
            '--batch-size', '2', *extra]


def final_weights(run):
    return torch.load(run / 'last.pt', weights_only=True)['model']


def interrupt_and_resume(cohort, tmp_path, signum):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    whole = tmp_path / 'whole'
    subprocess.run(train_command(cohort, whole), check=True, env=env,
                   capture_output=True, cwd=ROOT, timeout=600)
    run = tmp_path / 'run'
    process = subprocess.Popen(train_command(cohort, run), env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 300
    while not (run / 'last.pt').exists() and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    state = torch.load(run / 'last.pt', weights_only=True)
    assert state['epoch'] < 30, 'the run ended before it was interrupted'
    resumed = subprocess.run(train_command(cohort, run, '--resume'),
                             env=env, capture_output=True, text=True,
                             cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resuming from' in resumed.stderr
    expected, actual = final_weights(whole), final_weights(run)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    return process.returncode, err, state


def test_killed_run_resumes_to_the_same_weights(cohort, tmp_path):
    code, _, state = interrupt_and_resume(cohort, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL and state['step'] == 0


def test_sigint_saves_says_how_to_resume_and_exits_nonzero(cohort,
                                                           tmp_path):
    code, err, state = interrupt_and_resume(cohort, tmp_path, signal.SIGINT)
    assert code == 130 and state['step'] > 0  # saved within the epoch
    assert 'resume with: pyg-sm train' in err and '--resume' in err
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert results['status'] == 'finished'  # after the resume


# Inference and export ------------------------------------------------------

@pytest.fixture(scope='module')
def trained(cohort, tmp_path_factory):
    run = tmp_path_factory.mktemp('trained')
    main(['train', str(cohort), '--out', str(run / 'run'), *SMALL,
          '--connectivity', '4'])
    return run / 'run' / 'checkpoint.pt'


def test_predict_without_labels_writes_scores_geojson_and_table(
        cohort, trained, tmp_path):
    root = copy(cohort, tmp_path)
    (root / 'labels.csv').unlink()
    (tmp_path / 'ids.txt').write_text('slide_003\nslide_000\n')
    out = tmp_path / 'pred'
    results = main(['predict', str(root), '--checkpoint', str(trained),
                    '--out', str(out), '--slide-ids',
                    str(tmp_path / 'ids.txt')])
    with open(out / 'predictions.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['slide_id'] for r in rows] == ['slide_003', 'slide_000']
    assert list(rows[0]) == ['slide_id', 'prob_0', 'prob_1', 'predicted']
    assert results['graph']['connectivity'] == 4  # from the checkpoint
    with h5py.File(out / 'scores' / 'slide_003.h5') as f, \
            h5py.File(root / 'features' / 'slide_003.h5') as g:
        assert np.array_equal(f['coords'][()], g['coords'][()])
        assert f['attention'][()].sum() == pytest.approx(1, abs=1e-5)
        weights = torch.softmax(torch.from_numpy(
            f['attention_logits'][()]).double(), 0)
        assert np.allclose(weights.numpy(), f['attention'][()], atol=1e-6)
        coords, attention = g['coords'][()], f['attention'][()]
    collection = json.loads((out / 'geojson' / 'slide_003.geojson')
                            .read_text())
    assert collection['type'] == 'FeatureCollection'
    features = collection['features']
    assert len(features) == len(coords)
    ring = features[0]['geometry']['coordinates'][0]
    x, y = coords[0]
    side = 64  # the generator's patch side
    assert ring == [[x, y], [x + side, y], [x + side, y + side],
                    [x, y + side], [x, y]]
    measured = [f['properties']['measurements'] for f in features]
    assert [m['attention'] for m in measured] == pytest.approx(
        attention.tolist(), abs=1e-6)
    top = int(np.argmax(attention))
    assert measured[top]['attention_percentile'] == 100.0
    assert min(m['attention_percentile'] for m in measured) == 0.0
    assert features[0]['properties']['objectType'] == 'detection'


def test_evaluate_is_predict_plus_metrics(cohort, trained, tmp_path):
    results = main(['evaluate', str(cohort), '--checkpoint', str(trained),
                    '--out', str(tmp_path / 'eval'), '--heatmaps', '2'])
    assert results['metrics']['num_slides'] == 12
    assert 0 <= results['metrics']['instance_auroc'] <= 1
    assert (tmp_path / 'eval' / 'geojson' / 'slide_000.geojson').is_file()
    assert len(list((tmp_path / 'eval' / 'heatmaps').glob('*.png'))) == 2
    with pytest.raises(SystemExit, match='--connectivity 8 .checkpoint: 4'):
        main(['evaluate', str(cohort), '--checkpoint', str(trained),
              '--out', str(tmp_path / 'e2'), '--connectivity', '8'])
    root = copy(cohort, tmp_path)
    (root / 'labels.csv').unlink()
    with pytest.raises(SystemExit, match='needs labels'):
        main(['evaluate', str(root), '--checkpoint', str(trained), '--out',
              str(tmp_path / 'e3')])


def test_predict_under_torchrun_equals_one_process(cohort, trained,
                                                   tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    outputs = {}
    for procs in (1, 2):
        out = tmp_path / f'p{procs}'
        done = subprocess.run(
            [sys.executable, '-m', 'torch.distributed.run', '--standalone',
             '--nproc-per-node', str(procs), '-m', 'pyg_sm', 'predict',
             str(cohort), '--checkpoint', str(trained), '--out', str(out),
             '--heatmaps', '1'], capture_output=True, text=True, env=env,
            timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[procs] = out
    one, two = outputs[1], outputs[2]
    assert (one / 'predictions.csv').read_text() == \
        (two / 'predictions.csv').read_text()
    for path in (one / 'geojson').glob('*.geojson'):
        assert path.read_text() == (two / 'geojson' / path.name).read_text()
    assert json.loads((two / 'results.json').read_text())['world_size'] == 2


# Patch graphs for real extractors -----------------------------------------

def test_trident_patch_size_attribute_and_graphs_without_edges(tmp_path):
    root = tmp_path / 'trident'
    (root / 'features').mkdir(parents=True)
    # Every other column: the gaps say 512, TRIDENT says 256.
    cells = torch.stack(torch.meshgrid(torch.arange(0, 10, 2),
                                       torch.arange(5), indexing='ij'),
                        -1).reshape(-1, 2)
    with h5py.File(root / 'features' / 'a.h5', 'w') as f:
        f['features'] = np.random.rand(len(cells), 4).astype('f4')
        f['coords'] = (cells * 256).numpy()
        f['coords'].attrs['patch_size_level0'] = 256
    write_labels(root, [('a', 1)])
    data = SlideDataset(root)[0]
    assert data.patch_size_level0 == 256
    vertical = (data.pos[data.edge_index[0]] -
                data.pos[data.edge_index[1]]).abs()
    assert int(vertical[:, 0].max()) == 0  # columns 512 apart: unlinked
    with pytest.warns(UserWarning, match="slide 'a'.*links no patches"):
        SlideDataset(root, graph=GridPatchGraph(patch_size=100))[0]


def write_clam(root, ids, dim=5):
    (root / 'pt_files').mkdir(parents=True)
    (root / 'h5_files').mkdir()
    gen = torch.Generator().manual_seed(0)
    for slide_id in ids:
        coords = torch.stack(torch.meshgrid(
            torch.arange(4), torch.arange(3), indexing='ij'),
            -1).reshape(-1, 2) * 512 + 1000
        features = torch.randn(len(coords), dim, generator=gen)
        torch.save(features, root / 'pt_files' / f'{slide_id}.pt')
        with h5py.File(root / 'h5_files' / f'{slide_id}.h5', 'w') as f:
            f['features'] = features.numpy()
            f['coords'] = coords.numpy()


def test_clam_and_torchmil_layouts(tmp_path):
    clam = tmp_path / 'clam'
    write_clam(clam, ['s1', 's2'])
    write_labels(clam, [('s1', 0), ('s2', 1)])
    dataset = SlideDataset(clam)
    assert dataset.layout.name == 'clam' and dataset.feature_dim == 5
    data = dataset[1]
    assert torch.equal(data.x, torch.load(clam / 'pt_files' / 's2.pt'))
    assert data.edge_index.size(1) == 2 * (3 * 3 + 4 * 2 + 2 * 3 * 2)
    (clam / 'h5_files' / 's2.h5').unlink()
    with pytest.raises(FileNotFoundError, match="slide 's2'.*h5_files"):
        SlideDataset(clam)

    tm = tmp_path / 'torchmil'
    for folder in ('features', 'coords', 'inst_labels', 'labels'):
        (tm / folder).mkdir(parents=True)
    for i, name in enumerate(['bag_a', 'bag_b', 'bag_c']):
        coords = np.stack(np.meshgrid(np.arange(3), np.arange(3)),
                          -1).reshape(-1, 2)
        np.save(tm / 'features' / f'{name}.npy',
                np.random.rand(9, 7).astype('f4'))
        np.save(tm / 'coords' / f'{name}.npy', coords.astype('f4'))
        np.save(tm / 'inst_labels' / f'{name}.npy', (np.arange(9) < i)
                .astype('f4'))
        np.save(tm / 'labels' / f'{name}.npy', np.array([i % 2], 'f4'))
    dataset = SlideDataset(tm, labels=None)
    assert dataset.layout.name == 'torchmil'
    assert dataset.labels == [0, 1, 0] and dataset.classes == ['0', '1']
    data = dataset[2]
    assert data.x.shape == (9, 7) and int(data.patch_labels.sum()) == 2
    assert data.edge_index.size(1) == 2 * (2 * 3 * 2 + 2 * 2 * 2)
