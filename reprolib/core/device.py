"""Devices and processes: which device to run on, and where this process stands in a
``torchrun`` job.

    device = resolve_device("auto")      # cuda (this rank's GPU) when available, else cpu
    rank, world = init_distributed()     # (0, 1) outside torchrun
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from reprolib.configs import DEVICES, check_device  # noqa: F401 - the one list of names
from reprolib.errors import ReprolibError



def resolve_device(device=None) -> torch.device:
    """``"auto"``/None -> cuda when available (the local rank's GPU under torchrun), else cpu.

    An explicit ``"cuda"`` on a machine without CUDA is a ``ReprolibError``, not a crash later.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    check_device("device", str(device))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ReprolibError(f"device={device!r} but this machine has no CUDA device; "
                            "use device=auto or device=cpu")
    return dev


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed from torchrun's environment; returns (rank, world_size).

    NCCL on CUDA, gloo on CPU.  Without torchrun variables it does nothing: (0, 1).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def world() -> tuple[int, int]:
    """(rank, world_size) of this process: (0, 1) unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and outside torchrun): the process that writes records and files."""
    return world()[0] == 0
