r"""The settings of a training run that the engine reads, declared once
(``pyg-sm train``'s flags take their defaults from here)."""
import dataclasses
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..utils.errors import PygSmError

#: The training state format (``last.pt``): Lightning's checkpoint with
#: pyg-sm's entries.
STATE_FORMAT = 'pyg-sm-train/2'
#: What :func:`~pyg_sm.train.fit` writes in its ``run_dir``: the training
#: state, and the loggers' folder.
STATE_FILE, LOGS_DIR = 'last.pt', 'logs'




class Interrupted(Exception):
    r"""Training stopped on request (SIGINT) after a step, with its state
    saved to :obj:`path`."""
    def __init__(self, path: Optional[Path], epoch: int, step: int):
        super().__init__(f'interrupted in epoch {epoch + 1} after step '
                         f'{step}; state saved to {path}')
        self.path, self.epoch, self.step = path, epoch, step


class StoppedAtOnce(Interrupted):
    r"""Training stopped at once on a second SIGINT, within a step: the
    state of :obj:`path` is the last one saved (an earlier epoch's end, or
    none)."""
    def __init__(self, path: Optional[Path]):
        Exception.__init__(self, f'stopped at once; the last state saved '
                                 f'is {path}')
        self.path, self.epoch, self.step = path, None, None


#: ``--optimizer`` choices.
OPTIMIZERS = ('adam', 'adamw', 'sgd')
#: ``--lr-scheduler`` choices.
LR_SCHEDULERS = ('none', 'cosine', 'plateau', 'onecycle')
#: ``--precision`` choices (Lightning's names).
PRECISIONS = ('32', 'bf16-mixed', '16-mixed')
#: ``--logger`` choices.
LOGGERS = ('csv', 'tensorboard', 'wandb', 'mlflow')
#: The momentum of ``--optimizer sgd``.
SGD_MOMENTUM = 0.9
#: ``--lr-scheduler plateau``: validations without improvement of the
#: monitor before the rate is divided by :data:`PLATEAU_FACTOR`.
PLATEAU_PATIENCE, PLATEAU_FACTOR = 2, 10


