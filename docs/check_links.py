"""Checks every internal link of the built site: each relative ``href`` and
``src`` of every page must name a file of the site and, with a fragment, an
element id of that page; and no page may load a script, a stylesheet or an
image from the network (the site works offline). Prints what is wrong and
exits 1 if anything is.

    python docs/check_links.py [docs/_build/html]
"""
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids, self.remote = [], set(), []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == 'id' and value:
                self.ids.add(value)
            if name in ('href', 'src') and value:
                self.links.append(value)
                # A link (<a>) may lead out; a resource must be local.
                if tag != 'a' and urlsplit(value).scheme in ('http',
                                                             'https'):
                    self.remote.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding='utf-8', errors='replace'))
    return page


def broken_links(site: Path):
    r"""``(page, link, why)`` for every internal link that leads nowhere
    and every resource loaded from the network."""
    pages = {path: _parse(path) for path in site.rglob('*.html')}
    broken = []
    for path, page in pages.items():
        broken += [(path, link, 'loaded from the network')
                   for link in page.remote]
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(
                    ('mailto:', 'javascript:', 'data:')):
                continue
            target = path if not parts.path else \
                (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / 'index.html'
            if not target.is_file():
                broken.append((path, link, 'no such file'))
            elif parts.fragment and target.suffix == '.html':
                ids = pages[target].ids if target in pages else \
                    _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append((path, link, 'no such anchor'))
    return broken


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    site = Path(argv[0] if argv else Path(__file__).parent / '_build/html')
    site = site.resolve()
    broken = broken_links(site)
    for page, link, why in broken:
        print(f'{page.relative_to(site)}: {link}: {why}')
    count = len(list(site.rglob('*.html')))
    print(f'{count} pages, {len(broken)} broken internal links')
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main())
