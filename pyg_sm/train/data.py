r"""The cohort as Lightning reads it: each epoch's bags in an order fixed by
the seed and the epoch, resumable within an epoch."""
import math
from typing import Callable, Dict, Iterator, Optional, Sequence

import lightning
import numpy as np
import torch
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

from .distributed import world


class EpochOrder(Sampler):
    r"""This process's bags of an epoch, in order: the shuffle of
    :class:`~torch.utils.data.distributed.DistributedSampler` (by
    :obj:`seed` and the epoch, whatever the number of processes), or with
    :obj:`weights` a draw with replacement in proportion to them (balanced
    sampling), split between the processes the same way.

    A resumed epoch starts after its first :obj:`skip` bags; its length
    stays the whole epoch's (Lightning counts the batches already done)."""
    def __init__(self, size: int, seed: int = 0,
                 weights: Optional[Sequence[float]] = None, epoch: int = 0):
        self.size, self.seed, self.epoch, self.skip = size, seed, epoch, 0
        self.weights = None if weights is None else torch.as_tensor(
            weights, dtype=torch.float64)
        self.processes, self.rank = world()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list:
        sampler = DistributedSampler(range(self.size),
                                     num_replicas=self.processes,
                                     rank=self.rank, shuffle=True,
                                     seed=self.seed)
        sampler.set_epoch(self.epoch)
        if self.weights is None:
            return list(sampler)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.size, replacement=True,
                                  generator=generator).tolist()
        return [drawn[i] for i in sampler]

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0  # only the resumed epoch skips
        return iter(self.order()[skip:])

    def __len__(self) -> int:
        return len(range(self.rank, self.size + (-self.size) %
                         self.processes, self.processes))


class ResumableLoader(DataLoader):
    r"""A :class:`~torch_geometric.loader.DataLoader` over an
    :class:`EpochOrder` that Lightning saves and restores within an epoch
    (its ``state_dict`` protocol): :obj:`progress` says how many batches of
    the epoch are done."""
    def __init__(self, dataset, sampler: EpochOrder,
                 progress: Callable[[], int], **kwargs):
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.progress = progress

    def state_dict(self) -> Dict[str, int]:
        return {'epoch': self.sampler.epoch, 'batches': self.progress()}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.sampler.epoch = state['epoch']
        self.sampler.skip = state['batches'] * self.batch_size


def balanced_weights(labels: Sequence[int]) -> np.ndarray:
    r"""Per bag, the inverse of its class's count: each class is drawn as
    often."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def _ignore_sigint(_worker: int) -> None:
    import signal

    # Ctrl-C reaches the whole process group: loader workers leave it to
    # the main process, which finishes its step and saves.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CohortData(lightning.LightningDataModule):
    r"""The training bags of one split for Lightning: batches of
    :obj:`batch_size` bags read by :obj:`workers` processes, in the order of
    :class:`EpochOrder` (balanced by class with
    :obj:`balanced_sampling`). The validation bags are scored by the
    module itself (:func:`~pyg_sm.train.validate`: every process its share,
    no padding)."""
    def __init__(self, train_set: Sequence, batch_size: int = 4,
                 workers: int = 0, seed: int = 0,
                 balanced_sampling: bool = False):
        super().__init__()
        self.train_set, self.batch_size = train_set, batch_size
        self.workers, self.seed = workers, seed
        self.balanced_sampling = balanced_sampling

    def train_dataloader(self) -> ResumableLoader:
        trainer = self.trainer
        weights = balanced_weights(self.train_set.labels) \
            if self.balanced_sampling else None
        order = EpochOrder(len(self.train_set), self.seed, weights,
                           epoch=trainer.current_epoch)
        # The loader's own generator: starting its workers draws no number
        # from the global one, which the model's dropout uses.
        return ResumableLoader(
            self.train_set, order, self._batches_done,
            batch_size=self.batch_size, num_workers=self.workers,
            worker_init_fn=_ignore_sigint if self.workers else None,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # A PyG batch moves itself; one already there is left as it is.
        return batch if batch.x.device == device else batch.to(device)

    def optimizer_steps(self, settings) -> int:
        r"""The optimizer steps of the whole run (a one-cycle schedule
        spans them)."""
        processes, _ = world()
        batches = math.ceil(math.ceil(len(self.train_set) / processes) /
                            self.batch_size)
        return math.ceil(batches / settings.accumulate_grad_batches) * \
            settings.epochs

    def _batches_done(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current \
            .processed
