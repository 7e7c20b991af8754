"""Slide images: the synthetic pyramidal TIFFs read by OpenSlide agree with
the features' coordinates and patch labels; overlays draw attention over
the tissue only, on the percentile scale; heatmaps from the CLI."""
import numpy as np
import openslide
import pytest
import torch

from pyg_sm.datasets import PredictionFolder, SlideImages
from pyg_sm.datasets.layouts import SlideError
from pyg_sm.datasets.synthetic import GLASS, LESION, STROMA
from pyg_sm.cli import run as main
from pyg_sm.visualize import paint_patches, percentile_colors, render_overlay
from pyg_sm.visualize.overlay import thumbnail_side

from viewer_helpers import PATCH, make_cohort, read_slide



def mean_color(slide, x, y, side=PATCH):
    region = slide.read_region((int(x), int(y)), 0, (side, side))
    return np.asarray(region.convert('RGB'), np.float64).reshape(-1, 3).mean(0)


def test_synthetic_slides_are_pyramidal_tiffs_that_match_the_patches(
        scored_cohort):
    data, _ = scored_cohort
    images = SlideImages(data / 'slides')
    assert len(images) == 4 and 'slide_001' in images
    for slide_id in ['slide_000', 'slide_001']:
        path = images.path(slide_id)
        assert openslide.OpenSlide.detect_format(str(path)) == 'generic-tiff'
        slide = images.open(slide_id)
        width, height = slide.dimensions
        assert width % 64 == 0 and height % 64 == 0
        assert slide.level_count >= 3
        assert all(abs(d - 2 ** k) < 0.1
                   for k, d in enumerate(slide.level_downsamples))
        coords, labels = read_slide(data, slide_id)
        # Every patch lies inside the image; its pixels are tissue or lesion
        # exactly as the labels say, and glass lies outside the patches.
        assert int(coords.max(0).values[0]) + PATCH <= width
        assert int(coords.max(0).values[1]) + PATCH <= height
        for i in torch.randperm(len(coords))[:25].tolist() + \
                labels.nonzero().flatten()[:10].tolist():
            color = mean_color(slide, *coords[i].tolist())
            expected = LESION if labels[i] else STROMA
            assert np.abs(color - expected).max() < 45, (i, color)
        assert np.abs(mean_color(slide, 0, 0) - GLASS).max() < 6
        slide.close()
    assert (labels > 0).any()  # slide_001 is positive


def test_slide_images_find_files_by_id_and_name_them_in_errors(tmp_path):
    (tmp_path / 'a.SVS').write_bytes(b'not a slide')
    (tmp_path / 'b.ndpi').write_bytes(b'')
    (tmp_path / 'notes.txt').write_text('x')
    images = SlideImages(tmp_path)
    assert images.path('a') == tmp_path / 'a.SVS' and 'notes' not in images
    with pytest.raises(SlideError, match="slide 'a'.*a.SVS.*OpenSlide"):
        images.open('a')
    with pytest.raises(FileNotFoundError, match="slide 'c': no image c"):
        images.open('c')
    (tmp_path / 'a.tif').write_bytes(b'')
    with pytest.raises(ValueError, match="slide 'a' has two image files"):
        SlideImages(tmp_path)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        SlideImages(tmp_path / 'nowhere')


def test_paint_patches_covers_each_patch_without_gaps():
    canvas = np.zeros((10, 10, 1), np.uint8)
    corners = torch.tensor([[0, 0], [64, 0], [0, 64], [640, 0]])
    paint_patches(canvas, corners, 64, np.array([[1], [2], [3], [4]]),
                  scale=4 / 64)
    assert (canvas[:4, :4, 0] == 1).all() and (canvas[:4, 4:8, 0] == 2).all()
    assert (canvas[4:8, :4, 0] == 3).all() and (canvas[8:, :, 0] == 0).all()
    assert (canvas == 4).sum() == 0  # outside the canvas
    # Patches smaller than a pixel still get one.
    tiny = np.zeros((2, 2, 1), np.uint8)
    paint_patches(tiny, torch.tensor([[0, 0], [100, 100]]), 64, np.array([7]),
                  scale=1 / 100)
    assert tiny[0, 0, 0] == 7 and tiny[1, 1, 0] == 7


def test_overlay_colours_the_tissue_only_on_the_percentile_scale(
        scored_cohort):
    data, runs = scored_cohort
    slide = SlideImages(data / 'slides').open('slide_001')
    coords, labels = read_slide(data, 'slide_001')
    attention = 4.0 * labels.float() + torch.rand(len(labels))
    image = render_overlay(slide, coords, {'m': attention}, PATCH, labels,
                           title='slide_001', top_k=0)
    again = render_overlay(slide, coords, {'m': attention * 7 - 3}, PATCH,
                           labels, title='slide_001', top_k=0)
    # Any monotone rescaling gives the same picture (percentiles; the
    # gallery's captions also give the softmax weight, which changes).
    assert image.tobytes() == again.tobytes()
    gallery = render_overlay(slide, coords, {'a': attention, 'b': -attention},
                             PATCH, labels, top_k=3)
    assert gallery.height > image.height + 2 * 128
    assert thumbnail_side(slide.dimensions, PATCH) >= 640
    # A slide with many patches gets two thumbnail pixels per patch.
    assert thumbnail_side((200_000, 100_000), 256) == 1562
    slide.close()


