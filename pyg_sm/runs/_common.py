r"""What the runs share: the device, the datasets, versions, the printed
table, the slide lists and the heatmaps of a run folder."""
import contextlib
import contextvars
import dataclasses
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import torch

from ..datasets import SlideDataset, SlideImages
from ..train.distributed import world
from ..train.records import SlideAttention
from ..utils.errors import MissingFileError, PygSmError
from ..utils.tables import read_table
from ..utils.text import few, plural
from ..version import __version__
from ..visualize import render_heatmap, render_overlay
from .config import CohortConfig, GraphConfig
from .folder import RunFolder, SlidePrediction


def versions() -> Dict[str, str]:
    import importlib.metadata

    import torch_geometric

    return {'pyg_sm': __version__, 'torch': torch.__version__,
            'torch_geometric': torch_geometric.__version__,
            'lightning': importlib.metadata.version('lightning'),
            'python': platform.python_version()}


#: The ``pyg-sm`` command line of the run in progress (:obj:`None` for a
#: Python call), as ``results.json`` records it.
_COMMAND_LINE: contextvars.ContextVar = contextvars.ContextVar(
    'pyg_sm_command_line', default=None)


@contextlib.contextmanager
def invoked_as(argv: Sequence[str]) -> Iterator[None]:
    r"""Runs inside it record :obj:`argv` as their command line (the
    ``pyg-sm`` command says so; Python calls record none)."""
    token = _COMMAND_LINE.set(list(argv))
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def command_line() -> Optional[List[str]]:
    return _COMMAND_LINE.get()


def world_size() -> int:
    return int(os.environ.get('WORLD_SIZE', '1'))


def check_progress(enabled: bool, desc: str = 'checking slides'):
    r"""A progress bar over the slides being checked, on terminals."""
    from tqdm.auto import tqdm

    return (lambda items: tqdm(items, desc=desc, leave=False)) \
        if enabled else None


def make_dataset(config: CohortConfig, graph: GraphConfig,
                 labels: Optional[str], slide_ids=None, classes=None,
                 cache: Optional[Path] = None,
                 in_memory: bool = False, quiet: bool = False,
                 target: Optional[Dict] = None) -> SlideDataset:
    r"""The cohort :obj:`config` describes; its notes (slides left out,
    ids read without their extension) go to stderr unless :obj:`quiet` (a
    subset of a cohort already described) or on a process other than
    the first. :obj:`target` holds the ``task`` and, for survival, the
    ``time_column`` and the ``event_column`` or ``censorship_column``."""
    target = target or {}
    dataset = SlideDataset(
        config.data_dir, labels=labels, features_dir=config.features_dir,
        slide_ids=slide_ids, layout=config.layout, classes=classes,
        graph=graph.patch_graph(), graph_cache=cache, in_memory=in_memory,
        missing_slides=config.missing_slides,
        task=target.get('task', 'classification'),
        time_column=target.get('time_column', 'time'),
        event_column=target.get('event_column'),
        censorship_column=target.get('censorship_column'),
        missing_outcomes=config.missing_outcomes,
        patches_dir=config.patches_dir)
    if not quiet and world()[1] == 0:
        for note in dataset.notes:
            print(note, file=sys.stderr, flush=True)
    return dataset


#: Slides with at least this many patches must reach
#: :data:`SPARSE_DEGREE` (of their connectivity) in mean degree.
SPARSE_MIN_PATCHES = 16
#: The least mean degree of a slide's grid graph, as a share of its
#: connectivity (2 of 8, 1 of 4).
SPARSE_DEGREE = 0.25


def _sparse(graph, connectivity: Optional[int]) -> bool:
    if graph.patches > 1 and graph.edges == 0:
        return True
    return connectivity is not None and graph.patches >= \
        SPARSE_MIN_PATCHES and graph.mean_degree < SPARSE_DEGREE * \
        connectivity


def graph_report(graphs: Sequence, connectivity: Optional[int],
                 worst: int = 5) -> Dict:
    r"""A cohort's patch graphs (:meth:`SlideDataset.graphs`) summed up as
    ``results.json`` records them: slides, patches, edges, the mean degree
    per slide (median, lowest, highest), the patch sides and where they
    came from (counts), and the :obj:`worst` slides by mean degree."""
    import statistics

    degrees = [g.mean_degree for g in graphs]
    sources: Dict[str, int] = {}
    sides: Dict[str, int] = {}
    for g in graphs:
        if g.source is not None:
            sources[g.source] = sources.get(g.source, 0) + 1
            sides[f'{g.side:g}'] = sides.get(f'{g.side:g}', 0) + 1
    ranked = sorted(graphs, key=lambda g: (g.mean_degree, g.slide_id))
    return {
        'slides': len(graphs), 'patches': sum(g.patches for g in graphs),
        'edges': sum(g.edges for g in graphs),
        'mean_degree': {'median': statistics.median(degrees),
                        'lowest': min(degrees), 'highest': max(degrees)}
        if degrees else None,
        'patch_sides': sides, 'side_sources': sources,
        'sparse': [g.slide_id for g in graphs if _sparse(g, connectivity)],
        'worst': [{**dataclasses.asdict(g), 'mean_degree': g.mean_degree}
                  for g in ranked[:worst]]}


