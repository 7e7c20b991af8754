"""The documentation site as ``make docs`` builds it (``make test`` builds
it first): every public name has its API page, the internal links lead
somewhere, the pages open in headless Chromium with the theme and MathJax
served from the site itself and no console error, and the code of the
guides and docstrings runs."""
import doctest
import functools
import http.server
import importlib
import pkgutil
import re
import sys
import threading
from pathlib import Path

import pytest

import pyg_sm

DOCS = Path(__file__).resolve().parent.parent / 'docs'
SITE = DOCS / '_build' / 'html'
sys.path.insert(0, str(DOCS))


@pytest.fixture(scope='module')
def site():
    if not (SITE / 'index.html').is_file():
        pytest.fail(f'no built site in {SITE}: run `make docs` (make test '
                    f'builds it first)')
    return SITE


def api_packages():
    import conf  # docs/conf.py: the packages of the API reference

    return conf.API_PACKAGES


def test_every_public_name_has_an_api_page(site):
    pages = {p.name for p in (site / 'api' / 'generated').glob('*.html')}
    missing = []
    for package in api_packages():
        module = importlib.import_module(package)
        listing = (site / 'api' / f'{package}.html').read_text()
        for name in module.__all__:
            if name == '__version__':
                continue
            own = [p for p in pages if p.endswith(f'.{name}.html')]
            if not own or f'>{name}<' not in listing:
                missing.append(f'{package}.{name}')
    assert not missing, missing
    sm = (site / 'api' / 'generated' / 'pyg_sm.nn.Sm.html').read_text()
    assert 'Shapes' in sm and 'math notranslate' in sm  # rendered sections


def test_internal_links_lead_somewhere(site):
    from check_links import broken_links

    assert broken_links(site) == []


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_):
        pass


@pytest.fixture(scope='module')
def served_site(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def _load(browser, url):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log('browser')  # drop what earlier pages logged
    browser.get(url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        'return document.readyState') == 'complete')


@pytest.mark.parametrize('page', ['index.html',
                                  'api/generated/pyg_sm.nn.Sm.html'])
def test_pages_open_in_chromium_from_local_files(browser, served_site,
                                                 page):
    from selenium.webdriver.support.ui import WebDriverWait

    _load(browser, f'{served_site}/{page}')
    sheets = browser.execute_script(
        'return [...document.styleSheets].map(s => s.href).filter(h => h)')
    assert any('furo' in href for href in sheets), sheets
    if page.startswith('api/'):
        # MathJax (on pages with math) typesets the docstring's math from
        # the site's own copy.
        mathjax = browser.execute_script(
            "return [...document.scripts].map(s => s.src)"
            ".filter(s => s.includes('mathjax'))")
        assert mathjax and all(s.startswith(served_site) for s in mathjax)
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            'return document.querySelectorAll("mjx-container").length'))
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(served_site) for url in loaded), \
        [url for url in loaded if not url.startswith(served_site)]
    errors = [entry for entry in browser.get_log('browser')
              if entry['level'] == 'SEVERE']
    assert not errors, errors


def _guide_blocks():
    for path in sorted(DOCS.rglob('*.md')):
        if '_build' in path.parts or 'auto_examples' in path.parts:
            continue
        for block in re.findall(r'```python\n(.*?)```', path.read_text(),
                                re.S):
            yield path, block


@pytest.mark.parametrize('path,block', list(_guide_blocks()),
                         ids=lambda value: getattr(value, 'stem', None))
def test_guide_code_runs(path, block):
    exec(compile(block, str(path), 'exec'), {})


def test_docstring_examples_run():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    ran = 0
    for info in pkgutil.walk_packages(pyg_sm.__path__, 'pyg_sm.'):
        if info.name.endswith('__main__'):
            continue
        module = importlib.import_module(info.name)
        for test in finder.find(module):
            if test.examples:
                ran += 1
                runner.run(test)
    assert ran >= 2
    assert runner.failures == 0


def test_version_is_the_packages_and_the_changelogs():
    import tomllib

    root = DOCS.parent
    declared = tomllib.loads((root / 'pyproject.toml').read_text())[
        'project']['version']
    assert pyg_sm.__version__ == declared
    assert f'## {declared} ' in (root / 'CHANGELOG.md').read_text()
