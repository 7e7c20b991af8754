"""RunFolder: the one reader and writer of a run folder, for the folders
this release writes and for those pyg-sm 0.1.0 wrote."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from pyg_sm import MissingFileError, SmABMIL
from pyg_sm.runs import SCHEMA, RunFolder, SlidePrediction, scored_runs
from viewer_helpers import PATCH, read_slide

RELEASE = Path(__file__).resolve().parents[1] / 'data' / 'release_0.1.0_runs'


def test_reads_scores_and_predictions(scored_cohort):
    data, runs = scored_cohort
    folder = RunFolder(runs[0])
    assert folder.name == 'focused' and len(folder.slide_ids) == 4
    scores = folder.scores('slide_001')
    coords, labels = read_slide(data, 'slide_001')
    assert torch.equal(scores.coords, coords)
    assert torch.equal(scores.patch_labels, labels)
    assert scores.patch_size_level0 == PATCH
    assert abs(float(scores.attention.sum()) - 1) < 1e-5
    torch.testing.assert_close(
        scores.attention.double(),
        torch.softmax(scores.attention_logits.double(), 0), atol=1e-6,
        rtol=0)
    predictions = {p.slide_id: p for p in folder.predictions()}
    assert predictions['slide_001'] == SlidePrediction(
        slide_id='slide_001', label='1', predicted='1',
        probabilities={'0': pytest.approx(0.1), '1': pytest.approx(0.9)})
    with pytest.raises(MissingFileError, match="slide 'x': no scores"):
        folder.scores('x')


def test_results_carry_the_schema_and_are_written_atomically(tmp_path):
    folder = RunFolder(tmp_path / 'run')
    with pytest.raises(MissingFileError, match='holds no run'):
        folder.results()
    written = folder.write_results({'kind': 'predict', 'status': 'finished'})
    assert list(written) == ['schema', 'kind', 'status']
    assert folder.results() == {'schema': SCHEMA, 'kind': 'predict',
                                'status': 'finished'}
    assert [p.name for p in folder.path.iterdir()] == ['results.json']
    with pytest.raises(MissingFileError, match='no trained model'):
        folder.load_model()
    assert folder.folds() == [] and folder.predictions() == []


def test_scored_runs_name_runs_apart_and_need_scores(scored_cohort,
                                                     tmp_path):
    _, runs = scored_cohort
    copy = tmp_path / 'other' / runs[0].name
    shutil.copytree(runs[0], copy)
    named = scored_runs([runs[0], copy])
    assert [run.name for run in named] == ['runs/focused', 'other/focused']
    with pytest.raises(MissingFileError, match='holds no scored slides'):
        scored_runs([tmp_path])


def test_folders_written_by_release_0_1_0_still_read():
    train = RunFolder(RELEASE / 'train')
    assert 'schema' not in train.results()  # written before the schema
    model = train.load_model()
    assert type(model) is SmABMIL and not model.training
    validation = train.results()['validation']['predictions']
    predictions = train.predictions()
    assert [p.slide_id for p in predictions] == \
        [p['slide_id'] for p in validation]
    assert all(p.label in ('0', '1') and p.predicted in ('0', '1')
               for p in predictions)
    assert train.slide_ids == sorted(p.slide_id for p in predictions)
    scores = train.scores(train.slide_ids[0])
    assert scores.coords.shape == (len(scores.attention), 2)
    assert scores.patch_labels is not None

    predict = RunFolder(RELEASE / 'predict')
    table = predict.predictions()
    saved = json.loads(predict.results_path.read_text())['predictions']
    assert [p.slide_id for p in table] == [p['slide_id'] for p in saved]
    for row, entry in zip(table, saved):
        assert row.predicted == entry['predicted']
        assert row.probabilities == pytest.approx(entry['probabilities'],
                                                  abs=1e-6)
    for name in ('SmABMIL', 'ABMIL'):  # the demo's prediction folders
        folder = RunFolder(RELEASE / 'demo' / name)
        assert {p.slide_id for p in folder.predictions()} == \
            set(folder.slide_ids)
        assert folder.scores(folder.slide_ids[0]).patch_size_level0 > 0
    runs = scored_runs([RELEASE / 'demo' / 'SmABMIL',
                        RELEASE / 'demo' / 'ABMIL', RELEASE / 'predict'])
    assert [run.name for run in runs] == ['SmABMIL', 'ABMIL', 'predict']