def graph_line(report: Dict) -> str:
    r"""The report of :func:`graph_report` in one printed line."""
    degree = report['mean_degree'] or {}
    sides = ', '.join(f'{side} ({n})' for side, n in
                      report['patch_sides'].items())
    sources = '; '.join(f'{source}: {n}' for source, n in
                        report['side_sources'].items())
    return (f"patch graphs: {plural(report['slides'], 'slide')}, "
            f"{report['patches']} patches, mean degree "
            f"{degree.get('median', 0):.1f} (lowest "
            f"{degree.get('lowest', 0):.1f}, "
            f"{report['worst'][0]['slide_id'] if report['worst'] else '-'})"
            + (f"; patch side {sides} from {sources}" if sides else ''))


def check_graphs(dataset: SlideDataset, graph: GraphConfig,
                 allow_sparse: bool, rank: int) -> Dict:
    r"""Builds every slide's patch graph before the work starts (each
    process its share; the graph cache keeps them for the loads), prints
    one line about them and returns :func:`graph_report`. Slides whose
    graph links no patch, or whose mean degree is below a quarter of the
    grid's connectivity (2 of 8) with 16 patches or more, are an error
    naming them, their patch side and its source, unless
    :obj:`allow_sparse`."""
    graphs = dataset.graphs(check_progress(
        sys.stderr.isatty() and rank == 0, 'building patch graphs'),
        shard=world())
    if torch.distributed.is_initialized():
        gathered = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, graphs)
        graphs = [g for part in gathered for g in part]
    connectivity = graph.connectivity if graph.graph == 'grid' else None
    report = graph_report(graphs, connectivity)
    by_id = {g.slide_id: g for g in graphs}
    sparse = [by_id[s] for s in report['sparse']]
    if sparse and not allow_sparse:
        described = few(f"{g.slide_id} ({g.patches} patches, mean degree "
                        f"{g.mean_degree:.1f}" + (
                            f", side {g.side:g} from {g.source}"
                            if g.side is not None else '') + ')'
                        for g in sparse)
        raise PygSmError(
            f"{plural(len(sparse), 'slide')} of {len(graphs)} get patch "
            f"graphs that link few or no patches: {described}; check the "
            f"patch side (--patch-size, --patches-dir; 'pyg-sm inspect' "
            f"reports every slide's), or pass --allow-sparse-graphs")
    if rank == 0:
        print(graph_line(report), file=sys.stderr, flush=True)
    return report


