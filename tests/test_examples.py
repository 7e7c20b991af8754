import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / 'examples'


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pyg_pipeline_example_trains_and_localizes():
    accuracy, localized = load('pyg_pipeline.py').main(
        ['--epochs', '12', '--bags', '64'])
    assert accuracy >= 0.75
    assert localized >= 0.75
