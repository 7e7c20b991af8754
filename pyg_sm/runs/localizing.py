r"""``localize``: scored slides against pathologists' annotations, without
the model: instance metrics and CAMELYON16's FROC
(:mod:`pyg_sm.train.localization` defines them).

Two steps, so that ``evaluate`` checks the annotations before it scores a
slide: :func:`check_annotations` finds, reads and checks every slide's
outlines, classes and micrometres per pixel (all problems of one kind at
once), and :func:`measure` scores the slides' patches against them."""
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..datasets import SlideImages
from ..datasets.annotations import (
    AnnotationClasses,
    AnnotationFolder,
    patch_coverage,
)
from ..train.localization import MIN_COVERAGE, froc, instance_metrics, mean_sd
from ..train.metrics import uncertainty_auroc
from ..utils.errors import PygSmError
from ..utils.text import few, plural
from ._common import slide_images
from .folder import RunFolder


@dataclasses.dataclass
class AnnotatedSlides:
    r"""The annotations of the slides to measure, read and checked.

    Attributes:
        source (Path): The annotation folder.
        areas (dict): Slide id to its lesion area (exclusions subtracted;
            empty for a negative slide without a file).
        mpp (dict): Slide id to its micrometres per level-0 pixel.
        left_out (dict): Slide id to why it is not measured.
        lesion_classes (list): The classes read as lesion.
        exclusion_classes (list): The classes read as exclusions.
        notes (list): What the terminal is told (printed by the
            commands).
    """
    source: Path
    areas: Dict[str, object]
    mpp: Dict[str, float]
    left_out: Dict[str, str]
    lesion_classes: List[str]
    exclusion_classes: List[str]
    notes: List[str]

    def report(self) -> None:
        r"""Prints :attr:`notes` on stderr."""
        for note in self.notes:
            print(note, file=sys.stderr, flush=True)

    def lesion(self, slide_id: str, dimensions=None):
        r"""The slide's lesion area, :obj:`None` when it is not measured
        (as :meth:`~pyg_sm.datasets.annotations.AnnotationFolder.lesion`
        answers)."""
        return self.areas.get(slide_id)


def _image_facts(slide_id: str, images: Optional[SlideImages]) -> tuple:
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


def _check_some_match(folder: AnnotationFolder, slide_ids: Sequence[str],
                      files: Dict[str, Optional[Path]],
                      labels: Dict[str, Optional[str]],
                      positive: Optional[str]) -> None:
    r"""An annotation folder none of whose files matches a slide that
    needs one (a positive or unlabelled slide) is an error, with the
    slides its files likely meant."""
    if any(files.values()):
        return
    if not any(positive is None or labels.get(s) in (None, positive)
               for s in slide_ids):
        return  # negative slides only: all-negative without files
    positives = sum(positive is not None and labels.get(s) == positive
                    for s in slide_ids)
    hints = folder.hints(slide_ids)
    raise PygSmError(
        f"no annotation file in {folder.folder} matches any of the "
        f"{plural(len(slide_ids), 'slide')}"
        + (f" ({positives} positive)" if positives else '')
        + ": files are named <slide_id>.geojson, .json, .xml or "
          "<slide_id>_mask.tif/.png"
        + (f"; did you mean {', '.join(hints)}" if hints else
           f" (slides: {few(slide_ids)})"))


def _resolutions(slide_ids: Sequence[str], image_mpp: Dict[str, Optional[
        float]], mpp: Optional[float], images: Optional[SlideImages]
                 ) -> tuple:
    r"""Each slide's micrometres per pixel: an explicit :obj:`mpp` wins
    over the image's (a note names the slides whose image says otherwise);
    a slide with neither is an error naming them all."""
    if mpp is None:
        missing = [s for s in slide_ids if image_mpp[s] is None]
        if missing:
            raise PygSmError(
                f"{len(missing)} slide(s) have no micrometres per pixel for "
                f"the FROC's 75 um dilation ({few(missing)}): " +
                ("no --slides-dir was given" if images is None else
                 f"their images in {images.folder} have no openslide.mpp-x "
                 f"(or none)") + "; pass --mpp")
        return {s: image_mpp[s] for s in slide_ids}, []
    differing = [f'{s} ({image_mpp[s]:g})' for s in slide_ids
                 if image_mpp[s] is not None and
                 abs(image_mpp[s] - mpp) > 1e-6 * mpp]
    notes = [f"note: --mpp {mpp:g} overrides the micrometres per pixel of "
             f"{len(differing)} slide image(s): {few(differing)}"] \
        if differing else []
    return {s: mpp for s in slide_ids}, notes


