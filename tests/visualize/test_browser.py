"""The viewer in a real browser: Debian's Chromium and ChromeDriver driven
by Selenium, headless. Every wait is on the page's ready signal
(``<body data-ready>``), never a sleep.

The ``browser`` fixture (``tests/conftest.py``) skips without Chromium,
except under CI=true, where a missing browser fails the run (``.ci/run``
installs it)."""
import io
import urllib.request

import numpy as np
from PIL import Image

from viewer_helpers import PATCH, read_slide

WAIT = 60


def wait_ready(driver, key):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script('return document.body.dataset.ready') ==
        key, message=f'the page never got ready for {key!r}')


def screenshot(driver) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(
        driver.get_screenshot_as_png())).convert('RGB'), np.int16)


def page_point(driver, x, y):
    point = driver.execute_script(
        'return window.pygSm.imageToPage(arguments[0], arguments[1])', x, y)
    return int(round(point['x'])), int(round(point['y']))


def patch_centre(data, slide_id, lesion=True):
    coords, labels = read_slide(data, slide_id)
    chosen = labels.nonzero() if lesion else (labels == 0).nonzero()
    # A patch in the middle of its kind, away from the tissue border.
    i = int(chosen[len(chosen) // 2, 0])
    x, y = coords[i].tolist()
    return i, x + PATCH / 2, y + PATCH / 2


def open_page(driver, viewer, query):
    driver.get(viewer.url + '?' + query + '&animation=0')


def test_slide_tiles_render_and_the_overlay_marks_the_lesions(
        browser, viewer, scored_cohort):
    data, _ = scored_cohort
    open_page(browser, viewer, 'slide=slide_001&overlay=0')
    wait_ready(browser, 'slide_001|0|0|0.5|0')
    assert browser.title == 'pyg-sm viewer'
    plain = screenshot(browser)
    box = browser.execute_script(
        "var r = document.getElementById('viewer').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];")
    left, top, width, height = (int(v) for v in box)
    area = plain[top:top + height, left:left + width]
    background = np.array([0xf4, 0xf3, 0xf6])
    # Tiles are drawn: most of the tissue is far from the background.
    tissue = (np.abs(area - background).max(-1) > 40).mean()
    assert tissue > 0.05, tissue
    _, x, y = patch_centre(data, 'slide_001', lesion=True)
    px, py = page_point(browser, x, y)
    lesion_plain = plain[py - 2:py + 3, px - 2:px + 3].reshape(-1, 3).mean(0)
    # The slide's own lesion colour (purple) with the overlay off.
    assert lesion_plain[1] < 150, lesion_plain

    browser.find_element('id', 'overlay').click()
    wait_ready(browser, 'slide_001|0|1|0.5|0')
    shown = screenshot(browser)
    lesion_shown = shown[py - 2:py + 3, px - 2:px + 3].reshape(-1, 3).mean(0)
    assert np.abs(lesion_shown - lesion_plain).max() > 30, \
        (lesion_plain, lesion_shown)
    # Glass stays untouched by the overlay.
    gx, gy = page_point(browser, 8, 8)
    assert np.abs(shown[gy, gx] - plain[gy, gx]).max() <= 3


def test_opacity_and_run_switch(browser, viewer, scored_cohort):
    from selenium.webdriver.support.ui import Select

    data, _ = scored_cohort
    open_page(browser, viewer, 'slide=slide_003&overlay=1')
    wait_ready(browser, 'slide_003|0|1|0.5|0')
    _, x, y = patch_centre(data, 'slide_003', lesion=True)
    px, py = page_point(browser, x, y)
    half = screenshot(browser)[py, px]
    browser.execute_script('window.pygSm.setOpacity(1)')
    wait_ready(browser, 'slide_003|0|1|1|0')
    full = screenshot(browser)[py, px]
    assert np.abs(full - half).max() > 20
    Select(browser.find_element('id', 'run')).select_by_visible_text(
        'reversed')
    wait_ready(browser, 'slide_003|1|1|1|0')
    other = screenshot(browser)[py, px]
    browser.execute_script('window.pygSm.setOpacity(0)')
    wait_ready(browser, 'slide_003|1|1|0|0')
    bare = screenshot(browser)[py, px]
    # 'focused' puts the lesions at the red end, opaque in the ramp style;
    # 'reversed' at the low end, which the ramp leaves nearly transparent:
    # the slide shows through.
    assert full[0] > full[2], full
    assert np.abs(other - bare).max() < np.abs(full - bare).max() / 3, (
        full, other, bare)


def test_slide_list_selects_and_sorts(browser, viewer):
    open_page(browser, viewer, 'slide=slide_000')
    wait_ready(browser, 'slide_000|0|1|0.5|0')

    def rows():
        return [r.get_attribute('data-id') for r in
                browser.find_elements('css selector', '#slides-body tr')]

    assert rows() == ['slide_000', 'slide_001', 'slide_002', 'slide_003']
    headers = browser.find_elements('css selector', '#slides-head th')
    assert [h.text for h in headers] == ['slide', 'label', 'focused: p(1)',
                                         'reversed: p(1)']
    headers[0].click()  # by id, descending
    assert rows() == ['slide_003', 'slide_002', 'slide_001', 'slide_000']
    browser.find_elements('css selector', '#slides-head th')[2].click()
    order = rows()  # by the first run's probability, highest first
    assert set(order[:2]) == {'slide_001', 'slide_003'}
    browser.find_element('css selector',
                         '#slides-body tr[data-id="slide_002"]').click()
    wait_ready(browser, 'slide_002|0|1|0.5|0')
    selected = browser.find_elements('css selector',
                                     '#slides-body tr.selected')
    assert [r.get_attribute('data-id') for r in selected] == ['slide_002']
    assert 'slide_002' in browser.find_element('id', 'slide-title').text
    assert 'slide=slide_002' in browser.current_url


def test_readout_names_the_patch_under_the_pointer(browser, viewer,
                                                   scored_cohort):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    data, _ = scored_cohort
    open_page(browser, viewer, 'slide=slide_001')
    wait_ready(browser, 'slide_001|0|1|0.5|0')
    index, x, y = patch_centre(data, 'slide_001', lesion=True)
    px, py = page_point(browser, x, y)
    body = browser.find_element('tag name', 'body')
    size = body.size
    ActionChains(browser).move_to_element_with_offset(
        body, px - size['width'] // 2, py - size['height'] // 2).perform()
    readout = browser.find_element('id', 'readout')
    WebDriverWait(browser, WAIT).until(
        lambda d: readout.get_attribute('data-patch') == str(index))
    assert 'percentile' in readout.text
    percentile = float(readout.text.rsplit(' ', 1)[1])
    assert percentile > 50


def test_traversal_through_the_browser_is_refused(browser, viewer):
    for path in ['static/../../../../etc/passwd',
                 'static/%2e%2e/%2e%2e/etc/passwd',
                 'files/0/%2e%2e/%2e%2e/%2e%2e/etc/passwd']:
        browser.get(viewer.url + path)
        assert 'root:' not in browser.page_source
        status = urllib.request.Request(viewer.url + path)
        try:
            urllib.request.urlopen(status, timeout=30)
            raise AssertionError(f'{path} was served')
        except urllib.error.HTTPError as error:
            assert error.code == 404


def test_annotation_outlines_layer_toggles_and_stays_aligned(
        browser, scored_cohort):
    """With annotations, the page offers an outline layer: the lesion
    outline is drawn in magenta where the annotation puts it, at the
    default zoom and zoomed in, and the checkbox turns it off."""
    import json

    from pyg_sm.visualize.colors import OUTLINE_COLOR
    from viewer_helpers import RunningViewer

    data, runs = scored_cohort
    outline = json.loads((data / 'annotations' / 'slide_003.geojson')
                         .read_text())['features'][0]['geometry']
    x, y = outline['coordinates'][0][0]  # a corner of the outline

    def magenta_near(driver):
        px, py = page_point(driver, x, y)
        window = screenshot(driver)[py - 3:py + 4, px - 3:px + 4]
        return int((np.abs(window - np.array(OUTLINE_COLOR)).sum(-1)
                    < 90).sum())

    with RunningViewer(runs, data / 'slides',
                       annotations=data / 'annotations') as server:
        slides = {s['id']: s for s in server.slide_list()['slides']}
        assert slides['slide_003']['annotated']
        assert not slides['slide_000']['annotated']  # a negative slide
        open_page(browser, server, 'slide=slide_003&overlay=0')
        wait_ready(browser, 'slide_003|0|0|0.5|0')
        assert browser.find_element('id', 'outlines-control').is_displayed()
        assert magenta_near(browser) > 0
        browser.execute_script(
            'var v = window.pygSm.viewer;'
            'v.viewport.zoomBy(4, v.world.getItemAt(0)'
            '.imageToViewportCoordinates(arguments[0], arguments[1]), true);'
            'window.pygSm.setOutlines(true);', x, y)
        wait_ready(browser, 'slide_003|0|0|0.5|0')
        assert magenta_near(browser) > 0
        browser.execute_script('window.pygSm.setOutlines(false)')
        wait_ready(browser, 'slide_003|0|0|0.5|0')
        assert magenta_near(browser) == 0
        assert 'outlines=0' in browser.current_url
        open_page(browser, server, 'slide=slide_000&overlay=0')
        wait_ready(browser, 'slide_000|0|0|0.5|0')
        assert not browser.find_element('id',
                                        'outlines-control').is_displayed()


def test_uncertainty_layer_of_a_probabilistic_run(browser, scored_cohort,
                                                  tmp_path):
    """A run whose scores hold attention_std (a probabilistic model's)
    gets an uncertainty layer: off by default, toggled by its checkbox,
    painted on its own colour scale (magma: the most uncertain patches
    bright, the least dark) and read out under the pointer; a run without
    it shows no such control."""
    from matplotlib import colormaps

    from pyg_sm.runs import RunFolder
    from viewer_helpers import RunningViewer

    data, runs = scored_cohort
    focused = RunFolder(runs[0])
    uncertain = RunFolder(tmp_path / 'uncertain')
    for slide_id in focused.slide_ids:
        scores = focused.scores(slide_id)
        # The most uncertain on the lesions.
        std = 0.1 + scores.patch_labels.float()
        uncertain.write_scores(slide_id, scores.coords,
                               scores.attention_logits,
                               scores.patch_size_level0, scores.patch_labels,
                               attention_std=std)
    uncertain.write_predictions(focused.predictions(), ['0', '1'])
    bright = np.array(colormaps['magma'](1.0)[:3]) * 255
    dark = np.array(colormaps['magma'](0.0)[:3]) * 255
    lesion, lx, ly = patch_centre(data, 'slide_003')
    _, tx, ty = patch_centre(data, 'slide_003', lesion=False)

    def color_at(driver, x, y):
        px, py = page_point(driver, x, y)
        return screenshot(driver)[py - 2:py + 3, px - 2:px + 3].reshape(
            -1, 3).mean(0)

    with RunningViewer([uncertain.path, runs[1]], data / 'slides') as server:
        assert [r['uncertainty'] for r in server.slide_list()['runs']] == \
            [True, False]
        open_page(browser, server, 'slide=slide_003&overlay=0')
        wait_ready(browser, 'slide_003|0|0|0.5|0')
        assert browser.find_element('id',
                                    'uncertainty-control').is_displayed()
        assert not browser.find_element('id',
                                        'uncertainty-legend').is_displayed()
        browser.execute_script('window.pygSm.setUncertainty(true)')
        wait_ready(browser, 'slide_003|0|0|0.5|1')
        assert browser.find_element('id',
                                    'uncertainty-legend').is_displayed()
        assert np.abs(color_at(browser, lx, ly) - bright).sum() < 60
        assert np.abs(color_at(browser, tx, ty) - dark).sum() < 60
        assert 'uncertainty=1' in browser.current_url
        from selenium.webdriver.common.action_chains import ActionChains

        px, py = page_point(browser, lx, ly)
        body = browser.find_element('tag name', 'body')
        ActionChains(browser).move_to_element_with_offset(
            body, px - body.size['width'] // 2,
            py - body.size['height'] // 2).perform()
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, WAIT).until(
            lambda d: d.find_element('id', 'readout').get_attribute(
                'data-patch') == str(lesion))
        assert 'std 1.10' in browser.find_element('id', 'readout').text
        browser.execute_script('window.pygSm.setUncertainty(false)')
        wait_ready(browser, 'slide_003|0|0|0.5|0')
        assert np.abs(color_at(browser, lx, ly) - bright).sum() > 60
        browser.execute_script('window.pygSm.setRun(1)')
        wait_ready(browser, 'slide_003|1|0|0.5|0')
        assert not browser.find_element('id',
                                        'uncertainty-control').is_displayed()
