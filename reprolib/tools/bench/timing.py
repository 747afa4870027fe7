"""The bench's timing of models: each timed call (inference in ``torch.inference_mode``, or
a training step: forward, cross-entropy, backward, SGD step) prepared at a precision and
memory layout, then timed by the package's one timing, ``reprolib.measure.interleaved``
(rotated rounds, median and IQR); :func:`speedup` for two models; :func:`environment` says
where it ran.

Three runtimes (``RUNTIMES``): the PyTorch module ("eager"), ``torch.compile`` ("compile")
and ONNX Runtime ("ort"): each model exported once to ONNX (``reprolib.core.export.to_onnx``)
and run by an ``onnxruntime.InferenceSession`` on the CPU (:func:`ort_session`), timed
interleaved in the same process exactly as the eager models are."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import tempfile
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprolib.configs.bench import PRECISIONS, RUNTIMES
from reprolib.core.device import resolve_device
from reprolib.core.measure import count_flops, count_params, interleaved
from reprolib.errors import ReprolibError, check_number, choose


def environment(device=None, runtime: str = "eager") -> dict:
    """Where a measurement ran: device name, threads, torch / CUDA versions, CPU model; for
    ``runtime`` "ort" also the ``onnxruntime`` version (imported only then)."""
    dev = resolve_device(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu} x{os.cpu_count()}"
    env = {"device_type": dev.type, "device_name": name, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None}
    choose("runtime", runtime, RUNTIMES)
    if runtime == "ort":
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    return env


def sync(dev: torch.device) -> None:
    """Wait for ``dev`` (CUDA) to finish its queued work; nothing on the CPU."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def autocast(dev: torch.device, precision: str):
    """bf16 autocast on ``dev`` for ``precision`` "bf16", else nothing."""
    if precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(model: nn.Module, dev, *, channels_last: bool = False, compile: bool = False,
            input_ndim: int = 4) -> nn.Module:
    """``model`` moved to ``dev`` (in place), channels_last when asked and the input is an
    image batch, compiled when asked (returns the compiled wrapper)."""
    model.to(dev)
    if channels_last and input_ndim == 4:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model


