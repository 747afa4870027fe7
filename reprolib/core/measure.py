"""Measured, not only counted: parameters, FLOPs, latency and peak memory of a model.

FLOPs follow the papers' convention: **one multiply-add counts as one FLOP** (what Swin, DeiT
and fvcore call FLOPs; half of what ``torch.utils.flop_counter`` reports).  The count comes
from ``torch.utils.flop_counter.FlopCounterMode`` and so covers convolutions, linear layers
and attention matmuls, including ``scaled_dot_product_attention`` on CPU (its CPU flash
kernel is registered here; torch does not count it).  Element-wise work (norms,
activations, softmax, pooling) is not counted, as in the papers.

``peak_memory`` is the peak of one training step (forward, backward, SGD step) at a batch
size: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak of live tensor bytes
tracked through a dispatch mode (every tensor an ATen operator creates, held until its last
reference dies, plus parameters, buffers, optimizer state and the input), which matches the
caching allocator's allocated bytes up to allocator rounding.
"""

from __future__ import annotations

import statistics
import time
import weakref

import torch
import torch.nn as nn
from torch.utils import flop_counter as _fc
from torch.utils._python_dispatch import TorchDispatchMode

from reprolib.core.device import resolve_device
from reprolib.errors import ReprolibError

_aten = torch.ops.aten


def _cpu_flash_fwd(query, key, value, *args, out_shape=None, **kwargs):
    return _fc.sdpa_flop_count(query, key, value)


def _cpu_flash_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs):
    return _fc.sdpa_backward_flop_count(grad_out, query, key, value)