@dataclasses.dataclass
class FitSettings:
    r"""How :func:`~pyg_sm.train.fit` trains.

    Args:
        epochs (int): Passes over the training bags. (default: :obj:`20`)
        lr (float): The learning rate (the peak of ``onecycle``).
            (default: :obj:`1e-3`)
        weight_decay (float): The optimizer's weight decay.
            (default: :obj:`1e-4`)
        optimizer (str): ``'adam'``, ``'adamw'`` or ``'sgd'`` (momentum
            0.9). (default: ``'adam'``)
        lr_scheduler (str): ``'none'``, ``'cosine'`` (to 0 over the
            epochs), ``'plateau'`` (the rate divided by 10 after 2
            validations without improvement of the monitor) or
            ``'onecycle'`` (per step). (default: ``'none'``)
        batch_size (int): Bags per batch, per process. (default: :obj:`4`)
        accumulate_grad_batches (int): Batches whose gradients add up
            before each optimizer step. (default: :obj:`1`)
        precision (str): ``'32'``, ``'bf16-mixed'`` or ``'16-mixed'``
            (CUDA). (default: ``'32'``)
        seed (int): The seed of each epoch's order. (default: :obj:`0`)
        workers (int): Processes that read bags ahead. (default: :obj:`0`)
        balanced_sampling (bool): Draw each epoch's bags with replacement,
            each class as often. (default: :obj:`False`)
        monitor (str): The validation metric that picks the best
            checkpoint (``'last'``: the final epoch).
            (default: ``'val_loss'``)
        validate_every (int): Validate after every N-th epoch (0: never).
            (default: :obj:`1`)
        patience (int, optional): Stop after this many validations without
            improvement of the monitor (:obj:`None`: never).
        loggers (tuple): Where the curves go: ``'csv'``, ``'tensorboard'``,
            ``'wandb'``, ``'mlflow'``. (default: ``('csv',)``)
        num_nodes (int): Machines of a multi-node run. (default: :obj:`1`)
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = 'adam'
    lr_scheduler: str = 'none'
    batch_size: int = 4
    accumulate_grad_batches: int = 1
    precision: str = '32'
    seed: int = 0
    workers: int = 0
    balanced_sampling: bool = False
    monitor: str = 'val_loss'
    validate_every: int = 1
    patience: Optional[int] = None
    loggers: Tuple[str, ...] = ('csv', )
    num_nodes: int = 1
    progress: bool = False

    def __post_init__(self):
        from .tasks import MONITORS

        self.loggers = tuple(self.loggers)
        for name, choices in (('optimizer', OPTIMIZERS),
                              ('lr_scheduler', LR_SCHEDULERS),
                              ('precision', PRECISIONS),
                              ('monitor', tuple(MONITORS))):
            if getattr(self, name) not in choices:
                raise PygSmError(f"'{name}' (--{name.replace('_', '-')}) "
                                 f"must be one of {list(choices)} (got "
                                 f"{getattr(self, name)!r})")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown:
            raise PygSmError(f"'loggers' (--logger) must be among "
                             f"{list(LOGGERS)} (got {unknown})")
        for name, least in (('epochs', 1), ('batch_size', 1),
                            ('accumulate_grad_batches', 1), ('workers', 0),
                            ('validate_every', 0), ('num_nodes', 1),
                            ('patience', 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or
                                      isinstance(value, bool) or
                                      value < least):
                raise PygSmError(f"'{name}' (--{name.replace('_', '-')}) "
                                 f"must be an integer of at least {least} "
                                 f"(got {value!r})")
        validated = MONITORS[self.monitor] is not None
        if self.validate_every == 0 and validated:
            raise PygSmError(f"--monitor {self.monitor} needs validation: "
                             f"--validate-every 0 goes with --monitor last")
        for name in ('patience', 'lr_scheduler'):
            needs = name == 'patience' and self.patience is not None or \
                self.lr_scheduler == 'plateau' and name == 'lr_scheduler'
            if needs and not validated:
                raise PygSmError(
                    f"--{name.replace('_', '-')} "
                    f"{getattr(self, name)} watches the validation "
                    f"metric of --monitor: it does not go with --monitor "
                    f"last")


def check_device(settings: FitSettings, device: torch.device) -> None:
    r"""Stops before any work when :obj:`settings` cannot run on
    :obj:`device`."""
    if settings.precision == '16-mixed' and device.type != 'cuda':
        raise PygSmError(f"--precision 16-mixed runs on CUDA only (the run "
                         f"is on {device}); bf16-mixed runs on the CPU")


def make_optimizer(model: torch.nn.Module,
                   settings: Optional[FitSettings] = None
                   ) -> torch.optim.Optimizer:
    r"""The optimizer :obj:`settings` name over :obj:`model`'s
    parameters."""
    settings = settings or FitSettings()
    kind = {'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW,
            'sgd': torch.optim.SGD}[settings.optimizer]
    extra = {'momentum': SGD_MOMENTUM} if settings.optimizer == 'sgd' else {}
    return kind(model.parameters(), lr=settings.lr,
                weight_decay=settings.weight_decay, **extra)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: FitSettings,
                   total_steps: int) -> Optional[dict]:
    r"""The learning-rate schedule :obj:`settings` name, as Lightning's
    ``lr_scheduler`` entry (:obj:`None` for ``'none'``)."""
    schedule = settings.lr_scheduler
    if schedule == 'none':
        return None
    if schedule == 'cosine':
        return {'scheduler': torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=settings.epochs), 'interval': 'epoch'}
    if schedule == 'onecycle':
        return {'scheduler': torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.lr, total_steps=int(total_steps)),
            'interval': 'step'}
    from .tasks import MONITORS

    return {'scheduler': torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode='max' if MONITORS[settings.monitor] else 'min',
        factor=1 / PLATEAU_FACTOR, patience=PLATEAU_PATIENCE),
        'interval': 'epoch', 'monitor': settings.monitor,
        # Epochs without validation leave the rate as it is.
        'strict': False}
