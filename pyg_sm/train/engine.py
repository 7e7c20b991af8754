r"""The Lightning side of training: the module that wraps a
:class:`~pyg_sm.models.MILModel` and its :class:`~pyg_sm.train.tasks.Task`,
and the callbacks of a run (the best checkpoint, the training state, the
random states, Ctrl-C)."""
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import lightning
import torch
from lightning.fabric.plugins.environments import ClusterEnvironment
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..data.bags import as_bags
from ..models.base import MILModel
from ..utils.errors import PygSmError, TrainingDivergedError
from .checkpoint import atomic_save
from .records import EpochRecord
from .settings import (
    STATE_FORMAT,
    FitSettings,
    Interrupted,
    StoppedAtOnce,
    make_optimizer,
    make_scheduler,
)
from .tasks import MONITORS, Task
from .validation import validate


class MILModule(lightning.LightningModule):
    r"""A :class:`~pyg_sm.models.MILModel` trained for a
    :class:`~pyg_sm.train.tasks.Task`: the training step is the model's
    loss on a batch of bags; each epoch ends with the mean training loss
    (over every process) and, every :obj:`settings.validate_every` epochs,
    the validation of :obj:`val_set` (:func:`~pyg_sm.train.validate`),
    logged to the loggers and kept in :attr:`history`
    (:class:`~pyg_sm.train.records.EpochRecord`).

    Args:
        model (MILModel): The model.
        task (Task): What it predicts.
        settings (FitSettings): The optimizer, the schedule, the monitor.
        val_set (Sequence, optional): The validation bags.
    """
    def __init__(self, model: MILModel, task: Task, settings: FitSettings,
                 val_set=None):
        super().__init__()
        # Built models may hold parts in eval mode (their feature probe).
        self.model = model.train()
        self.task, self.settings = task, settings
        self.val_set = val_set
        self.history: List[EpochRecord] = []
        self.best: Dict = {'value': None, 'epoch': None}
        self.fingerprint: Optional[Dict] = None
        self._totals: Dict[str, float] = {}
        self._began = 0.0

    def forward(self, batch):
        return self.model(batch)

    def configure_optimizers(self):
        optimizer = make_optimizer(self.model, self.settings)
        # Not the trainer's estimated_stepping_batches: asking for it
        # builds the loader before a resumed state is restored.
        scheduler = make_scheduler(optimizer, self.settings,
                                   self.trainer.datamodule.optimizer_steps(
                                       self.settings))
        if scheduler is None:
            return optimizer
        return {'optimizer': optimizer, 'lr_scheduler': scheduler}

    def on_train_start(self) -> None:
        self._began = time.perf_counter()  # a resumed epoch's start

    def on_train_epoch_start(self) -> None:
        # Not called when an epoch resumes: its sums come with the state.
        self._began = time.perf_counter()
        self._totals = {'loss': 0.0, 'bags': 0.0}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        # The model's loss terms: the criterion, and the KL term of a
        # probabilistic model.
        _, terms = self.model.loss_terms(as_bags(batch), batch.y)
        loss = sum(terms.values())
        self._totals['loss'] += loss.item() * batch.num_graphs
        self._totals['bags'] += batch.num_graphs
        for name, value in self.task.batch_counts(batch).items():
            self._totals[name] = self._totals.get(name, 0.0) + value
        return loss

    def on_train_epoch_end(self) -> None:
        totals = self._summed(self._totals)
        record = EpochRecord(
            epoch=self.current_epoch + 1,
            train_loss=totals.pop('loss') / totals.pop('bags'),
            counts={k: int(v) for k, v in totals.items()})
        if not math.isfinite(record.train_loss):
            raise TrainingDivergedError(
                f"epoch {record.epoch}: the training loss is "
                f"{record.train_loss}; the state of epoch {record.epoch - 1} "
                f"is kept in last.pt")
        every = self.settings.validate_every
        if self.val_set is not None and every and record.epoch % every == 0:
            record.validation = self._validated()
        record.seconds = time.perf_counter() - self._began
        record.improved = self._improved(record)
        self.history.append(record)
        logged = {'train_loss': record.train_loss, **{
            k: v for k, v in record.validation.items() if v is not None and
            math.isfinite(v)}}
        self.log_dict(logged, on_epoch=True, sync_dist=False)

    def _validated(self) -> Dict[str, Optional[float]]:
        # Every process scores its share; process 0 computes the metrics
        # and sends them to the others (early stopping and the scheduler
        # decide the same everywhere).
        result = validate(self.model, self.val_set, self.task,
                          self.settings.batch_size, self.settings.workers)
        values = [None if result is None else result.values]
        if torch.distributed.is_initialized():
            torch.distributed.broadcast_object_list(values, src=0)
        self.model.train()
        return values[0]

    def _improved(self, record: EpochRecord) -> bool:
        monitor = self.settings.monitor
        higher = MONITORS[monitor]
        value = record.get(monitor)
        best = self.best['value']
        improved = higher is None or (
            value is not None and math.isfinite(value) and (
                best is None or (value > best if higher else value < best)))
        if improved:
            self.best = {'value': value, 'epoch': record.epoch}
        return improved

    def _summed(self, totals: Dict[str, float]) -> Dict[str, float]:
        if not torch.distributed.is_initialized():
            return dict(totals)
        names = sorted(totals)
        tensor = torch.tensor([totals[n] for n in names],
                              dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return dict(zip(names, tensor.tolist()))

    def on_save_checkpoint(self, checkpoint: Dict) -> None:
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current \
            .processed
        checkpoint.update(
            format=STATE_FORMAT, fingerprint=self.fingerprint,
            history=[r.to_json() for r in self.history], best=self.best,
            improved=[r.improved for r in self.history],
            running=dict(self._totals),
            # Batches done in an unfinished epoch (0 at an epoch's end).
            step=done if done < self.trainer.num_training_batches else 0)

    def on_load_checkpoint(self, checkpoint: Dict) -> None:
        self.history = [EpochRecord.from_json(entry) for entry in
                        checkpoint['history']]
        for record, improved in zip(self.history, checkpoint['improved']):
            record.improved = improved
        self.best = checkpoint['best']
        self._totals = dict(checkpoint['running'])


def epoch_line(record: EpochRecord, epochs: int, monitor: str) -> str:
    r"""What an epoch prints."""
    parts = [f"epoch {record.epoch}/{epochs}",
             f"train loss {record.train_loss:.4f}"]
    if 'batches_without_events' in record.counts:
        parts.append(f"{record.counts['batches_without_events']} batches "
                     f"without an event")
    for key, name in (('val_loss', 'val loss'), ('val_auroc', 'val AUROC'),
                      ('val_balanced_accuracy', 'val balanced acc'),
                      ('val_c_index', 'val c-index')):
        if key in record.validation:
            value = record.validation[key]
            parts.append(f'{name} ' + ('-' if value is None
                                       else f'{value:.4f}'))
    parts.append(f"{record.seconds:.1f} s")
    if record.improved:
        parts.append(f'best {monitor}')
    return ', '.join(parts)


class AtomicCheckpointIO(TorchCheckpointIO):
    r"""Lightning's checkpoint writer, through a temporary file and a
    rename: a crash never leaves half a ``last.pt``."""
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_save(checkpoint, path)


class BestCheckpoint(Checkpoint):
    r"""Calls :obj:`save(model, record)` on process 0 when the monitored
    metric improved in an epoch (after the module's epoch end, as
    Lightning runs checkpoint callbacks)."""
    def __init__(self, save: Callable[[MILModel, EpochRecord], None]):
        self.save = save

    def on_train_epoch_end(self, trainer, module: MILModule) -> None:
        record = module.history[-1]
        if record.improved and trainer.is_global_zero:
            self.save(module.model, record)


class TrainingState(Checkpoint):
    r"""Writes the whole training state to :obj:`path` (``last.pt``) after
    every epoch, after the best checkpoint, prints the epoch's line and
    stops there when :obj:`interrupt` was asked to in the epoch's last
    step."""
    def __init__(self, path: Optional[Path], log: Callable[[str], None],
                 interrupt: Optional['StopOnInterrupt'] = None):
        self.path, self.say, self.interrupt = path, log, interrupt

    def on_train_epoch_end(self, trainer, module: MILModule) -> None:
        if self.path is not None:
            trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            self.say(epoch_line(module.history[-1], trainer.max_epochs,
                                module.settings.monitor))
        if self.interrupt is not None and self.interrupt.at_epoch_end:
            raise Interrupted(self.path, trainer.current_epoch,
                              trainer.num_training_batches)


class RandomStates(Callback):
    r"""Saves the random states with the training state and restores them
    when a resumed run starts training: the model's dropout draws the
    numbers it would have drawn (nothing else draws from them: the loader
    has a generator of its own)."""
    def __init__(self):
        self.pending: Optional[Dict] = None

    def state_dict(self) -> Dict:
        cuda = torch.cuda.get_rng_state_all() \
            if torch.cuda.is_initialized() else None
        return {'rng': torch.get_rng_state(), 'cuda_rng': cuda}

    def load_state_dict(self, state: Dict) -> None:
        self.pending = state

    def on_train_start(self, trainer, module) -> None:
        if self.pending is not None:
            set_random_states(self.pending)
            self.pending = None


def set_random_states(state: Dict) -> None:
    r"""Restores the CPU's random state and what it can of the GPUs' (a
    state saved on another number of GPUs)."""
    torch.set_rng_state(state['rng'])
    cuda = state.get('cuda_rng')
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


class StopOnInterrupt(Callback):
    r"""Turns the first SIGINT into a request to stop after the current
    step: the processes agree, the state goes to :obj:`path` and
    :class:`Interrupted` is raised (a second SIGINT stops at once)."""
    def __init__(self, path: Optional[Path], log: Callable[[str], None]):
        self.path, self.say = path, log
        self.requested, self.previous = False, None
        self.at_epoch_end = False

    def on_train_start(self, trainer, module) -> None:
        # After Lightning's signal connector has noted the handlers it puts
        # back when the run ends.
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, *_) -> None:
        self.requested = True
        self.say('interrupt: stopping after this step (press Ctrl-C again '
                 'to stop at once)')
        # Not KeyboardInterrupt, which Lightning turns into exit status 1.
        signal.signal(signal.SIGINT, self._stop_now)

    def _stop_now(self, *_) -> None:
        raise StoppedAtOnce(self.path)

    def on_train_batch_end(self, trainer, module, outputs, batch,
                           index) -> None:
        if not _agreed(self.requested, module.device):
            return
        if index + 1 >= trainer.num_training_batches:
            # The epoch's last step: its end (validation, last.pt) comes
            # first, then TrainingState stops.
            self.at_epoch_end = True
            return
        if self.path is not None:
            trainer.save_checkpoint(self.path)
        raise Interrupted(self.path, trainer.current_epoch, index + 1)

    def teardown(self, trainer, module, stage) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _agreed(flag: bool, device: torch.device) -> bool:
    r"""Whether any process set :obj:`flag` (the processes of a DDP run stop
    together)."""
    if not torch.distributed.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def check_resumable(path: Path, fingerprint: Optional[Dict]) -> Dict:
    r"""The header of the training state ``last.pt`` of an earlier run,
    checked against the settings of this one."""
    from ..utils.errors import MissingFileError

    if not Path(path).is_file():
        raise MissingFileError(f"nothing to resume: no {path}")
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict) or 'format' not in state or \
            not str(state['format']).startswith('pyg-sm-train/'):
        raise PygSmError(f"{path} is not a pyg-sm training state")
    if state['format'] != STATE_FORMAT:
        raise PygSmError(f"{path} was written by an older pyg-sm "
                         f"({state['format']}, before the Lightning engine): "
                         f"finish it with that version, or start a new run "
                         f"with --overwrite")
    saved = state.get('fingerprint') or {}
    changed = sorted(k for k in set(saved) | set(fingerprint or {})
                     if saved.get(k) != (fingerprint or {}).get(k))
    if changed:
        raise PygSmError(f"cannot resume {path}: the run was started with "
                         f"other settings ({', '.join(changed)}); start a "
                         f"new run with --overwrite or another --out")
    return state


