r"""Slide feature bags in the layout slide-processing pipelines write."""
import csv
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from ..transforms import GridPatchGraph


class SlideDataset(torch.utils.data.Dataset):
    r"""Whole-slide feature bags in the layout of CLAM / TRIDENT-style
    pipelines, as PyG :class:`~torch_geometric.data.Data` objects.

    .. code-block:: none

        root/
          labels.csv               slide_id,label  (label 0 or 1)
          features/<slide_id>.h5   features (N, D), coords (N, 2),
                                   patch_labels (N,) optional

    Each item has :obj:`x` (the features, float32), :obj:`pos` (the
    coordinates), :obj:`edge_index` (the patch graph), :obj:`y` (the label,
    shape :math:`(1,)`), :obj:`slide_id` and, when present,
    :obj:`patch_labels`. Every slide of the CSV is checked when the dataset
    is built (missing file, missing or mismatched datasets, empty slide,
    inconsistent feature size) and its features when loaded (NaN or inf);
    each error names the slide. Feature files without a row in the CSV are
    not part of the dataset.

    Args:
        root (str or Path): The dataset folder.
        labels (str, optional): The CSV file, relative to :obj:`root`.
            (default: :obj:`"labels.csv"`)
        features_dir (str, optional): The folder of the HDF5 files, relative
            to :obj:`root`. (default: :obj:`"features"`)
        slide_ids (list of str, optional): Use only these slides (each must
            be in the CSV). (default: :obj:`None`, all)
        graph (BaseTransform, optional): How to link patches, e.g. a
            :class:`~pyg_sm.transforms.GridPatchGraph` (which reads each
            slide's grid step from its coordinates unless given a
            :obj:`patch_size`), a :class:`~pyg_sm.transforms.RadiusPatchGraph`
            or a :class:`~pyg_sm.PatchGraph`.
            (default: :obj:`GridPatchGraph(connectivity=8)`)
        in_memory (bool, optional): Keep loaded slides (with their graphs)
            in memory. (default: :obj:`True`)
        transform (callable, optional): Applied to each slide on every
            access, as in PyG datasets. (default: :obj:`None`)
        pre_transform (callable, optional): Applied to each slide once when
            it is loaded, after :obj:`graph` (and kept with it when
            :obj:`in_memory`). (default: :obj:`None`)
    """
    def __init__(
        self,
        root: Union[str, Path],
        labels: str = 'labels.csv',
        features_dir: str = 'features',
        slide_ids: Optional[Sequence[str]] = None,
        graph: Optional[BaseTransform] = None,
        in_memory: bool = True,
        transform: Optional[Callable[[Data], Data]] = None,
        pre_transform: Optional[Callable[[Data], Data]] = None,
    ):
        import h5py

        self.root = Path(root)
        self.features_dir = self.root / features_dir
        self.graph = graph or GridPatchGraph(connectivity=8)
        self.in_memory = in_memory
        self.transform = transform
        self.pre_transform = pre_transform
        self._cache: Dict[int, Data] = {}
        table = self._read_labels(self.root / labels)
        if slide_ids is not None:
            unknown = [s for s in slide_ids if s not in table]
            if unknown:
                raise ValueError(f"unknown slide ids (not in {labels}): "
                                 f"{unknown[:5]}")
            table = {s: table[s] for s in slide_ids}
        self.slide_ids = list(table)
        self.labels = [table[s] for s in self.slide_ids]
        self.feature_dim: Optional[int] = None
        for slide_id in self.slide_ids:
            path = self.path(slide_id)
            if not path.is_file():
                raise FileNotFoundError(f"slide '{slide_id}': no feature "
                                        f"file {path}")
            with h5py.File(path, 'r') as f:
                self._check_layout(slide_id, f)

    def _read_labels(self, path: Path) -> Dict[str, int]:
        if not path.is_file():
            raise FileNotFoundError(f"no labels file {path}")
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {'slide_id', 'label'} <= set(
                    reader.fieldnames):
                raise ValueError(f"{path} needs the columns 'slide_id' and "
                                 f"'label' (got {reader.fieldnames})")
            table: Dict[str, int] = {}
            for row in reader:
                slide_id = row['slide_id'].strip()
                if slide_id in table:
                    raise ValueError(f"slide '{slide_id}' appears twice in "
                                     f"{path}")
                if row['label'].strip() not in ('0', '1'):
                    raise ValueError(f"slide '{slide_id}': label must be 0 "
                                     f"or 1 (got {row['label']!r})")
                table[slide_id] = int(row['label'])
        if not table:
            raise ValueError(f"{path} lists no slides")
        return table

    def _check_layout(self, slide_id: str, f) -> None:
        for name in ('features', 'coords'):
            if name not in f:
                raise ValueError(f"slide '{slide_id}': the HDF5 file has no "
                                 f"'{name}' dataset")
        features, coords = f['features'].shape, f['coords'].shape
        if len(features) != 2:
            raise ValueError(f"slide '{slide_id}': 'features' must be "
                             f"(N, D) (got {features})")
        if len(coords) != 2 or coords[1] != 2 or coords[0] != features[0]:
            raise ValueError(f"slide '{slide_id}': 'coords' must be "
                             f"({features[0]}, 2) to match 'features' "
                             f"(got {coords})")
        if features[0] == 0:
            raise ValueError(f"slide '{slide_id}' has no patches")
        if 'patch_labels' in f and f['patch_labels'].shape != (features[0],):
            raise ValueError(f"slide '{slide_id}': 'patch_labels' must be "
                             f"({features[0]},) (got "
                             f"{f['patch_labels'].shape})")
        if self.feature_dim is None:
            self.feature_dim = features[1]
        elif features[1] != self.feature_dim:
            raise ValueError(f"slide '{slide_id}' has {features[1]} features "
                             f"per patch, the others {self.feature_dim}")

    def path(self, slide_id: str) -> Path:
        return self.features_dir / f'{slide_id}.h5'

    def __len__(self) -> int:
        return len(self.slide_ids)

    def __getitem__(self, index: int) -> Data:
        data = self._cache.get(index)
        if data is None:
            data = self._load(index)
            if self.in_memory:
                self._cache[index] = data
        if self.transform is not None:
            data = self.transform(data.clone())
        return data

    def _load(self, index: int) -> Data:
        import h5py

        slide_id = self.slide_ids[index]
        with h5py.File(self.path(slide_id), 'r') as f:
            x = torch.from_numpy(f['features'][()]).float()
            pos = torch.from_numpy(f['coords'][()])
            patch_labels = (torch.from_numpy(f['patch_labels'][()]).long()
                            if 'patch_labels' in f else None)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"slide '{slide_id}': 'features' hold NaN or "
                             f"inf values")
        data = Data(x=x, pos=pos, y=torch.tensor([float(self.labels[index])]),
                    slide_id=slide_id)
        if patch_labels is not None:
            data.patch_labels = patch_labels
        try:
            data = self.graph(data)
        except ValueError as error:
            raise ValueError(f"slide '{slide_id}': {error}") from error
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({len(self)} slides, '
                f'root={str(self.root)!r}, graph={self.graph})')
