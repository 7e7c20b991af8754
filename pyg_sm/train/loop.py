r"""Training MIL models on bags of a dataset with Lightning, on one process,
under ``torchrun`` or SLURM, on one machine or several."""
import contextlib
import csv
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch

from ..data.bags import as_bags
from ..models.base import MILModel, bag_loss
from ..utils.errors import PygSmError
from .data import CohortData
from .distributed import world
from .engine import (
    AtomicCheckpointIO,
    BestCheckpoint,
    MILModule,
    ProcessGroupEnvironment,
    RandomStates,
    StopOnInterrupt,
    TrainingState,
    check_resumable,
)
from .records import EpochRecord
from .settings import (
    LOGS_DIR,
    STATE_FILE,
    FitSettings,
    Interrupted,
    check_device,
    make_optimizer,
)
from .tasks import MONITORS, Task
from .validation import Validation, validate

__all__ = ['fit', 'validate', 'Validation', 'train_model', 'train_step',
           'Interrupted', 'MONITORS', 'make_optimizer', 'FitSettings',
           'make_loggers']

#: Lightning's step-logging interval: the module logs per epoch only, and
#: a step never pays for the logger connector's bookkeeping.
LOG_STEPS = 1_000_000
#: Where each logger writes, inside the run's ``logs/``.
LOGGER_DIRS = {'csv': 'csv', 'tensorboard': 'tensorboard', 'wandb': 'wandb',
               'mlflow': 'mlruns'}


