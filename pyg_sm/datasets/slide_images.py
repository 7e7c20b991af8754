r"""Whole-slide image files, found by slide id and read with OpenSlide."""
from pathlib import Path
from typing import Dict, Optional, Union

from ..utils.errors import MissingFileError, PygSmError, SlideError

#: Extensions of the formats OpenSlide reads (Aperio, Hamamatsu, Leica,
#: MIRAX, Philips, Sakura, Ventana, Zeiss, DICOM and generic tiled TIFF).
SLIDE_EXTENSIONS = ('.svs', '.tif', '.tiff', '.ndpi', '.vms', '.vmu',
                    '.scn', '.mrxs', '.svslide', '.bif', '.dcm', '.czi')

OPENSLIDE_MISSING = ("reading slide images needs OpenSlide: pip install "
                     "'pyg-sm[viewer]' (openslide-python and openslide-bin)")


def import_openslide():
    r"""The :mod:`openslide` module, or an :class:`ImportError` saying how
    to install it."""
    try:
        import openslide
    except ImportError as error:
        raise ImportError(OPENSLIDE_MISSING) from error
    return openslide


class SlideImages:
    r"""The slide images of a folder (``--slides-dir``): the slide of
    :obj:`slide_id` is ``folder/<slide_id>.<ext>`` with any extension of
    :obj:`SLIDE_EXTENSIONS` (in any case). Coordinates of patches are
    level-0 pixels of that image, as CLAM and TRIDENT write them.

    Args:
        folder (str or Path): the folder of the slide files.
    """
    def __init__(self, folder: Union[str, Path]):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise MissingFileError(f"slides folder {self.folder} does not "
                                   f"exist")
        self._paths: Dict[str, Path] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() not in SLIDE_EXTENSIONS or \
                    not path.is_file():
                continue
            other = self._paths.get(path.stem)
            if other is not None:
                raise PygSmError(f"slide '{path.stem}' has two image files "
                                 f"in {self.folder}: {other.name} and "
                                 f"{path.name}; keep one")
            self._paths[path.stem] = path

    def __contains__(self, slide_id: str) -> bool:
        return slide_id in self._paths

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, slide_id: str) -> Optional[Path]:
        r"""The image file of :obj:`slide_id`, :obj:`None` when the folder
        has none."""
        return self._paths.get(slide_id)

    def open(self, slide_id: str):
        r"""The slide as an :class:`openslide.OpenSlide`. Raises
        :class:`FileNotFoundError` when the folder has no image of it and
        :class:`~pyg_sm.datasets.layouts.SlideError` (naming the slide and
        the file) when OpenSlide cannot read it."""
        openslide = import_openslide()
        path = self.path(slide_id)
        if path is None:
            raise MissingFileError(
                f"slide '{slide_id}': no image {slide_id}.<ext> in "
                f"{self.folder} (extensions: {', '.join(SLIDE_EXTENSIONS)})")
        try:
            return openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as error:
            raise SlideError(slide_id, path, f'OpenSlide cannot read it: '
                             f'{error}') from error

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.folder)!r}, ' \
               f'{len(self)} slides)'
