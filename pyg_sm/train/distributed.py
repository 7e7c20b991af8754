r"""The torch.distributed process group of a ``torchrun`` run, if any, and
the device each process computes on."""
import contextlib
import os
from typing import Iterator, Optional, Tuple

import torch

from ..utils.errors import PygSmError


def world() -> Tuple[int, int]:
    r"""``(world size, rank)`` of this process: ``(1, 0)`` outside a
    process group."""
    if torch.distributed.is_available() and \
            torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), \
            torch.distributed.get_rank()
    return 1, 0


def describe_slurm() -> None:
    r"""Under ``srun`` (SLURM's tasks, without ``torchrun``), sets the
    variables ``torchrun`` would (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
    from SLURM's, as Lightning's ``SLURMEnvironment`` reads them."""
    if 'WORLD_SIZE' in os.environ or 'SLURM_NTASKS' not in os.environ:
        return
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return
    slurm = SLURMEnvironment()
    per_node = os.environ.get('SLURM_NTASKS_PER_NODE', '1').split('(')[0]
    os.environ.update(
        RANK=str(slurm.global_rank()), WORLD_SIZE=str(slurm.world_size()),
        LOCAL_RANK=str(slurm.local_rank()), LOCAL_WORLD_SIZE=per_node,
        GROUP_RANK=str(slurm.node_rank()), MASTER_ADDR=slurm.main_address,
        MASTER_PORT=str(slurm.main_port))


def start(device: torch.device) -> int:
    r"""Joins the process group ``torchrun`` (or SLURM's ``srun``,
    :func:`describe_slurm`) describes (``WORLD_SIZE > 1``): gloo on the
    CPU, nccl on GPUs. Returns this process's rank."""
    describe_slurm()
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1:
        return 0
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        'nccl' if device.type == 'cuda' else 'gloo')
    return torch.distributed.get_rank()


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: Optional[str] = None) -> torch.device:
    r"""The device this process computes on, by one rule:

    - an explicit index (``cuda:1``) is used as given;
    - ``cuda`` is this process's local GPU: number ``LOCAL_RANK`` (0
      outside ``torchrun``) of the visible GPUs, or the only one where a
      process sees one (a launcher that gives each process its own GPU
      through ``CUDA_VISIBLE_DEVICES``);
    - :obj:`None` is ``cuda`` where CUDA is available, else the CPU.

    More processes on a machine (``LOCAL_WORLD_SIZE``) than visible GPUs, a
    GPU index beyond them, and ``cuda`` without CUDA are errors that name
    the counts."""
    gpus = visible_gpus()
    if name is None:
        if gpus == 0:
            return torch.device('cpu')
        name = 'cuda'
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise PygSmError(f"--device {name!r}: {error}") from None
    if device.type != 'cuda':
        return device
    if gpus == 0:
        raise PygSmError(f"--device {name}: CUDA is not available here (no "
                         f"visible GPU; torch {torch.__version__})")
    if device.index is not None:
        if device.index >= gpus:
            raise PygSmError(f"--device {name}: {gpus} GPU(s) are visible "
                             f"(cuda:0 to cuda:{gpus - 1})")
        return device
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    processes = int(os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1))
    if gpus == 1 and (processes == 1 or
                      'CUDA_VISIBLE_DEVICES' in os.environ):
        return torch.device('cuda', 0)
    if processes > gpus or local_rank >= gpus:
        raise PygSmError(
            f"{max(processes, local_rank + 1)} processes on this machine but "
            f"{gpus} visible GPU(s): start at most one process per GPU "
            f"(torchrun --nproc-per-node {gpus}), or give each process its "
            f"own GPU through CUDA_VISIBLE_DEVICES")
    return torch.device('cuda', local_rank)


#: What cuBLAS needs for deterministic matrix products (torch's
#: reproducibility notes).
CUBLAS_WORKSPACE_CONFIG = ':4096:8'


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    r"""Inside it (when :obj:`enabled`), torch runs deterministic algorithms
    only (:func:`torch.use_deterministic_algorithms`; an operation that has
    none raises, naming it), cuBLAS gets the workspace setting it needs and
    cuDNN does not pick kernels by timing them: a fixed seed then gives
    bitwise identical runs on a GPU too. The previous settings are restored
    after."""
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    # Read when cuBLAS starts, on the first product on a GPU.
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', CUBLAS_WORKSPACE_CONFIG)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0],
                                           warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]