def _input(input_size, batch: int, dev, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch, *input_size, device=dev)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def infer_fn(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> Callable[[], object]:
    """One timed inference call: eval mode, ``torch.inference_mode``, autocast for bf16."""
    model.eval()

    def run():
        with torch.inference_mode(), autocast(x.device, precision):
            return model(x)

    return run


def train_fn(model: nn.Module, x: torch.Tensor, num_classes: int,
             precision: str = "fp32") -> Callable[[], object]:
    """One timed training step: forward (autocast for bf16), cross-entropy, backward, SGD
    (momentum 0.9) step; gradients are freed after the step."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
    y = torch.randint(0, num_classes, (x.shape[0],), device=x.device,
                      generator=torch.Generator(x.device).manual_seed(0))

    def run():
        with autocast(x.device, precision):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


def _num_classes(model: nn.Module, input_size, dev) -> int:
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, *input_size, device=dev))
    model.train(was)
    return int(out.shape[-1])


def _reason(exc: BaseException) -> str:
    """One line saying why an export failed: the first line of the innermost cause (the
    exporter wraps the real error in a page of advice), without terminal colour codes."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()]
    first = next((ln for ln in lines if ln), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def ort_session(model: nn.Module, input_size, batch_size: int, threads: int | None = None, *,
                name: str = "model"):
    """``model`` exported to ONNX and opened in ONNX Runtime for timing; returns
    ``(session, input_name)``, so that ``session.run(None, {input_name: x})`` is one
    inference on a float32 numpy batch ``x`` of ``batch_size`` images of ``input_size``.

    The export is ``reprolib.core.export.to_onnx`` (eval mode, dynamic batch) into a
    temporary file, made once per model object (:func:`_exported`) and removed when the model
    is garbage-collected.  The session runs on
    ``CPUExecutionProvider`` with ``threads`` intra-op threads (default
    ``torch.get_num_threads()``, the bench's threads), one inter-op thread, every graph
    optimisation (``ORT_ENABLE_ALL``) and the batch dimension fixed at ``batch_size`` (so
    ORT plans for the timed shape; other batches are refused).  Its idle threads do not
    spin-wait: spinning ORT threads would take the cores from the PyTorch model timed next
    in the same process (on a shared 2-core machine they made an interleaved eager ViT
    several times slower, and ORT itself no faster).  ``model`` must be on the CPU.
    ``name`` names the model in errors: a model the exporter cannot export, or whose export
    ONNX Runtime cannot load, is a ReprolibError with the one-line reason.
    """
    import onnx
    import onnxruntime as ort

    check_number("batch_size", batch_size, 1, 1 << 20, integer=True)
    threads = torch.get_num_threads() if threads is None else threads
    check_number("threads", threads, 1, 1 << 16, integer=True)
    if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
        raise ReprolibError(f"model {name!r} must be on the CPU to be exported for ONNX "
                            "Runtime (CPUExecutionProvider)")
    path = _exported(model, input_size, name)
    graph_input = onnx.load(path, load_external_data=False).graph.input[0]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # no per-session memory arena: a family of 25 Swin-T sessions, each keeping its batch's
    # activations cached, held 24 GB and was killed; freed after each run, as eager's are
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 3
    batch_dim = graph_input.type.tensor_type.shape.dim[0].dim_param
    if batch_dim:
        opts.add_free_dimension_override_by_name(batch_dim, batch_size)
    try:
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 -- e.g. an operator ORT lacks
        raise ReprolibError(f"ONNX Runtime could not load the export of model {name!r}: "
                            f"{_reason(e)}") from e
    return sess, graph_input.name


#: One export per model object for the life of the process (batch 1 and the large batch of a
#: family share it: exporting a Swin-T takes tens of seconds); each file is removed when its
#: model is garbage-collected, the folder at exit.
_EXPORTS: dict[int, str] = {}
_EXPORT_DIR: list = []


def _exported(model: nn.Module, input_size, name: str) -> str:
    """The path of ``model``'s ONNX export (dynamic batch), exported once per model object."""
    import weakref

    from reprolib.core.export import to_onnx

    key = (id(model), tuple(input_size))
    if key in _EXPORTS and os.path.exists(_EXPORTS[key]):
        return _EXPORTS[key]
    if not _EXPORT_DIR:
        _EXPORT_DIR.append(tempfile.TemporaryDirectory(prefix="reprolib-ort-"))
    path = os.path.join(_EXPORT_DIR[0].name, f"m{len(os.listdir(_EXPORT_DIR[0].name))}"
                        f"-{id(model):x}.onnx")
    try:
        to_onnx(model, path, input_size)
    except Exception as e:  # noqa: BLE001 -- any exporter failure, reported by name
        raise ReprolibError(f"model {name!r} could not be exported to ONNX for ONNX "
                            f"Runtime: {_reason(e)}") from e
    _EXPORTS[key] = path

    def forget(key=key, path=path):
        _EXPORTS.pop(key, None)
        with contextlib.suppress(OSError):
            os.remove(path)

    weakref.finalize(model, forget)
    return path


def _time_ort(models, input_size, batch_size, dev, *, precision, warmup, repeats,
              channels_last, compile, mode) -> dict[str, dict]:
    """:func:`time_models` for runtime "ort": one :func:`ort_session` per model, all timed
    interleaved on one numpy input (converted once, outside the timed calls)."""
    import onnxruntime

    if mode == "train":
        raise ReprolibError("ONNX Runtime is timed for inference only: use mode 'infer' with "
                            "runtime 'ort', or runtime 'eager' / 'compile' for a training step")
    if precision != "fp32" or channels_last or compile:
        raise ReprolibError("runtime 'ort' is timed at precision 'fp32' without channels_last "
                            "or compile (the variant fp32+ort); bf16, channels_last and "
                            "compile are for runtimes 'eager' and 'compile'")
    if dev.type != "cpu":
        raise ReprolibError(f"runtime 'ort' runs on the CPU (CPUExecutionProvider); device "
                            f"{dev.type!r} is not valid for it, use device 'cpu'")
    feed = _input(input_size, batch_size, dev, False).numpy()
    fns = {}
    for name, m in models.items():
        sess, input_name = ort_session(m.to(dev), input_size, batch_size, name=name)
        fns[name] = functools.partial(sess.run, None, {input_name: feed})
    out = interleaved(fns, dev, warmup, repeats)
    for r in out.values():
        r.update(runtime="ort", onnxruntime=onnxruntime.__version__)
    return out


def time_models(models: dict[str, nn.Module], input_size, batch_size: int, device, *,
                precision: str = "fp32", warmup: int = 2, repeats: int = 9,
                channels_last: bool = False, compile: bool = False,
                mode: str = "infer", runtime: str = "eager") -> dict[str, dict]:
    """Interleaved timing (``reprolib.measure.interleaved``) of ``models`` at one batch size:
    ``mode`` "infer" (one forward) or "train" (one training step).  Returns per name
    ``{"ms", "ms_iqr", "times_ms"}`` and, for "train", ``images_per_s`` (batch / median
    time).

    runtime: what runs each model, one of ``RUNTIMES``: "eager" (default: the module,
    compiled when ``compile``), "compile" (``torch.compile``, as ``compile=True``) or "ort"
    (exported to ONNX and run by ONNX Runtime on the CPU, :func:`ort_session`; inference
    at fp32 only, the sessions timed interleaved like modules; each result also has
    ``runtime`` "ort" and the ``onnxruntime`` version).
    """
    choose("precision", precision, PRECISIONS)
    choose("timing mode", mode, ("infer", "train"))
    choose("runtime", runtime, RUNTIMES)
    dev = resolve_device(device)
    if runtime == "ort":
        return _time_ort(models, input_size, batch_size, dev, precision=precision,
                         warmup=warmup, repeats=repeats, channels_last=channels_last,
                         compile=compile, mode=mode)
    compile = compile or runtime == "compile"
    x = _input(input_size, batch_size, dev, channels_last)
    fns = {}
    for name, m in models.items():
        net = prepare(m, dev, channels_last=channels_last, compile=compile, input_ndim=x.ndim)
        if mode == "infer":
            fns[name] = infer_fn(net, x, precision)
        else:
            fns[name] = train_fn(net, x, _num_classes(m, input_size, dev), precision)
    # every compiled model is the same Python code with other shapes: one recompilation per
    # model, above dynamo's default limit (8) with a family of 9+ models, past which it would
    # silently run the rest eagerly
    limits = (torch._dynamo.config.patch(recompile_limit=max(8, 4 * len(models)),
                                         accumulated_recompile_limit=max(256, 16 * len(models)))
              if compile else contextlib.nullcontext())
    with limits:
        out = interleaved(fns, dev, warmup, repeats)
    if mode == "train":
        for r in out.values():
            r["images_per_s"] = batch_size / (r["ms"] / 1e3)
    for m in models.values():
        m.zero_grad(set_to_none=True)
    return out


def speedup(dense: nn.Module, compressed: nn.Module, input_size=(3, 224, 224),
            batch_size: int = 1, device="cpu", amp: bool = False, *, warmup: int = 3,
            repeats: int = 10, channels_last: bool = False, compile: bool = False,
            train: bool = False) -> dict:
    """Measured speedup of ``compressed`` over ``dense`` beside their FLOP reduction.

    Args:
        dense, compressed: the two models (moved to ``device`` in place).
        input_size: one input's shape, (C, H, W) for images (default (3, 224, 224)).
        batch_size: images per timed call (default 1).
        device: "cpu" (default), "cuda" or "auto".
        amp: bf16 autocast (default False = fp32).
        warmup, repeats: untimed and timed interleaved rounds (median kept; default 3, 10).
        channels_last, compile: memory format and ``torch.compile`` (default off).
        train: time a training step (forward + backward + SGD step) instead of inference.

    Returns:
        ``flop_ratio`` (compressed / dense FLOPs, counted), ``latency_ratio`` (compressed /
        dense median time, measured), ``efficiency`` (measured speedup / FLOP reduction =
        flop_ratio / latency_ratio; 1 = as fast as the FLOPs promise), ``speedup``,
        ``flop_reduction``, ``param_ratio``, ``dense_ms`` / ``compressed_ms`` (medians),
        their interquartile ranges (``dense_iqr_ms`` / ``compressed_iqr_ms``), the FLOPs and
        parameters of both, ``batch_size``, ``precision``, ``mode`` and the
        :func:`environment` (device, threads, versions).
    """
    dev = resolve_device(device)
    check_number("batch_size", batch_size, 1, 1 << 20)
    precision = "bf16" if amp else "fp32"
    flops = [count_flops(m.cpu(), tuple(input_size)) for m in (dense, compressed)]
    params = [count_params(m) for m in (dense, compressed)]
    res = time_models({"dense": dense, "compressed": compressed}, input_size, batch_size, dev,
                      precision=precision, warmup=warmup, repeats=repeats,
                      channels_last=channels_last, compile=compile,
                      mode="train" if train else "infer")
    d, c = res["dense"]["ms"], res["compressed"]["ms"]
    fr, lr = flops[1] / flops[0], c / d
    return {"flop_ratio": fr, "latency_ratio": lr, "efficiency": fr / lr, "speedup": d / c,
            "flop_reduction": 1 / fr, "param_ratio": params[1] / params[0],
            "dense_ms": d, "compressed_ms": c, "dense_iqr_ms": res["dense"]["ms_iqr"],
            "compressed_iqr_ms": res["compressed"]["ms_iqr"], "dense_flops": flops[0],
            "compressed_flops": flops[1], "dense_params": params[0],
            "compressed_params": params[1], "batch_size": batch_size, "precision": precision,
            "channels_last": channels_last, "compile": compile,
            "mode": "train" if train else "infer", "repeats": repeats, **environment(dev)}
