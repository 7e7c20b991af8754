r"""A local viewer of attention on whole-slide images: deep zoom of the
slide (OpenSeadragon in the browser, tiles from OpenSlide's
:class:`~openslide.deepzoom.DeepZoomGenerator`) with the attention of one or
more runs as a second, aligned tile layer.

It is a local tool and behaves like one: it binds ``127.0.0.1`` unless told
otherwise, is read-only (GET and HEAD), serves files only from inside the
folders it was given (its own static files and the run folders: ``..``,
absolute paths, symlinks that lead out and encoded traversal get 404),
serves slides and scores only by the ids of the runs it was given, and
answers each request in its own thread, so that a slow or failing request
never takes the server down (errors are logged, never raised)."""
import collections
import io
import json
import logging
import math
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import torch
from torch import Tensor

from ..datasets.annotations import AnnotationClasses, AnnotationFolder
from ..datasets.slide_images import SlideImages
from ..utils.checks import check_choice
from ..utils.stats import percentiles
from .colors import (
    OUTLINE_COLOR,
    OVERLAY_STYLES,
    PERCENTILE_LABEL,
    UNCERTAINTY_LABEL,
    paint_patches,
    percentile_colors,
    percentile_opacity,
    uncertainty_colors,
)

#: The page, its script and the vendored OpenSeadragon (BSD licence).
STATIC_DIR = Path(__file__).resolve().parent / 'static'
#: Tile side of both layers, in pixels.
TILE_SIZE = 254
#: Slides and score files kept open at once.
CACHED_SLIDES = 8
CACHED_SCORES = 32

log = logging.getLogger('pyg_sm.viewer')


class _TilePyramid:
    r"""A transparent Deep Zoom image of a slide's size, in the frame of
    OpenSlide's ``DeepZoomGenerator`` (``limit_bounds=False``), so that the
    browser lays it over the slide's own tiles exactly; subclasses paint
    each tile (:meth:`paint`)."""
    def __init__(self, dimensions: Sequence[int], tile_size: int):
        self.width, self.height = (int(v) for v in dimensions)
        self.tile_size = tile_size
        self.level_count = int(math.ceil(math.log2(max(
            self.width, self.height, 1)))) + 1

    def dzi(self) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns='
                '"http://schemas.microsoft.com/deepzoom/2008" Format="png" '
                f'Overlap="0" TileSize="{self.tile_size}"><Size Width='
                f'"{self.width}" Height="{self.height}"/></Image>')

    def tile(self, level: int, column: int, row: int) -> bytes:
        r"""The PNG (RGBA) of one tile; :class:`KeyError` outside the
        pyramid."""
        from PIL import Image

        if not 0 <= level < self.level_count:
            raise KeyError(f'no level {level}')
        downsample = 2.0 ** (self.level_count - 1 - level)
        width = math.ceil(self.width / downsample)
        height = math.ceil(self.height / downsample)
        x0, y0 = column * self.tile_size, row * self.tile_size
        if column < 0 or row < 0 or x0 >= width or y0 >= height:
            raise KeyError(f'no tile {column}_{row} at level {level}')
        canvas = np.zeros((min(self.tile_size, height - y0),
                           min(self.tile_size, width - x0), 4), np.uint8)
        canvas = self.paint(canvas, downsample, (x0 * downsample,
                                                 y0 * downsample))
        out = io.BytesIO()
        Image.fromarray(canvas, 'RGBA').save(out, 'png')
        return out.getvalue()

    def paint(self, canvas: np.ndarray, downsample: float,
              origin: Sequence[float]) -> np.ndarray:
        raise NotImplementedError


