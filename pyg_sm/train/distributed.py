r"""The torch.distributed process group of a ``torchrun`` run, if any."""
import os
from typing import Tuple

import torch


def world() -> Tuple[int, int]:
    r"""``(world size, rank)`` of this process: ``(1, 0)`` outside a
    process group."""
    if torch.distributed.is_available() and \
            torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), \
            torch.distributed.get_rank()
    return 1, 0


def start(device: torch.device) -> int:
    r"""Joins the process group ``torchrun`` describes (``WORLD_SIZE > 1``):
    gloo on the CPU, nccl on GPUs. Returns this process's rank."""
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1:
        return 0
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        'nccl' if device.type == 'cuda' else 'gloo')
    return torch.distributed.get_rank()
