"""Splits by patient, metrics against scikit-learn, atomic writes and
checkpoints."""
import numpy as np
import pytest
import torch

from pyg_sm import SlideDataset, make_synthetic_slides
from pyg_sm.models import build_model
from pyg_sm.train import (
    classification_metrics,
    load_checkpoint,
    predict_slides,
    save_checkpoint,
)
from pyg_sm.train.splits import fold_slides, split_slides


def test_metrics_binary_and_multiclass():
    from sklearn.metrics import roc_auc_score

    labels = [0, 0, 1, 1, 1]
    p = np.array([0.1, 0.6, 0.5, 0.9, 0.4])
    binary = classification_metrics(labels, np.stack([1 - p, p], 1),
                                    ['a', 'b'])
    assert binary['bag_auroc'] == pytest.approx(roc_auc_score(labels, p))
    # Probability 0.5 counts as positive.
    assert binary['confusion_matrix'] == [[1, 1], [1, 2]]
    assert binary['balanced_accuracy'] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert 'at least 0.5' in binary['decision']
    assert binary['class_counts'] == {'a': 2, 'b': 3}
    probs = np.array([[.7, .2, .1], [.2, .5, .3], [.1, .2, .7],
                      [.3, .4, .3], [.6, .3, .1], [.2, .2, .6]])
    multi = classification_metrics([0, 1, 2, 1, 0, 2], probs, 'xyz')
    assert multi['bag_auroc'] == pytest.approx(roc_auc_score(
        [0, 1, 2, 1, 0, 2], probs, multi_class='ovr', average='macro'))
    assert multi['bag_accuracy'] == 1.0
    one_class = np.array([[.9, .1], [.8, .2]])
    assert classification_metrics([0, 0], one_class, 'ab')['bag_auroc'] \
        is None


def test_split_keeps_patients_together_and_is_stratified():
    ids = [f's{i}' for i in range(60)]
    cases = [f'p{i // 3}' for i in range(60)]  # 20 patients, 3 slides each
    labels = [(i // 3) % 2 for i in range(60)]
    split = split_slides(ids, labels, cases, 0.25, 0.2, seed=3)
    sides = {}
    for name, part in split.items():
        for s in part:
            sides.setdefault(cases[ids.index(s)], set()).add(name)
    assert all(len(s) == 1 for s in sides.values())
    assert sorted(sum(split.values(), [])) == sorted(ids)
    for name in ('val', 'test'):
        assert {labels[ids.index(s)] for s in split[name]} == {0, 1}
    folds = fold_slides(ids, labels, cases, 4, seed=1)
    assert sorted(sum(folds, [])) == sorted(ids)
    for fold in folds:
        assert {cases[ids.index(s)] for s in fold}.isdisjoint(
            {cases[ids.index(s)] for f in folds if f is not fold for s in f})
        assert {labels[ids.index(s)] for s in fold} == {0, 1}
    # Without case ids each slide is its own patient: the old split.
    plain = split_slides(ids, labels, None, 0.25, 0.0, seed=3)
    assert len(plain['val']) == 16 and not plain['test']


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
        tmp_path):
    from pyg_sm.utils.files import atomic_path

    path = tmp_path / 'results.json'
    path.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            temporary.write_text('half')
            raise RuntimeError('crash while writing')
    assert path.read_text() == 'old' and list(tmp_path.iterdir()) == [path]
    with atomic_path(path) as temporary:
        temporary.write_text('new')
    assert path.read_text() == 'new' and list(tmp_path.iterdir()) == [path]


@pytest.fixture(scope='module')
def slides(tmp_path_factory):
    return make_synthetic_slides(tmp_path_factory.mktemp('slides'),
                                 num_slides=8, feature_dim=6, seed=3)


def test_checkpoint_round_trip_gives_identical_predictions(slides, tmp_path):
    dataset = SlideDataset(slides)
    options = dict(att_dim=8, sm_layers=1, sm_post=True, sm_alpha=0.4)
    model = build_model(dataset.feature_dim, **options).eval()
    path = tmp_path / 'model.pt'
    save_checkpoint(path, model, dataset.feature_dim, options,
                    dict(method='grid', connectivity=8))
    loaded, loaded_options, graph = load_checkpoint(path)
    assert loaded_options == options and graph['connectivity'] == 8
    for a, b in zip(predict_slides(model, dataset),
                    predict_slides(loaded, dataset)):
        assert a.logits == b.logits
        assert torch.equal(a.attention_logits, b.attention_logits)
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / 'junk.pt')


def test_misranked_patches_and_the_uncertainty_auroc():
    from pyg_sm.train.metrics import misranked_patches, uncertainty_auroc

    attention = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    labels = np.array([1, 0, 1, 0, 0])
    # Two positives: the two highest (0.9, 0.8) are called positive; the
    # second and third patches are misranked.
    assert misranked_patches(attention, labels).tolist() == [
        False, True, True, False, False]
    assert misranked_patches(attention, np.zeros(5)) is None
    assert misranked_patches(attention, np.ones(5)) is None
    flags_std = np.array([0.1, 0.9, 0.8, 0.2, 0.3])  # high where wrong
    assert uncertainty_auroc([(attention, flags_std, labels)]) == 1.0
    assert uncertainty_auroc([(attention, 1 - flags_std, labels)]) == 0.0
    # A slide of one kind of patches has nothing to rank.
    assert uncertainty_auroc([(attention, flags_std, np.zeros(5))]) is None
    # Perfect ranking: no misranked patch, no AUROC.
    assert uncertainty_auroc([(labels + 0.0, flags_std, labels)]) is None
