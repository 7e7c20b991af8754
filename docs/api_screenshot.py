"""Takes a screenshot of a page of the built site in headless Chromium,
once MathJax has typeset it (the closing note's picture of the API page of
``Sm``):

    python docs/api_screenshot.py [PAGE] [OUT]

(default: the page of ``Sm``, ``docs/sm_api.png``)
"""
import functools
import http.server
import sys
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

SITE = Path(__file__).resolve().parent / '_build' / 'html'


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_):
        pass


def main(page: str = 'api/generated/pyg_sm.nn.Sm.html',
         out: str = str(Path(__file__).resolve().parent / 'sm_api.png')):
    handler = functools.partial(_Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for argument in ['--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--no-first-run',
                     '--disable-background-networking', '--hide-scrollbars',
                     '--window-size=1280,1400',
                     '--force-device-scale-factor=1']:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'),
                              options=options)
    try:
        driver.get(f'http://127.0.0.1:{server.server_address[1]}/{page}')
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            'return document.querySelectorAll("mjx-container").length'))
        driver.save_screenshot(out)
    finally:
        driver.quit()
        server.shutdown()
    print(out)


if __name__ == '__main__':
    main(*sys.argv[1:])
