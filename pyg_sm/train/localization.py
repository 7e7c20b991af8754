r"""Localization against pathologists' annotations (:doc:`/math`): instance
metrics over patches, and CAMELYON16's lesion-level FROC.

Instance metrics score each patch by its attention logit (the value before
the softmax) against its label (coverage of the lesions at least
``min_coverage``), pooled over the patches of the evaluated slides, and per
slide.

FROC, as CAMELYON16 defines it:

- **Detections** come from each slide's attention map by non-maximum
  suppression on the patch grid: the highest-scoring patch is a detection
  (at its centre), every patch whose corner lies within
  :data:`NMS_RADIUS_PATCHES` patch sides of it is suppressed, and so on.
- A detection's **score** is the slide's predicted probability of the
  positive class times the patch's attention min-max scaled within the
  slide, so that scores compare across slides.
- **Lesions** are the connected regions of the annotated lesion area
  (exclusions removed) dilated by 75 µm. A region whose longest diameter is
  below 275 µm (200 µm before the dilation) is isolated tumour cells: a
  detection inside it is neither a hit nor a false positive.
- A detection inside a lesion **hits** it (a lesion counts once, with its
  highest-scoring detection); any other detection is a **false positive**.
- **Sensitivity** is read at 1/4, 1/2, 1, 2, 4 and 8 average false
  positives per slide (over all evaluated slides), and the FROC score is
  their mean.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: The default coverage from which a patch is a lesion patch (torchmil's).
MIN_COVERAGE = 0.5
#: The average false positives per slide at which sensitivity is read.
FROC_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Lesions are dilated by this much (CAMELYON16).
DILATION_UM = 75.0
#: Dilated lesions below this longest diameter are isolated tumour cells.
ITC_DIAMETER_UM = 275.0
#: Non-maximum suppression radius, in patch sides (corner to corner).
NMS_RADIUS_PATCHES = 2.0


def instance_metrics(scores: np.ndarray, labels: np.ndarray
                     ) -> Dict[str, Optional[float]]:
    r"""AUROC, average precision and the best F1 over thresholds of
    :obj:`scores` against binary :obj:`labels` (:obj:`None` where the
    labels hold one class only)."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
    )

    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    if len(np.unique(labels)) < 2:
        return {'auroc': None, 'average_precision': None, 'best_f1': None}
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return {'auroc': float(roc_auc_score(labels, scores)),
            'average_precision': float(average_precision_score(labels,
                                                               scores)),
            'best_f1': float(f1.max())}


def mean_sd(values: Sequence[float]) -> Dict:
    values = [v for v in values if v is not None]
    if not values:
        return {'mean': None, 'sd': None, 'n': 0}
    return {'mean': float(np.mean(values)),
            'sd': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            'n': len(values)}


def detections(coords: np.ndarray, scores: np.ndarray, patch_size: float,
               radius: float = NMS_RADIUS_PATCHES) -> np.ndarray:
    r"""Indices of the detections of one slide by non-maximum suppression
    on the patch grid, highest score first: a patch is kept when no kept
    patch lies within :obj:`radius` patch sides of it."""
    from scipy.spatial import cKDTree

    coords = np.asarray(coords, float)
    order = np.argsort(-np.asarray(scores, float), kind='stable')
    # Each patch's neighbours within the radius, found at once.
    neighbours = cKDTree(coords).query_ball_point(
        coords, radius * float(patch_size) * (1 + 1e-9))
    suppressed = np.zeros(len(coords), bool)
    kept = []
    for index in order.tolist():
        if suppressed[index]:
            continue
        kept.append(index)
        suppressed[neighbours[index]] = True
    return np.asarray(kept, dtype=np.int64)


def lesion_regions(lesion_area, mpp: float) -> Tuple[list, np.ndarray]:
    r"""The lesions of a slide for FROC: the connected regions of
    :obj:`lesion_area` dilated by 75 µm (:obj:`mpp` µm per level-0 pixel),
    and whether each is isolated tumour cells."""
    import shapely

    from ..datasets.annotations import longest_diameter

    if lesion_area.is_empty:
        return [], np.zeros(0, bool)
    dilated = lesion_area.buffer(DILATION_UM / mpp)
    regions = list(shapely.get_parts(dilated))
    itc = np.array([longest_diameter(r) * mpp < ITC_DIAMETER_UM
                    for r in regions], bool)
    return regions, itc


