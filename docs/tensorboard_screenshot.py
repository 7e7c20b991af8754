"""Takes the training guide's TensorBoard screenshot in headless Chromium:
trains SmABMIL on synthetic slides with ``--logger tensorboard``, serves
the curves with TensorBoard on 127.0.0.1 and photographs its scalars page.

    python docs/tensorboard_screenshot.py docs/tensorboard.png
"""
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from pyg_sm import make_synthetic_slides
from pyg_sm.runs import TrainConfig, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main(out: str) -> None:
    root = Path(tempfile.mkdtemp())
    data = make_synthetic_slides(root / 'data', num_slides=48,
                                 slide_images=False, seed=0)
    run = train(TrainConfig(data_dir=data, out=root / 'run', epochs=25,
                            lr_scheduler='cosine', lr=2e-3,
                            logger=['csv', 'tensorboard'], heatmaps=0,
                            in_memory=True))
    port = free_port()
    board = subprocess.Popen(
        [sys.executable, '-m', 'tensorboard.main', '--logdir',
         str(run.logs_dir / 'tensorboard'), '--host', '127.0.0.1', '--port',
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    for argument in ['--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--no-first-run',
                     '--window-size=1500,1000',
                     '--force-device-scale-factor=1']:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'),
                              options=options)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                driver.get(f'http://127.0.0.1:{port}/#timeseries')
                break
            except Exception:
                time.sleep(1)
        time.sleep(10)  # the dashboard loads and draws its charts
        # The curves (not the epoch counter), without the settings pane.
        driver.find_element(
            'css selector', 'input[placeholder^="Filter tags"]').send_keys(
            'loss|auroc|accuracy')
        for button in driver.find_elements(
                'css selector', 'button[aria-label*="lose"]'):
            if button.is_displayed():
                button.click()
        time.sleep(4)
        driver.save_screenshot(out)
    finally:
        driver.quit()
        board.terminate()
    print(out)


if __name__ == '__main__':
    main(*sys.argv[1:])
