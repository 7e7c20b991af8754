"""pyg_sm.runs.evaluate and predict: scores, GeoJSON, predictions.csv,
metrics, the checkpoint's graph settings, and torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pyg_sm import PygSmError
from pyg_sm.runs import RunFolder, ScoreConfig, predict
from run_helpers import copy, score_run, small_cohort, train_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return small_cohort(tmp_path_factory.mktemp('cohort'))


@pytest.fixture(scope='module')
def trained(cohort, tmp_path_factory):
    run = tmp_path_factory.mktemp('trained')
    train_run(cohort, run / 'run', connectivity=4)
    return run / 'run' / 'checkpoint.pt'


def test_predict_without_labels_writes_scores_geojson_and_table(
        cohort, trained, tmp_path):
    root = copy(cohort, tmp_path)
    (root / 'labels.csv').unlink()
    (tmp_path / 'ids.txt').write_text('slide_003\nslide_000\n')
    out = tmp_path / 'pred'
    results = score_run('predict', root, trained, out,
                        slide_ids=tmp_path / 'ids.txt')
    assert results['kind'] == 'predict' and 'metrics' not in results
    predictions = RunFolder(out).predictions()
    assert [p.slide_id for p in predictions] == ['slide_003', 'slide_000']
    assert [p.label for p in predictions] == [None, None]
    with open(out / 'predictions.csv') as f:
        assert f.readline().strip() == 'slide_id,prob_0,prob_1,predicted'
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
    # A list of ids in Python, as the file on the command line.
    again = predict(ScoreConfig(data_dir=root, checkpoint=trained,
                                out=tmp_path / 'again',
                                slide_ids=['slide_003', 'slide_000']))
    assert [p.slide_id for p in again.predictions()] == \
        ['slide_003', 'slide_000']


def test_evaluate_is_predict_plus_metrics(cohort, trained, tmp_path):
    results = score_run('evaluate', cohort, trained, tmp_path / 'eval',
                        heatmaps=2)
    assert results['kind'] == 'evaluate'
    assert results['metrics']['num_slides'] == 12
    assert 0 <= results['metrics']['instance_auroc'] <= 1
    assert (tmp_path / 'eval' / 'geojson' / 'slide_000.geojson').is_file()
    assert len(list((tmp_path / 'eval' / 'heatmaps').glob('*.png'))) == 2
    with pytest.raises(PygSmError, match='--connectivity 8 .checkpoint: 4'):
        score_run('evaluate', cohort, trained, tmp_path / 'e2',
                  connectivity=8)
    root = copy(cohort, tmp_path)
    (root / 'labels.csv').unlink()
    with pytest.raises(PygSmError, match='needs labels'):
        score_run('evaluate', root, trained, tmp_path / 'e3')
    with pytest.raises(PygSmError, match='no checkpoint'):
        score_run('evaluate', cohort, tmp_path / 'none.pt', tmp_path / 'e4')


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


def test_evaluate_on_training_slides_warns_and_skipped_slides_are_listed(
        cohort, trained, tmp_path, capfd):
    """The checkpoint records its training split: evaluating on those
    slides says how many; --missing-slides skip leaves slides without a
    feature file out and the results list them."""
    from pyg_sm.train import read_checkpoint

    train_slides = read_checkpoint(trained)['info']['train_slides']
    root = copy(cohort, tmp_path)
    with open(root / 'labels.csv', 'a') as f:
        f.write('slide_gone,1\n')
    with pytest.raises(PygSmError, match='1 of 13 slides in labels.csv'):
        score_run('evaluate', root, trained, tmp_path / 'strict')
    capfd.readouterr()
    results = score_run('evaluate', root, trained, tmp_path / 'eval',
                        missing_slides='skip')
    err = capfd.readouterr().err
    assert results['skipped_slides'] == ['slide_gone']
    assert 'note: skipped 1 of 13 slides' in err
    assert f'warning: {len(train_slides)} of 12 slides were in the ' \
           f"checkpoint's training split" in err


def test_evaluate_against_annotations(cohort, trained, tmp_path):
    """The synthetic slides ship QuPath outlines of their lesions: evaluate
    --annotations adds localization to results.json; a negative slide
    without a file is all-negative, a positive one is left out and named;
    localize() needs no model."""
    from pyg_sm.runs.localizing import localize

    results = score_run('evaluate', cohort, trained, tmp_path / 'eval',
                        annotations=cohort / 'annotations', mpp=2.0)
    found = results['localization']
    assert set(found) >= {
        'source', 'min_coverage', 'instance_auroc',
        'instance_average_precision', 'instance_best_f1',
        'per_slide_instance_auroc', 'froc', 'slides_used',
        'slides_left_out'}
    assert len(found['slides_used']) == 12 and not found['slides_left_out']
    assert 0 <= found['froc']['score'] <= 1
    assert list(found['froc']['sensitivities']) == [
        '0.25', '0.5', '1', '2', '4', '8']
    # The outlines trace the stored patch labels: the same labels, and the
    # annotations are the source the results name.
    assert (tmp_path / 'eval' / 'froc.png').is_file()
    assert results['metrics']['instance_labels'] == 'annotations'
    assert found['instance_auroc'] == results['metrics']['instance_auroc']
    with h5py.File(tmp_path / 'eval' / 'scores' / 'slide_001.h5') as f:
        coverage = f['annotation_coverage'][()]
        assert f.attrs['patch_labels_source'] == 'annotations'
        assert np.array_equal(f['patch_labels'][()], coverage >= 0.5)
    with h5py.File(cohort / 'features' / 'slide_001.h5') as f:
        stored = dict(zip(map(tuple, f['coords'][()]),
                          f['patch_labels'][()]))
    scores = RunFolder(tmp_path / 'eval').scores('slide_001')
    assert [stored[tuple(c)] for c in scores.coords.tolist()] == \
        scores.patch_labels.tolist()

    annotations = Path(copy(cohort / 'annotations', tmp_path, 'notes'))
    (annotations / 'slide_001.geojson').unlink()
    again = localize(tmp_path / 'eval', annotations, mpp=2.0)
    assert again['slides_left_out'] == {
        'slide_001': 'positive slide without annotations'}
    with pytest.raises(PygSmError, match='pass --mpp'):
        localize(tmp_path / 'eval', annotations)
    with pytest.raises(PygSmError, match=r"names \['Stroma'\]"):
        localize(tmp_path / 'eval', annotations, ['Stroma'], mpp=2.0)
    # Outlines in another frame (here: shifted far off) cover no patch.
    shifted = json.loads((annotations / 'slide_003.geojson').read_text())
    for feature in shifted['features']:
        rings = feature['geometry']['coordinates']
        feature['geometry']['coordinates'] = [
            [[x + 10**6, y] for x, y in ring] for ring in rings]
    (annotations / 'slide_003.geojson').write_text(json.dumps(shifted))
    with pytest.warns(UserWarning, match="slide 'slide_003' .*cover none "
                                         "of its patches"):
        localize(tmp_path / 'eval', annotations, mpp=2.0)


@pytest.mark.parametrize('model, options', [
    ('prob_smooth_abmil', dict(att_dim=8, n_samples_train=20,
                               n_samples_test=50)),
    ('smooth_abmil', dict(att_dim=8)),
    ('transformer_prob_smooth_abmil', dict(
        pool_att_dim=4, transf_att_dim=8, transf_n_heads=2,
        n_samples_train=10, n_samples_test=30)),
])
def test_probabilistic_models_train_and_score_with_uncertainty(
        cohort, tmp_path, model, options):
    """Each probabilistic model trains (criterion + KL), and evaluate
    writes attention_std into the score files and GeoJSON and reports the
    uncertainty AUROC against the annotations; evaluating twice, or in
    other batches, gives the same numbers (the samples come from the
    model's seeded generators)."""
    from pyg_sm.train.checkpoint import read_checkpoint

    run = tmp_path / 'run'
    trained = train_run(cohort, run, model=model, model_options=options,
                        heatmaps=0, batch_size=4)
    saved = read_checkpoint(run / 'checkpoint.pt')
    assert saved['model'] == model
    evaluations = [score_run('evaluate', cohort, run / 'checkpoint.pt',
                             tmp_path / f'eval{k}', heatmaps=1,
                             annotations=cohort / 'annotations', mpp=2.0)
                   for k in range(2)]
    first, second = evaluations
    assert [p['logits'] for p in first['predictions']] == \
        [p['logits'] for p in second['predictions']]
    # Validated in batches of 4 during training, scored one by one here:
    # each slide draws the same samples.
    scored = {p['slide_id']: p['logits'] for p in first['predictions']}
    for p in trained['validation']['predictions']:
        assert scored[p['slide_id']] == pytest.approx(p['logits'],
                                                      abs=1e-5)
    metrics = first['metrics']
    assert 'uncertainty_auroc' in first['localization']
    assert metrics['uncertainty_auroc'] == \
        first['localization']['uncertainty_auroc']
    scores = RunFolder(tmp_path / 'eval0').scores('slide_001')
    assert scores.attention_std is not None
    assert scores.attention_std.shape == scores.attention_logits.shape
    geojson = json.loads((tmp_path / 'eval0' / 'geojson' /
                          'slide_001.geojson').read_text())
    measured = geojson['features'][0]['properties']['measurements']
    assert measured['attention_std'] == pytest.approx(
        float(scores.attention_std[0]))
    if model == 'smooth_abmil':  # no variance: nothing to rank with
        assert (scores.attention_std == 0).all()
    else:
        assert (scores.attention_std > 0).all()
        assert 0 <= metrics['uncertainty_auroc'] <= 1