def slide_froc_inputs(coords: np.ndarray, attention: np.ndarray,
                      probability: float, patch_size: float, regions: list,
                      itc: np.ndarray,
                      radius: float = NMS_RADIUS_PATCHES
                      ) -> Tuple[np.ndarray, np.ndarray]:
    r"""One slide's false-positive scores and its lesions' scores (0 for a
    lesion no detection hits; isolated tumour cells left out), as
    CAMELYON16's evaluation (and MONAI's ``compute_fp_tp_probs``) give
    them."""
    import shapely

    attention = np.asarray(attention, float)
    span = attention.max() - attention.min()
    scaled = (attention - attention.min()) / span if span > 0 else \
        np.ones_like(attention)
    scores = float(probability) * scaled
    kept = detections(coords, scores, patch_size, radius)
    centres = np.asarray(coords, float)[kept] + float(patch_size) / 2
    points = shapely.points(centres)
    lesion_scores = np.zeros(len(regions))
    false_positives = []
    inside = np.zeros((len(regions), len(kept)), bool)
    for r, region in enumerate(regions):
        shapely.prepare(region)
        inside[r] = shapely.contains(region, points)
    for d, score in enumerate(scores[kept]):
        hit = inside[:, d]
        if not hit.any():
            false_positives.append(score)
            continue
        for r in np.flatnonzero(hit & ~itc):
            lesion_scores[r] = max(lesion_scores[r], score)
    return np.asarray(false_positives, float), lesion_scores[~itc]


def froc_curve(fp_probs: np.ndarray, tp_probs: np.ndarray, num_targets: int,
               num_images: int) -> Tuple[np.ndarray, np.ndarray]:
    r"""Average false positives per slide and sensitivity at every
    threshold that a detection's score sets (CAMELYON16's evaluation code:
    a detection counts at thresholds up to its score; the lowest score,
    which undetected lesions hold as 0, is not a threshold)."""
    fp_probs = np.asarray(fp_probs, float)
    tp_probs = np.asarray(tp_probs, float)
    thresholds = np.unique(np.concatenate([fp_probs, tp_probs]))[1:]
    fps = np.sort(fp_probs)
    tps = np.sort(tp_probs)
    # How many scores lie at or above each threshold.
    fp_counts = len(fps) - np.searchsorted(fps, thresholds, side='left')
    tp_counts = len(tps) - np.searchsorted(tps, thresholds, side='left')
    fps_per_image = np.append(fp_counts, 0) / float(num_images)
    sensitivity = np.append(tp_counts, 0) / float(max(num_targets, 1))
    return fps_per_image, sensitivity


def froc_score(fps_per_image: np.ndarray, sensitivity: np.ndarray,
               rates: Sequence[float] = FROC_FP_RATES
               ) -> Tuple[float, Dict[str, float]]:
    r"""The sensitivity at each of :obj:`rates` average false positives per
    slide (interpolated along the curve) and their mean."""
    at = np.interp(rates, np.asarray(fps_per_image)[::-1],
                   np.asarray(sensitivity)[::-1])
    return float(at.mean()), {f'{r:g}': float(s) for r, s in zip(rates, at)}


def froc(slides: List[Dict], mpp: float,
         radius: float = NMS_RADIUS_PATCHES) -> Dict:
    r"""CAMELYON16's FROC over :obj:`slides`: each a dict with ``coords``,
    ``attention``, ``probability`` (of the positive class),
    ``patch_size`` and ``lesion_area`` (a shapely geometry, empty for a
    negative slide), and optionally its own ``mpp``. Returns the score, the
    sensitivities by false-positive rate, the curve and the counts."""
    fp_parts, tp_parts, targets = [], [], 0
    for slide in slides:
        regions, itc = lesion_regions(slide['lesion_area'],
                                      slide.get('mpp') or mpp)
        fp, tp = slide_froc_inputs(slide['coords'], slide['attention'],
                                   slide['probability'], slide['patch_size'],
                                   regions, itc, radius)
        fp_parts.append(fp)
        tp_parts.append(tp)
        targets += len(tp)
    fp_probs = np.concatenate(fp_parts) if fp_parts else np.zeros(0)
    tp_probs = np.concatenate(tp_parts) if tp_parts else np.zeros(0)
    fps_per_image, sensitivity = froc_curve(fp_probs, tp_probs, targets,
                                            max(len(slides), 1))
    score, at = froc_score(fps_per_image, sensitivity)
    if targets == 0:  # no lesion to find: no sensitivity
        score, at = None, {k: None for k in at}
    return {'score': score, 'sensitivities': at,
            'lesions': targets, 'slides': len(slides),
            'false_positives': int(len(fp_probs)),
            'curve': {'fps_per_slide': fps_per_image.tolist(),
                      'sensitivity': sensitivity.tolist()}}
