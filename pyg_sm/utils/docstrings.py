r"""Reading the ``Args:`` section of a docstring (Google style, as PyG
writes them), so that text written for users is written once."""
import inspect
import re
from typing import Dict

_ENTRY = re.compile(r'^    \**(\w+) \([^)]*\):\s*(.*)$')
_ROLE = re.compile(r':(?:obj|class|func|meth|attr|data|mod|math):`~?([^`]*)`')


def argument_docs(obj) -> Dict[str, str]:
    r"""The text of each argument in :obj:`obj`'s ``Args:`` section, in the
    docstring's own markup."""
    doc = inspect.getdoc(obj) or ''
    out: Dict[str, str] = {}
    inside, current = False, None
    for line in doc.split('\n'):
        if line.strip() == 'Args:':
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(' '):
            break
        match = _ENTRY.match(line)
        if match:
            current = match[1]
            out[current] = match[2]
        elif current is not None and line.startswith('        '):
            out[current] += ' ' + line.strip()
    return {name: text.strip() for name, text in out.items()}


def plain_text(text: str) -> str:
    r"""Docstring markup as a terminal shows it: roles reduced to their
    text, LaTeX commands to their names, the ``(default: ...)`` left out
    (the command line states its own)."""
    cut = text.rfind('(default:')
    if cut >= 0:
        text = text[:cut]
    text = _ROLE.sub(lambda m: m[1].rsplit('.', 1)[-1]
                     if m[0].startswith((':class:', ':func:', ':meth:'))
                     else m[1], text)
    text = re.sub(r'\\mathbf\{(\w+)\}', r'\1', text)
    text = re.sub(r'\\(\w+)', r'\1', text)
    text = text.replace('``', '')
    return ' '.join(text.split()).rstrip(' .') if text.strip() else ''
