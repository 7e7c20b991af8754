"""Every input checked before the work starts, nothing left half-done, no
folder that mixes two runs: one test per row of issue 27's table, through
the pyg-sm command (exit status, one line on stderr, no epoch line, no
score file)."""
import json
import shutil
import time

import pytest

from pyg_sm.cli import main
from pyg_sm.runs import RunFolder
from pyg_sm.runs.folder import FAILED
from run_helpers import copy, small_cohort, train_run, write_labels


@pytest.fixture(scope='module')
def cohort(tmp_path_factory):
    return small_cohort(tmp_path_factory.mktemp('cohort'), num_slides=12)


@pytest.fixture(scope='module')
def checkpoint(cohort, tmp_path_factory):
    run = tmp_path_factory.mktemp('trained') / 'run'
    train_run(cohort, run, heatmaps=0)
    return run / 'checkpoint.pt'


def command(capsys, *argv):
    r"""Runs pyg-sm; returns (exit status, stdout, stderr, seconds)."""
    start = time.perf_counter()
    status = main([str(a) for a in argv])
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    return status, out, err, seconds


def assert_stopped_before_work(status, out, err, folder, words):
    r"""Exit 2, the problem in one line naming it, no epoch line, no slide
    scored and no folder left."""
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.startswith('pyg-sm')]
    assert len(lines) == 1 and words in lines[0], err
    assert 'Traceback' not in err
    assert 'epoch' not in out + err
    assert not folder.exists() or not any(folder.rglob('*.h5'))
    assert not folder.exists(), sorted(folder.rglob('*'))