def slide_list(source: Union[Path, Sequence[str]]) -> List[str]:
    r"""Slide ids from a list, or from a file: one per line, or a CSV with a
    ``slide_id`` column."""
    if not isinstance(source, (str, Path)):
        return [str(s) for s in source]
    path = Path(source)
    if not path.exists() or path.is_dir():
        raise MissingFileError(f"no slide list {path}")
    # Read once: a pipe (--slide-ids <(...)) can be read only once.
    text = path.read_text(encoding='utf-8-sig')
    if ',' in text.split('\n', 1)[0]:
        return [row['slide_id'] for _, row in
                read_table(path, ('slide_id', ), 'slide list', text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _fmt(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.3f}'


def print_survival_table(results: Dict[str, Dict]) -> None:
    r"""Survival metrics, one row per model: Harrell's and Uno's c-index,
    the mean time-dependent AUC, the integrated Brier score (nll) and the
    instance AUROC of the attention."""
    width = max(10, *map(len, results))
    print(f"\n{'model':<{width}} {'c-index':>8} {'Uno':>6} {'td-AUC':>7} "
          f"{'IBS':>6} {'instance AUROC':>15}")
    for name, r in results.items():
        auc = (r.get('time_auc') or {}).get('mean')
        print(f"{name:<{width}} {_fmt(r.get('c_index')):>8} "
              f"{_fmt(r.get('c_index_uno')):>6} {_fmt(auc):>7} "
              f"{_fmt(r.get('integrated_brier_score')):>6} "
              f"{_fmt(r.get('instance_auroc')):>15}", flush=True)


def print_table(results: Dict[str, Dict]) -> None:
    r"""Bag and instance metrics, one row per model, the FROC score when
    the slides were measured against annotations and the uncertainty AUROC
    of probabilistic models (survival metrics by
    :func:`print_survival_table`)."""
    if any('c_index' in r for r in results.values()):
        return print_survival_table(results)
    froc = any('froc' in r for r in results.values())
    # A probabilistic model's column: how well its uncertainty flags the
    # patches its attention misranks.
    uncertain = any('uncertainty_auroc' in r for r in results.values())
    width = max(10, *map(len, results))
    print(f"\n{'model':<{width}} {'bag AUROC':>10} {'instance AUROC':>15} "
          f"{'bag acc':>8} {'bal acc':>8}" + (f" {'FROC':>6}" if froc
                                               else '') +
          (f" {'uncertainty AUROC':>18}" if uncertain else ''))
    for name, r in results.items():
        print(f"{name:<{width}} {_fmt(r['bag_auroc']):>10} "
              f"{_fmt(r['instance_auroc']):>15} {_fmt(r['bag_accuracy']):>8} "
              f"{_fmt(r['balanced_accuracy']):>8}" +
              (f" {_fmt(r.get('froc')):>6}" if froc else '') +
              (f" {_fmt(r.get('uncertainty_auroc')):>18}" if uncertain
               else ''), flush=True)


def most_lesioned(records: List[SlideAttention], count: int) -> List[str]:
    r"""The :obj:`count` slides to draw: those of the bags with the most
    lesion patches first, when patch labels exist, else the first ones (a
    patient's bag gives its slides)."""
    def lesions(record):
        labels = record.patch_labels
        return 0 if labels is None else -int((labels > 0).sum())
    return [s for r in sorted(records, key=lesions)
            for s in r.slides()][:count]


def heatmap_title(slide_id: str,
                  predictions: Dict[str, Dict[str, SlidePrediction]]) -> str:
    r"""The slide id, its label when known and each run's predicted
    probability (of the positive class for two classes, else of the
    predicted class); :obj:`predictions` maps a run name to its per-slide
    predictions."""
    known = [p[slide_id] for p in predictions.values() if slide_id in p]
    label = next((p.label for p in known if p.label is not None), None)
    title = slide_id + ('' if label is None else f', label {label}')
    outcome = next((p for p in known if p.time is not None), None)
    if outcome is not None:
        status = 'event' if outcome.event else 'censored'
        title += f', time {outcome.time:g} ({status})'
    parts = []
    for name, per_slide in predictions.items():
        p = per_slide.get(slide_id)
        if p and p.risk is not None:
            parts.append(('risk', f'{name} {p.risk:.2f}'))
        if not p or not p.probabilities:
            continue
        classes = list(p.probabilities)
        if len(classes) == 2:
            parts.append((f'p({classes[1]})', f"{name} "
                          f"{p.probabilities[classes[1]]:.2f}"))
        else:
            parts.append(('predicted', f"{name} {p.predicted} "
                          f"({p.probabilities[p.predicted]:.2f})"))
    if parts:
        title += f'; {parts[0][0]}: ' + ', '.join(text for _, text in parts)
    return title


def write_heatmaps(out: RunFolder, slide_ids: Sequence[str],
                   runs: Sequence[RunFolder],
                   slides: Optional[SlideImages] = None,
                   predictions: Optional[Sequence[Sequence[
                       SlidePrediction]]] = None,
                   top_k: int = 8, opacity: float = 0.5,
                   overlay_style: str = 'ramp',
                   outlines: Optional[Any] = None) -> List[str]:
    r"""``heatmaps/<slide_id>.png`` of :obj:`out` per slide: each run's
    attention over the slide image (:func:`~pyg_sm.visualize.render_overlay`,
    with the top-k gallery) when :obj:`slides` has it, else on the patch
    grid (:func:`~pyg_sm.visualize.render_heatmap`), with the uncertainty
    of probabilistic models (their ``attention_std``), the true lesions
    when the scores hold patch labels and the lesion outlines of
    :obj:`outlines` (an
    :class:`~pyg_sm.datasets.annotations.AnnotationFolder`, or checked
    annotations that answer its ``lesion(slide_id, dimensions)``) on the
    slide image.
    :obj:`predictions` (one list per run) give the titles; by default the
    runs' own."""
    if not slide_ids:
        return []
    if predictions is None:
        predictions = [run.predictions() for run in runs]
    named = {run.name: {s: q for p in per_run
                        for s, q in p.per_slide().items()}
             for run, per_run in zip(runs, predictions)}
    written = []
    for slide_id in slide_ids:
        scores = [run.scores(slide_id) for run in runs]
        first = scores[0]
        attention = {run.name: s.attention_logits
                     for run, s in zip(runs, scores)}
        uncertainty = {run.name: s.attention_std
                       for run, s in zip(runs, scores)
                       if s.attention_std is not None}
        title = heatmap_title(slide_id, named)
        if slides is not None and slide_id in slides:
            slide = slides.open(slide_id)
            try:
                image = render_overlay(
                    slide, first.coords, attention, first.patch_size_level0,
                    first.patch_labels, title=title, top_k=top_k,
                    opacity=opacity, overlay_style=overlay_style,
                    outlines=None if outlines is None else
                    outlines.lesion(slide_id, slide.dimensions),
                    uncertainty=uncertainty)
            finally:
                slide.close()
        else:
            image = render_heatmap(first.coords, attention,
                                   first.patch_labels, title=title,
                                   uncertainty=uncertainty)
        written.append(str(out.write_heatmap(slide_id, image)))
    return written


def slide_images(folder: Optional[Path]) -> Optional[SlideImages]:
    return None if folder is None else SlideImages(folder)