def model_weights(state: Dict) -> Dict[str, torch.Tensor]:
    r"""The model's weights in a training state ``last.pt`` (Lightning
    keeps them under the module's ``model.`` prefix)."""
    prefix = 'model.'
    return {key[len(prefix):]: value for key, value in
            state['state_dict'].items() if key.startswith(prefix)}


class ProcessGroupEnvironment(ClusterEnvironment):
    r"""Lightning's view of the process group this process has joined
    (:func:`start`, or your own ``init_process_group``): its size and rank,
    ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` as ``torchrun`` sets them (else
    the processes split evenly over :obj:`num_nodes` machines)."""
    def __init__(self, num_nodes: int = 1):
        self.num_nodes = num_nodes

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ.get('MASTER_ADDR', '127.0.0.1')

    @property
    def main_port(self) -> int:
        return int(os.environ.get('MASTER_PORT', 0))

    @staticmethod
    def detect() -> bool:
        return torch.distributed.is_initialized()

    def world_size(self) -> int:
        return torch.distributed.get_world_size()

    def set_world_size(self, size: int) -> None:
        pass  # the process group's

    def global_rank(self) -> int:
        return torch.distributed.get_rank()

    def set_global_rank(self, rank: int) -> None:
        pass  # the process group's

    def local_world_size(self) -> int:
        return int(os.environ.get('LOCAL_WORLD_SIZE',
                                  self.world_size() // self.num_nodes))

    def local_rank(self) -> int:
        return int(os.environ.get('LOCAL_RANK', self.global_rank() %
                                  self.local_world_size()))

    def node_rank(self) -> int:
        return int(os.environ.get('GROUP_RANK', self.global_rank() //
                                  self.local_world_size()))

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        if num_devices * num_nodes != self.world_size():
            raise PygSmError(
                f"--num-nodes {num_nodes} with {num_devices} process(es) "
                f"per machine makes {num_devices * num_nodes} processes, "
                f"but the run has {self.world_size()} (torchrun --nnodes "
                f"and --nproc-per-node, or SLURM's tasks, must agree with "
                f"--num-nodes)")