class OutlineTiles(_TilePyramid):
    r"""Annotation outlines of one slide as a Deep Zoom layer: every ring
    (exteriors and holes) of :obj:`outlines` (a shapely geometry, level-0
    pixels) drawn as a 2-pixel :obj:`OUTLINE_COLOR` line at every zoom.

    Args:
        outlines: the lesion area (:meth:`SlideAnnotations.lesion
            <pyg_sm.datasets.annotations.SlideAnnotations.lesion>`).
        dimensions (tuple): level-0 (width, height) of the slide.
        tile_size (int, optional): (default: :obj:`254`)
    """
    def __init__(self, outlines, dimensions: Sequence[int],
                 tile_size: int = TILE_SIZE):
        import shapely

        super().__init__(dimensions, tile_size)
        self.rings = [np.asarray(ring.coords) for polygon in
                      shapely.get_parts(outlines) if not polygon.is_empty
                      and polygon.geom_type == 'Polygon'
                      for ring in [polygon.exterior, *polygon.interiors]]
        self.bounds = [np.concatenate([r.min(0), r.max(0)])
                       for r in self.rings]

    def paint(self, canvas, downsample, origin):
        from PIL import Image, ImageDraw

        height, width = canvas.shape[:2]
        x0, y0 = origin
        x1, y1 = x0 + width * downsample, y0 + height * downsample
        margin = 2 * downsample
        image = Image.fromarray(canvas, 'RGBA')
        draw = ImageDraw.Draw(image)
        for ring, (bx0, by0, bx1, by1) in zip(self.rings, self.bounds):
            if bx1 < x0 - margin or bx0 > x1 + margin or \
                    by1 < y0 - margin or by0 > y1 + margin:
                continue
            points = (ring - (x0, y0)) / downsample
            draw.line([tuple(p) for p in points],
                      fill=tuple(OUTLINE_COLOR) + (255, ), width=2)
        return np.asarray(image).copy()


class AttentionTiles(_TilePyramid):
    r"""The attention of one slide as a Deep Zoom image of the slide's
    size: each patch a square in the colour of its attention percentile
    (transparent elsewhere), at every zoom level, so that the browser lays
    it over the slide's own tiles exactly.

    Args:
        coords (torch.Tensor): patch top-left corners :math:`(N, 2)`,
            level-0 pixels.
        attention (torch.Tensor): per-patch values :math:`(N,)`, before or
            after the softmax.
        side (float): side of a patch in level-0 pixels.
        dimensions (tuple): level-0 (width, height) of the slide.
        tile_size (int, optional): (default: :obj:`254`)
        overlay_style (str, optional): :obj:`"ramp"` (each patch's
            opacity grows with its percentile) or :obj:`"flat"`.
            (default: :obj:`"ramp"`)
        attention_std (torch.Tensor, optional): a probabilistic model's
            per-patch uncertainty :math:`(N,)`, reported by
            :meth:`patch_at`. (default: :obj:`None`)
    """
    def __init__(self, coords: Tensor, attention: Tensor, side: float,
                 dimensions: Sequence[int], tile_size: int = TILE_SIZE,
                 overlay_style: str = 'ramp',
                 attention_std: Optional[Tensor] = None):
        self.coords = coords.double()
        self.side = float(side)
        self.attention_std = attention_std
        self.percentile = percentiles(attention)
        self.weights = torch.softmax(attention.double().reshape(-1), 0)
        colors = percentile_colors(self.percentile)
        # The page sets the layer's opacity; each patch's own alpha is the
        # style's (opaque for flat).
        self.colors = np.concatenate([colors, percentile_opacity(
            self.percentile, overlay_style, 1.0)[:, None]], 1)
        super().__init__(dimensions, tile_size)

    def paint(self, canvas, downsample, origin):
        return paint_patches(canvas, self.coords, self.side, self.colors,
                             scale=1 / downsample, origin=torch.tensor(
                                 origin, dtype=torch.float64))

    def patch_at(self, x: float, y: float) -> Optional[Dict]:
        r"""The patch that covers the level-0 point (x, y), if any: its
        index, corner, softmax weight and percentile."""
        c = self.coords
        hit = ((c[:, 0] <= x) & (x < c[:, 0] + self.side) &
               (c[:, 1] <= y) & (y < c[:, 1] + self.side)).nonzero()
        if hit.numel() == 0:
            return None
        i = int(hit[0])
        return {'index': i, 'x': float(c[i, 0]), 'y': float(c[i, 1]),
                'attention': float(self.weights[i]),
                'percentile': float(self.percentile[i]),
                **({} if self.attention_std is None else
                   {'attention_std': float(self.attention_std[i])})}


