r"""Slide feature bags in the layouts slide-processing pipelines write."""
import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from ..transforms import GridPatchGraph, resolve_side
from ..utils.checks import check_choice
from ..utils.errors import MissingFileError, PygSmError, SlideError
from ..utils.files import atomic_path
from ..utils.text import few, plural
from .labels import (
    LabelTable,
    OutcomeColumns,
    class_names,
    read_labels,
    read_survival,
)
from .layouts import find_layout
from .slide_images import SLIDE_EXTENSIONS

#: ``missing_slides`` choices of :class:`SlideDataset`.
MISSING_SLIDES = ('error', 'skip')
#: ``task`` choices of :class:`SlideDataset` (and of training runs).
TASKS = ('classification', 'survival')


@dataclasses.dataclass(frozen=True)
class SlideGraph:
    r"""A slide's patch graph, as :meth:`SlideDataset.graphs` reports it.

    Args:
        slide_id (str): The slide.
        patches (int): Its nodes.
        edges (int): Its directed edges (twice the linked pairs).
        side (float, optional): Grid graphs: the patch side in level-0
            pixels.
        source (str, optional): Where :attr:`side` came from: the file and
            attributes that say it, ``patch_size`` (given) or ``inferred``
            (:func:`~pyg_sm.transforms.resolve_side`).
    """
    slide_id: str
    patches: int
    edges: int
    side: Optional[float] = None
    source: Optional[str] = None

    @property
    def mean_degree(self) -> float:
        return self.edges / self.patches if self.patches else 0.0


