r"""Where slide features live on disk, as the common extractors write them.

Each layout finds its slides, reads one slide (features, coordinates,
optional patch labels and grid step), and checks one slide by streaming
through its files in chunks, without holding it. Every error names the
slide and the file."""
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..utils.errors import MissingFileError, PygSmError, SlideError

#: Rows per chunk when a file is checked (4096 x 1536 float32 = 24 MB).
CHECK_ROWS = 4096


def _check_rows(slide_id: str, path, name: str, array, rows: int) -> None:
    r"""Finite values in every chunk of rows of an array-like."""
    for start in range(0, rows, CHECK_ROWS):
        chunk = np.asarray(array[start:start + CHECK_ROWS])
        if chunk.dtype.kind == 'f' and not np.isfinite(chunk).all():
            row = start + int(np.nonzero(~np.isfinite(chunk).reshape(
                len(chunk), -1).all(1))[0][0])
            raise SlideError(slide_id, path, f"'{name}' holds NaN or inf "
                             f"values (first at row {row})")


def _check_shapes(slide_id: str, path, features: Tuple, coords: Tuple,
                  patch_labels: Optional[Tuple]) -> None:
    if len(features) != 2:
        raise SlideError(slide_id, path, f"'features' must be (N, D) (got "
                         f"{features})")
    if len(coords) != 2 or coords[1] != 2 or coords[0] != features[0]:
        raise SlideError(slide_id, path, f"'coords' must be ({features[0]}, "
                         f"2) to match 'features' (got {coords})")
    if features[0] == 0:
        raise SlideError(slide_id, path, 'the slide has no patches')
    if patch_labels is not None and tuple(patch_labels) != (features[0], ):
        raise SlideError(slide_id, path, f"'patch_labels' must be "
                         f"({features[0]},) (got {patch_labels})")


class SlideLayout:
    r"""Base of the layouts. :obj:`name` is what ``--layout`` calls it."""
    name = ''

    def __init__(self, root: Path):
        self.root = Path(root)

    def slide_ids(self) -> List[str]:
        r"""Every slide the folder holds, sorted."""
        raise NotImplementedError

    def path(self, slide_id: str) -> Path:
        r"""The slide's main file (named in errors, keyed in caches)."""
        raise NotImplementedError

    def files(self, slide_id: str) -> List[Path]:
        return [self.path(slide_id)]

    def shapes(self, slide_id: str) -> Tuple[int, int]:
        r"""(patches, features) of the slide, from the files' headers;
        checks that the files exist, open and agree."""
        raise NotImplementedError

    def check(self, slide_id: str) -> Tuple[int, int]:
        r""":meth:`shapes`, and every value read once, in chunks: features
        and coordinates finite, nothing truncated."""
        raise NotImplementedError

    def read(self, slide_id: str) -> Dict:
        r"""``features`` (N, D) float32, and what :meth:`positions` gives;
        ``patch_labels`` (N,) when present."""
        raise NotImplementedError

    def positions(self, slide_id: str) -> Dict:
        r"""``coords`` (N, 2) and, when the files say it, the level-0
        ``patch_size_level0`` with its ``patch_size_source`` (which file
        and attributes), without reading the features."""
        raise NotImplementedError

    def bag_labels(self) -> Optional[Dict[str, str]]:
        r"""Labels the layout itself stores, if any."""
        return None

    def _missing(self, slide_id: str) -> None:
        for path in self.files(slide_id):
            if not path.is_file():
                raise MissingFileError(f"slide '{slide_id}': no such file "
                                       f"{path}")
            if path.stat().st_size == 0:
                raise SlideError(slide_id, path, 'the file is empty (0 '
                                 'bytes)')

    def _guard(self, slide_id: str, path, action):
        r"""Runs :obj:`action`, turning a read failure into a
        :class:`SlideError` naming the slide and the file."""
        try:
            return action()
        except SlideError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, EOFError) \
                as error:
            raise SlideError(slide_id, path, f'cannot be read: {error} (a '
                             f'corrupt or truncated file?)') from error


