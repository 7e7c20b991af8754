"""Takes the README's viewer screenshot in headless Chromium from the
output of `make demo`:

    python docs/viewer_screenshot.py pyg_sm_demo docs/viewer.png [slide_id]
"""
import sys
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from pyg_sm.runs import ViewConfig, open_runs


def main(demo: str, out: str, slide_id: str = '') -> None:
    demo = Path(demo)
    server = open_runs(ViewConfig(runs=[demo / 'SmABMIL', demo / 'ABMIL'],
                                  slides_dir=demo / 'data' / 'slides',
                                  annotations=demo / 'data' / 'annotations'))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slide_id = slide_id or server.slide_ids[0]
    options = webdriver.ChromeOptions()
    for argument in ['--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--no-first-run',
                     '--disable-background-networking', '--hide-scrollbars',
                     '--window-size=1400,820',
                     '--force-device-scale-factor=1']:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'),
                              options=options)
    try:
        driver.get(f'{server.url}?slide={slide_id}&animation=0')
        key = f'{slide_id}|0|1|0.5|0'
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script('return document.body.dataset.ready')
            == key)
        # Sort by SmABMIL's probability and point at the most attended patch.
        driver.find_elements('css selector', '#slides-head th')[2].click()
        scores = server.runs[0].scores(slide_id)
        top = int(scores.attention.argmax())
        x, y = (float(v) + scores.patch_size_level0 / 2
                for v in scores.coords[top])
        driver.execute_script(
            "var p = new OpenSeadragon.Point(arguments[0], arguments[1]);"
            "var item = window.pygSm.viewer.world.getItemAt(0);"
            "var view = item.imageToViewportCoordinates(p);"
            "window.pygSm.viewer.viewport.zoomTo(1.15, view, true);"
            "window.pygSm.viewer.viewport.panTo(view, true);"
            "window.pygSm.setOpacity(0.45);", x, y)
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script('return document.body.dataset.ready')
            == f'{slide_id}|0|1|0.45|0')
        point = driver.execute_script(
            'return window.pygSm.imageToPage(arguments[0], arguments[1])',
            x, y)
        from selenium.webdriver.common.action_chains import ActionChains
        body = driver.find_element('tag name', 'body')
        ActionChains(driver).move_to_element_with_offset(
            body, int(point['x'] - body.size['width'] / 2),
            int(point['y'] - body.size['height'] / 2)).perform()
        readout = driver.find_element('id', 'readout')
        WebDriverWait(driver, 60).until(
            lambda d: readout.get_attribute('data-patch') == str(top))
        driver.save_screenshot(out)
    finally:
        driver.quit()
        server.close()


if __name__ == '__main__':
    main(*sys.argv[1:])
