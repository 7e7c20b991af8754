r"""``localize``: a scored run folder against pathologists' annotations,
without the model: instance metrics and CAMELYON16's FROC
(:mod:`pyg_sm.train.localization` defines them)."""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..datasets.annotations import (check_lesion_classes,
                                    find_annotation_file, patch_coverage,
                                    read_annotations)
from ..train.localization import (MIN_COVERAGE, froc, instance_metrics,
                                  mean_sd)
from ..utils.errors import MissingFileError, PygSmError
from ._common import slide_images
from .folder import RunFolder



def _image_facts(slide_id: str, images) -> tuple:
    r"""The slide image's level-0 (width, height) (a binary mask's scale
    follows from it) and ``openslide.mpp-x``, each :obj:`None` without an
    image or the property; the image is opened once."""
    if images is None or slide_id not in images:
        return None, None
    slide = images.open(slide_id)
    try:
        value = slide.properties.get('openslide.mpp-x')
        return tuple(slide.dimensions), float(value) if value else None
    finally:
        slide.close()


def localize(run: Union[RunFolder, str, Path], annotations: Union[str, Path],
             lesion_classes: Optional[Sequence[str]] = None,
             min_coverage: float = MIN_COVERAGE, mpp: Optional[float] = None,
             slides_dir: Optional[Union[str, Path]] = None,
             positive_class: Optional[str] = None,
             classes: Optional[Sequence[str]] = None,
             write: bool = False) -> Dict:
    r"""Localization metrics of the scored slides of :obj:`run` (an
    ``evaluate`` or ``predict`` folder, or a training run) against the
    annotation files in :obj:`annotations` (``<slide_id>.geojson``, ``.json``
    or ``.xml``, or a binary mask ``<slide_id>_mask.tif`` / ``.png``, which
    needs the slide's image in :obj:`slides_dir`;
    :mod:`pyg_sm.datasets.annotations`).

    A patch's label is its coverage by the lesions (exclusions removed) of
    :obj:`lesion_classes` (every class that is not an exclusion) at least
    :obj:`min_coverage`. A slide of a negative class without an annotation
    file is all-negative (CAMELYON16's normal slides have none); a positive
    (or unlabelled) slide without one is left out, and named. Micrometres
    per pixel come from each slide's image in :obj:`slides_dir`
    (``openslide.mpp-x``), else :obj:`mpp`. The positive class is
    :obj:`positive_class`, else the last of :obj:`classes` (the run's).
    With :obj:`write`, each measured slide's score file gets the coverage
    and the patch labels from the annotations
    (:meth:`RunFolder.write_annotation_labels`).

    Returns ``source``, ``min_coverage``, ``instance_auroc``,
    ``instance_average_precision``, ``instance_best_f1`` (over all patches
    of the slides used, scored by their attention logits),
    ``per_slide_instance_auroc`` (mean, sd, n over the slides with both
    kinds of patches), ``froc`` (``score``, ``sensitivities`` by average
    false positives per slide, ``lesions``, ``false_positives``,
    ``curve``), ``slides_used`` and ``slides_left_out``."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    annotations = Path(annotations)
    if not annotations.is_dir():
        raise MissingFileError(f"no annotation folder {annotations}")
    if not 0 < min_coverage <= 1:
        raise PygSmError(f"'min_coverage' (--min-coverage) must lie in "
                         f"(0, 1] (got {min_coverage})")
    predictions = {s: p for q in run.predictions()
                   for s, p in q.per_slide().items()}
    if not classes and run.holds_run():
        classes = run.results().get('classes')
    classes = classes or ['0', '1']  # a survival run has none
    positive = positive_class or classes[-1]
    images = slide_images(slides_dir)
    scores, labels, per_slide, froc_slides = [], [], [], []
    used: List[str] = []
    left_out: Dict[str, str] = {}
    found_classes: List[str] = []
    for slide_id in run.slide_ids:
        prediction = predictions.get(slide_id)
        path = find_annotation_file(annotations, slide_id)
        slide = run.scores(slide_id)
        dimensions, slide_mpp = _image_facts(slide_id, images)
        if path is not None:
            read = read_annotations(path, slide_id, dimensions)
            found_classes += read.classes
            area = read.lesion(lesion_classes)
        elif prediction is not None and prediction.label is not None and \
                prediction.label != positive:
            import shapely
            area = shapely.Polygon()
        else:
            left_out[slide_id] = 'positive slide without annotations' \
                if prediction is not None and prediction.label == positive \
                else 'no annotations and no label'
            continue
        coords = slide.coords.numpy()
        side = slide.patch_size_level0
        coverage = patch_coverage(coords, side, area)
        if len(coords) and not area.is_empty and not coverage.any():
            import warnings
            warnings.warn(f"slide '{slide_id}' ({path}): the annotations "
                          f"cover none of its patches; another coordinate "
                          f"frame or level?", UserWarning, stacklevel=2)
        patch_labels = coverage >= min_coverage
        if write:
            run.write_annotation_labels(slide_id, coverage, min_coverage)
        logits = slide.attention_logits.double().numpy()
        scores.append(logits)
        labels.append(patch_labels)
        per_slide.append(instance_metrics(logits, patch_labels)['auroc'])
        # A survival model predicts no class: its detections are scored by
        # the attention alone.
        probability = None if prediction is None else 1.0 \
            if prediction.risk is not None else \
            prediction.probabilities.get(positive)
        if probability is None:
            left_out[slide_id] = 'no predicted probability'
            continue
        slide_mpp = slide_mpp or mpp
        if slide_mpp is None:
            raise PygSmError(f"slide '{slide_id}': no micrometres per pixel "
                             f"for the FROC's 75 um dilation (its image has "
                             f"no openslide.mpp-x): pass --mpp")
        froc_slides.append({'coords': coords, 'attention': logits,
                            'probability': probability, 'patch_size': side,
                            'lesion_area': area, 'mpp': slide_mpp})
        used.append(slide_id)
    check_lesion_classes(lesion_classes, found_classes)
    if not used:
        raise PygSmError(f"no slide of {run.path} could be measured against "
                         f"{annotations} (left out: {left_out})")
    pooled = instance_metrics(np.concatenate(scores),
                              np.concatenate(labels))
    result = froc(froc_slides, mpp=mpp or 1.0)
    return {
        'source': str(annotations), 'min_coverage': min_coverage,
        'lesion_classes': None if lesion_classes is None
        else list(lesion_classes),
        'instance_auroc': pooled['auroc'],
        'instance_average_precision': pooled['average_precision'],
        'instance_best_f1': pooled['best_f1'],
        'per_slide_instance_auroc': mean_sd(per_slide),
        'froc': result,
        'slides_used': used, 'slides_left_out': left_out}


def localization_line(result: Dict) -> str:
    r"""One printed line of :func:`localize`'s result."""
    def fmt(value):
        return '-' if value is None else f'{value:.3f}'
    froc_result = result['froc']
    return (f"localization ({len(result['slides_used'])} slides, "
            f"{froc_result['lesions']} lesions): instance AUROC "
            f"{fmt(result['instance_auroc'])}, AP "
            f"{fmt(result['instance_average_precision'])}, best F1 "
            f"{fmt(result['instance_best_f1'])}, FROC "
            f"{fmt(froc_result['score'])}")