def _h5_array(path: Path, dataset) -> torch.Tensor:
    r"""An HDF5 dataset as a tensor: memory-mapped when it is stored
    contiguous and uncompressed (as h5py and TRIDENT write features), so
    that its pages come from the page cache without a copy; read
    otherwise."""
    offset = dataset.id.get_offset()
    if dataset.chunks is None and dataset.compression is None and \
            offset is not None and dataset.dtype.isnative and \
            dataset.dtype.kind in 'fiu':
        # Copy-on-write: writable for torch, never written back.
        return torch.from_numpy(np.memmap(path, dtype=dataset.dtype,
                                          mode='c', offset=offset,
                                          shape=dataset.shape))
    return torch.from_numpy(dataset[()])


def _attribute(attrs, name: str) -> Optional[np.ndarray]:
    value = attrs.get(name)
    return None if value is None else np.asarray(value, np.float64).reshape(-1)


def side_of(attrs, where: str = 'coords') -> Tuple[Optional[float],
                                                   Optional[str]]:
    r"""The level-0 patch side that a ``coords`` dataset's attributes
    give, and its source: TRIDENT's ``patch_size_level0``, else CLAM's
    ``patch_size`` x the ``downsample`` of its ``patch_level`` (1 at level
    0). :obj:`where` names the kind of file in the source (``coords of
    patches/``), the same for every slide of a cohort."""
    value = _attribute(attrs, 'patch_size_level0')
    source = f'patch_size_level0 of the coords of {where}'
    if value is None:
        size = _attribute(attrs, 'patch_size')
        level = _attribute(attrs, 'patch_level')
        downsample = _attribute(attrs, 'downsample')
        if size is None or (downsample is None and
                            (level is None or level[0] != 0)):
            return None, None
        value = size * (1.0 if downsample is None else downsample[0])
        source = f'patch_size x downsample of the coords of {where}'
    value = float(value[0])
    return (value, source) if value > 0 and math.isfinite(value) \
        else (None, None)


class H5Layout(SlideLayout):
    r"""One HDF5 file per slide, ``<features_dir>/<slide_id>.h5`` with
    ``features`` (N, D) and ``coords`` (N, 2) (optionally ``patch_labels``
    (N,)), as TRIDENT writes it (``features_<encoder>/``; its
    ``coords.attrs['patch_size_level0']`` gives the grid step)."""
    name = 'h5'

    def __init__(self, root: Path, features_dir: str = 'features'):
        super().__init__(root)
        self.folder = self.root / features_dir

    def slide_ids(self) -> List[str]:
        return sorted(p.stem for p in self.folder.glob('*.h5'))

    def path(self, slide_id: str) -> Path:
        return self.folder / f'{slide_id}.h5'

    def _open(self, slide_id: str, body):
        import h5py

        self._missing(slide_id)
        path = self.path(slide_id)

        def run():
            with h5py.File(path, 'r') as f:
                for name in ('features', 'coords'):
                    if name not in f:
                        raise SlideError(slide_id, path, f"the HDF5 file has "
                                         f"no '{name}' dataset")
                _check_shapes(slide_id, path, f['features'].shape,
                              f['coords'].shape,
                              f['patch_labels'].shape if 'patch_labels' in f
                              else None)
                return body(f, path)
        return self._guard(slide_id, path, run)

    def shapes(self, slide_id: str) -> Tuple[int, int]:
        return self._open(slide_id, lambda f, _: f['features'].shape)

    def check(self, slide_id: str) -> Tuple[int, int]:
        def body(f, path):
            rows = f['features'].shape[0]
            for name in ('features', 'coords'):
                _check_rows(slide_id, path, name, f[name], rows)
            return f['features'].shape
        return self._open(slide_id, body)

    @staticmethod
    def _positions(f, path) -> Dict:
        side, source = side_of(f['coords'].attrs, 'the features file')
        return dict(coords=torch.from_numpy(f['coords'][()]),
                    patch_size_level0=side, patch_size_source=source)

    def positions(self, slide_id: str) -> Dict:
        return self._open(slide_id, self._positions)

    def read(self, slide_id: str) -> Dict:
        def body(f, path):
            out = dict(features=_h5_array(path, f['features']).float(),
                       **self._positions(f, path))
            if 'patch_labels' in f:
                out['patch_labels'] = torch.from_numpy(
                    f['patch_labels'][()]).long()
            return out
        return self._open(slide_id, body)