def test_evaluate_without_checkpoint_says_it_is_required(cohort, capsys):
    with pytest.raises(SystemExit) as stop:
        main(['evaluate', str(cohort)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert 'the following arguments are required: --checkpoint' in err
    assert 'Traceback' not in err
    with pytest.raises(SystemExit):
        main(['evaluate', '--help'])
    assert '(required)' in capsys.readouterr().out


def test_train_with_a_missing_slides_folder_stops_before_training(
        cohort, tmp_path, capsys):
    out = tmp_path / 'run'
    result = command(capsys, 'train', cohort, '--out', out, '--epochs', 1,
                     '--slides-dir', tmp_path / 'missing')
    assert_stopped_before_work(*result[:3], out, 'slides folder')


def test_evaluate_with_a_missing_slides_folder_scores_nothing(
        cohort, checkpoint, tmp_path, capsys):
    out = tmp_path / 'eval'
    result = command(capsys, 'evaluate', cohort, '--checkpoint', checkpoint,
                     '--out', out, '--slides-dir', tmp_path / 'missing')
    assert_stopped_before_work(*result[:3], out, 'slides folder')
    assert 'bag AUROC' not in result[1]


def test_annotations_without_images_or_mpp(cohort, checkpoint, tmp_path,
                                           capsys):
    out = tmp_path / 'eval'
    status, stdout, err, seconds = command(
        capsys, 'evaluate', cohort, '--checkpoint', checkpoint, '--out', out,
        '--annotations', cohort / 'annotations')
    assert_stopped_before_work(status, stdout, err, out,
                               'no --slides-dir was given; pass --mpp')
    assert '12 slide(s) have no micrometres per pixel' in err


def test_unknown_annotation_class_before_scoring(cohort, checkpoint,
                                                 tmp_path, capsys):
    out = tmp_path / 'eval'
    result = command(capsys, 'evaluate', cohort, '--checkpoint', checkpoint,
                     '--out', out, '--annotations', cohort / 'annotations',
                     '--mpp', 2, '--annotation-classes', 'Tumour')
    assert_stopped_before_work(*result[:3], out, "--annotation-classes names "
                                                 "['Tumour']")


def test_annotation_files_matching_no_slide(cohort, checkpoint, tmp_path,
                                            capsys):
    folder = tmp_path / 'outlines'
    folder.mkdir()
    for path in sorted((cohort / 'annotations').glob('*.geojson')):
        name = path.name.replace('slide_', 'Slide_') if '001' in path.name \
            else path.name.replace('.geojson', '.tif.geojson')
        shutil.copy(path, folder / name)
    out = tmp_path / 'eval'
    status, stdout, err, _ = command(
        capsys, 'evaluate', cohort, '--checkpoint', checkpoint, '--out', out,
        '--annotations', folder, '--mpp', 2)
    assert_stopped_before_work(status, stdout, err, out,
                               'matches any of the 12 slides (6 positive)')
    assert "did you mean 'Slide_001.geojson' for 'slide_001', " \
           "'slide_003.tif.geojson' for 'slide_003'" in err


def test_positive_slides_without_outlines_and_negatives_with_them(
        cohort, checkpoint, tmp_path, capsys):
    data = copy(cohort, tmp_path)
    (data / 'annotations' / 'slide_003.geojson').unlink()
    labels = (data / 'labels.csv').read_text().replace('slide_005,1',
                                                       'slide_005,0')
    (data / 'labels.csv').write_text(labels)
    status, _, err, _ = command(
        capsys, 'evaluate', data, '--checkpoint', checkpoint, '--out',
        tmp_path / 'eval', '--annotations', data / 'annotations', '--mpp', 2)
    assert status == 0, err
    assert 'note: 1 positive slide(s) have no annotation file' in err
    assert 'slide_003' in err.split('positive slide(s)')[1].splitlines()[0]
    assert "warning: 1 slide(s) labelled negative have lesion outlines" in err
    found = RunFolder(tmp_path / 'eval').results()['localization']
    assert found['slides_left_out'] == {
        'slide_003': 'positive slide without annotations'}
    assert found['lesion_classes'] == ['Tumor']
    assert found['exclusion_classes'] == []


def test_evaluate_into_a_folder_of_another_run(cohort, checkpoint, tmp_path,
                                               capsys):
    """A second evaluation into the same folder needs --overwrite, which
    removes what the first wrote: scores, GeoJSON, pictures, the FROC."""
    out = tmp_path / 'eval'
    status, _, err, _ = command(
        capsys, 'evaluate', cohort, '--checkpoint', checkpoint, '--out', out,
        '--annotations', cohort / 'annotations', '--mpp', 2)
    assert status == 0, err
    assert len(list((out / 'scores').iterdir())) == 12
    assert (out / 'froc.png').is_file()
    (tmp_path / 'one.txt').write_text('slide_002\n')
    again = ['evaluate', cohort, '--checkpoint', checkpoint, '--out', out,
             '--slide-ids', tmp_path / 'one.txt']
    status, _, err, _ = command(capsys, *again)
    assert status == 2 and 'holds a previous run; pass --overwrite' in err
    assert '--resume' not in err
    assert len(list((out / 'scores').iterdir())) == 12
    status, stdout, err, _ = command(capsys, *again, '--overwrite')
    assert status == 0, err
    assert [p.name for p in (out / 'scores').iterdir()] == ['slide_002.h5']
    assert [p.name for p in (out / 'geojson').iterdir()] == [
        'slide_002.geojson']
    assert not (out / 'froc.png').exists()
    assert len(RunFolder(out).predictions()) == 1
    assert '1 slide: ' in stdout


def test_partly_selected_patients(cohort, tmp_path, capsys):
    data = copy(cohort, tmp_path)
    rows = sorted((line.split(',') for line in
                   (data / 'labels.csv').read_text().split()[1:]),
                  key=lambda row: (row[1], row[0]))
    # Patients of two slides of one label: (000, 002), (004, 006), ...
    write_labels(data, [(s, label, f'patient_{i // 2}')
                        for i, (s, label) in enumerate(rows)],
                 header=('slide_id', 'label', 'case_id'))
    status, _, err, _ = command(capsys, 'train', data, '--out',
                                tmp_path / 'run', '--epochs', 1,
                                '--heatmaps', 0, '--bag-by', 'case')
    assert status == 0, err
    assert 'training on 4 patients, validating on 2' in err
    (tmp_path / 'ids.txt').write_text('slide_000\nslide_002\nslide_004\n')
    argv = ['evaluate', data, '--checkpoint', tmp_path / 'run' /
            'checkpoint.pt', '--out', tmp_path / 'eval', '--slide-ids',
            tmp_path / 'ids.txt']
    result = command(capsys, *argv)
    assert_stopped_before_work(*result[:3], tmp_path / 'eval',
                               "1 patient would be scored on part of their "
                               "slides (--bag-by case): 'patient_1' "
                               "(missing slide_006)")
    status, stdout, err, _ = command(capsys, *argv, '--partial-cases')
    assert status == 0, err
    assert "note: 1 patient scored on part of their slides" in err
    assert '2 patients: ' in stdout


def test_synthetic_slides_carry_their_resolution_and_mpp_overrides(
        cohort, checkpoint, tmp_path, capsys):
    import openslide

    slide = openslide.OpenSlide(str(cohort / 'slides' / 'slide_001.tif'))
    try:
        assert float(slide.properties['openslide.mpp-x']) == \
            pytest.approx(2.0)
    finally:
        slide.close()
    args = ['evaluate', cohort, '--checkpoint', checkpoint,
            '--annotations', cohort / 'annotations', '--slides-dir',
            cohort / 'slides', '--heatmaps', 0]
    status, _, err, _ = command(capsys, *args, '--out', tmp_path / 'a')
    assert status == 0 and 'overrides' not in err
    status, _, err, _ = command(capsys, *args, '--out', tmp_path / 'b',
                                '--mpp', 1)
    assert status == 0, err
    assert 'note: --mpp 1 overrides the micrometres per pixel of 12 slide ' \
           'image(s): slide_000 (2)' in err
    images = RunFolder(tmp_path / 'a').results()['localization']
    given = RunFolder(tmp_path / 'b').results()['localization']
    assert set(images['mpp'].values()) == {2.0}
    assert set(given['mpp'].values()) == {1.0}


def test_a_failure_after_the_start_marks_the_run_failed(
        cohort, checkpoint, tmp_path, capsys, monkeypatch):
    import pyg_sm.runs.scoring as scoring

    def broken(*args, **kwargs):
        raise RuntimeError('disk full')
    monkeypatch.setattr(scoring, 'write_heatmaps', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        main(['evaluate', str(cohort), '--checkpoint', str(checkpoint),
              '--out', str(tmp_path / 'eval')])
    results = json.loads((tmp_path / 'eval' / 'results.json').read_text())
    assert results['status'] == FAILED and results['error'] == 'disk full'


def test_a_training_failure_after_training_marks_the_run_failed(
        cohort, tmp_path, monkeypatch):
    import pyg_sm.runs.training as training

    def broken(*args, **kwargs):
        raise RuntimeError('no space left')
    monkeypatch.setattr(training, 'write_heatmaps', broken)
    with pytest.raises(RuntimeError, match='no space left'):
        train_run(cohort, tmp_path / 'run', epochs=1)
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert results['status'] == FAILED
    assert results['error'] == 'no space left'


def test_version_and_the_demo_without_heatmaps(capsys):
    from pyg_sm.version import __version__

    with pytest.raises(SystemExit) as stop:
        main(['--version'])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f'pyg-sm {__version__}'


def test_overwrite_never_deletes_what_the_run_reads(cohort, checkpoint,
                                                    tmp_path, capsys):
    """Evaluating into the training run's folder, or training into a folder
    that holds the data, with --overwrite: an error, nothing deleted."""
    run = checkpoint.parent
    status, _, err, _ = command(capsys, 'evaluate', cohort, '--checkpoint',
                                checkpoint, '--out', run, '--overwrite')
    assert status == 2 and f'--overwrite would delete {checkpoint}' in err
    assert checkpoint.is_file()
    data = copy(cohort, tmp_path / 'run', 'data')
    (tmp_path / 'run' / 'results.json').write_text('{}')
    status, _, err, _ = command(capsys, 'train', data, '--out',
                                tmp_path / 'run', '--overwrite')
    assert status == 2 and 'which this run reads' in err
    assert (data / 'labels.csv').is_file()
