r"""``heatmap`` and ``view``: the attention of scored runs, as pictures and
in the local viewer."""
import logging
import sys

from ..datasets.annotations import AnnotationFolder
from ..utils.errors import PygSmError
from ..utils.text import plural
from ..visualize import ViewerServer, open_viewer
from ._common import slide_images, slide_list, write_heatmaps
from .config import HeatmapConfig, ViewConfig, annotation_classes
from .folder import RunFolder, scored_runs


def heatmap(config: HeatmapConfig) -> RunFolder:
    r"""Attention pictures of scored slides, as ``pyg-sm heatmap`` draws
    them: ``heatmaps/<slide_id>.png`` in :obj:`config.out`, the runs side
    by side, over the slide images when :obj:`config.slides_dir` has
    them. Returns the folder written to."""
    runs = scored_runs(config.runs)
    slide_ids = runs[0].slide_ids if config.slide_ids is None else \
        slide_list(config.slide_ids)
    scored = [set(run.slide_ids) for run in runs]
    missing = [(run.name, s) for run, ids in zip(runs, scored)
               for s in slide_ids if s not in ids]
    if missing:
        raise PygSmError('no scores for ' + ', '.join(
            f"slide '{s}' in {name}" for name, s in missing[:5]) +
            (f' and {len(missing) - 5} more' if len(missing) > 5 else ''))
    slides = slide_images(config.slides_dir)
    outlines = None if config.annotations is None else AnnotationFolder(
        config.annotations, annotation_classes(config))
    out = RunFolder(config.out)
    written = write_heatmaps(out, slide_ids, runs, slides,
                             top_k=config.top_k, opacity=config.opacity,
                             overlay_style=config.overlay_style,
                             outlines=outlines)
    on_image = 0 if slides is None else sum(s in slides for s in slide_ids)
    count = plural(len(written), 'heatmap')
    print(f'{count} in {out.heatmaps_dir} ({on_image} over '
          f'slide images, {len(written) - on_image} on the patch grid)')
    return out


def open_runs(config: ViewConfig) -> ViewerServer:
    r"""The viewer over :obj:`config.runs`, listening but not yet serving
    (call ``serve_forever()`` and ``close()``)."""
    return open_viewer(scored_runs(config.runs), config.slides_dir,
                       host=config.host, port=config.port,
                       overlay_style=config.overlay_style,
                       annotations=config.annotations,
                       annotation_classes=annotation_classes(config))


def view(config: ViewConfig) -> str:
    r"""Serves the local deep-zoom viewer of :obj:`config.runs` until
    Ctrl-C, as ``pyg-sm view`` does; returns its address."""
    logging.basicConfig(level=logging.INFO if config.log_requests
                        else logging.WARNING, format='%(message)s')
    server = open_runs(config)
    images = 0 if server.slides is None else sum(
        s in server.slides for s in server.slide_ids)
    count = plural(len(server.slide_ids), 'slide')
    print(f'pyg-sm viewer: {count} ({images} with '
          f'images), {len(server.runs)} run(s)\nopen {server.url} in a '
          f'browser; Ctrl-C stops it', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('stopped', file=sys.stderr)
    finally:
        server.server_close()
    return server.url
