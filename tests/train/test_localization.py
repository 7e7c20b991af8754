"""Localization metrics: instance metrics, non-maximum suppression and
CAMELYON16's FROC, against MONAI's FROC functions on the same detections
(a test dependency)."""
import numpy as np
import pytest
import shapely

from pyg_sm.train.localization import (
    DILATION_UM,
    detections,
    froc,
    froc_curve,
    froc_score,
    instance_metrics,
    lesion_regions,
    slide_froc_inputs,
)


def monai():
    import monai.metrics
    return monai.metrics


def test_froc_curve_and_score_equal_monai():
    rng = np.random.default_rng(0)
    for case in range(20):
        fp = rng.random(rng.integers(0, 60)).round(2)
        tp = np.concatenate([rng.random(rng.integers(1, 15)).round(2),
                             np.zeros(rng.integers(0, 4))])
        slides = int(rng.integers(1, 10))
        ours = froc_curve(fp, tp, len(tp), slides)
        theirs = monai().compute_froc_curve_data(fp, tp, len(tp), slides)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, err_msg=str(case))
        score, at = froc_score(*ours)
        assert score == pytest.approx(monai().compute_froc_score(*theirs))
        assert list(at) == ['0.25', '0.5', '1', '2', '4', '8']


def grid(side, n):
    xs, ys = np.meshgrid(np.arange(n) * side, np.arange(n) * side)
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(float)


def test_detections_lesions_and_isolated_tumour_cells_equal_monai():
    """One slide, its lesions rasterized into a label mask for MONAI's
    compute_fp_tp_probs, on the same detections: the same false-positive
    and lesion scores. Isolated tumour cells (a small lesion) are neither
    hits nor false positives."""
    side, n, mpp = 64.0, 40, 1.0
    coords = grid(side, n)
    lesions = shapely.union_all([
        shapely.box(300, 300, 900, 800),            # a lesion
        shapely.Point(2000, 2000).buffer(40),        # isolated tumour cells
        shapely.box(1500, 200, 2300, 600)])          # another lesion
    regions, itc = lesion_regions(lesions, mpp)
    assert itc.tolist() == [False, False, True] or sorted(itc) == \
        [False, False, True]
    rng = np.random.default_rng(1)
    attention = rng.normal(size=len(coords))
    fp, tp = slide_froc_inputs(coords, attention, 0.8, side, regions, itc)

    # MONAI: the dilated regions as labels 1..K at level 0, ITC excluded.
    kept = detections(coords, 0.8 * (attention - attention.min()) /
                      np.ptp(attention), side)
    scores = 0.8 * (attention - attention.min()) / np.ptp(attention)
    centres = coords[kept] + side / 2
    size = int(n * side)
    ys, xs = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), np.int64)
    for label, region in enumerate(regions, start=1):
        inside = shapely.contains_xy(region, xs.ravel() + 0.5,
                                     ys.ravel() + 0.5).reshape(size, size)
        mask[inside] = label
    excluded = [k + 1 for k in np.flatnonzero(itc)]
    fp_m, tp_m, targets = monai().compute_fp_tp_probs(
        scores[kept], centres[:, 1].astype(int), centres[:, 0].astype(int),
        mask, labels_to_exclude=excluded)
    np.testing.assert_allclose(np.sort(fp), np.sort(fp_m))
    # MONAI keeps a 0 for the excluded label; neither counts it.
    np.testing.assert_allclose(np.sort(tp), np.sort(tp_m)[-len(tp):])
    assert targets == len(tp) == 2 and tp.min() > 0


def test_froc_over_slides_and_its_definitions():
    side, n = 64.0, 20
    coords = grid(side, n)
    lesion = shapely.box(320, 320, 704, 704)
    inside = shapely.contains_xy(lesion, coords[:, 0] + 32, coords[:, 1] + 32)
    perfect = [{'coords': coords, 'attention': inside * 1.0,
                'probability': 0.9, 'patch_size': side,
                'lesion_area': lesion},
               {'coords': coords, 'attention': np.zeros(len(coords)),
                'probability': 0.1, 'patch_size': side,
                'lesion_area': shapely.Polygon()}]
    result = froc(perfect, mpp=1.0)
    assert result['score'] == 1.0 and result['lesions'] == 1
    # Attention far from the (dilated) lesion: it is never found.
    far_away = lesion.buffer(300).contains(shapely.points(coords + 32))
    far = dict(perfect[0], attention=(~far_away) * 1.0)
    assert froc([far, perfect[1]], mpp=1.0)['score'] == 0.0
    # Dilation: 75 um at 1 um per pixel.
    regions, _ = lesion_regions(lesion, 1.0)
    assert regions[0].area == pytest.approx(
        lesion.buffer(DILATION_UM).area)


def test_nms_and_instance_metrics():
    coords = grid(10.0, 5)
    scores = np.arange(25.0)
    kept = detections(coords, scores, 10.0, radius=1.0)
    assert kept[0] == 24
    chosen = coords[kept]
    distances = ((chosen[:, None] - chosen[None]) ** 2).sum(-1)
    assert (distances[~np.eye(len(kept), dtype=bool)] > 100).all()
    metrics = instance_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert metrics['auroc'] == pytest.approx(0.75)
    assert metrics['best_f1'] == pytest.approx(0.8)
    assert instance_metrics([0.1, 0.2], [1, 1])['auroc'] is None
