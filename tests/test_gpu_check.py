"""benchmarks/gpu_check.py, the script to run the moment a GPU is at hand,
runs here with --device cpu --tiny --timings-only so that it cannot rot:
the timings table and the JSON are written (its device tests run in this
suite itself, tests/devices.py)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_tiny_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'gpu_check', ROOT / 'benchmarks' / 'gpu_check.py')
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    status = gpu_check.main(['--device', 'cpu', '--tiny', '--timings-only',
                             '--json', str(tmp_path / 'check.json')])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = json.loads((tmp_path / 'check.json').read_text())
    checks = {r['check']: r['status'] for r in results['checks']}
    assert list(checks) == ['1 versions', '3 timings']
    assert set(checks.values()) <= {'PASS', 'INFO'}, printed
    # The device tests it runs (pytest) exist.
    for path in gpu_check.DEVICE_TESTS:
        assert (ROOT / path).is_file(), path
    table = (tmp_path / 'check.md').read_text()
    assert '| Sm approx fwd+bwd | 4,096 | 16 |' in table
    assert '| SmTransformerABMIL training step | 1,024 |' in table
