r"""Training MIL models on bags of a dataset, on one process or under
``torchrun``."""
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from torch_geometric.loader import DataLoader

from ..models.base import MILModel, bag_loss
from ..nn.survival import CoxPHLoss
from ..utils.checks import check_choice, check_count
from ..utils.errors import (MissingFileError, PygSmError,
                            TrainingDivergedError)
from .checkpoint import atomic_save
from .distributed import world
from .metrics import evaluate_predictions, instance_auroc
from .predict import score_slides
from .survival import harrell_c_index


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


class Interrupted(Exception):
    r"""Training stopped on request (SIGINT) after a step, with its state
    saved to :obj:`path`."""
    def __init__(self, path: Optional[Path], epoch: int, step: int):
        super().__init__(f'interrupted in epoch {epoch + 1} after step '
                         f'{step}; state saved to {path}')
        self.path, self.epoch, self.step = path, epoch, step


#: ``--monitor`` choices: validation metric and whether higher is better;
#: ``last`` (:obj:`None`) keeps the final epoch, as a fixed training budget
#: does.
MONITORS = {'val_loss': False, 'val_auroc': True,
            'val_balanced_accuracy': True, 'val_accuracy': True,
            'val_c_index': True, 'last': None}
#: The monitors that concern one task only.
TASK_MONITORS = {'classification': ('val_auroc', 'val_balanced_accuracy',
                                    'val_accuracy'),
                 'survival': ('val_c_index', )}
#: The training state format (``last.pt``).
STATE_FORMAT = 'pyg-sm-train/1'


def check_validation(monitor: str, validate_every: int) -> None:
    r"""Every monitor but ``last`` needs validation: :obj:`validate_every`
    of at least 1."""
    if validate_every == 0 and MONITORS[monitor] is not None:
        raise PygSmError(f"--monitor {monitor} needs validation: "
                         f"--validate-every 0 goes with --monitor last")


