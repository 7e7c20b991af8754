"""from_torchmil against torchmil itself: each generation (0.1.0, the
reference's, and 1.0.2) lies in a folder of its own (``make test`` installs
them with ``pip install --no-deps --target`` into ``.torchmil/``) and runs
in a process of its own, since both are the package ``torchmil``.

Without those folders these tests skip with the reason, except under
CI=true, where they fail."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(os.environ.get('PYG_SM_TORCHMIL_DIR', ROOT / '.torchmil'))
GENERATIONS = {'0.1.0': '0.1', '1.0.2': '1.0'}
#: Largest difference allowed, relative to the largest value compared.
TOLERANCE = 1e-5


def run_comparisons(version):
    folders = [FOLDER / version, FOLDER / 'deps']
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        reason = (f"torchmil {version} is not installed in {missing} (make "
                  f"test installs it)")
        if os.environ.get('CI') == 'true':
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(map(str, folders))}
    done = subprocess.run(
        [sys.executable, str(ROOT / 'tests' / 'torchmil_compare.py')],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize('version', list(GENERATIONS))
def test_converted_modules_compute_what_torchmil_computes(version):
    results = run_comparisons(version)
    assert {r['generation'] for r in results} == {GENERATIONS[version]}
    kinds = {r['type'] for r in results}
    assert kinds == {'Sm', 'SmAttentionPool', 'SmABMIL',
                     'SmTransformerABMIL'}
    assert len(results) >= 16
    assert all(any(k.startswith('state_dict_') for k in r)
               for r in results if r['type'] != 'Sm' and 'Pool' not in
               r['type'])
    for r in results:
        worst = max(v for k, v in r.items()
                    if k.startswith(('dense_', 'graph_', 'state_dict_')))
        assert worst <= TOLERANCE, (r['case'], worst)
        assert r['trains'] in (True, None), r['case']
        if r['type'] != 'Sm':
            assert r['trains'], r['case']


def test_from_torchmil_refuses_other_modules():
    from pyg_sm import SmABMIL, from_torchmil

    with pytest.raises(TypeError, match="converts torchmil's Sm, "
                                        "SmAttentionPool"):
        from_torchmil(SmABMIL((4, )))
    with pytest.raises(TypeError, match='torch.nn.modules.linear.Linear'):
        from_torchmil(torch.nn.Linear(2, 2))
