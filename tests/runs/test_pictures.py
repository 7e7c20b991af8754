"""pyg_sm.runs.heatmap, and the heatmaps of train and predict over the
slide images."""
import numpy as np
import pytest

from pyg_sm import PygSmError
from pyg_sm.datasets.synthetic import STROMA
from pyg_sm.runs import HeatmapConfig, RunFolder, heatmap
from run_helpers import score_run, train_run
from viewer_helpers import PATCH, make_cohort


def drawn(folder):
    return sorted(str(p) for p in RunFolder(folder).heatmaps_dir.glob(
        '*.png'))


def test_heatmap_over_slides_and_on_the_grid(scored_cohort, tmp_path,
                                             capsys):
    from PIL import Image

    data, runs = scored_cohort
    heatmap(HeatmapConfig(runs=runs, slides_dir=data / 'slides',
                          out=tmp_path / 'a', top_k=4))
    with_slides = drawn(tmp_path / 'a')
    assert len(with_slides) == 4
    assert '4 over slide images, 0 on the patch grid' in capsys.readouterr(
    ).out
    heatmap(HeatmapConfig(runs=runs[:1], out=tmp_path / 'b', top_k=0))
    assert '0 over slide images, 4 on the patch grid' in capsys.readouterr(
    ).out
    assert Image.open(with_slides[1]).size != \
        Image.open(drawn(tmp_path / 'b')[1]).size
    (tmp_path / 'ids.txt').write_text('slide_003\n')
    heatmap(HeatmapConfig(runs=runs[:1], slide_ids=tmp_path / 'ids.txt',
                          out=tmp_path / 'c'))
    assert [p.rsplit('/', 1)[1] for p in drawn(tmp_path / 'c')] == \
        ['slide_003.png']
    (tmp_path / 'ids.txt').write_text('slide_009\n')
    for bad, message in [
            (dict(slide_ids=tmp_path / 'ids.txt'),
             "no scores for slide 'slide_009'"),
            (dict(top_k=-1), "'top_k' .--top-k. must be an integer"),
            (dict(opacity=2), r"'opacity' .--opacity. must be within "
                              r"\[0, 1\]"),
            (dict(slides_dir=tmp_path / 'none'), 'does not exist')]:
        with pytest.raises(PygSmError, match=message):
            heatmap(HeatmapConfig(runs=runs[:1], out=tmp_path / 'd', **bad))
    with pytest.raises(PygSmError, match='holds no scored slides'):
        heatmap(HeatmapConfig(runs=[data], out=tmp_path / 'e'))


def pink_share(path):
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert('RGB'), np.int16)
    return (np.abs(pixels - np.array(STROMA)).max(-1) < 30).mean()


def test_train_and_predict_draw_over_the_slides_with_slides_dir(tmp_path):
    import h5py

    data = make_cohort(tmp_path, num_slides=8)
    # TRIDENT's layout: features_<encoder>/, patch_size_level0 on coords.
    (data / 'features').rename(data / 'features_uni_v1')
    for path in (data / 'features_uni_v1').glob('*.h5'):
        with h5py.File(path, 'r+') as f:
            f['coords'].attrs['patch_size_level0'] = PATCH
    trident = dict(features_dir='features_uni_v1')
    run = tmp_path / 'run'
    trained = train_run(data, run, epochs=1, slides_dir=data / 'slides',
                        **trident)
    assert len(trained['heatmaps']) == 1
    assert pink_share(trained['heatmaps'][0]) > 0.02  # the tissue is there
    scored = score_run('predict', data, run / 'checkpoint.pt',
                       tmp_path / 'scored', heatmaps=2,
                       slides_dir=data / 'slides', **trident)
    assert [pink_share(p) > 0.02 for p in scored['heatmaps']] == [True] * 2
    grid = score_run('predict', data, run / 'checkpoint.pt',
                     tmp_path / 'grid', heatmaps=1, **trident)
    assert pink_share(grid['heatmaps'][0]) < 0.001
    # The prediction folder opens in the viewer and in heatmap.
    folder = RunFolder(tmp_path / 'scored')
    assert len(folder.slide_ids) == 8
    assert {p.slide_id: p.label for p in folder.predictions()}[
        'slide_001'] == '1'
    assert folder.scores('slide_001').patch_size_level0 == PATCH
    run_folder = RunFolder(run)  # train: predictions in results.json
    assert {p.slide_id for p in run_folder.predictions()} == \
        set(run_folder.slide_ids)


def test_heatmap_draws_annotation_outlines_and_the_flat_style(
        scored_cohort, tmp_path):
    """--annotations draws the lesion outlines in magenta over the slide
    images; --overlay-style flat paints every patch at --opacity."""
    from PIL import Image

    from pyg_sm.visualize.colors import OUTLINE_COLOR

    data, runs = scored_cohort

    def magenta(folder):
        pixels = np.asarray(Image.open(RunFolder(folder).heatmap_path(
            'slide_003')).convert('RGB'), np.int16)
        return int((np.abs(pixels - np.array(OUTLINE_COLOR)).sum(-1)
                    < 60).sum())

    common = dict(runs=runs[:1], slides_dir=data / 'slides', top_k=0,
                  slide_ids=['slide_003'])
    heatmap(HeatmapConfig(out=tmp_path / 'plain', **common))
    heatmap(HeatmapConfig(out=tmp_path / 'outlined',
                          annotations=data / 'annotations', **common))
    heatmap(HeatmapConfig(out=tmp_path / 'flat', overlay_style='flat',
                          **common))
    assert magenta(tmp_path / 'plain') == 0
    assert magenta(tmp_path / 'outlined') > 50
    assert pink_share(RunFolder(tmp_path / 'flat').heatmap_path(
        'slide_003')) < pink_share(RunFolder(tmp_path / 'plain')
                                   .heatmap_path('slide_003'))
    with pytest.raises(PygSmError, match='overlay_style'):
        HeatmapConfig(overlay_style='rainbow', **common)