def test_overlay_layer_is_transparent_outside_the_patches(scored_cohort):
    from PIL import Image

    from pyg_sm.visualize.overlay import overlay_image

    data, _ = scored_cohort
    coords, labels = read_slide(data, 'slide_001')
    thumbnail = Image.new('RGB', (100, 80), (255, 255, 255))
    scale = 100 / 4000
    out = np.asarray(overlay_image(thumbnail, coords, PATCH,
                                   percentile_colors(torch.full(
                                       (len(coords), ), 100.0)), scale, 1.0))
    painted = (out[..., :3] != 255).any(-1)
    expected = np.zeros_like(painted)
    for x, y in (coords.double() * scale).floor().long().tolist():
        expected[y:y + 2, x:x + 2] = True  # ceil(64 * scale) = 2 pixels
    assert np.array_equal(painted, expected[:80, :100])
    top = percentile_colors(torch.tensor([100.0]))[0]
    assert (out[painted][:, :3] == top).all()


def test_heatmap_command_over_slides_and_on_the_grid(scored_cohort, tmp_path,
                                                     capsys):
    from PIL import Image

    data, runs = scored_cohort
    result = main(['heatmap', *map(str, runs), '--slides-dir',
                   str(data / 'slides'), '--out', str(tmp_path / 'a'),
                   '--top-k', '4'])
    assert len(result['heatmaps']) == 4
    assert '4 over slide images, 0 on the patch grid' in capsys.readouterr(
    ).out
    with_slides = Image.open(result['heatmaps'][1])
    grid = main(['heatmap', str(runs[0]), '--out', str(tmp_path / 'b'),
                 '--top-k', '0'])
    assert '0 over slide images, 4 on the patch grid' in capsys.readouterr(
    ).out
    assert with_slides.size != Image.open(grid['heatmaps'][1]).size
    (tmp_path / 'ids.txt').write_text('slide_003\n')
    one = main(['heatmap', str(runs[0]), '--slide-ids',
                str(tmp_path / 'ids.txt'), '--out', str(tmp_path / 'c')])
    assert [p.rsplit('/', 1)[1] for p in one['heatmaps']] == ['slide_003.png']
    (tmp_path / 'ids.txt').write_text('slide_009\n')
    for bad, message in [
            (['--slide-ids', str(tmp_path / 'ids.txt')],
             "no scores for slide 'slide_009'"),
            (['--top-k', '-1'], '--top-k must be 0 or more'),
            (['--opacity', '2'], r'--opacity must be within \[0, 1\]'),
            (['--slides-dir', str(tmp_path / 'none')], 'does not exist')]:
        with pytest.raises(SystemExit, match=message):
            main(['heatmap', str(runs[0]), '--out', str(tmp_path / 'd'),
                  *bad])
    with pytest.raises(SystemExit, match='holds no scored slides'):
        main(['heatmap', str(data), '--out', str(tmp_path / 'e')])


def test_prediction_folder_reads_scores_and_predictions(scored_cohort):
    data, runs = scored_cohort
    folder = PredictionFolder(runs[0])
    assert folder.name == 'focused' and len(folder) == 4
    scores = folder.read_scores('slide_001')
    coords, labels = read_slide(data, 'slide_001')
    assert torch.equal(scores['coords'], coords)
    assert torch.equal(scores['patch_labels'], labels)
    assert scores['patch_size_level0'] == PATCH
    assert abs(float(scores['attention'].sum()) - 1) < 1e-5
    assert folder.predictions['slide_001'] == {
        'label': '1', 'predicted': '1',
        'probabilities': {'0': pytest.approx(0.1), '1': pytest.approx(0.9)}}
    with pytest.raises(FileNotFoundError, match="slide 'x': no scores"):
        folder.read_scores('x')


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
    trident = ['--features-dir', 'features_uni_v1']
    run = tmp_path / 'run'
    trained = main(['train', str(data), *trident, '--epochs', '1',
                    '--att-dim', '8', '--heatmaps', '1', '--slides-dir',
                    str(data / 'slides'), '--out', str(run)])
    assert len(trained['heatmaps']) == 1
    assert pink_share(trained['heatmaps'][0]) > 0.02  # the tissue is there
    scored = main(['predict', str(data), *trident, '--checkpoint',
                   str(run / 'checkpoint.pt'), '--heatmaps', '2',
                   '--slides-dir', str(data / 'slides'),
                   '--out', str(tmp_path / 'scored')])
    assert [pink_share(p) > 0.02 for p in scored['heatmaps']] == [True] * 2
    grid = main(['predict', str(data), *trident, '--checkpoint',
                 str(run / 'checkpoint.pt'), '--heatmaps', '1',
                 '--out', str(tmp_path / 'grid')])
    assert pink_share(grid['heatmaps'][0]) < 0.001
    # The prediction folder opens in the viewer and in heatmap.
    folder = PredictionFolder(tmp_path / 'scored')
    assert len(folder) == 8 and folder.predictions['slide_001']['label'] \
        == '1'
    assert folder.read_scores('slide_001')['patch_size_level0'] == PATCH
    run_folder = PredictionFolder(run)  # train: predictions in results.json
    assert set(run_folder.predictions) == set(run_folder.slide_ids)
