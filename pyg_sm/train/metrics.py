r"""Bag and instance metrics of predictions, by scikit-learn."""
from typing import Dict, List, Optional

import torch


def evaluate_predictions(
        predictions: List[Dict]) -> Dict[str, Optional[float]]:
    r"""Bag AUROC of the logits and instance AUROC of the attention values
    against the patch labels (over every patch of every slide), by
    scikit-learn; :obj:`None` where one class is missing."""
    from sklearn.metrics import roc_auc_score

    labels = [p['label'] for p in predictions]
    bag_auroc = (roc_auc_score(labels, [p['logit'] for p in predictions])
                 if len(set(labels)) == 2 else None)
    with_patches = [p for p in predictions if 'patch_labels' in p['data']]
    instance_auroc = None
    if with_patches:
        truth = torch.cat([p['data'].patch_labels for p in with_patches])
        scores = torch.cat([p['attention'] for p in with_patches])
        if truth.unique().numel() == 2:
            instance_auroc = roc_auc_score(truth.numpy(), scores.numpy())
    accuracy = sum((p['logit'] > 0) == bool(p['label'])
                   for p in predictions) / len(predictions)
    return {'bag_auroc': bag_auroc, 'instance_auroc': instance_auroc,
            'bag_accuracy': accuracy, 'num_slides': len(predictions)}