class SlideDataset(torch.utils.data.Dataset):
    r"""Whole-slide feature bags, as PyG :class:`~torch_geometric.data.Data`
    objects, read one slide at a time.

    .. code-block:: none

        root/
          labels.csv               slide_id,label[,case_id,...]
          features/<slide_id>.h5   features (N, D), coords (N, 2),
                                   patch_labels (N,) optional

    CLAM's ``pt_files/`` + ``h5_files/`` and torchmil's processed ``.npy``
    folders are read too (:obj:`layout`). Labels may be integers or strings;
    the classes are the sorted distinct labels or :obj:`classes`, and each
    item's :obj:`y` is its class index. Without a labels file the items have
    no :obj:`y` (for scoring new slides).

    Each item has :obj:`x` (the features, float32), :obj:`pos` (the
    coordinates), :obj:`edge_index` (the patch graph), :obj:`slide_id`, and
    when known :obj:`y` (shape :math:`(1,)`), :obj:`patch_labels` and
    :obj:`patch_size_level0` (the grid step TRIDENT records). The files'
    headers are checked when the dataset is built (missing, empty or
    unreadable files, missing or mismatched datasets, empty slides,
    inconsistent feature sizes); :meth:`check` also reads every value
    (NaN / inf, truncation), streaming. Each error names the slide and the
    file.

    Args:
        root (str or Path): The dataset folder.
        labels (str, optional): The labels CSV, relative to :obj:`root`;
            :obj:`None` for none (then the layout's own labels, if any).
            (default: :obj:`"labels.csv"`)
        features_dir (str, optional): HDF5 layout: the folder of the feature
            files, relative to :obj:`root`. (default: :obj:`"features"`)
        slide_ids (list of str, optional): Use only these slides. (default:
            :obj:`None`: those of the labels file, or every slide found)
        graph (BaseTransform, optional): How to link patches, e.g. a
            :class:`~pyg_sm.transforms.GridPatchGraph` (which reads each
            slide's grid step from its files (TRIDENT's
            ``patch_size_level0``, CLAM's ``patch_size`` x ``downsample``)
            or its coordinates
            unless given a :obj:`patch_size`), a
            :class:`~pyg_sm.transforms.RadiusPatchGraph` or a
            :class:`~pyg_sm.PatchGraph`.
            (default: :obj:`GridPatchGraph(connectivity=8)`)
        in_memory (bool, optional): Keep loaded slides in memory (for small
            sets); otherwise every access reads the slide again.
            (default: :obj:`False`)
        transform (callable, optional): Applied to each slide on every
            access, as in PyG datasets. (default: :obj:`None`)
        pre_transform (callable, optional): Applied to each slide when it is
            loaded, after :obj:`graph`. (default: :obj:`None`)
        layout (str, optional): :obj:`"h5"`, :obj:`"clam"`,
            :obj:`"torchmil"` or :obj:`"auto"` (from the files found).
            (default: :obj:`"auto"`)
        classes (list of str, optional): The classes in this order.
            (default: :obj:`None`, the sorted distinct labels)
        graph_cache (str or Path, optional): A folder where each slide's
            patch graph is kept, keyed by the file's identity (path, size,
            modification time) and the graph settings, so that it is built
            once per slide and read back afterwards. (default: :obj:`None`)
        missing_slides (str, optional): Slides listed (in the labels or
            :obj:`slide_ids`) without a feature file: :obj:`"error"`
            reports them all at once, with what is likely wrong (an id that
            differs in case, a missing features folder next to
            ``features_<encoder>/``); :obj:`"skip"` leaves them out
            (:attr:`skipped_slides`). Ids written with a slide extension
            (``a.svs``) are read as their stem, with a note in
            :attr:`notes`. (default: :obj:`"error"`)
        task (str, optional): :obj:`"classification"` (a ``label``
            column) or :obj:`"survival"`: the labels file has a time and
            an event column, read by
            :func:`~pyg_sm.datasets.labels.read_survival`, and each item's
            :obj:`y` is :math:`(1, 2)`, its (time, event); :attr:`times`
            and :attr:`events` list them, :attr:`labels` holds the events
            (the strata of splits) and :attr:`classes` is :obj:`None`.
            (default: :obj:`"classification"`)
        time_column (str, optional): Survival: the time column.
            (default: :obj:`"time"`)
        event_column (str, optional): Survival: the event column (1:
            observed, 0: censored). (default: :obj:`"event"` without
            :obj:`censorship_column`)
        censorship_column (str, optional): Survival: the censorship column
            (1: censored, 0: observed), as Patch-GCN, MCAT, SurvPath and
            PORPOISE tables have it (``censorship``); excludes
            :obj:`event_column`. (default: :obj:`None`)
        missing_outcomes (str, optional): Survival: rows without a time or
            an event are an error (:obj:`"error"`) or left out
            (:obj:`"skip"`, listed in :attr:`skipped_outcomes`).
            (default: :obj:`"error"`)
        patches_dir (str or Path, optional): CLAM layout: the folder of
            create_patches_fp.py's ``<slide_id>.h5``, whose ``coords``
            attributes give the patch side when the feature files do not.
            (default: :obj:`None`: ``patches/`` beside ``h5_files/``)
    """
    def __init__(
        self,
        root: Union[str, Path],
        labels: Optional[str] = 'labels.csv',
        features_dir: str = 'features',
        slide_ids: Optional[Sequence[str]] = None,
        graph: Optional[BaseTransform] = None,
        in_memory: bool = False,
        transform: Optional[Callable[[Data], Data]] = None,
        pre_transform: Optional[Callable[[Data], Data]] = None,
        layout: str = 'auto',
        classes: Optional[Sequence[str]] = None,
        graph_cache: Optional[Union[str, Path]] = None,
        missing_slides: str = 'error',
        task: str = 'classification',
        time_column: str = 'time',
        event_column: Optional[str] = None,
        censorship_column: Optional[str] = None,
        missing_outcomes: str = 'error',
        patches_dir: Optional[Union[str, Path]] = None,
    ):
        check_choice('task', task, TASKS)
        self.task = task
        self.outcome_columns = OutcomeColumns(time_column, event_column,
                                              censorship_column)
        self.missing_outcomes = missing_outcomes
        self.root = Path(root)
        self.layout = find_layout(self.root, layout, features_dir,
                                  patches_dir)
        self.graph = graph or GridPatchGraph(connectivity=8)
        self.in_memory = in_memory
        self.transform = transform
        self.pre_transform = pre_transform
        self.graph_cache = None if graph_cache is None else Path(graph_cache)
        self._cache: Dict[int, Data] = {}
        self._warned_unlinked = False

        check_choice('missing_slides', missing_slides, MISSING_SLIDES)
        #: Lines worth telling the user (the ``pyg-sm`` commands print them).
        self.notes: List[str] = []
        #: Slides left out because they have no feature file
        #: (:obj:`missing_slides='skip'`).
        self.skipped_slides: List[str] = []
        #: Survival: slides left out because their row has no time or event
        #: (:obj:`missing_outcomes='skip'`).
        self.skipped_outcomes: List[str] = []
        # The slides with a feature file, listed once.
        present = self.layout.slide_ids()
        table = self._label_table(labels)
        if table is not None and labels is not None:
            table = self._strip_slide_extensions(table, labels, set(present))
        #: The labels file as read (every slide it lists), :obj:`None`
        #: without one.
        self.label_table: Optional[LabelTable] = table
        if table is not None and table.missing_outcomes:
            self.skipped_outcomes = table.missing_outcomes
            self.notes.append(
                f"note: {len(table.missing_outcomes)} slide(s) of {labels} "
                f"have no time or event and are left out: "
                f"{few(table.missing_outcomes)}")
        known = table.labels if table is not None else None
        if slide_ids is not None:
            slide_ids = list(slide_ids)
            if known is not None:
                unknown = [s for s in slide_ids if s not in known]
                if unknown:
                    raise PygSmError(f"unknown slide ids (not in "
                                     f"{labels}): {unknown[:5]}")
        else:
            slide_ids = list(known) if known is not None else present
        if not slide_ids:
            raise PygSmError(f"no slides found in {self.root} (layout "
                             f"'{self.layout.name}')")
        slide_ids = self._present(slide_ids, set(present), known, labels,
                                  missing_slides)
        self.slide_ids: List[str] = slide_ids
        #: Survival: each slide's time and event (:obj:`None` otherwise).
        self.times: Optional[List[float]] = None
        self.events: Optional[List[int]] = None
        if known is not None and table.times is not None:
            self.classes = None
            self.times = [table.times[s] for s in slide_ids]
            self.events = [table.events[s] for s in slide_ids]
            self.labels = list(self.events)
            self.case_ids = None if table.case_ids is None else \
                [table.case_ids[s] for s in slide_ids]
        elif known is not None:
            names = [known[s] for s in slide_ids]
            self.classes: Optional[List[str]] = class_names(known, classes)
            index = {name: i for i, name in enumerate(self.classes)}
            self.labels: Optional[List[int]] = [index[n] for n in names]
            self.case_ids = None if table.case_ids is None else \
                [table.case_ids[s] for s in slide_ids]
        else:
            self.classes = list(classes) if classes is not None else None
            self.labels = None
            self.case_ids = None

        self.feature_dim: Optional[int] = None
        for slide_id in self.slide_ids:
            self._check_dim(slide_id, self.layout.shapes(slide_id)[1])

    def _label_table(self, labels: Optional[str]) -> Optional[LabelTable]:
        if labels is not None and self.task == 'survival':
            columns = self.outcome_columns
            return read_survival(self.root / labels, columns.time,
                                 columns.event, columns.censorship,
                                 self.missing_outcomes)
        if labels is not None:
            return read_labels(self.root / labels)
        if self.task == 'survival':
            return None
        stored = self.layout.bag_labels()
        return None if stored is None else LabelTable(stored)

    def _strip_slide_extensions(self, table: LabelTable, labels: str,
                                present: set) -> LabelTable:
        r"""Slide ids written with their image's extension (``a.svs``)
        name the feature file of their stem (``a.h5``, in :obj:`present`):
        read as the stem, with a note."""
        renamed = {}
        for slide_id in [*table.labels, *table.missing_outcomes]:
            stem, extension = os.path.splitext(slide_id)
            if extension.lower() in SLIDE_EXTENSIONS and \
                    slide_id not in present and stem in present and \
                    stem not in table.labels:
                renamed[slide_id] = stem
        if not renamed:
            return table
        example = next(iter(renamed.items()))
        self.notes.append(
            f"note: {len(renamed)} slide id(s) in {labels} end in a slide "
            f"extension and are read as their stem (e.g. '{example[0]}' -> "
            f"'{example[1]}')")
        return table.renamed(renamed)

    def _present(self, slide_ids: List[str], present: set,
                 known: Optional[Dict], labels: Optional[str],
                 missing_slides: str) -> List[str]:
        r"""The slides that have a feature file (:obj:`present`). The others
        are reported all at once, with what is likely wrong, or left out
        (``skip``)."""
        folder = self.layout.path('x').parent
        if known is not None and labels is not None:
            unlabelled = sorted(present - set(known) -
                                set(self.skipped_outcomes))
            if unlabelled:
                self.notes.append(
                    f"note: {len(unlabelled)} feature file(s) in {folder} "
                    f"are in no label table and are left out (e.g. "
                    f"{', '.join(unlabelled[:3])})")
        missing = [s for s in slide_ids if s not in present]
        if not missing:
            return slide_ids
        listed = f'in {labels}' if known is not None and labels else \
            'listed'
        total = plural(len(slide_ids), 'slide')
        message = (f"{len(missing)} of {total} {listed} have "
                   f"no feature file in {folder}: {few(missing)}")
        hints = self._missing_hints(missing, present, folder)
        if missing_slides == 'skip' and len(missing) < len(slide_ids):
            self.skipped_slides = missing
            self.notes.append(f"note: skipped {message}" + (
                f" ({'; '.join(hints)})" if hints else ''))
            return [s for s in slide_ids if s not in set(missing)]
        raise MissingFileError('. '.join([message, *hints]) + (
            '' if missing_slides == 'skip' else
            '. --missing-slides skip leaves them out'))

    def _missing_hints(self, missing: List[str], present: set,
                       folder: Path) -> List[str]:
        hints = []
        if not folder.is_dir():
            others = sorted(p.name for p in self.root.glob(
                f'{folder.name}_*') if p.is_dir())
            hints.append(f"there is no folder {folder}" + (
                f"; pass --features-dir {others[0]}" if others else ''))
            return hints
        by_case = {p.casefold(): p for p in present}
        similar = [(s, by_case[s.casefold()]) for s in missing
                   if s.casefold() in by_case]
        if similar:
            hints.append('did you mean ' + ', '.join(
                f"'{found}' for '{wanted}'" for wanted, found in similar[:3])
                + ' (ids differ in case)')
        return hints

    def _check_dim(self, slide_id: str, dim: int) -> None:
        if self.feature_dim is None:
            self.feature_dim = dim
        elif dim != self.feature_dim:
            raise SlideError(slide_id, self.path(slide_id), f"has {dim} "
                             f"features per patch, the others "
                             f"{self.feature_dim}")

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def path(self, slide_id: str) -> Path:
        r"""The slide's main file."""
        return self.layout.path(slide_id)

    def check(self, progress: Optional[Callable] = None,
              shard: Tuple[int, int] = (1, 0)) -> None:
        r"""Reads every slide's files once, in chunks, without keeping them:
        they open, hold the datasets, their shapes agree and the features
        and coordinates are finite. The first problem raises a
        :class:`~pyg_sm.datasets.layouts.SlideError` naming the slide and
        the file. :obj:`progress` wraps the iteration (e.g. ``tqdm``);
        :obj:`shard` ``(count, index)`` checks every ``count``-th slide from
        :obj:`index` (each process of a distributed run its share)."""
        count, index = shard
        ids = self.slide_ids[index::count]
        ids = ids if progress is None else progress(ids)
        for slide_id in ids:
            self._check_dim(slide_id, self.layout.check(slide_id)[1])

    def __len__(self) -> int:
        return len(self.slide_ids)

    def __getitem__(self, index: int) -> Data:
        data = self._cache.get(index)
        cached = data is not None
        if not cached:
            data = self._load(index)
            if self.in_memory:
                self._cache[index] = data
                cached = True
        if self.transform is not None:
            # A kept slide is copied first: the transform may change it.
            data = self.transform(data.clone() if cached else data)
        return data

    def _load(self, index: int) -> Data:
        slide_id = self.slide_ids[index]
        arrays = self.layout.read(slide_id)
        x = arrays['features']
        # A sum is finite when every value is (overflow aside, which the
        # exact test then rules out): one pass, no (N, D) mask.
        if not bool(torch.isfinite(x.sum())) and \
                not bool(torch.isfinite(x).all()):
            raise SlideError(slide_id, self.path(slide_id),
                             "'features' hold NaN or inf values")
        data = Data(x=x, pos=arrays['coords'], slide_id=slide_id)
        if self.times is not None:
            # float64: times in seconds lose whole minutes in float32.
            data.y = torch.tensor([[self.times[index], self.events[index]]],
                                  dtype=torch.float64)
        elif self.labels is not None:
            data.y = torch.tensor([self.labels[index]])
        if 'patch_labels' in arrays:
            data.patch_labels = arrays['patch_labels']
        data = self._graph_of(slide_id, data, arrays)
        if data.num_nodes > 1 and data.edge_index.size(1) == 0 and \
                not self._warned_unlinked:
            self._warned_unlinked = True
            warnings.warn(f"slide '{slide_id}': its patch graph links no "
                          f"patches ({self.graph}); graphs() reports every "
                          f"slide's, with its patch side and where it came "
                          f"from", stacklevel=2)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        return data

    def _graph_of(self, slide_id: str, data: Data, positions: Dict) -> Data:
        r""":obj:`data` with its patch graph, and the patch side its files
        give (``patch_size_level0``, ``patch_size_source``)."""
        if positions.get('patch_size_level0') is not None:
            data.patch_size_level0 = float(positions['patch_size_level0'])
            data.patch_size_source = positions['patch_size_source']
        try:
            return self._with_graph(slide_id, data)
        except SlideError:
            raise
        except ValueError as error:
            raise SlideError(slide_id, self.path(slide_id),
                             str(error)) from error

    def graphs(self, progress: Optional[Callable] = None,
               shard: Tuple[int, int] = (1, 0)) -> List[SlideGraph]:
        r"""Every slide's patch graph, built from its coordinates alone
        (kept in :obj:`graph_cache`, so that the slides' loads reuse it),
        as :class:`SlideGraph` records: patches, edges, mean degree, and
        for grid graphs the patch side and where it came from.
        :obj:`progress` and :obj:`shard` as in :meth:`check`."""
        count, index = shard
        ids = self.slide_ids[index::count]
        records = []
        for slide_id in ids if progress is None else progress(ids):
            positions = self.layout.positions(slide_id)
            data = self._graph_of(slide_id, Data(
                pos=positions['coords'], slide_id=slide_id), positions)
            transform = getattr(self.graph, 'transform', self.graph)
            side, source = resolve_side(data, transform.patch_size) \
                if isinstance(transform, GridPatchGraph) else (None, None)
            records.append(SlideGraph(slide_id, data.num_nodes,
                                      int(data.edge_index.size(1)), side,
                                      source))
        return records

    def _graph_key(self, slide_id: str, data: Data) -> str:
        stat = os.stat(self.path(slide_id))
        settings = self.graph.options() if hasattr(self.graph, 'options') \
            else repr(self.graph)
        text = json.dumps([str(self.path(slide_id).resolve()), stat.st_size,
                           stat.st_mtime_ns, type(self.graph).__name__,
                           settings, data.get('patch_size_level0')],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _with_graph(self, slide_id: str, data: Data) -> Data:
        if self.graph_cache is None:
            return self.graph(data)
        path = self.graph_cache / f'{self._graph_key(slide_id, data)}.pt'
        if path.is_file():
            try:
                data.edge_index = torch.load(path, weights_only=True)
                return data
            except Exception:  # a damaged cache entry is rebuilt
                pass
        data = self.graph(data)
        self.graph_cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            torch.save(data.edge_index, temporary)
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({plural(len(self), "slide")}, '
                f'root={str(self.root)!r}, layout={self.layout.name!r}, '
                f'graph={self.graph})')
