"""The README, the front page: its Python runs as written and its links
lead to files of the repository (they must work on a code host without a
built site). That every public name is documented is checked on the built
API reference (tests/test_docs.py)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'


def test_readme_python_blocks_run():
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), 'exec'), {})


def test_readme_links_lead_to_files():
    links = re.findall(r'\]\(([^)#]+)(?:#[^)]*)?\)', README.read_text())
    local = [link for link in links if '://' not in link]
    assert len(local) >= 15
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


def test_readme_is_a_front_page():
    words = len(README.read_text().split())
    assert words <= 1300, words
