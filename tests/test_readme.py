"""The README's Python examples run as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / 'README.md'


def test_readme_python_blocks_run():
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), 'exec'), {})


def test_every_public_name_is_documented():
    import pyg_sm
    text = README.read_text()
    for name in pyg_sm.__all__:
        if name == '__version__':
            continue
        obj = getattr(pyg_sm, name)
        assert f'`{name}`' in text, name
        if callable(obj):
            assert (obj.__doc__ or '').strip(), name
