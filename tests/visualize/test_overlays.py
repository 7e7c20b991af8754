"""Overlays draw attention over the tissue only, on the percentile scale;
heatmaps on the patch grid."""
import numpy as np
import torch

from graph_helpers import random_grid_patches
from pyg_sm.datasets import SlideImages
from pyg_sm.visualize import (
    paint_patches,
    percentile_colors,
    render_heatmap,
    render_overlay,
)
from pyg_sm.visualize.overlay import thumbnail_side
from viewer_helpers import PATCH, read_slide


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


def test_heatmap_renders_an_image_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pos = random_grid_patches(40, 0, scale=256)
    image = render_heatmap(pos, {'a': torch.rand(40), 'b': torch.rand(40)},
                           mask=torch.rand(40) > 0.5, title='t')
    assert image.mode == 'RGBA' and image.width > image.height > 100
    assert list(tmp_path.iterdir()) == []


def test_heatmap_is_on_the_percentile_scale_and_keeps_every_patch():
    from pyg_sm.utils.stats import percentiles
    from pyg_sm.visualize import grid_image

    pos = random_grid_patches(40, 1, scale=256)
    raw = torch.randn(40) * 30 - 10
    # The same picture for any monotone rescaling of the values.
    a = render_heatmap(pos, {'m': raw})
    b = render_heatmap(pos, {'m': raw * 0.01 + 5})
    assert a.tobytes() == b.tobytes()
    cells = grid_image(pos, percentiles(raw))
    assert float(cells.nan_to_num(-1).max()) == 100.0
    # A 500 x 300 grid gets at least one pixel per patch.
    gy, gx = torch.meshgrid(torch.arange(300), torch.arange(500),
                            indexing='ij')
    big = torch.stack([gx.flatten(), gy.flatten()], 1) * 224
    image = render_heatmap(big, {'m': torch.rand(big.size(0))})
    assert image.width >= 500 and image.height >= 300


def test_ramp_style_opacity_and_flat_style():
    from pyg_sm.visualize import percentile_opacity

    ramp = percentile_opacity(torch.tensor([0.0, 49.0, 50.0, 70.0, 90.0,
                                            100.0]))
    assert ramp.tolist() == [15, 15, 15, 135, 255, 255]
    assert percentile_opacity(torch.tensor([0.0, 100.0]), 'flat',
                              0.5).tolist() == [128, 128]
    import pytest
    with pytest.raises(ValueError, match='overlay_style'):
        percentile_opacity(torch.tensor([1.0]), 'rainbow')


def test_overlay_draws_annotation_outlines_and_both_styles(scored_cohort):
    """Outlines in OUTLINE_COLOR (magenta, not on turbo) over every panel;
    the ramp style leaves low-attention tissue nearly uncovered."""
    import shapely

    from pyg_sm.visualize.colors import OUTLINE_COLOR

    data, _ = scored_cohort
    slide = SlideImages(data / 'slides').open('slide_001')
    coords, labels = read_slide(data, 'slide_001')
    attention = 4.0 * labels.float() + torch.rand(len(labels))
    corners = coords[labels > 0].double().numpy()
    lesion = shapely.union_all(shapely.box(
        corners[:, 0], corners[:, 1], corners[:, 0] + PATCH,
        corners[:, 1] + PATCH))

    def magenta(image):
        pixels = np.asarray(image)[..., :3].astype(int)
        return (np.abs(pixels - OUTLINE_COLOR).sum(-1) < 60).sum()

    plain = render_overlay(slide, coords, {'m': attention}, PATCH, top_k=0)
    outlined = render_overlay(slide, coords, {'m': attention}, PATCH,
                              top_k=0, outlines=lesion)
    assert magenta(plain) == 0 and magenta(outlined) > 50
    flat = render_overlay(slide, coords, {'m': attention}, PATCH, top_k=0,
                          overlay_style='flat')
    assert flat.tobytes() != plain.tobytes()
    slide.close()
