"""pyg_sm.runs.demo: synthetic slides, runs.train twice (the demo recipe)
and runs.evaluate on the held-out slides."""
import pytest
from sklearn.metrics import roc_auc_score

import pyg_sm.runs.demos
from pyg_sm.runs import DemoConfig, RunFolder, demo


def test_demo_end_to_end(tmp_path):
    out = demo(DemoConfig(out=tmp_path, num_slides=12, epochs=2,
                          heatmaps=1))
    results = out.results()
    assert results['kind'] == 'demo' and results['schema']
    for name in ['SmABMIL', 'ABMIL']:
        run = results['runs'][name]
        assert 0.0 <= run['instance_auroc'] <= 1.0
        evaluated = RunFolder(run['evaluation_dir'])
        assert evaluated.path == tmp_path / name
        # The AUROC the demo reports, recomputed from the predictions the
        # evaluation wrote (an independent scikit-learn call).
        predictions = evaluated.predictions()
        assert run['bag_auroc'] == pytest.approx(roc_auc_score(
            [int(p.label) for p in predictions],
            [p.probabilities['1'] for p in predictions]), abs=1e-6)
        trained = RunFolder(run['train_dir'])
        assert trained.results()['config']['lr'] == 2e-3  # the recipe
        assert trained.results()['config']['monitor'] == 'last'
        held_out = trained.results()['split']['val']
        assert sorted(evaluated.slide_ids) == sorted(held_out)
    assert results['runs']['ABMIL']['options']['sm_layers'] == 0
    assert len(list((tmp_path / 'heatmaps').glob('*.png'))) == 1
    # Run again into the same folder: the demo replaces its runs.
    demo(DemoConfig(out=tmp_path, num_slides=12, epochs=1, heatmaps=0))


def test_demo_signal_reaches_the_generator(tmp_path, monkeypatch):
    seen = {}

    def generator(root, **kwargs):
        seen.update(kwargs)
        raise RuntimeError('stop here')

    monkeypatch.setattr(pyg_sm.runs.demos, 'make_synthetic_slides', generator)
    with pytest.raises(RuntimeError, match='stop here'):
        demo(DemoConfig(out=tmp_path, signal=1.25))
    assert seen['signal'] == 1.25
    assert DemoConfig().signal == pyg_sm.runs.DEMO_SIGNAL