def train_step(model: torch.nn.Module, criterion: torch.nn.Module,
               optimizer: torch.optim.Optimizer, batch) -> float:
    r"""One optimizer step on a batch of bags, outside Lightning (a
    reference for your own loop). :obj:`model` may be wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`: calling it is what
    synchronizes the gradients; a probabilistic model's KL term needs its
    :meth:`~pyg_sm.models.MILModel.loss_terms`, so it trains unwrapped
    here (:func:`fit` trains it in every setting)."""
    optimizer.zero_grad()
    if getattr(model, 'probabilistic', False):
        if criterion is not model.criterion:
            raise ValueError("a probabilistic model trains on its own "
                             "criterion: pass model.criterion")
        _, terms = model.loss_terms(as_bags(batch), batch.y)
        loss = sum(terms.values())
    elif getattr(getattr(model, 'module', None), 'probabilistic', False):
        raise ValueError(f"{type(model.module).__name__} adds a KL term "
                         f"that a wrapped model's forward does not give: "
                         f"use fit, which trains it under DDP")
    else:
        loss = bag_loss(criterion, model(batch), batch.y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _resumable_csv_logger():
    r"""Lightning's CSV logger, appending to the ``metrics.csv`` of the run
    it resumes (Lightning's own deletes it)."""
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class Writer(ExperimentWriter):
        def __init__(self, log_dir: str):
            super().__init__(log_dir)
            path = Path(self.metrics_file_path)
            if path.is_file():  # the columns so far
                with open(path, newline='') as f:
                    self.metrics_keys = next(csv.reader(f), [])

        def _check_log_dir_exists(self) -> None:
            pass

    class ResumableCSVLogger(CSVLogger):
        @property
        def experiment(self):
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = Writer(log_dir=self.log_dir)
            return self._experiment
    return ResumableCSVLogger


def make_loggers(names: Sequence[str], folder: Optional[Path]) -> list:
    r"""Lightning's loggers :obj:`names` (``--logger``), writing under
    :obj:`folder` (a run's ``logs/``). Weights & Biases runs offline unless
    ``WANDB_MODE=online``; MLflow writes to ``folder/mlruns`` unless
    ``MLFLOW_TRACKING_URI`` says where."""
    from lightning.pytorch import loggers

    if folder is None or not names:
        return []
    out = []
    for name in names:
        where = str(Path(folder))
        if name == 'csv':
            out.append(_resumable_csv_logger()(where, name=LOGGER_DIRS[name],
                                               version=''))
        elif name == 'tensorboard':
            out.append(loggers.TensorBoardLogger(
                where, name=LOGGER_DIRS[name], version='',
                default_hp_metric=False))
        elif name == 'wandb':
            out.append(loggers.WandbLogger(
                save_dir=where, offline=os.environ.get(
                    'WANDB_MODE', 'offline') != 'online'))
        else:
            out.append(loggers.MLFlowLogger(tracking_uri=os.environ.get(
                'MLFLOW_TRACKING_URI', (Path(where) / LOGGER_DIRS[name])
                .resolve().as_uri())))
    return out


def _trainer_devices(device: torch.device, num_nodes: int) -> Dict:
    r"""Lightning's accelerator, devices and strategy for :obj:`device`:
    one device, or DDP over the process group of ``torchrun`` / SLURM
    (joined before, by :func:`~pyg_sm.train.distributed.start`)."""
    from lightning.pytorch.strategies import DDPStrategy

    accelerator = 'gpu' if device.type == 'cuda' else 'cpu'
    processes, _ = world()
    if processes == 1:
        return dict(accelerator=accelerator, num_nodes=1,
                    devices=[device.index or 0] if device.type == 'cuda'
                    else 1)
    environment = ProcessGroupEnvironment(num_nodes)
    local = environment.local_world_size()
    return dict(accelerator=accelerator, num_nodes=num_nodes, devices=local,
                strategy=DDPStrategy(
                    cluster_environment=environment,
                    parallel_devices=[device] * local,
                    process_group_backend=torch.distributed.get_backend()))


@contextlib.contextmanager
def _quiet_engine() -> Iterator[None]:
    r"""Lightning's notes on what it found (devices, TPUs, workers) would
    bury the epoch lines; its warnings about this setup are answered
    (validation is the module's, the loaders are the run's)."""
    logger = logging.getLogger('lightning.pytorch')
    level = logger.level
    logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for text in ('.*does not have many workers.*',
                     '.*is smaller than the logging interval.*',
                     '.*ReduceLROnPlateau conditioned on metric.*',
                     '.*The number of training batches.*',
                     '.*isinstance.treespec, LeafSpec.*'):
            warnings.filterwarnings('ignore', message=text)
        try:
            yield
        finally:
            logger.setLevel(level)


def fit(model: MILModel, train_set: Sequence,
        settings: Optional[FitSettings] = None, *,
        task: Optional[Task] = None, val_set: Optional[Sequence] = None,
        run_dir: Optional[Path] = None,
        save_best: Optional[Callable[[MILModel, EpochRecord], None]] = None,
        fingerprint: Optional[Dict] = None, resume: bool = False,
        log: Optional[Callable[[str], None]] = None,
        callbacks: Sequence = ()) -> List[EpochRecord]:
    r"""Trains :obj:`model` for :obj:`task` (by default the task of its
    criterion) as :obj:`settings` say, with a Lightning
    :class:`~lightning.pytorch.Trainer`, and returns the history: per
    epoch, an :class:`~pyg_sm.train.records.EpochRecord`.

    Each epoch's bags are shuffled by the seed and the epoch (as
    :class:`~torch.utils.data.distributed.DistributedSampler` does)
    whatever the number of processes. Inside a :mod:`torch.distributed`
    process group each process trains on its share and DDP averages the
    gradients; every process scores its share of :obj:`val_set` and
    process 0 writes.

    With :obj:`run_dir`, the training state goes to ``run_dir/last.pt``
    after every epoch (atomically), the curves to ``run_dir/logs/`` (the
    settings' loggers), and :obj:`save_best` is called when the monitored
    metric improves. :obj:`resume` continues from ``last.pt`` (which must
    have been written with the same :obj:`fingerprint`), within an epoch
    too: the result equals that of an uninterrupted run. A SIGINT
    finishes the current step, saves the state and raises
    :class:`Interrupted`. With :obj:`settings.patience`, training stops
    after that many validations without improvement. Further Lightning
    :obj:`callbacks` join the run's own."""
    import lightning
    from lightning.pytorch.callbacks import EarlyStopping

    settings = settings or FitSettings()
    if settings.monitor != 'last' and val_set is None:
        raise PygSmError(f"--monitor {settings.monitor} needs validation "
                         f"bags")
    task = task or Task.of_model(model)
    check_device(settings, next(model.parameters()).device)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    state_path = None if run_dir is None else Path(run_dir) / STATE_FILE
    if resume:
        state = check_resumable(state_path, fingerprint)
        # Lightning's epoch is the one in progress when it saved: a state
        # saved as an epoch ended resumes at the next one's first step.
        epoch = state['epoch'] + (1 if state['step'] else 2)
        log(f"resuming from {state_path}: epoch {epoch}, step "
            f"{state['step']}")
    module = MILModule(model, task, settings, val_set)
    module.fingerprint = fingerprint
    interrupt, extra = StopOnInterrupt(state_path, log), list(callbacks)
    callbacks = [RandomStates(), interrupt]
    if settings.patience is not None:
        callbacks.append(EarlyStopping(
            settings.monitor, patience=settings.patience,
            mode='max' if MONITORS[settings.monitor] else 'min',
            strict=False, check_on_train_epoch_end=True))
    if save_best is not None:
        callbacks.append(BestCheckpoint(save_best))
    callbacks.append(TrainingState(state_path, log, interrupt))
    callbacks.extend(extra)
    _, rank = world()
    device = next(model.parameters()).device
    with _quiet_engine():
        trainer = lightning.Trainer(
            max_epochs=settings.epochs, precision=_precision(settings),
            accumulate_grad_batches=settings.accumulate_grad_batches,
            callbacks=callbacks, plugins=[AtomicCheckpointIO()],
            logger=make_loggers(settings.loggers, None if run_dir is None
                                else Path(run_dir) / LOGS_DIR),
            default_root_dir=run_dir, enable_model_summary=False,
            enable_progress_bar=settings.progress and rank == 0,
            num_sanity_val_steps=0, limit_val_batches=0,
            use_distributed_sampler=False, log_every_n_steps=LOG_STEPS,
            **_trainer_devices(device, settings.num_nodes))
        data = CohortData(train_set, settings.batch_size, settings.workers,
                          settings.seed, settings.balanced_sampling)
        trainer.fit(module, datamodule=data,
                    ckpt_path=state_path if resume else None)
    return module.history


def _precision(settings: FitSettings) -> str:
    return '32-true' if settings.precision == '32' else settings.precision


def train_model(model: MILModel, dataset: Sequence, epochs: int = 20,
                lr: float = 1e-3, weight_decay: float = 1e-4,
                batch_size: int = 4, seed: int = 0,
                progress: bool = True) -> List[float]:
    r"""Trains :obj:`model` with Adam on bags of :obj:`dataset` (see
    :func:`fit`, which also validates, checkpoints and resumes) and returns
    the mean training loss of each epoch (over all processes of a
    :mod:`torch.distributed` run)."""
    settings = FitSettings(epochs=epochs, lr=lr, weight_decay=weight_decay,
                           batch_size=batch_size, seed=seed,
                           progress=progress, monitor='last',
                           validate_every=0, loggers=())
    history = fit(model, dataset, settings, log=lambda _: None)
    return [record.train_loss for record in history]