class UncertaintyTiles(_TilePyramid):
    r"""A probabilistic model's uncertainty of one slide (each patch's
    ``attention_std``) as a Deep Zoom image of the slide's size, on its own
    colour scale (:func:`~pyg_sm.visualize.colors.uncertainty_colors`: the
    slide's lowest to highest), opaque over the patches, transparent
    elsewhere.

    Args:
        coords (torch.Tensor): patch top-left corners :math:`(N, 2)`,
            level-0 pixels.
        attention_std (torch.Tensor): per-patch standard deviations
            :math:`(N,)`.
        side (float): side of a patch in level-0 pixels.
        dimensions (tuple): level-0 (width, height) of the slide.
        tile_size (int, optional): (default: :obj:`254`)
    """
    def __init__(self, coords: Tensor, attention_std: Tensor, side: float,
                 dimensions: Sequence[int], tile_size: int = TILE_SIZE):
        self.coords = coords.double()
        self.side = float(side)
        colors = uncertainty_colors(attention_std)
        self.colors = np.concatenate(
            [colors, np.full((len(colors), 1), 255, np.uint8)], 1)
        super().__init__(dimensions, tile_size)

    def paint(self, canvas, downsample, origin):
        return paint_patches(canvas, self.coords, self.side, self.colors,
                             scale=1 / downsample, origin=torch.tensor(
                                 origin, dtype=torch.float64))


class _Cache:
    r"""A small thread-safe LRU cache that builds missing entries once."""
    def __init__(self, size: int, on_evict: Optional[Callable] = None):
        self.size, self.on_evict = size, on_evict
        self.items: 'collections.OrderedDict' = collections.OrderedDict()
        self.lock = threading.Lock()
        self.building: Dict = {}

    def get(self, key, build: Callable):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
            lock = self.building.setdefault(key, threading.Lock())
        with lock:  # one thread builds, the others wait for it
            with self.lock:
                if key in self.items:
                    return self.items[key]
            value = build()
            with self.lock:
                self.items[key] = value
                self.building.pop(key, None)
                while len(self.items) > self.size:
                    _, old = self.items.popitem(last=False)
                    if self.on_evict is not None:
                        self.on_evict(old)
            return value


def safe_file(root: Path, relative: str) -> Optional[Path]:
    r"""The file :obj:`relative` (already URL-decoded) inside :obj:`root`,
    or :obj:`None` when it is absolute, climbs out with ``..``, leads out
    through a symlink or is not a regular file."""
    if not relative or '\x00' in relative or '\\' in relative or \
            relative.startswith('/') or \
            any(part in ('..', '') for part in relative.split('/')):
        return None
    root = root.resolve()
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