class ClamLayout(SlideLayout):
    r"""CLAM's output: ``pt_files/<slide_id>.pt`` (the features, a tensor
    (N, D)) and ``h5_files/<slide_id>.h5`` (``coords`` (N, 2) in level-0
    pixels, and the features again, which are not read).

    CLAM's feature files carry no attributes; the patch side is on the
    ``coords`` of ``patches/<slide_id>.h5`` (create_patches_fp.py's
    ``patch_size`` at ``patch_level``, times its ``downsample``), looked for
    in :obj:`patches_dir` (by default ``patches/`` beside ``h5_files/``)
    when the feature file's ``coords`` do not say it."""
    name = 'clam'

    def __init__(self, root: Path, patches_dir: Optional[Path] = None):
        super().__init__(root)
        self.patches_dir = Path(patches_dir) if patches_dir is not None \
            else self.root / 'patches'

    def patches_file(self, slide_id: str) -> Path:
        return self.patches_dir / f'{slide_id}.h5'

    def _side(self, slide_id: str, attrs) -> Tuple[Optional[float],
                                                   Optional[str]]:
        side, source = side_of(attrs, 'h5_files/')
        path = self.patches_file(slide_id)
        if side is not None or not path.is_file():
            return side, source
        import h5py

        def read():
            with h5py.File(path, 'r') as f:
                if 'coords' not in f:
                    raise SlideError(slide_id, path, "the HDF5 file has no "
                                     "'coords' dataset")
                return side_of(f['coords'].attrs,
                               f'{self.patches_dir.name}/')
        return self._guard(slide_id, path, read)

    def slide_ids(self) -> List[str]:
        return sorted(p.stem for p in (self.root / 'pt_files').glob('*.pt'))

    def path(self, slide_id: str) -> Path:
        return self.root / 'pt_files' / f'{slide_id}.pt'

    def files(self, slide_id: str) -> List[Path]:
        return [self.path(slide_id),
                self.root / 'h5_files' / f'{slide_id}.h5']

    def _features(self, slide_id: str):
        path = self.path(slide_id)

        def load():
            features = torch.load(path, map_location='cpu', mmap=True,
                                  weights_only=True)
            if not isinstance(features, torch.Tensor):
                raise SlideError(slide_id, path, f'holds a '
                                 f'{type(features).__name__}, not a tensor '
                                 f'of features')
            return features
        return self._guard(slide_id, path, load)

    def _coords(self, slide_id: str, body):
        import h5py

        path = self.files(slide_id)[1]

        def run():
            with h5py.File(path, 'r') as f:
                if 'coords' not in f:
                    raise SlideError(slide_id, path, "the HDF5 file has no "
                                     "'coords' dataset")
                return body(f['coords'], path)
        return self._guard(slide_id, path, run)

    def shapes(self, slide_id: str) -> Tuple[int, int]:
        self._missing(slide_id)
        features = self._features(slide_id)
        coords = self._coords(slide_id, lambda c, _: c.shape)
        _check_shapes(slide_id, self.path(slide_id), tuple(features.shape),
                      coords, None)
        return tuple(features.shape)

    def check(self, slide_id: str) -> Tuple[int, int]:
        shape = self.shapes(slide_id)
        features = self._features(slide_id)  # memory-mapped
        self._guard(slide_id, self.path(slide_id), lambda: _check_rows(
            slide_id, self.path(slide_id), 'features', features.numpy(),
            shape[0]))
        self._coords(slide_id, lambda c, path: _check_rows(
            slide_id, path, 'coords', c, shape[0]))
        return shape

    def positions(self, slide_id: str) -> Dict:
        self.shapes(slide_id)
        coords, attrs = self._coords(slide_id, lambda c, _: (
            torch.from_numpy(c[()]), dict(c.attrs)))
        side, source = self._side(slide_id, attrs)
        return dict(coords=coords, patch_size_level0=side,
                    patch_size_source=source)

    def read(self, slide_id: str) -> Dict:
        positions = self.positions(slide_id)
        return dict(features=self._features(slide_id).float().clone(),
                    **positions)