def check_annotations(annotations: Union[str, Path], slide_ids: Sequence[str],
                      labels: Dict[str, Optional[str]],
                      positive: Optional[str],
                      classes: Optional[AnnotationClasses] = None,
                      slides_dir: Optional[Union[str, Path]] = None,
                      mpp: Optional[float] = None) -> AnnotatedSlides:
    r"""Reads and checks the annotations of :obj:`slide_ids` in the folder
    :obj:`annotations` before anything is scored.

    :obj:`labels` gives each slide's class (:obj:`None` when unknown) and
    :obj:`positive` the lesion class (:obj:`None`: no slide is known to be
    negative). A negative slide without a file is all-negative (CAMELYON16's
    normal slides have none); a positive or unlabelled slide without one is
    left out, and the positive ones are named in :attr:`notes`; a negative
    slide with lesion outlines is a warning. Errors (:class:`PygSmError`,
    each listing all the slides concerned): no file matches a slide to
    measure (with the files' likely slides: case, extension, prefix),
    classes named that no file holds, outlines in no ASAP group, a slide
    without micrometres per pixel (its image's ``openslide.mpp-x``, else
    :obj:`mpp`; an explicit :obj:`mpp` overrides the image's, with a
    note)."""
    import shapely

    folder = AnnotationFolder(annotations, classes)
    images = slide_images(slides_dir)
    files = {s: folder.file(s) for s in slide_ids}
    _check_some_match(folder, slide_ids, files, labels, positive)

    def negative(slide_id):
        label = labels.get(slide_id)
        return positive is not None and label is not None and \
            label != positive
    measured = [s for s in slide_ids if files[s] is not None or negative(s)]
    left_out = {s: 'positive slide without annotations'
                if labels.get(s) is not None else
                'no annotations and no label'
                for s in slide_ids if s not in set(measured)}
    facts = {s: _image_facts(s, images) for s in measured}
    found: Dict[str, List[str]] = {}
    for slide_id in measured:
        if files[slide_id] is not None:
            for name in folder.read(slide_id, facts[slide_id][0]).classes:
                found.setdefault(name, []).append(slide_id)
    notes = folder.classes.check(found)
    areas = {s: shapely.Polygon() if files[s] is None else
             folder.lesion(s, facts[s][0]) for s in measured}
    resolutions, mpp_notes = _resolutions(
        measured, {s: facts[s][1] for s in measured}, mpp, images)
    missing = [s for s, why in left_out.items()
               if why.startswith('positive')]
    if missing:
        notes.append(f"note: {len(missing)} positive slide(s) have no "
                     f"annotation file in {folder.folder} and are left out "
                     f"of the localization: {few(missing)}")
    outlined = [s for s in measured if negative(s) and not areas[s].is_empty]
    if outlined:
        notes.append(f"warning: {len(outlined)} slide(s) labelled negative "
                     f"have lesion outlines in {folder.folder}: "
                     f"{few(outlined)}; their outlines count as lesions")
    lesion, exclusion = folder.classes.split(found)
    return AnnotatedSlides(folder.folder, areas, resolutions, left_out,
                           lesion, exclusion, notes + mpp_notes)


def measure(run: RunFolder, annotated: AnnotatedSlides,
            probabilities: Dict[str, Optional[float]],
            min_coverage: float = MIN_COVERAGE, write: bool = False) -> Dict:
    r"""The localization metrics of the scored slides of :obj:`run` against
    :obj:`annotated` (:func:`check_annotations`); :obj:`probabilities`
    gives each slide's predicted probability of the positive class (1 for
    a survival model, whose detections are scored by the attention alone;
    :obj:`None` leaves the slide out of the FROC). With :obj:`write`, each
    measured slide's score file gets the coverage and the patch labels
    from the annotations (:meth:`RunFolder.write_annotation_labels`)."""
    scores, labels, per_slide, froc_slides = [], [], [], []
    uncertain = []  # (attention, attention_std, labels) of each slide
    used: List[str] = []
    left_out = dict(annotated.left_out)
    for slide_id, area in annotated.areas.items():
        slide = run.scores(slide_id)
        coords = slide.coords.numpy()
        side = slide.patch_size_level0
        coverage = patch_coverage(coords, side, area)
        if len(coords) and not area.is_empty and not coverage.any():
            warnings.warn(f"slide '{slide_id}' ({annotated.source}): the "
                          f"annotations cover none of its patches; another "
                          f"coordinate frame or level?", UserWarning,
                          stacklevel=2)
        patch_labels = coverage >= min_coverage
        if write:
            run.write_annotation_labels(slide_id, coverage, min_coverage)
        logits = slide.attention_logits.double().numpy()
        scores.append(logits)
        labels.append(patch_labels)
        if slide.attention_std is not None:
            uncertain.append((logits, slide.attention_std.numpy(),
                              patch_labels))
        per_slide.append(instance_metrics(logits, patch_labels)['auroc'])
        probability = probabilities.get(slide_id)
        if probability is None:
            left_out[slide_id] = 'no predicted probability'
            continue
        froc_slides.append({'coords': coords, 'attention': logits,
                            'probability': probability, 'patch_size': side,
                            'lesion_area': area,
                            'mpp': annotated.mpp[slide_id]})
        used.append(slide_id)
    if not used:
        raise PygSmError(f"no slide of {run.path} could be measured against "
                         f"{annotated.source} (left out: {left_out})")
    pooled = instance_metrics(np.concatenate(scores),
                              np.concatenate(labels))
    return {
        'source': str(annotated.source), 'min_coverage': min_coverage,
        'lesion_classes': annotated.lesion_classes,
        'exclusion_classes': annotated.exclusion_classes,
        'instance_auroc': pooled['auroc'],
        'instance_average_precision': pooled['average_precision'],
        'instance_best_f1': pooled['best_f1'],
        'per_slide_instance_auroc': mean_sd(per_slide),
        **({'uncertainty_auroc': uncertainty_auroc(uncertain)}
           if uncertain else {}),
        'froc': froc(froc_slides, mpp=1.0),
        'mpp': {s: annotated.mpp[s] for s in used},
        'slides_used': used, 'slides_left_out': left_out}