class ViewerServer(ThreadingHTTPServer):
    r"""The viewer's HTTP server over run folders and slide images.

    Args:
        runs (list of RunFolder): the runs to show (their attention layers;
            the first one's slides first), as
            :func:`pyg_sm.runs.scored_runs` opens them: each has a
            ``name``, a ``path``, ``slide_ids``, ``predictions()`` and
            ``scores(slide_id)``.
        slides (SlideImages, optional): the slide images; without them (or
            for a slide without an image) the attention is shown on a blank
            background of the patches' extent.
        host (str, optional): (default: :obj:`'127.0.0.1'`)
        port (int, optional): 0 picks a free port. (default: :obj:`0`)
        overlay_style (str, optional): how the attention layer is painted
            (:class:`AttentionTiles`). (default: :obj:`"ramp"`)
        annotations (Path, optional): a folder of annotation files
            (:mod:`pyg_sm.datasets.annotations`): the slides that have one
            get an outline layer (:class:`OutlineTiles`) the page can turn
            on and off. (default: :obj:`None`)
        annotation_classes (AnnotationClasses, optional): the lesion and
            exclusion classes. (default: every class but the exclusions)
    """
    daemon_threads = True

    def __init__(self, runs: Sequence, slides: Optional[SlideImages] = None,
                 host: str = '127.0.0.1', port: int = 0,
                 overlay_style: str = 'ramp', annotations=None,
                 annotation_classes: Optional[AnnotationClasses] = None):
        if not runs:
            raise ValueError('the viewer needs at least one run folder')
        check_choice('overlay_style', overlay_style, OVERLAY_STYLES)
        self.overlay_style = overlay_style
        self.annotations = None if annotations is None else \
            AnnotationFolder(annotations, annotation_classes)
        self.runs = list(runs)
        self.slides = slides
        # Read once: the folders do not change while they are shown.
        scored = [run.slide_ids for run in self.runs]
        self._scored = [set(ids) for ids in scored]
        self._predictions = [{s: p for p in run.predictions()
                              for s in getattr(p, 'slide_ids', None)
                              or [p.slide_id]}
                             for run in self.runs]
        # A run shows an uncertainty layer when its scores have one (a
        # probabilistic model's); its first score file says.
        self._uncertain = [bool(ids) and run.scores(ids[0]).attention_std
                           is not None for run, ids in zip(self.runs, scored)]
        ids = []
        for run_ids in scored:
            ids += [s for s in run_ids if s not in ids]
        self.slide_ids = ids
        self._known = set(ids)
        self._zoom = _Cache(CACHED_SLIDES, on_evict=lambda v: v[0].close()
                            if v is not None else None)
        self._tiles = _Cache(CACHED_SCORES)
        super().__init__((host, port), _Handler)

    def handle_error(self, request, client_address):
        # What escapes a handler (a dropped connection, a malformed request)
        # is logged; the server goes on.
        log.exception('error serving %s', client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f'http://{host}:{port}/'

    # What the page reads ------------------------------------------------
    def slide_list(self) -> Dict:
        slides = []
        for slide_id in self.slide_ids:
            label = None
            predictions = []
            for run_index in range(len(self.runs)):
                p = self._predictions[run_index].get(slide_id)
                if p is not None and label is None:
                    label = p.label
                predictions.append(None if p is None else {
                    'predicted': p.predicted,
                    'probability': p.probabilities.get(p.predicted),
                    'probabilities': p.probabilities,
                    'risk': getattr(p, 'risk', None),
                    'scored': slide_id in self._scored[run_index]})
            slides.append({'id': slide_id, 'label': label,
                           'image': self.slides is not None and
                           slide_id in self.slides,
                           'annotated': self.annotation_file(slide_id)
                           is not None,
                           'runs': predictions})
        def hex_colors(colors):
            return ['#%02x%02x%02x' % tuple(c) for c in colors]
        steps = torch.linspace(0, 100, 11)
        return {'runs': [{'index': i, 'name': r.name,
                          'uncertainty': self._uncertain[i]}
                         for i, r in enumerate(self.runs)],
                'slides': slides, 'legend': {
                    'label': PERCENTILE_LABEL,
                    'colors': hex_colors(percentile_colors(steps))},
                'uncertainty_legend': {
                    'label': UNCERTAINTY_LABEL,
                    'colors': hex_colors(uncertainty_colors(steps))}}

    def deep_zoom(self, slide_id: str):
        r"""(OpenSlide, DeepZoomGenerator) of a slide, or :obj:`None`
        without an image."""
        if self.slides is None or slide_id not in self.slides:
            return None

        def build():
            from openslide.deepzoom import DeepZoomGenerator

            slide = self.slides.open(slide_id)
            # The full level-0 frame (limit_bounds=False): the attention
            # layer uses the same one, so the two align at every zoom.
            return slide, DeepZoomGenerator(slide, tile_size=TILE_SIZE,
                                            overlap=1, limit_bounds=False)
        return self._zoom.get(slide_id, build)

    def dimensions(self, slide_id: str):
        zoom = self.deep_zoom(slide_id)
        if zoom is not None:
            return zoom[0].dimensions
        # No image: the extent of the patches of the first run that has it.
        for run, scored in zip(self.runs, self._scored):
            if slide_id in scored:
                scores = run.scores(slide_id)
                corner = scores.coords.double().max(0).values
                side = scores.patch_size_level0
                return (int(math.ceil(corner[0] + side)),
                        int(math.ceil(corner[1] + side)))
        raise KeyError(slide_id)

    def attention_tiles(self, run_index: int, slide_id: str):
        run = self.runs[run_index]
        if slide_id not in self._scored[run_index]:
            raise KeyError(f'{run.name} did not score {slide_id}')

        def build():
            scores = run.scores(slide_id)
            return AttentionTiles(scores.coords, scores.attention_logits,
                                  scores.patch_size_level0,
                                  self.dimensions(slide_id),
                                  overlay_style=self.overlay_style,
                                  attention_std=scores.attention_std)
        return self._tiles.get((run_index, slide_id), build)

    def uncertainty_tiles(self, run_index: int, slide_id: str):
        run = self.runs[run_index]
        if slide_id not in self._scored[run_index]:
            raise KeyError(f'{run.name} did not score {slide_id}')

        def build():
            scores = run.scores(slide_id)
            if scores.attention_std is None:
                raise KeyError(f'{run.name} has no uncertainty')
            return UncertaintyTiles(scores.coords, scores.attention_std,
                                    scores.patch_size_level0,
                                    self.dimensions(slide_id))
        return self._tiles.get(('uncertainty', run_index, slide_id), build)

    def annotation_file(self, slide_id: str) -> Optional[Path]:
        if self.annotations is None:
            return None
        return self.annotations.file(slide_id)

    def outline_tiles(self, slide_id: str) -> OutlineTiles:
        path = self.annotation_file(slide_id)
        if path is None:
            raise KeyError(f'no annotations of {slide_id}')

        def build():
            zoom = self.deep_zoom(slide_id)
            area = self.annotations.lesion(
                slide_id, None if zoom is None else zoom[0].dimensions)
            return OutlineTiles(area, self.dimensions(slide_id))
        return self._tiles.get(('outlines', slide_id), build)

    def close(self) -> None:
        r"""Stops serving and closes the slides."""
        self.shutdown()
        self.server_close()
        with self._zoom.lock:
            for value in self._zoom.items.values():
                if value is not None:
                    value[0].close()
            self._zoom.items.clear()


class _NotFound(Exception):
    pass


_SLIDE_TILE = re.compile(r'/slide/(.+)_files/(\d+)/(\d+)_(\d+)\.jpeg')
_SLIDE_DZI = re.compile(r'/slide/(.+)\.dzi')
# A run's layers of a slide: its attention, and a probabilistic model's
# uncertainty.
_LAYER_TILE = re.compile(r'/(overlay|uncertainty)/(\d+)/(.+)_files/(\d+)/'
                         r'(\d+)_(\d+)\.png')
_LAYER_DZI = re.compile(r'/(overlay|uncertainty)/(\d+)/(.+)\.dzi')
_OUTLINE_TILE = re.compile(r'/annotations/(.+)_files/(\d+)/(\d+)_(\d+)\.png')
_OUTLINE_DZI = re.compile(r'/annotations/(.+)\.dzi')
_PATCH = re.compile(r'/api/patch/(\d+)/(.+)')
_INFO = re.compile(r'/api/slide/(.+)')
_RUN_FILE = re.compile(r'/files/(\d+)/(.+)')


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = 'pyg-sm-viewer'
    protocol_version = 'HTTP/1.1'
    #: A client that sends nothing for this long is dropped.
    timeout = 60
    #: Whether the answer carries a body (not for HEAD).
    _body = True

    def log_message(self, format, *args):
        log.info('%s %s', self.address_string(), format % args)

    def do_GET(self):
        self._answer(body=True)

    def do_HEAD(self):
        self._answer(body=False)

    def _read_only(self):
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b'read-only\n',
                   'text/plain', headers={'Allow': 'GET, HEAD'})

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

    def _answer(self, body: bool):
        self._body = body
        try:
            status, content, kind = self._route(urlsplit(self.path))
            self._send(status, content, kind)
        except _NotFound:
            self._send(HTTPStatus.NOT_FOUND, b'not found\n', 'text/plain')
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # logged, answered, never raised
            log.exception('error answering %s', self.path)
            try:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                           b'server error (see the log)\n', 'text/plain')
            except OSError:
                pass

    def _send(self, status, content: bytes, kind: str,
              headers: Optional[Dict] = None):
        self.send_response(status)
        self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(content)))
        self.send_header('X-Content-Type-Options', 'nosniff')
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self._body:
            self.wfile.write(content)

    def _slide(self, text: str) -> str:
        if text not in self.server._known:
            raise _NotFound
        return text

    def _run(self, text: str) -> int:
        index = int(text)
        if index >= len(self.server.runs):
            raise _NotFound
        return index

    def _route(self, url):
        path = unquote(url.path)
        server = self.server
        if path in ('/', '/index.html'):
            return self._file(STATIC_DIR, 'index.html')
        if path.startswith('/static/'):
            return self._file(STATIC_DIR, path[len('/static/'):])
        if path == '/api/slides':
            return self._json(server.slide_list())
        match = _INFO.fullmatch(path)
        if match:
            slide_id = self._slide(match[1])
            width, height = server.dimensions(slide_id)
            return self._json({'id': slide_id, 'width': width,
                               'height': height,
                               'image': server.deep_zoom(slide_id)
                               is not None})
        match = _SLIDE_DZI.fullmatch(path)
        if match:
            zoom = server.deep_zoom(self._slide(match[1]))
            if zoom is None:
                raise _NotFound
            return HTTPStatus.OK, zoom[1].get_dzi('jpeg').encode(), \
                'application/xml'
        match = _SLIDE_TILE.fullmatch(path)
        if match:
            zoom = server.deep_zoom(self._slide(match[1]))
            if zoom is None:
                raise _NotFound
            try:
                tile = zoom[1].get_tile(int(match[2]), (int(match[3]),
                                                        int(match[4])))
            except ValueError:
                raise _NotFound from None
            out = io.BytesIO()
            tile.convert('RGB').save(out, 'jpeg', quality=85)
            return HTTPStatus.OK, out.getvalue(), 'image/jpeg'
        match = _OUTLINE_DZI.fullmatch(path)
        if match:
            return HTTPStatus.OK, self._outlines(match[1]).dzi().encode(), \
                'application/xml'
        match = _OUTLINE_TILE.fullmatch(path)
        if match:
            try:
                png = self._outlines(match[1]).tile(
                    int(match[2]), int(match[3]), int(match[4]))
            except KeyError:
                raise _NotFound from None
            return HTTPStatus.OK, png, 'image/png'
        match = _LAYER_DZI.fullmatch(path)
        if match:
            tiles = self._layer(*match.groups())
            return HTTPStatus.OK, tiles.dzi().encode(), 'application/xml'
        match = _LAYER_TILE.fullmatch(path)
        if match:
            tiles = self._layer(*match.groups()[:3])
            try:
                png = tiles.tile(int(match[4]), int(match[5]),
                                 int(match[6]))
            except KeyError:
                raise _NotFound from None
            return HTTPStatus.OK, png, 'image/png'
        match = _PATCH.fullmatch(path)
        if match:
            tiles = self._tiles(match[1], match[2])
            query = parse_qs(url.query)
            try:
                x, y = float(query['x'][0]), float(query['y'][0])
            except (KeyError, ValueError):
                raise _NotFound from None
            return self._json({'patch': tiles.patch_at(x, y)})
        match = _RUN_FILE.fullmatch(path)
        if match:
            return self._file(server.runs[self._run(match[1])].path,
                              match[2])
        raise _NotFound

    def _tiles(self, run: str, slide_id: str) -> AttentionTiles:
        try:
            return self.server.attention_tiles(self._run(run),
                                               self._slide(slide_id))
        except KeyError:
            raise _NotFound from None

    def _layer(self, kind: str, run: str, slide_id: str):
        if kind == 'overlay':
            return self._tiles(run, slide_id)
        try:
            return self.server.uncertainty_tiles(self._run(run),
                                                 self._slide(slide_id))
        except KeyError:
            raise _NotFound from None

    def _outlines(self, slide_id: str) -> OutlineTiles:
        try:
            return self.server.outline_tiles(self._slide(slide_id))
        except KeyError:
            raise _NotFound from None

    def _json(self, content):
        return HTTPStatus.OK, json.dumps(content).encode(), \
            'application/json'

    def _file(self, root: Path, relative: str):
        path = safe_file(root, relative)
        if path is None:
            raise _NotFound
        kind = {'.html': 'text/html; charset=utf-8',
                '.js': 'text/javascript', '.css': 'text/css',
                '.png': 'image/png', '.txt': 'text/plain; charset=utf-8',
                '.json': 'application/json', '.csv': 'text/csv',
                '.geojson': 'application/geo+json'}.get(
                    path.suffix.lower(), 'application/octet-stream')
        return HTTPStatus.OK, path.read_bytes(), kind


def open_viewer(runs: Sequence, slides_dir=None, host: str = '127.0.0.1',
                port: int = 0, overlay_style: str = 'ramp', annotations=None,
                annotation_classes: Optional[AnnotationClasses] = None
                ) -> ViewerServer:
    r"""A :class:`ViewerServer` over opened run folders
    (:func:`pyg_sm.runs.scored_runs`; :func:`pyg_sm.runs.view` opens them
    by path) and an optional folder of slide images; call
    ``serve_forever()`` (or run it in a thread) and ``close()``."""
    slides = None if slides_dir is None else SlideImages(slides_dir)
    return ViewerServer(runs, slides, host=host, port=port,
                        overlay_style=overlay_style, annotations=annotations,
                        annotation_classes=annotation_classes)
