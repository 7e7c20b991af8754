"""Slide images: the synthetic pyramidal TIFFs read by OpenSlide agree with
the features' coordinates and patch labels."""
import numpy as np
import openslide
import pytest
import torch

from pyg_sm.datasets import SlideImages
from pyg_sm.datasets.layouts import SlideError
from pyg_sm.datasets.synthetic import GLASS, LESION, STROMA
from viewer_helpers import PATCH, read_slide


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
