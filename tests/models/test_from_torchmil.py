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


def run_comparisons(version, script='torchmil_compare.py'):
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
        [sys.executable, str(ROOT / 'tests' / script)],
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


def test_probabilistic_models_compute_what_torchmil_1_0_2_computes():
    # One bag: the distribution, the KL term, and in training mode from the
    # same seed the samples, logits and loss terms; in 'zero' mode the
    # evaluation logits and attention too.
    results = {(r['type'], r['case']): r for r in run_comparisons(
        '1.0.2', 'torchmil_prob_compare.py')}
    assert {t for t, _ in results} == {
        'ProbSmoothAttentionPool', 'ProbSmoothABMIL', 'SmoothABMIL',
        'TransformerProbSmoothABMIL', 'torchmil_errors'}
    for key, r in results.items():
        if key[0] == 'torchmil_errors':
            continue
        compared = {k: v for k, v in r.items()
                    if k.startswith(('dense_', 'graph_', 'state_dict_'))}
        assert any('kl' in k.lower() or 'DirEnergy' in k for k in compared)
        assert max(compared.values()) <= TOLERANCE, (key, compared)
    assert 'dense_eval_logits' in results['SmoothABMIL', 'default']
    assert 'dense_eval_std' in results['ProbSmoothABMIL', 'diag']
    # torchmil's predict(X, mask) and its KL see the padding; ours do not.
    errors = results['torchmil_errors', 'padding']
    assert errors['predict_masked_ours'] <= TOLERANCE
    assert errors['kl_padded_ours'] <= TOLERANCE
    assert errors['predict_masked_torchmil'] > 1e-3
    assert errors['kl_padded_torchmil'] > 1e-2


def test_from_torchmil_refuses_other_modules():
    from pyg_sm import SmABMIL, from_torchmil

    with pytest.raises(TypeError, match="converts torchmil's Sm, "
                                        "SmAttentionPool"):
        from_torchmil(SmABMIL((4, )))
    with pytest.raises(TypeError, match='torch.nn.modules.linear.Linear'):
        from_torchmil(torch.nn.Linear(2, 2))
