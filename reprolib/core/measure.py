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

Time has one implementation, :func:`interleaved`: several callables timed in rounds whose
order rotates, after warm-up rounds, reported as the median and interquartile range
(``ms`` / ``ms_iqr``, and every time); :func:`latency` and ``reprolib bench`` use it.
"""

from __future__ import annotations

import statistics
import time
import weakref
from typing import Callable

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
def _counted(model: nn.Module, input_size, batch_size: int) -> _fc.FlopCounterMode:
    """The flop counter after one forward pass of ``model`` in eval mode on a random batch;
    a forward that fails leaves the model in the mode it was."""
    was = model.training
    model.eval()
    try:
        with _flop_mode() as fc:
            model(_input(model, input_size, batch_size))
    finally:
        model.train(was)
    return fc


def count_flops(model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1) -> int:
    """FLOPs of one forward pass (1 multiply-add = 1 FLOP) for a batch of ``batch_size``.

    input_size: (C, H, W) of one image.  The model runs in eval mode on a random input.
    """
    return _counted(model, input_size, batch_size).get_total_flops() // 2


def count_flops_by_op(model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1) -> dict[str, int]:
    """The counter's FLOPs of one forward pass per ATen operator (``"aten.mm"``, ``"aten.bmm"``,
    ...), as ``torch.utils.flop_counter`` reports them: **2 per multiply-add**, so
    ``sum(values) // 2`` is :func:`count_flops`.  Kept whole so that a reading that drops
    some operators (e.g. attention matmuls) divides once, as :func:`count_flops` does."""
    ops = _counted(model, input_size, batch_size).get_flop_counts().get("Global", {})
    return {str(op): int(v) for op, v in ops.items()}


def count_flops_by_module(model: nn.Module, input_size=(3, 224, 224)) -> dict[str, int]:
    """FLOPs (1 MAC = 1 FLOP) of every submodule, keyed by its qualified name ("" = total)."""
    fc = _counted(model, input_size, 1)
    root = type(model).__name__
    out = {}
    for name, ops in fc.get_flop_counts().items():
        key = "" if name in ("Global", root) else name.removeprefix(root + ".")
        out[key] = sum(ops.values()) // 2
    return out


# --------------------------------------------------------------------------- timing


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_call(fn: Callable[[], object], device="cpu") -> float:
    """Milliseconds of one ``fn()``: CUDA events after a synchronize on CUDA, else the wall
    clock (``time.perf_counter``)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def median_iqr(times_ms) -> dict:
    """``{"ms": median, "ms_iqr": interquartile range, "times_ms": every time}`` of a list of
    milliseconds (one time: an IQR of 0)."""
    t = list(times_ms)
    q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
    return {"ms": statistics.median(t), "ms_iqr": q[2] - q[0],
            "times_ms": [round(x, 4) for x in t]}


def interleaved(fns: dict[str, Callable[[], object]], device="cpu", warmup: int = 2,
                repeats: int = 9) -> dict[str, dict]:
    """Time several callables interleaved, the one timing of the package (``latency``, the
    benchmark): ``warmup`` untimed rounds, then ``repeats`` rounds that each call every
    function once (:func:`time_call`), the order rotated by one each round, so machine load
    drifts hit all alike.  Returns per name :func:`median_iqr` (``ms``, ``ms_iqr``,
    ``times_ms``)."""
    for name, v, lo in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ReprolibError(f"timing: {name}={v!r} must be an integer >= {lo}")
    dev = resolve_device(device)
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    _sync(dev)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(time_call(fns[n], dev))
    return {n: median_iqr(t) for n, t in times.items()}


@torch.inference_mode()
def latency(model: nn.Module, input_size=(3, 224, 224), batch_size: int = 1, device="cpu",
            warmup: int = 5, repeats: int = 20) -> dict:
    """Median wall time of one forward pass (eval mode, inference mode; :func:`interleaved`
    with the one model).

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
    try:
        t = interleaved({"model": lambda: model(x)}, dev, warmup, repeats)["model"]
    finally:
        model.train(was)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"ms": t["ms"], "ms_iqr": t["ms_iqr"], "batch_size": batch_size,
            "device": name, "threads": torch.get_num_threads(), "repeats": repeats}


# --------------------------------------------------------------------------- memory


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
