"""The package's rooms and the one-way order of imports between them (every
import of a pyg_sm module, including those inside functions)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / 'pyg_sm'

# Imports run one way: cli -> runs -> train -> models -> nn -> data / utils,
# and runs -> visualize -> datasets -> transforms. A room may import the
# rooms listed. The command line imports only the run layer and the models'
# declared options (its model flags).
ALLOWED = {
    'version': set(),
    'utils': set(),
    'data': {'utils'},
    'transforms': {'data', 'utils'},
    'nn': {'data', 'utils'},
    'models': {'nn', 'data', 'utils', 'version'},
    'datasets': {'transforms', 'data', 'utils'},
    'visualize': {'datasets', 'transforms', 'data', 'utils'},
    'train': {'models', 'nn', 'datasets', 'transforms', 'data', 'utils',
              'version'},
    'runs': {'train', 'models', 'nn', 'datasets', 'visualize', 'transforms',
             'data', 'utils', 'version'},
    'cli': {'runs', 'models'},
    '__main__': {'cli'},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def imported_modules(path: Path):
    """The pyg_sm modules a file imports (absolute names)."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                target = node.module or ''
            if not target.startswith('pyg_sm'):
                continue
            folder = PACKAGE.parent / target.replace('.', '/')
            submodules = [alias.name for alias in node.names
                          if (folder / alias.name).is_dir() or
                          (folder / f'{alias.name}.py').is_file()]
            if submodules:  # `from . import sub` imports sub
                yield from (f'{target}.{sub}' for sub in submodules)
            else:
                yield target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith('pyg_sm'):
                    yield alias.name


def room(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def import_graph():
    return {module_name(path): set(imported_modules(path))
            for path in PACKAGE.rglob('*.py')}


def test_rooms_import_only_downwards():
    wrong = []
    for module, targets in import_graph().items():
        source = room(module)
        if source == '__init__':  # the public names come from every room
            continue
        for target in targets:
            if room(target) != source and \
                    room(target) not in ALLOWED[source]:
                wrong.append(f'{module} -> {target}')
    assert not wrong, wrong


def test_module_graph_has_no_cycles():
    graph = import_graph()
    state = {}

    def visit(module, path):
        state[module] = 'open'
        for target in graph.get(module, ()):
            if state.get(target) == 'open':
                raise AssertionError(' -> '.join(path + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 'done'

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_every_room_is_a_package_two_levels_deep_at_most():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir()
             and p.name != '__pycache__'}
    assert rooms == {'utils', 'data', 'nn', 'models', 'transforms',
                     'datasets', 'visualize', 'train', 'runs', 'cli'}
    for name in rooms:
        assert (PACKAGE / name / '__init__.py').is_file()
        # Folders inside a room hold data (the viewer's page), no code.
        assert not [p for p in (PACKAGE / name).rglob('*.py')
                    if p.parent != PACKAGE / name]
    assert set(ALLOWED) >= {room(m) for m in import_graph()} - {'__init__'}


def test_nothing_imports_the_command_line():
    # Its entry points (pyproject's script, python -m pyg_sm) call it.
    importers = sorted(module for module, targets in import_graph().items()
                       if room(module) != 'cli' and
                       any(room(t) == 'cli' for t in targets))
    assert importers == ['pyg_sm.__main__'], importers


def test_cli_imports_only_the_run_layer_and_the_model_registry():
    for module, targets in import_graph().items():
        if room(module) != 'cli':
            continue
        outside = {t for t in targets if room(t) != 'cli'}
        assert outside <= {'pyg_sm.runs', 'pyg_sm.models',
                           'pyg_sm.models.registry'}, (module, outside)


#: The rooms that may import the training engine (Lightning): the layers,
#: the models and the data stay a PyG extension for any training loop.
ENGINE_ROOMS = {'train', 'runs', 'cli'}


def third_party_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level:
            yield (node.module or '').split('.')[0]
        elif isinstance(node, ast.Import):
            yield from (alias.name.split('.')[0] for alias in node.names)


def test_only_the_training_rooms_import_lightning():
    wrong = sorted(module_name(path) for path in PACKAGE.rglob('*.py')
                   if room(module_name(path)) not in ENGINE_ROOMS and
                   {'lightning', 'pytorch_lightning'} &
                   set(third_party_imports(path)))
    assert not wrong, wrong


def test_only_training_loads_lightning():
    r"""The layers, the scoring and the command line (its --help, view,
    evaluate, ...) start without it; pyg_sm.train.fit loads it."""
    import subprocess
    import sys

    code = ('import sys, pyg_sm, pyg_sm.nn, pyg_sm.models, pyg_sm.data, '
            'pyg_sm.datasets, pyg_sm.transforms, pyg_sm.train, '
            'pyg_sm.runs, pyg_sm.cli; '
            'print(sorted(m for m in sys.modules if "lightning" in m))')
    loaded = subprocess.run([sys.executable, '-c', code], check=True,
                            capture_output=True, text=True).stdout.strip()
    assert loaded == '[]', loaded
    code = 'import sys; from pyg_sm.train import fit; print("lightning" in ' \
        'sys.modules)'
    assert subprocess.run([sys.executable, '-c', code], check=True,
                          capture_output=True, text=True).stdout.strip() \
        == 'True'
