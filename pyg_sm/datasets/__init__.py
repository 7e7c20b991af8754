r"""Slide datasets (feature bags in the CLAM / TRIDENT layout, with PyG's
``transform`` / ``pre_transform``) and synthetic slides to try them on."""
from .slide_dataset import SlideDataset
from .synthetic import make_synthetic_slides

__all__ = ['SlideDataset', 'make_synthetic_slides']