class TorchmilLayout(SlideLayout):
    r"""torchmil's processed layout: one ``.npy`` per bag in
    ``features/`` (N, D), ``coords/`` (N, 2), optionally ``inst_labels/``
    (N,) and ``labels/`` (the bag label)."""
    name = 'torchmil'

    def slide_ids(self) -> List[str]:
        return sorted(p.stem for p in (self.root / 'features').glob('*.npy'))

    def path(self, slide_id: str) -> Path:
        return self.root / 'features' / f'{slide_id}.npy'

    def files(self, slide_id: str) -> List[Path]:
        return [self.path(slide_id),
                self.root / 'coords' / f'{slide_id}.npy']

    def _arrays(self, slide_id: str):
        self._missing(slide_id)
        arrays = {}
        names = [('features', 'features'), ('coords', 'coords'),
                 ('inst_labels', 'patch_labels')]
        for folder, name in names:
            path = self.root / folder / f'{slide_id}.npy'
            if name == 'patch_labels' and not path.is_file():
                continue
            arrays[name] = self._guard(slide_id, path, lambda: np.load(
                path, mmap_mode='r', allow_pickle=False))
        _check_shapes(slide_id, self.path(slide_id),
                      arrays['features'].shape, arrays['coords'].shape,
                      arrays['patch_labels'].shape
                      if 'patch_labels' in arrays else None)
        return arrays

    def shapes(self, slide_id: str) -> Tuple[int, int]:
        return self._arrays(slide_id)['features'].shape

    def check(self, slide_id: str) -> Tuple[int, int]:
        arrays = self._arrays(slide_id)
        rows = arrays['features'].shape[0]
        for name in ('features', 'coords'):
            path = self.root / name / f'{slide_id}.npy'
            self._guard(slide_id, path, lambda: _check_rows(
                slide_id, path, name, arrays[name], rows))
        return arrays['features'].shape

    def positions(self, slide_id: str) -> Dict:
        return dict(coords=torch.from_numpy(np.array(
            self._arrays(slide_id)['coords'])))

    def read(self, slide_id: str) -> Dict:
        arrays = self._arrays(slide_id)
        out = dict(features=torch.from_numpy(
            np.array(arrays['features'])).float(),
            coords=torch.from_numpy(np.array(arrays['coords'])))
        if 'patch_labels' in arrays:
            out['patch_labels'] = torch.from_numpy(
                np.array(arrays['patch_labels'])).long()
        return out

    def bag_labels(self) -> Optional[Dict[str, str]]:
        folder = self.root / 'labels'
        if not folder.is_dir():
            return None
        labels = {}
        for path in sorted(folder.glob('*.npy')):
            value = np.load(path, allow_pickle=False).reshape(-1)
            if value.size != 1:
                raise SlideError(path.stem, path, f'a bag label must hold '
                                 f'one value (got {value.size})')
            value = value[0]
            labels[path.stem] = str(int(value)) if float(value).is_integer() \
                else str(value)
        return labels


#: The layouts, by ``--layout`` name.
LAYOUTS = {'h5': H5Layout, 'clam': ClamLayout, 'torchmil': TorchmilLayout}


def find_layout(root: Path, layout: str = 'auto',
                features_dir: str = 'features',
                patches_dir: Optional[Path] = None) -> SlideLayout:
    r"""The layout of :obj:`root`: the one named, or (``'auto'``) the one
    whose files are there: ``pt_files/`` (CLAM, with its ``patches/``
    folder :obj:`patches_dir`), ``<features_dir>/*.h5`` (HDF5),
    ``features/*.npy`` (torchmil)."""
    root = Path(root)
    if patches_dir is not None and not Path(patches_dir).is_dir():
        raise MissingFileError(f"no patches folder {patches_dir} "
                               f"(--patches-dir)")
    if layout == 'h5':
        return H5Layout(root, features_dir)
    if layout == 'clam':
        return ClamLayout(root, patches_dir)
    if layout in LAYOUTS:
        return LAYOUTS[layout](root)
    if layout != 'auto':
        raise PygSmError(f"'layout' must be one of "
                         f"{['auto', *LAYOUTS]} (got {layout!r})")
    if (root / 'pt_files').is_dir():
        return ClamLayout(root, patches_dir)
    if (root / features_dir).is_dir() and any(
            (root / features_dir).glob('*.h5')):
        return H5Layout(root, features_dir)
    if (root / 'features').is_dir() and any(
            (root / 'features').glob('*.npy')):
        return TorchmilLayout(root)
    return H5Layout(root, features_dir)