_CUSTOM = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_fwd,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_bwd,
}


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (a tensor shared by two layers counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _input(model: nn.Module, input_size, batch_size: int) -> torch.Tensor:
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.randn(batch_size, *input_size, device=dev, dtype=dtype)


def _flop_mode() -> _fc.FlopCounterMode:
    return _fc.FlopCounterMode(display=False, depth=None, custom_mapping=_CUSTOM)


@torch.no_grad()
def count_flops(model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1) -> int:
    """FLOPs of one forward pass (1 multiply-add = 1 FLOP) for a batch of ``batch_size``.

    input_size: (C, H, W) of one image.  The model runs in eval mode on a random input.
    """
    was = model.training
    model.eval()
    try:
        with _flop_mode() as fc:
            model(_input(model, input_size, batch_size))
    finally:                      # a forward that fails leaves the model as it was
        model.train(was)
    return fc.get_total_flops() // 2


@torch.no_grad()
def count_flops_by_module(model: nn.Module, input_size=(3, 224, 224)) -> dict[str, int]:
    """FLOPs (1 MAC = 1 FLOP) of every submodule, keyed by its qualified name ("" = total)."""
    was = model.training
    model.eval()
    try:
        with _flop_mode() as fc:
            model(_input(model, input_size, 1))
    finally:
        model.train(was)
    root = type(model).__name__
    out = {}
    for name, ops in fc.get_flop_counts().items():
        key = "" if name in ("Global", root) else name.removeprefix(root + ".")
        out[key] = sum(ops.values()) // 2
    return out


@torch.inference_mode()
def latency(model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1, device="cpu",
            warmup: int = 5, repeats: int = 20) -> dict:
    """Median wall time of one forward pass (eval mode, inference mode).

    Returns ``{"ms": median, "ms_iqr": interquartile range, "batch_size", "device", "threads",
    "repeats"}``; on CUDA each pass is synchronised.  The model is moved to ``device`` and
    left in the mode it was in.  ``repeats`` >= 1, ``warmup`` >= 0.
    """
    for name, v, lo in (("repeats", repeats, 1), ("warmup", warmup, 0),
                        ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ReprolibError(f"latency: {name}={v!r} must be an integer >= {lo}")
    dev = resolve_device(device)
    was = model.training
    model = model.to(dev).eval()
    x = torch.randn(batch_size, *input_size, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    try:
        for _ in range(warmup):
            model(x)
        sync()
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            sync()
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        model.train(was)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"ms": statistics.median(times), "ms_iqr": q[2] - q[0], "batch_size": batch_size,
            "device": name, "threads": torch.get_num_threads(), "repeats": repeats}


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of live storages created by ATen operators; keeps the peak."""

    def __init__(self, external=()):
        super().__init__()
        self.refs: dict[int, list] = {}  # storage ptr -> [nbytes, live tensor count]
        self.external = set(external)    # storages counted elsewhere (params, optimizer state)
        self.cur = self.peak = 0

    def _free(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.cur -= entry[0]
            del self.refs[key]

    def _track(self, t) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        st = t.untyped_storage()
        key, nbytes = st.data_ptr(), st.nbytes()
        if nbytes == 0 or key in self.external:
            return
        if key in self.refs:
            self.refs[key][1] += 1
        else:
            self.refs[key] = [nbytes, 1]
            self.cur += nbytes
            self.peak = max(self.peak, self.cur)
        weakref.finalize(t, self._free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            self._track(t)
        return out


def _storages(tensors) -> dict[int, int]:
    """Distinct storages of ``tensors``: data pointer -> bytes."""
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def peak_memory(model: nn.Module, input_size=(3, 32, 32), batch_size: int = 64, device="cpu",
                num_classes: int | None = None) -> int:
    """Peak bytes of one training step (forward, cross-entropy, backward, SGD+momentum step).

    The first step runs unmeasured (it creates the momentum buffers); the second is measured.
    On CUDA: ``torch.cuda.max_memory_allocated`` over that step.  On CPU: parameters, buffers,
    optimizer state and input, plus the peak of the tensors the step creates (module docstring).
    """
    dev = resolve_device(device)
    model = model.to(dev).train()
    x = torch.randn(batch_size, *input_size, device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step():
        out = model(x)
        y = torch.zeros(len(out), dtype=torch.long, device=dev)
        nn.functional.cross_entropy(out, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        step()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev))
    state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    base = _storages([*model.parameters(), *model.buffers(), *state, x])
    with _LiveBytes(external=base) as mode:
        step()
    return sum(base.values()) + mode.peak


def measure_model(model: nn.Module, input_size=(3, 32, 32), *, latency_batch: int = 1,
                  latency_repeats: int = 20, latency_device="cpu", warmup: int = 5,
                  memory_batch: int | None = None, memory_device="cpu") -> dict:
    """The one measurement of a model every pipeline records.

    Returns ``params`` (distinct), ``flops`` (one image, 1 multiply-add = 1 FLOP) and, unless
    ``latency_repeats`` is 0, the median latency of a forward pass at ``latency_batch``
    (``latency_ms``, ``latency_iqr_ms``, ``latency_us_per_image``, ``latency_batch``,
    ``latency_device``, ``latency_threads``, ``latency_repeats``); with ``memory_batch`` also the
    peak memory of one training step at that batch (``peak_memory_bytes``, ``memory_batch``).
    The model is left on ``latency_device`` (or where it was) in training mode.
    """
    out = {"params": count_params(model), "flops": count_flops(model, input_size)}
    if latency_repeats:
        lat = latency(model, input_size, latency_batch, latency_device, warmup=warmup,
                      repeats=latency_repeats)
        out.update(latency_ms=lat["ms"], latency_iqr_ms=lat["ms_iqr"],
                   latency_us_per_image=1e3 * lat["ms"] / latency_batch,
                   latency_batch=latency_batch, latency_device=lat["device"],
                   latency_threads=lat["threads"], latency_repeats=latency_repeats)
    if memory_batch:
        out["peak_memory_bytes"] = peak_memory(model, input_size, memory_batch, memory_device)
        out["memory_batch"] = memory_batch
    model.train()
    return out