def positive_probabilities(predictions, positive: str
                           ) -> Dict[str, Optional[float]]:
    r"""Each slide's predicted probability of :obj:`positive` (1 for a
    survival prediction) from a run's predictions."""
    return {s: 1.0 if p.risk is not None else p.probabilities.get(positive)
            for q in predictions for s, p in q.per_slide().items()}


def localize(run: Union[RunFolder, str, Path], annotations: Union[str, Path],
             lesion_classes: Optional[Sequence[str]] = None,
             min_coverage: float = MIN_COVERAGE, mpp: Optional[float] = None,
             slides_dir: Optional[Union[str, Path]] = None,
             positive_class: Optional[str] = None,
             classes: Optional[Sequence[str]] = None,
             write: bool = False,
             exclusion_classes: Sequence[str] = ()) -> Dict:
    r"""Localization metrics of the scored slides of :obj:`run` (an
    ``evaluate`` or ``predict`` folder, or a training run) against the
    annotation files in :obj:`annotations` (``<slide_id>.geojson``,
    ``.json`` or ``.xml``, or a binary mask ``<slide_id>_mask.tif`` /
    ``.png``, which needs the slide's image in :obj:`slides_dir`;
    :mod:`pyg_sm.datasets.annotations`): :func:`check_annotations`, then
    :func:`measure`.

    A patch's label is its coverage by the lesions of
    :obj:`lesion_classes` (every class that is not an exclusion) minus the
    exclusions (the defaults and :obj:`exclusion_classes`) at least
    :obj:`min_coverage`. Micrometres per pixel are :obj:`mpp` when given,
    else each slide image's ``openslide.mpp-x``. The positive class is
    :obj:`positive_class`, else the last of :obj:`classes` (the run's).

    Returns ``source``, ``min_coverage``, ``lesion_classes`` and
    ``exclusion_classes`` (as read), ``instance_auroc``,
    ``instance_average_precision``, ``instance_best_f1`` (over all patches
    of the slides used, scored by their attention logits),
    ``per_slide_instance_auroc`` (mean, sd, n over the slides with both
    kinds of patches), ``uncertainty_auroc`` (scores of a probabilistic
    model: how well ``attention_std`` flags the patches the attention
    misranks, :func:`~pyg_sm.train.metrics.uncertainty_auroc`), ``froc``
    (``score``, ``sensitivities`` by average false positives per slide,
    ``lesions``, ``false_positives``, ``curve``), ``mpp`` (each slide's
    micrometres per pixel), ``slides_used`` and ``slides_left_out``
    (slide to why)."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    if not 0 < min_coverage <= 1:
        raise PygSmError(f"'min_coverage' (--min-coverage) must lie in "
                         f"(0, 1] (got {min_coverage})")
    predictions = run.predictions()
    if not classes and run.holds_run():
        classes = run.results().get('classes')
    survival = any(p.risk is not None for p in predictions)
    positive = None if survival else positive_class or (classes or
                                                         ['0', '1'])[-1]
    labels = {s: p.label for q in predictions
              for s, p in q.per_slide().items()}
    annotated = check_annotations(
        annotations, run.slide_ids, labels, positive,
        AnnotationClasses(lesion_classes, exclusion_classes), slides_dir,
        mpp)
    annotated.report()
    return measure(run, annotated,
                   positive_probabilities(predictions, positive),
                   min_coverage, write)


def localization_line(result: Dict) -> str:
    r"""One printed line of :func:`localize`'s result."""
    def fmt(value):
        return '-' if value is None else f'{value:.3f}'
    froc_result = result['froc']
    count = len(result['slides_used'])
    return (f"localization ({count} slide{'' if count == 1 else 's'}, "
            f"{plural(froc_result['lesions'], 'lesion')}): instance AUROC "
            f"{fmt(result['instance_auroc'])}, AP "
            f"{fmt(result['instance_average_precision'])}, best F1 "
            f"{fmt(result['instance_best_f1'])}, FROC "
            f"{fmt(froc_result['score'])}")
