r"""Slide datasets (feature bags in the CLAM / TRIDENT layout, with PyG's
``transform`` / ``pre_transform``), synthetic slides to try them on, slide
images (OpenSlide), pathologists' lesion outlines."""
from .annotations import (
                          AnnotationClasses,
                          AnnotationFolder,
                          SlideAnnotations,
                          read_annotations,
)
from .cases import BAG_BY, CaseDataset, merge_slides
from .labels import OutcomeColumns, read_survival
from .slide_dataset import TASKS, SlideDataset, SlideGraph
from .slide_images import SLIDE_EXTENSIONS, SlideImages
from .synthetic import make_synthetic_slides, write_pyramidal_tiff

__all__ = ['SlideDataset', 'make_synthetic_slides', 'write_pyramidal_tiff',
           'SlideImages', 'SLIDE_EXTENSIONS', 'CaseDataset', 'merge_slides',
           'BAG_BY', 'TASKS', 'read_survival', 'OutcomeColumns',
           'AnnotationClasses', 'AnnotationFolder', 'SlideAnnotations',
           'read_annotations', 'SlideGraph']
