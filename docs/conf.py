"""Sphinx configuration of the pyg-sm documentation (``make docs``).

Everything the build needs is local: no intersphinx inventories, MathJax
served from the site itself (sphinx-mathjax-offline), the examples gallery
executed on the CPU. The API pages are generated from the ``__all__`` of
``pyg_sm`` and of its subpackages (:func:`write_api_pages`), so a new public
name gets its page without editing anything here."""
import importlib
import inspect
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
# The torchmil example reads torchmil from the folders `make` installs it in.
for version in ('1.0.2', 'deps'):
    folder = ROOT / '.torchmil' / version
    if folder.is_dir():
        sys.path.append(str(folder))
os.environ.setdefault('MPLBACKEND', 'Agg')

import pyg_sm  # noqa: E402

project = 'pyg-sm'
author = 'the pyg-sm developers'
copyright = '2026, the pyg-sm developers'
release = version = pyg_sm.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'myst_parser',
    'sphinx_gallery.gen_gallery',
    'sphinx-mathjax-offline',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build', 'benchmarks/*.md', 'auto_examples/*.ipynb',
                    'auto_examples/*.py', 'auto_examples/*.zip',
                    'auto_examples/*.codeobj.json', 'sg_execution_times.rst']
myst_enable_extensions = ['dollarmath']
myst_heading_anchors = 3

autosummary_generate = True
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'
autodoc_default_options = {'members': True, 'show-inheritance': True}
autoclass_content = 'class'
# PyG's docstrings have a "Shapes:" section; napoleon reads it as a list of
# shapes, as "Args:" is a list of arguments.
napoleon_custom_sections = [('Shapes', 'params_style')]
napoleon_use_rtype = False
napoleon_use_ivar = True
add_module_names = False

html_theme = 'furo'
html_title = f'pyg-sm {release}'
html_static_path = []
html_favicon = 'favicon.png'

sphinx_gallery_conf = {
    'examples_dirs': str(ROOT / 'examples'),
    'gallery_dirs': 'auto_examples',
    'filename_pattern': r'.*\.py',
    'download_all_examples': False,
    'remove_config_comments': True,
    'within_subsection_order': 'FileNameSortKey',
    'plot_gallery': 'True',
    'matplotlib_animations': False,
    'image_scrapers': ('matplotlib', ),
    'abort_on_example_error': True,
    # Its timing pages load their tables' scripts from CDNs.
    'write_computation_times': False,
}

#: The packages whose ``__all__`` make the API reference, in its order.
API_PACKAGES = ('pyg_sm', 'pyg_sm.nn', 'pyg_sm.models', 'pyg_sm.data',
                'pyg_sm.transforms', 'pyg_sm.datasets', 'pyg_sm.train',
                'pyg_sm.runs', 'pyg_sm.visualize')


def _defining_module(name: str, value) -> str:
    r"""The module whose source documents :obj:`value` with a ``#:``
    comment (autodoc reads a constant's text there, not where it is
    re-exported)."""
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    for info in pkgutil.walk_packages(pyg_sm.__path__, 'pyg_sm.'):
        if '.cli' in info.name or info.name.endswith('__main__'):
            continue
        module = importlib.import_module(info.name)
        if getattr(module, name, None) is value:
            try:
                found = ModuleAnalyzer.for_module(info.name).find_attr_docs()
            except Exception:
                continue
            if ('', name) in found:
                return info.name
    raise ValueError(f'{name} has no #: documentation in pyg_sm')


def _public_names():
    r"""Per package, its public names with the documented path of each
    (``home``) and whether this package is its home: a name gets its page in
    the package that defines it (by its ``__module__``), else in the
    top-level package if it exports it, else in the first subpackage that
    does; elsewhere it is a link."""
    packages = {name: importlib.import_module(name) for name in API_PACKAGES}

    def rank(package, value):
        defined = getattr(value, '__module__', None) or ''
        if package != 'pyg_sm' and defined.startswith(package + '.'):
            return 0
        return 1 if package == 'pyg_sm' else 2

    home = {}
    for name in API_PACKAGES:
        for item in packages[name].__all__:
            value = getattr(packages[name], item)
            best = home.get(id(value))
            if best is None or rank(name, value) < rank(best[0], value):
                home[id(value)] = (name, item, value)
    out = {}
    for name, module in packages.items():
        entries = []
        for item in module.__all__:
            if item == '__version__':
                continue
            value = getattr(module, item)
            package, _, _ = home[id(value)]
            path = f'{package}.{item}'
            if not (callable(value) or inspect.ismodule(value)):
                path = f'{_defining_module(item, value)}.{item}'
            entries.append((item, path, package == name))
        out[name] = entries
    return out


def write_api_pages(app) -> None:
    r"""``api/<package>.rst``: the package's docstring and an autosummary
    of every name of its ``__all__``; each name gets a page of its own in
    its home package and a link elsewhere."""
    out = HERE / 'api'
    out.mkdir(exist_ok=True)
    for name, entries in _public_names().items():
        title = f'``{name}``'
        # The docstring as text, not automodule, which would make the
        # package the current module of the summaries below.
        doc = inspect.cleandoc(importlib.import_module(name).__doc__ or '')
        lines = [title, '=' * len(title), '', doc, '']
        own = [path for _, path, home in entries if home]
        linked = [path for _, path, home in entries if not home]
        if own:
            lines += ['.. autosummary::', '   :toctree: generated',
                      '   :nosignatures:', '']
            lines += [f'   ~{path}' for path in own] + ['']
        if linked:
            lines += ['Also exported here:', '', '.. autosummary::',
                      '   :nosignatures:', '']
            lines += [f'   ~{path}' for path in linked] + ['']
        page = out / f'{name}.rst'
        text = '\n'.join(lines)
        if not page.is_file() or page.read_text() != text:
            page.write_text(text)


def _foreign_docstring(app, what, name, obj, skip, options):
    r"""A pyg-sm method without a docstring of its own that would show
    Lightning's or torch's (a hook it overrides) is left out: those use
    their own Sphinx roles and directives, and say nothing of ours."""
    qualname = getattr(obj, '__qualname__', '')
    module = sys.modules.get(getattr(obj, '__module__', None) or '')
    if getattr(obj, '__doc__', '') is not None or module is None or \
            not module.__name__.startswith('pyg_sm') or '.' not in qualname:
        return None
    owner = getattr(module, qualname.split('.')[0], None)
    for base in getattr(owner, '__mro__', ())[1:]:
        inherited = base.__dict__.get(name)
        if inherited is not None and getattr(inherited, '__doc__', None):
            return True if base.__module__.startswith(
                ('lightning', 'torch')) else None
    return None


def setup(app):
    # Before Sphinx lists the source files (autosummary reads the pages
    # from that list).
    app.connect('config-inited', lambda app, config: write_api_pages(app))
    app.connect('autodoc-skip-member', _foreign_docstring)
