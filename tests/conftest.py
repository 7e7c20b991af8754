import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    config.addinivalue_line('markers', 'cuda: runs on a CUDA GPU only '
                                       '(deselected without one)')


def pytest_collection_modifyitems(config, items):
    # The GPU's tests exist where a GPU does (tests/devices.py).
    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker('cuda')]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if item not in gpu]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)


@pytest.fixture(scope='session')
def scored_cohort(tmp_path_factory):
    r"""Four synthetic slides with images, and two prediction folders of
    known attention ('focused' on the lesions, 'reversed')."""
    from viewer_helpers import make_cohort, make_runs

    root = tmp_path_factory.mktemp('scored')
    data = make_cohort(root)
    return data, make_runs(root, data)


@pytest.fixture(scope='session')
def viewer(scored_cohort):
    r"""The viewer over both runs and the slide images, in a thread."""
    from viewer_helpers import RunningViewer

    data, runs = scored_cohort
    with RunningViewer(runs, data / 'slides') as server:
        yield server


CHROMIUM = ('chromium', 'chromium-browser', 'google-chrome')


def _browser_or_reason():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, None, 'selenium is not installed (pip install selenium)'
    binary = next(filter(None, map(shutil.which, CHROMIUM)), None)
    driver = shutil.which('chromedriver')
    if binary is None or driver is None:
        return None, None, ('Chromium and ChromeDriver are not installed '
                            '(apt-get install chromium chromium-driver)')
    return binary, driver, None


@pytest.fixture(scope='module')
def browser():
    from_path = _browser_or_reason()
    binary, driver_path, reason = from_path
    if reason is not None:
        if os.environ.get('CI') == 'true':
            pytest.fail(f'browser tests cannot run under CI: {reason}')
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ['--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--disable-quic',
                     '--no-first-run', '--disable-background-networking',
                     '--disable-component-update', '--disable-sync',
                     '--window-size=1400,900', '--force-device-scale-factor=1',
                     '--hide-scrollbars']:
        options.add_argument(argument)
    # The page's console, for tests that check it has no errors.
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()
