r"""Training, evaluation and checkpoints of SmABMIL on slide datasets."""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

from .abmil import SmABMIL

#: The SmABMIL options a checkpoint records (and the CLI exposes).
MODEL_OPTIONS = ('att_dim', 'att_act', 'sm_mode', 'sm_alpha', 'sm_layers',
                 'sm_steps', 'sm_pre', 'sm_post', 'sm_spectral_norm',
                 'normalize')


def build_model(feature_dim: int, **options) -> SmABMIL:
    unknown = set(options) - set(MODEL_OPTIONS)
    if unknown:
        raise ValueError(f"unknown model options: {sorted(unknown)}")
    return SmABMIL((feature_dim, ), **options)


def make_optimizer(model: torch.nn.Module, lr: float = 1e-3,
                   weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr,
                            weight_decay=weight_decay)


def train_step(model: torch.nn.Module, criterion: torch.nn.Module,
               optimizer: torch.optim.Optimizer, batch) -> float:
    r"""One optimizer step on a batch of bags. :obj:`model` may be wrapped
    in :class:`~torch.nn.parallel.DistributedDataParallel`: calling it (not
    a method of the wrapped module) is what synchronizes the gradients."""
    optimizer.zero_grad()
    logits = model(batch)
    loss = criterion(logits.float(), batch.y.float())
    loss.backward()
    optimizer.step()
    return loss.item()


def train_model(model: SmABMIL, dataset: Sequence, epochs: int = 20,
                lr: float = 1e-3, weight_decay: float = 1e-4,
                batch_size: int = 4, seed: int = 0,
                progress: bool = True) -> List[float]:
    r"""Trains :obj:`model` with Adam on bags of :obj:`dataset` batched by
    PyG's :class:`~torch_geometric.loader.DataLoader`, shuffled by
    :obj:`seed`, on the device of the model's parameters. Returns the mean
    training loss of each epoch.

    Inside an initialized :mod:`torch.distributed` process group (e.g.
    under ``torchrun``) each process trains on its share of every epoch
    (:class:`~torch.utils.data.distributed.DistributedSampler`,
    :obj:`batch_size` bags per process) and the gradients are averaged by
    :class:`~torch.nn.parallel.DistributedDataParallel`; the losses
    returned are those of the calling process."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    distributed = torch.distributed.is_available() and \
        torch.distributed.is_initialized()
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
        network = DistributedDataParallel(
            model, device_ids=[device] if device.type == 'cuda' else None)
    else:
        sampler = None
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        network = model
    optimizer = make_optimizer(model, lr, weight_decay)
    history = []
    bar = tqdm(range(epochs), desc='training', disable=not progress,
               leave=False)
    for epoch in bar:
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for batch in loader:
            batch = batch.to(device)
            total += train_step(network, model.criterion, optimizer,
                                batch) * batch.num_graphs
            count += batch.num_graphs
        history.append(total / count)
        bar.set_postfix(loss=f'{history[-1]:.3f}')
    return history


@torch.no_grad()
def predict_slides(model: SmABMIL, dataset: Sequence,
                   batch_size: int = 4) -> List[Dict]:
    r"""Per slide: its id, label, logit, and the attention value of every
    patch (aligned with :obj:`data.pos`)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size):
        logits, attention = model.predict(batch.to(device))
        logits, attention, batch = logits.cpu(), attention.cpu(), batch.cpu()
        for i, data in enumerate(batch.to_data_list()):
            out.append({
                'slide_id': data.slide_id,
                'label': int(data.y.item()),
                'logit': float(logits[i]),
                'attention': attention[batch.batch == i],
                'data': data,
            })
    return out


def evaluate_predictions(predictions: List[Dict]) -> Dict[str, Optional[float]]:
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


def save_checkpoint(path: Union[str, Path], model: SmABMIL,
                    feature_dim: int, options: Dict, graph: Dict) -> None:
    torch.save({'format': 'pyg-sm/1', 'feature_dim': feature_dim,
                'model_options': options, 'graph': graph,
                'state_dict': model.state_dict()}, path)


def load_checkpoint(path: Union[str, Path]):
    r"""Returns the model (in eval mode), its options and graph settings."""
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get(
            'format') != 'pyg-sm/1':
        raise ValueError(f"{path} is not a pyg-sm checkpoint")
    model = build_model(checkpoint['feature_dim'],
                        **checkpoint['model_options'])
    model.load_state_dict(checkpoint['state_dict'])
    return model.eval(), checkpoint['model_options'], checkpoint['graph']
