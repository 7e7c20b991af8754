r"""Training MIL models on bags of a dataset, on one process or under
``torchrun``."""
from typing import List, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

from ..models.base import MILModel, bag_loss


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
    loss = bag_loss(criterion, logits, batch.y)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_model(model: MILModel, dataset: Sequence, epochs: int = 20,
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