def _ignore_sigint(_worker: int) -> None:
    # Ctrl-C reaches the whole process group: loader workers leave it to
    # the main process, which finishes its step and saves.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopRequest:
    r"""Turns the first SIGINT into a request to stop after the current
    step (a second one interrupts at once)."""
    def __init__(self, log: Callable[[str], None]):
        self.requested = False
        self.log = log
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, *_):
        self.requested = True
        self.log('interrupt: stopping after this step (press Ctrl-C again '
                 'to stop at once)')
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *_):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _agreed(flag: bool, device: torch.device) -> bool:
    r"""Whether any process set :obj:`flag` (the processes of a DDP run stop
    together)."""
    size, _ = world()
    if size == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _summed(values: List[float], device: torch.device) -> List[float]:
    size, _ = world()
    if size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def _epoch_order(size: int, epoch: int, seed: int) -> List[int]:
    r"""This process's slides of an epoch, in order: the shuffle of
    :class:`~torch.utils.data.distributed.DistributedSampler` (by
    :obj:`seed` and the epoch), whatever the number of processes."""
    processes, rank = world()
    sampler = DistributedSampler(range(size), num_replicas=processes,
                                 rank=rank,
                                 shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def validate(model: MILModel, dataset: Sequence, classes: Sequence[str],
             batch_size: int = 4, workers: int = 0) -> Optional[Dict]:
    r"""Loss and metrics of :obj:`model` on a labelled dataset, with the
    per-slide records of :func:`~pyg_sm.train.predict_slides`: those of
    :func:`~pyg_sm.train.evaluate_predictions` for a classifier, Harrell's
    ``c_index`` and the ``instance_auroc`` for a survival model (the
    criterion's loss over the whole dataset at once).

    Inside a :mod:`torch.distributed` process group every process scores
    its share (:func:`~pyg_sm.train.score_slides`) and process 0 gets the
    result; the others get :obj:`None`. No process waits at a barrier while
    another validates alone (NCCL would time out after 10 minutes)."""
    records = score_slides(model, dataset, batch_size=batch_size,
                           workers=workers)
    if records is None:
        return None
    # On the model's device: the criterion's buffers (pos_weight) are.
    device = next(model.parameters()).device
    logits = torch.tensor([r['logits'] for r in records], device=device)
    if model.num_classes == 1:
        logits = logits.reshape(-1)
    if model.task == 'survival':
        times = [r['time'] for r in records]
        events = [r['event'] for r in records]
        targets = torch.tensor(list(zip(times, events)), device=device,
                               dtype=torch.float64)
        loss = float(bag_loss(model.criterion, logits, targets))
        metrics = {'c_index': harrell_c_index(
            times, events, [r['risk'] for r in records]),
            'instance_auroc': instance_auroc(records)}
        return {'loss': loss, **metrics, 'records': records}
    labels = torch.tensor([r['label'] for r in records], device=device)
    loss = float(bag_loss(model.criterion, logits, labels))
    metrics = evaluate_predictions(records, classes)
    return {'loss': loss, **metrics, 'records': records}


def fit(model: MILModel, train_set: Sequence, *, epochs: int,
        lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 4,
        seed: int = 0, workers: int = 0, val_set: Optional[Sequence] = None,
        classes: Sequence[str] = ('0', '1'), monitor: str = 'val_loss',
        run_dir: Optional[Path] = None,
        save_best: Optional[Callable[[MILModel, Dict], None]] = None,
        fingerprint: Optional[Dict] = None, resume: bool = False,
        progress: bool = False,
        log: Optional[Callable[[str], None]] = None,
        validate_every: int = 1) -> List[Dict]:
    r"""Trains :obj:`model` with Adam for :obj:`epochs` epochs and returns
    the history: per epoch, the mean training loss and, with
    :obj:`val_set`, the validation loss and metrics.

    Each epoch's slides are shuffled by :obj:`seed` and the epoch (as
    :class:`~torch.utils.data.distributed.DistributedSampler` does) and read
    by a :class:`~torch_geometric.loader.DataLoader` with :obj:`workers`
    processes. Inside a :mod:`torch.distributed` process group each process
    trains on its share, the gradients are averaged by
    :class:`~torch.nn.parallel.DistributedDataParallel`, every process
    scores its share of :obj:`val_set` and process 0 writes.

    With :obj:`run_dir`, the training state is written atomically to
    ``run_dir/last.pt`` after every epoch, and :obj:`save_best` is called
    when the :obj:`monitor` metric improves. :obj:`resume` continues from
    ``last.pt`` (which must have been written with the same
    :obj:`fingerprint`); the result equals that of an uninterrupted run. A
    SIGINT finishes the current step, saves the state (mid-epoch) and
    raises :class:`Interrupted`.

    With :class:`~pyg_sm.nn.CoxPHLoss`, the batches without an event
    (which contribute nothing) are counted in each epoch's
    ``batches_without_events``.

    :obj:`val_set` is scored after every :obj:`validate_every`-th epoch
    (0: never, for :obj:`monitor` ``'last'``, which needs no validation).
    """
    from tqdm.auto import tqdm

    check_count('epochs', epochs)
    check_choice('monitor', monitor, tuple(MONITORS))
    check_count('validate_every', validate_every)
    check_validation(monitor, validate_every)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    device = next(model.parameters()).device
    processes, rank = world()
    network = model if processes == 1 else DistributedDataParallel(
        model, device_ids=[device] if device.type == 'cuda' else None)
    optimizer = make_optimizer(model, lr, weight_decay)
    state_path = None if run_dir is None else Path(run_dir) / 'last.pt'
    history: List[Dict] = []
    best = {'value': None, 'epoch': None}
    start_epoch, start_step, running = 0, 0, [0.0, 0.0]
    if resume:
        state = load_training_state(state_path, fingerprint)
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        set_random_states(state)
        history, best = state['history'], state['best']
        start_epoch, start_step = state['epoch'], state['step']
        running = state['running']
        log(f'resuming from {state_path}: epoch {start_epoch + 1}, '
            f'step {start_step}')

    def save_state(epoch: int, step: int, totals: List[float]) -> None:
        if state_path is None or rank != 0:
            return
        atomic_save({'format': STATE_FORMAT, 'epoch': epoch, 'step': step,
                     'running': totals, 'model': model.state_dict(),
                     'optimizer': optimizer.state_dict(),
                     **random_states(), 'history': history,
                     'best': best, 'fingerprint': fingerprint}, state_path)

    higher = MONITORS[monitor]
    cox = isinstance(model.criterion, CoxPHLoss)
    with _StopRequest(log) as stop:
        for epoch in range(start_epoch, epochs):
            began = time.perf_counter()
            order = _epoch_order(len(train_set), epoch, seed)
            step = start_step if epoch == start_epoch else 0
            totals = list(running) if epoch == start_epoch else [0.0, 0.0]
            eventless = 0
            loader = DataLoader(train_set, batch_size=batch_size,
                                sampler=order[step * batch_size:],
                                num_workers=workers,
                                worker_init_fn=_ignore_sigint
                                if workers else None)
            model.train()
            bar = tqdm(loader, desc=f'epoch {epoch + 1}/{epochs}',
                       leave=False, disable=not progress or rank != 0,
                       initial=step, total=step + len(loader))
            for batch in bar:
                batch = batch.to(device)
                loss = train_step(network, model.criterion, optimizer, batch)
                if cox and not bool(batch.y[:, 1].any()):
                    eventless += 1
                totals[0] += loss * batch.num_graphs
                totals[1] += batch.num_graphs
                step += 1
                if _agreed(stop.requested, device):
                    save_state(epoch, step, totals)
                    raise Interrupted(state_path, epoch, step)
            loss_sum, count = _summed(totals, device)
            entry = {'epoch': epoch + 1, 'train_loss': loss_sum / count}
            if cox:
                # Counted since the epoch's start or its resumption.
                entry['batches_without_events'] = int(
                    _summed([float(eventless)], device)[0])
            if not math.isfinite(entry['train_loss']):
                raise TrainingDivergedError(
                    f"epoch {epoch + 1}: the training loss is "
                    f"{entry['train_loss']}; the state of epoch {epoch} is "
                    f"kept in {state_path}")
            result = None
            if val_set is not None and validate_every and \
                    (epoch + 1) % validate_every == 0:
                result = validate(model, val_set, classes, batch_size,
                                  workers)
            if result is not None and model.task == 'survival':
                entry.update(val_loss=result['loss'],
                             val_c_index=result['c_index'],
                             val_instance_auroc=result['instance_auroc'])
            elif result is not None:
                entry.update(val_loss=result['loss'],
                             val_auroc=result['bag_auroc'],
                             val_balanced_accuracy=result[
                                 'balanced_accuracy'],
                             val_accuracy=result['bag_accuracy'],
                             val_instance_auroc=result['instance_auroc'])
            entry['seconds'] = time.perf_counter() - began
            history.append(entry)
            value = entry.get(monitor)
            improved = higher is None or (
                value is not None and math.isfinite(value) and (
                    best['value'] is None or (value > best['value'] if higher
                                              else value < best['value'])))
            if improved:
                best = {'value': value, 'epoch': epoch + 1}
                if save_best is not None and rank == 0:
                    save_best(model, entry)
            save_state(epoch + 1, 0, [0.0, 0.0])
            if rank == 0:
                log(_epoch_line(entry, epochs, monitor, improved))
            if processes > 1:
                torch.distributed.barrier()
    return history


def _epoch_line(entry: Dict, epochs: int, monitor: str,
                improved: bool) -> str:
    parts = [f"epoch {entry['epoch']}/{epochs}",
             f"train loss {entry['train_loss']:.4f}"]
    if 'batches_without_events' in entry:
        parts.append(f"{entry['batches_without_events']} batches without "
                     f"an event")
    for key, name in (('val_loss', 'val loss'), ('val_auroc', 'val AUROC'),
                      ('val_balanced_accuracy', 'val balanced acc'),
                      ('val_c_index', 'val c-index')):
        if key in entry:
            value = entry[key]
            parts.append(f'{name} ' + ('-' if value is None
                                       else f'{value:.4f}'))
    parts.append(f"{entry['seconds']:.1f} s")
    if improved:
        parts.append(f'best {monitor}')
    return ', '.join(parts)


def random_states() -> Dict:
    r"""The random states a resumed run continues from: the CPU's and, when
    CUDA is in use, every GPU's (dropout masks on a GPU draw from it)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() \
        else None
    return {'rng': torch.get_rng_state(), 'cuda_rng': cuda}


def set_random_states(state: Dict) -> None:
    r"""Restores :func:`random_states` (states saved before the GPUs' were,
    or on another number of GPUs, restore what they can)."""
    torch.set_rng_state(state['rng'])
    cuda = state.get('cuda_rng')
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


def load_training_state(path: Optional[Path],
                        fingerprint: Optional[Dict]) -> Dict:
    r"""The state ``last.pt`` of an earlier run, checked against the
    settings of this one."""
    if path is None or not Path(path).is_file():
        raise MissingFileError(f"nothing to resume: no {path}")
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
        raise PygSmError(f"{path} is not a pyg-sm training state")
    saved = state.get('fingerprint') or {}
    changed = sorted(k for k in set(saved) | set(fingerprint or {})
                     if saved.get(k) != (fingerprint or {}).get(k))
    if changed:
        raise PygSmError(f"cannot resume {path}: the run was started with "
                         f"other settings ({', '.join(changed)}); start a "
                         f"new run with --overwrite or another --out")
    return state


def train_model(model: MILModel, dataset: Sequence, epochs: int = 20,
                lr: float = 1e-3, weight_decay: float = 1e-4,
                batch_size: int = 4, seed: int = 0,
                progress: bool = True) -> List[float]:
    r"""Trains :obj:`model` with Adam on bags of :obj:`dataset` (see
    :func:`fit`, which also validates, checkpoints and resumes) and returns
    the mean training loss of each epoch (over all processes of a
    :mod:`torch.distributed` run)."""
    history = fit(model, dataset, epochs=epochs, lr=lr,
                  weight_decay=weight_decay, batch_size=batch_size,
                  seed=seed, progress=progress, log=lambda _: None)
    return [entry['train_loss'] for entry in history]
