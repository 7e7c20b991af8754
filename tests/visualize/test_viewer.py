"""The viewer's server: what the page reads, the tiles of both layers, the
patch under the pointer; read-only, files only from inside its folders,
and robust to slow and failing requests."""
import http.client
import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyg_sm.visualize import AttentionTiles
from pyg_sm.visualize.viewer import safe_file
from viewer_helpers import PATCH, RunningViewer, read_slide

ROOT = Path(__file__).resolve().parents[2]


def get(server, path, method='GET'):
    r"""The raw request, as written (no client-side normalization)."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest(method, path, skip_host=False,
                          skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.getheader('Content-Type'), body


def test_binds_loopback_and_lists_slides_with_predictions(viewer):
    assert viewer.server_address[0] == '127.0.0.1'
    assert viewer.url.startswith('http://127.0.0.1:')
    status, kind, body = get(viewer, '/api/slides')
    assert status == 200 and kind == 'application/json'
    listing = json.loads(body)
    assert [r['name'] for r in listing['runs']] == ['focused', 'reversed']
    assert [s['id'] for s in listing['slides']] == [
        f'slide_00{i}' for i in range(4)]
    first = listing['slides'][1]
    assert first['label'] == '1' and first['image'] is True
    assert first['runs'][0]['predicted'] == '1'
    assert first['runs'][0]['probability'] == pytest.approx(0.9)
    assert len(listing['legend']['colors']) == 11
    status, kind, page = get(viewer, '/')
    assert status == 200 and b'openseadragon.min.js' in page


def test_vendored_openseadragon_and_its_licence_are_served(viewer):
    status, kind, body = get(viewer, '/static/openseadragon/openseadragon'
                                     '.min.js')
    assert status == 200 and kind == 'text/javascript'
    assert b'OpenSeadragon' in body[:2000]
    status, _, licence = get(viewer, '/static/openseadragon/LICENSE.txt')
    assert status == 200 and b'Redistribution and use' in licence
    status, kind, _ = get(viewer, '/static/openseadragon/images/home_rest'
                                  '.png')
    assert status == 200 and kind == 'image/png'


def test_slide_and_attention_layers_share_one_frame(viewer, scored_cohort):
    data, _ = scored_cohort
    status, _, info = get(viewer, '/api/slide/slide_001')
    info = json.loads(info)
    slide = viewer.deep_zoom('slide_001')[0]
    assert (info['width'], info['height']) == slide.dimensions
    dzi = get(viewer, '/slide/slide_001.dzi')[2].decode()
    overlay = get(viewer, '/overlay/0/slide_001.dzi')[2].decode()
    size = f'Width="{info["width"]}" Height="{info["height"]}"'
    assert size.replace('"', '') in dzi.replace('"', '').replace(' />', '')
    assert size in overlay
    # The top level of both pyramids is level 0 of the slide.
    tiles = viewer.attention_tiles(0, 'slide_001')
    assert tiles.level_count == viewer.deep_zoom('slide_001')[1].level_count
    status, kind, jpeg = get(viewer, f'/slide/slide_001_files/'
                                     f'{tiles.level_count - 1}/0_0.jpeg')
    assert status == 200 and kind == 'image/jpeg'
    assert Image.open(io.BytesIO(jpeg)).size == (255, 255)  # 254 + overlap


def test_attention_tile_pixels_sit_on_the_patches(viewer, scored_cohort):
    data, _ = scored_cohort
    coords, labels = read_slide(data, 'slide_001')
    tiles = viewer.attention_tiles(0, 'slide_001')
    top = tiles.level_count - 1
    lesion = coords[labels.nonzero()[0, 0]].tolist()
    column, row = int(lesion[0] // 254), int(lesion[1] // 254)
    status, kind, png = get(viewer, f'/overlay/0/slide_001_files/{top}/'
                                    f'{column}_{row}.png')
    assert status == 200 and kind == 'image/png'
    tile = np.asarray(Image.open(io.BytesIO(png)))
    x, y = int(lesion[0] - column * 254) + PATCH // 2, \
        int(lesion[1] - row * 254) + PATCH // 2
    x, y = min(x, tile.shape[1] - 1), min(y, tile.shape[0] - 1)
    assert tile[y, x, 3] == 255  # opaque on a patch, in a lesion: the top
    assert tile[y, x, 0] > 100 and tile[y, x, 2] < 100  # red end of turbo
    # Glass (the slide's corner) is transparent.
    corner = np.asarray(Image.open(io.BytesIO(get(
        viewer, f'/overlay/0/slide_001_files/{top}/0_0.png')[2])))
    assert corner[0, 0, 3] == 0
    # Every level is painted; the smallest is one pixel.
    status, _, png = get(viewer, '/overlay/0/slide_001_files/0/0_0.png')
    assert status == 200 and Image.open(io.BytesIO(png)).size == (1, 1)


def test_patch_under_the_pointer(viewer, scored_cohort):
    data, _ = scored_cohort
    coords, labels = read_slide(data, 'slide_001')
    i = int(labels.nonzero()[0, 0])
    x, y = coords[i].tolist()
    answer = json.loads(get(viewer, f'/api/patch/0/slide_001?x={x + 3}'
                                    f'&y={y + PATCH - 1}')[2])['patch']
    assert answer['index'] == i and answer['percentile'] > 50
    reversed_answer = json.loads(get(
        viewer, f'/api/patch/1/slide_001?x={x + 3}&y={y + 3}')[2])['patch']
    assert reversed_answer['percentile'] < 50
    assert json.loads(get(viewer, '/api/patch/0/slide_001?x=1&y=1')[2]) == \
        {'patch': None}


def test_attention_tiles_directly():
    coords = torch.tensor([[0, 0], [64, 0], [0, 64]])
    tiles = AttentionTiles(coords, torch.tensor([1.0, 2.0, 3.0]), 64,
                           (128, 128), tile_size=64)
    assert tiles.level_count == 8
    assert 'Width="128" Height="128"' in tiles.dzi()
    tile = np.asarray(Image.open(io.BytesIO(tiles.tile(7, 1, 1))))
    assert tile.shape == (64, 64, 4) and (tile[..., 3] == 0).all()
    with pytest.raises(KeyError):
        tiles.tile(7, 2, 0)
    with pytest.raises(KeyError):
        tiles.tile(8, 0, 0)
    assert tiles.patch_at(70, 10)['index'] == 1
    assert tiles.patch_at(70, 70) is None


@pytest.mark.parametrize('path', [
    '/static/../../../../etc/passwd',
    '/static/..%2f..%2f..%2fetc/passwd',
    '/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/static/%252e%252e/%252e%252e/etc/passwd',
    '/static//etc/passwd',
    '/static/%2fetc%2fpasswd',
    '/static/openseadragon/..%5c..%5cviewer.py',
    '/files/0/../../../../etc/passwd',
    '/files/0/%2e%2e/reversed/predictions.csv',
    '/files/0//etc/passwd',
    '/files/0/outside.txt',          # a symlink that leads out
    '/files/0/scores',               # a folder, not a file
    '/files/9/predictions.csv',      # no such run
    '/slide/..%2f..%2fetc%2fpasswd.dzi',
    '/slide/slide_099.dzi',          # not a slide of the runs
    '/overlay/0/../slide_001.dzi',
    '/api/patch/5/slide_001?x=1&y=1',
    '/api/patch/0/slide_001?x=a&y=1',
    '/nothing',
])
def test_traversal_and_unknown_names_get_404(viewer, scored_cohort,
                                             tmp_path_factory, path):
    _, runs = scored_cohort
    link = runs[0] / 'outside.txt'
    if not link.is_symlink():
        secret = tmp_path_factory.mktemp('secret') / 'secret.txt'
        secret.write_text('secret')
        link.symlink_to(secret)
    status, _, body = get(viewer, path)
    assert status == 404, (path, body[:100])
    assert b'secret' not in body and b'root:' not in body


def test_files_inside_the_run_folders_are_served(viewer):
    status, kind, body = get(viewer, '/files/0/predictions.csv')
    assert status == 200 and kind == 'text/csv'
    assert body.startswith(b'slide_id,prob_0,prob_1,predicted,label')


def test_safe_file_refuses_paths_that_leave_the_root(tmp_path):
    (tmp_path / 'root' / 'sub').mkdir(parents=True)
    (tmp_path / 'root' / 'sub' / 'a.txt').write_text('a')
    (tmp_path / 'b.txt').write_text('b')
    (tmp_path / 'root' / 'link').symlink_to(tmp_path / 'b.txt')
    (tmp_path / 'root' / 'inner').symlink_to(tmp_path / 'root' / 'sub')
    root = tmp_path / 'root'
    assert safe_file(root, 'sub/a.txt') == (root / 'sub' / 'a.txt').resolve()
    assert safe_file(root, 'inner/a.txt') is not None  # symlink that stays
    for bad in ['../b.txt', 'sub/../../b.txt', str(tmp_path / 'b.txt'),
                'link', 'sub', '', 'sub//a.txt', 'sub\\a.txt', 'a\x00']:
        assert safe_file(root, bad) is None, bad


def test_read_only(viewer):
    for method in ['POST', 'PUT', 'DELETE', 'PATCH']:
        status, _, _ = get(viewer, '/api/slides', method)
        assert status == 405
    status, _, body = get(viewer, '/api/slides', 'HEAD')
    assert status == 200 and body == b''


def test_failing_and_slow_requests_do_not_take_the_server_down(
        scored_cohort, tmp_path, caplog):
    data, runs = scored_cohort
    slides = tmp_path / 'slides'
    slides.mkdir()
    for path in (data / 'slides').iterdir():
        (slides / path.name).symlink_to(path)
    (slides / 'slide_002.tif').unlink()
    (slides / 'slide_002.tif').write_bytes(b'II*\x00 a corrupt tiff')
    with RunningViewer(runs, slides) as server:
        # A client that connects and never finishes its request.
        stalled = socket.create_connection(server.server_address[:2])
        stalled.sendall(b'GET /api/slides HTTP/1.1\r\n')
        with caplog.at_level('ERROR', logger='pyg_sm.viewer'):
            status, _, _ = get(server, '/slide/slide_002.dzi')
        assert status == 500
        assert any('slide_002' in r.getMessage() or 'slide_002' in
                   str(r.exc_info) for r in caplog.records)
        # Still serving, while the stalled client waits.
        for _ in range(3):
            assert get(server, '/api/slides')[0] == 200
        assert get(server, '/slide/slide_001.dzi')[0] == 200
        stalled.close()


def test_slides_without_images_show_the_attention_alone(scored_cohort):
    data, runs = scored_cohort
    with RunningViewer(runs[:1]) as server:
        listing = json.loads(get(server, '/api/slides')[2])
        assert not any(s['image'] for s in listing['slides'])
        info = json.loads(get(server, '/api/slide/slide_001')[2])
        coords, _ = read_slide(data, 'slide_001')
        assert info['width'] == int(coords[:, 0].max()) + PATCH
        assert get(server, '/slide/slide_001.dzi')[0] == 404
        assert get(server, '/overlay/0/slide_001.dzi')[0] == 200
