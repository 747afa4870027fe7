"""Devices and processes: which device to run on, and where this process stands in a
``torchrun`` job.

    device = resolve_device("auto")      # cuda (this rank's GPU) when available, else cpu
    rank, world = init_distributed()     # (0, 1) outside torchrun
    with on_meta():                       # shapes only: what counting params / FLOPs needs
        model = create_model("swin_t")
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from reprolib.configs import DEVICES, check_device  # noqa: F401 - the one list of names
from reprolib.errors import ReprolibError

#: The in-place initialisers and the in-place arithmetic they are written with
#: (``torch.nn.init``'s and timm's ``trunc_normal_``: uniform_, erfinv_, mul_, add_, clamp_).
#: On a meta tensor each is a no-op: it keeps the shape and dtype, and there are no values.
_INIT_OPS = frozenset(
    "uniform_ normal_ trunc_normal_ erfinv_ clamp_ clamp_min_ clamp_max_ mul_ add_ sub_ div_ "
    "fill_ zero_ copy_ exp_ sqrt_ random_ bernoulli_ exponential_ log_normal_ cauchy_ "
    "geometric_ constant_ ones_ zeros_ kaiming_uniform_ kaiming_normal_ xavier_uniform_ "
    "xavier_normal_".split())


class _SkipMetaInit(TorchFunctionMode):
    """Returns a meta tensor unchanged from the in-place ops in :data:`_INIT_OPS`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (args and isinstance(args[0], torch.Tensor) and args[0].is_meta
                and getattr(func, "__name__", "") in _INIT_OPS):
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def on_meta():
    """PyTorch's meta device (``with torch.device("meta")``) with weight initialisation
    skipped: models built inside have every parameter and buffer with its shape and dtype
    and nothing allocated, as on the plain meta device, but the initialisers are not run
    (on meta they compute nothing, and timm's ``trunc_normal_`` alone was a third of the
    time of counting PE's Tables 1-2).  Only in-place ops on meta tensors are skipped;
    anything else runs as usual."""
    with torch.device("meta"), _SkipMetaInit():
        yield


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
