r"""Bag and instance metrics of predictions, by scikit-learn."""
import math
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch


def predicted_class(probabilities: Sequence[float]) -> int:
    r"""Binary: class 1 when its probability is at least 0.5; otherwise the
    class of highest probability."""
    if len(probabilities) == 2:
        return int(probabilities[1] >= 0.5)
    return int(max(range(len(probabilities)),
                   key=lambda k: probabilities[k]))


#: How a bag's class is decided, as the results state it.
DECISION = {'binary': 'positive when its probability is at least 0.5',
            'multiclass': 'the class of highest probability'}


def classification_metrics(labels: Sequence[int],
                           probabilities: np.ndarray,
                           classes: Sequence[str]) -> Dict:
    r"""Metrics of bag predictions: AUROC (binary) or macro one-vs-rest
    AUROC (:obj:`None` where a class is absent), accuracy and balanced
    accuracy of the predicted classes, the confusion matrix (rows: true
    class, columns: predicted) and the count of each class.

    Args:
        labels: True class indices :math:`(n,)`.
        probabilities: :math:`(n, K)` class probabilities.
        classes: The class names, :math:`K` of them.
    """
    from sklearn.metrics import confusion_matrix, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = len(classes)
    binary = num_classes == 2
    predicted = np.array([predicted_class(row) for row in probabilities],
                         dtype=np.int64)
    present = set(labels.tolist())
    auroc = None
    if len(labels) and present == set(range(num_classes)):
        auroc = float(roc_auc_score(labels, probabilities[:, 1]) if binary
                      else roc_auc_score(labels, probabilities,
                                         multi_class='ovr', average='macro',
                                         labels=list(range(num_classes))))
    counts = np.bincount(labels, minlength=num_classes)
    matrix = confusion_matrix(labels, predicted,
                              labels=list(range(num_classes)))
    # Balanced accuracy as scikit-learn defines it (the mean recall of the
    # classes present), from the full matrix: a set of one class gives a
    # number, not scikit-learn's "single label" warning.
    recalls = [matrix[k, k] / counts[k] for k in range(num_classes)
               if counts[k]]
    return {
        'bag_auroc': auroc,
        'auroc_kind': 'binary' if binary else 'macro one-vs-rest',
        'bag_accuracy': float(np.trace(matrix) / len(labels))
        if len(labels) else None,
        'balanced_accuracy': float(np.mean(recalls)) if len(labels)
        else None,
        'decision': DECISION['binary' if binary else 'multiclass'],
        'confusion_matrix': matrix.tolist(),
        'class_counts': {name: int(counts[i])
                         for i, name in enumerate(classes)},
        'num_slides': int(len(labels)),
    }


def instance_auroc(records: Sequence) -> Optional[float]:
    r"""AUROC of the attention values against the patch labels, over every
    patch of the slides that have patch labels (:obj:`None` without both
    kinds of patches)."""
    from sklearn.metrics import roc_auc_score

    with_patches = [r for r in records if r.patch_labels is not None]
    if not with_patches:
        return None
    truth = torch.cat([r.patch_labels for r in with_patches]) > 0
    scores = torch.cat([r.attention_logits for r in with_patches])
    if truth.unique().numel() != 2:
        return None
    return float(roc_auc_score(truth.numpy(), scores.double().numpy()))


def misranked_patches(attention: np.ndarray,
                      patch_labels: np.ndarray) -> Optional[np.ndarray]:
    r"""The patches of one slide that its attention ranks on the wrong
    side: with :math:`k` positive patches, the :math:`k` of highest
    attention are called positive, and a patch is misranked when that call
    differs from its label. :obj:`None` for a slide without both kinds of
    patches (nothing to rank)."""
    truth = np.asarray(patch_labels) > 0
    count = int(truth.sum())
    if count in (0, truth.size):
        return None
    called = np.zeros(truth.size, dtype=bool)
    called[np.argsort(-np.asarray(attention), kind='stable')[:count]] = True
    return called != truth


def uncertainty_auroc(slides: Iterable[Tuple]) -> Optional[float]:
    r"""How well the attention's uncertainty flags the patches the
    attention misranks (:func:`misranked_patches`): the AUROC of the
    standard deviations at telling misranked patches from the others,
    pooled over the slides :obj:`(attention, attention_std, patch_labels)`
    with both kinds of patches. :obj:`None` where no such slide has both
    misranked and well ranked patches; 0.5 is an uncertainty blind to the
    errors."""
    from sklearn.metrics import roc_auc_score

    flags, stds = [], []
    for attention, std, labels in slides:
        wrong = misranked_patches(np.asarray(attention), np.asarray(labels))
        if wrong is not None:
            flags.append(wrong)
            stds.append(np.asarray(std, dtype=np.float64))
    if not flags:
        return None
    flags = np.concatenate(flags)
    if flags.all() or not flags.any():
        return None
    return float(roc_auc_score(flags, np.concatenate(stds)))


def attention_metrics(records: Sequence) -> Dict[str, Optional[float]]:
    r"""The instance AUROC of the attention (:func:`instance_auroc`) and,
    for a probabilistic model's records, the :func:`uncertainty_auroc` of
    their ``attention_std``."""
    metrics = {'instance_auroc': instance_auroc(records)}
    with_std = [r for r in records if r.patch_labels is not None and
                r.attention_std is not None]
    if with_std:
        metrics['uncertainty_auroc'] = uncertainty_auroc(
            (r.attention_logits.double().numpy(),
             r.attention_std.double().numpy(), r.patch_labels.numpy())
            for r in with_std)
    return metrics


def evaluate_predictions(records: Sequence,
                         classes: Sequence[str] = ('0', '1')) -> Dict:
    r"""The bag metrics of :func:`classification_metrics` and the instance
    AUROC of the attention values, for the records of
    :func:`~pyg_sm.train.predict_slides` (labelled slides only)."""
    labelled = [r for r in records if r.label is not None]
    probabilities = np.array([r.probabilities for r in labelled],
                             dtype=np.float64).reshape(-1, len(classes))
    metrics = classification_metrics([r.label for r in labelled],
                                     probabilities, classes)
    metrics.update(attention_metrics(labelled))
    return metrics


def mean_and_sd(values: Sequence[Optional[float]]) -> Dict:
    r"""Mean and sample standard deviation of the values that exist."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {'mean': None, 'sd': None, 'n': 0}
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) /
                   (len(values) - 1)) if len(values) > 1 else 0.0
    return {'mean': mean, 'sd': sd, 'n': len(values)}
