r"""``inspect``: a cohort's patch graphs, slide by slide, before any
training: what ``train`` and ``evaluate`` check and report in one line."""
import sys
from typing import Dict

from ..datasets import SlideDataset
from ._common import check_progress, graph_line, graph_report
from .config import InspectConfig


def inspect(config: InspectConfig) -> Dict:
    r"""Builds every slide's patch graph (:meth:`SlideDataset.graphs`) as
    ``train`` would, prints the summary line and the :obj:`config.worst`
    slides by mean degree (patches, edges, mean degree, the patch side and
    where it came from), and returns the report
    (:func:`~pyg_sm.runs._common.graph_report`, with every slide's record
    under ``slides_graphs``)."""
    dataset = SlideDataset(
        config.data_dir, labels=None, features_dir=config.features_dir,
        layout=config.layout, graph=config.patch_graph(),
        graph_cache=config.graph_cache, patches_dir=config.patches_dir)
    for note in dataset.notes:
        print(note, file=sys.stderr, flush=True)
    graphs = dataset.graphs(check_progress(sys.stderr.isatty(),
                                           'building patch graphs'))
    report = graph_report(graphs, config.connectivity
                          if config.graph == 'grid' else None, config.worst)
    print(graph_line(report))
    if report['sparse']:
        print(f"{len(report['sparse'])} slide(s) link few or no patches "
              f"(train and evaluate stop on them unless "
              f"--allow-sparse-graphs)")
    print(f"\n{'slide':<40} {'patches':>8} {'edges':>9} {'degree':>7} "
          f"{'side':>8}  source")
    for row in report['worst']:
        side = '-' if row['side'] is None else f"{row['side']:g}"
        print(f"{row['slide_id']:<40} {row['patches']:>8} "
              f"{row['edges']:>9} {row['mean_degree']:>7.2f} {side:>8}  "
              f"{row['source'] or '-'}")
    report['slides_graphs'] = [
        {'slide_id': g.slide_id, 'patches': g.patches, 'edges': g.edges,
         'mean_degree': g.mean_degree, 'side': g.side, 'source': g.source}
        for g in graphs]
    return report
