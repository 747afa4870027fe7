"""Every compressed model out of the package: ONNX (``torch.onnx``, opset >= 17) and
``torch.export``, each checked against the PyTorch model it came from.

    small = reprolib.load_compressed("runs/swin_p40")            # any method's compressed model
    path = to_onnx(small, "runs/swin_p40.onnx", input_size=(3, 224, 224))
    verify_onnx(small, path, (3, 224, 224))                      # ONNX Runtime vs PyTorch
    ep = to_exported_program(small, (3, 224, 224))               # torch.export.ExportedProgram

``reprolib export runs/swin_p40 --format onnx`` does the first two on a file written by
``reprolib.save_compressed`` and writes ``runs/swin_p40.onnx`` beside it.

The ONNX file has a dynamic batch dimension.  It is written by the dynamo exporter
(``torch.onnx.export(..., dynamo=True)``), then ``onnxscript``'s optimizer folds constants and
fuses BatchNorm into convolutions -- except where that would copy a tied weight: a parameter
that the model uses more than once (PE's ``W`` and ``W^T``, one 3x3 kernel shared by the
blocks of a stage) stays one initializer feeding several nodes, so the file holds each shared
tensor once, as the compressed format does (:func:`tied_weights` checks it).
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from reprolib import paths
from reprolib.core import io
from reprolib.errors import ReprolibError, choose

#: The ONNX opset the files are written with (the issue asks for >= 17).
OPSET = 18
MIN_OPSET = 17
#: Export formats of ``reprolib export``.
FORMATS = ("onnx",)


def opset_range() -> tuple[int, int]:
    """The ONNX opsets :func:`to_onnx` may be asked for: ``MIN_OPSET`` up to the newest the
    installed ``torch.onnx`` exporter supports (its ``ONNX_MAX_OPSET``), no newer than the
    installed ``onnx`` package knows.  Below the exporter's own opset (18) the file is
    converted down, which fails for some operators: :func:`to_onnx` then refuses it."""
    hi = OPSET
    try:
        from torch.onnx import _constants

        hi = int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        pass
    try:
        import onnx.defs

        hi = min(hi, int(onnx.defs.onnx_opset_version()))
    except ImportError:
        pass
    return MIN_OPSET, max(hi, OPSET)


def _check_opset(opset) -> int:
    lo, hi = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ReprolibError(f"opset={opset!r} must be a whole number, {lo}..{hi} "
                            f"(default {OPSET})")
    if opset < lo:
        raise ReprolibError(f"opset={opset} is too old; use {lo} or newer, up to {hi} "
                            f"(default {OPSET})")
    if opset > hi:
        raise ReprolibError(f"opset={opset} is not supported by the installed exporter "
                            f"(torch {torch.__version__.split('+')[0]}); valid opsets: "
                            f"{lo}..{hi} (default {OPSET})")
    return int(opset)


def _check_size(input_size) -> tuple[int, ...]:
    try:
        size = tuple(int(s) for s in input_size)
    except (TypeError, ValueError):
        raise ReprolibError(f"input_size={input_size!r} must be a tuple of positive "
                            "integers, e.g. (3, 224, 224)") from None
    if not size or any(s < 1 for s in size) or any(float(a) != s for a, s in zip(input_size, size)):
        raise ReprolibError(f"input_size={input_size!r} must be a tuple of positive integers, "
                            "e.g. (3, 224, 224)")
    return size


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines and warnings stay out of notebooks and logs."""
    with contextlib.redirect_stdout(_io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _eval(model: nn.Module):
    """``model`` in eval mode for the block, its previous mode restored afterwards."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def example_input(input_size: Sequence[int], batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    """A standard-normal batch of ``input_size`` images (seeded; batch 2 so that exporters do
    not specialise the batch dimension to 1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, *_check_size(input_size), generator=g)


def _batch_dim():
    return ({0: torch.export.Dim("batch", min=1, max=4096)},)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, input_size=(3, 224, 224), batches: int = 4,
                        batch_size: int = 8, seed: int = 0) -> nn.Module:
    """Set every BatchNorm's running mean and variance to the statistics of ``batches``
    random standard-normal batches passing through ``model`` (cumulative average), then
    leave it in eval mode.  For exporting a model that was never trained: with the default
    statistics (mean 0, variance 1) a deep untrained ResNet's outputs grow to the hundreds,
    where float32 rounding alone exceeds an absolute tolerance; calibrated, they have a
    trained model's scale.  Models without BatchNorm are returned unchanged (eval mode)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                       # cumulative moving average
        model.train()
        g = torch.Generator().manual_seed(seed)
        for _ in range(batches):
            model(torch.randn(batch_size, *_check_size(input_size), generator=g))
        for m, mom in zip(bns, saved):
            m.momentum = mom
    return model.eval()


# --------------------------------------------------------------------------- torch.export


def to_exported_program(model: nn.Module, input_size=(3, 224, 224),
                        dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` in eval mode on a ``(2, *input_size)`` input,
    with a dynamic batch dimension (``dynamic_batch``)."""
    x = example_input(input_size)
    with _eval(model), _quiet():
        return torch.export.export(model, (x,), dynamic_shapes=_batch_dim() if dynamic_batch
                                   else None)


def parameter_uses(program: torch.export.ExportedProgram) -> dict[str, int]:
    """How many operations of the exported graph read each parameter (by its name in the
    model); a parameter read more than once is a tied (shared) weight."""
    to_param = program.graph_signature.inputs_to_parameters
    return {to_param[n.name]: len(n.users) for n in program.graph.nodes
            if n.op == "placeholder" and n.name in to_param}


# --------------------------------------------------------------------------- ONNX


_LAYOUT_OPS = ("Transpose", "Reshape", "Identity", "Unsqueeze", "Squeeze", "Flatten", "Cast")


def _shared(value) -> bool:
    """``value`` is an initializer read by several nodes (a tied weight), or a layout view of
    one (its transpose, a reshape of it, ...)."""
    if value is None:
        return False
    if value.is_initializer():
        return len(value.uses()) > 1
    node = value.producer()
    return (node is not None and node.op_type in _LAYOUT_OPS and bool(node.inputs)
            and _shared(node.inputs[0]))


def _keep_ties(model_ir) -> None:
    """Optimise the exported ONNX graph in place (onnxscript: constant folding, rewrite rules,
    BatchNorm fusion) without copying a tied weight: nothing computed from an initializer
    that feeds several nodes is folded into a new initializer (folding ``Transpose(W)``
    would store W twice, as W and W^T); the BatchNorm fusion already refuses shared
    weights.  An onnxscript without the ``should_fold`` hook leaves the graph unoptimised
    (valid, ties kept; ONNX Runtime optimises it when it loads it)."""
    try:
        from onnxscript.optimizer._optimizer import optimize_ir
    except ImportError:
        return

    def should_fold(node):
        return False if any(_shared(v) for v in node.inputs) else None

    try:
        optimize_ir(model_ir, should_fold=should_fold)
    except TypeError:
        return


def to_onnx(model: nn.Module, path: str | os.PathLike, input_size=(3, 224, 224), *,
            opset: int = OPSET, dynamic_batch: bool = True,
            program: torch.export.ExportedProgram | None = None) -> Path:
    """Write ``model`` (in eval mode) as an ONNX file at ``path``; returns the path.

    input_size: one image's shape, (3, 224, 224) by default (the size the model was trained
    at: a CIFAR model takes (3, 32, 32)).  opset: ONNX opset, in :func:`opset_range` (17 up
    to what the installed exporter supports; default 18); a file the exporter writes at
    another opset than asked (a failed version conversion) is refused, nothing written.
    dynamic_batch: the batch dimension is a symbol (default) rather than fixed at 2.
    The exporter is ``torch.onnx.export(..., dynamo=True)`` (through ``torch.export``);
    tied weights stay one initializer (module docstring).  program: ``model``'s
    :func:`to_exported_program` when it is at hand (exported once, not twice).  The file is
    written atomically.
    """
    size = _check_size(input_size)
    opset = _check_opset(opset)
    path = Path(path)
    if path.suffix != ".onnx":
        raise ReprolibError(f"ONNX output {path} must end in .onnx")
    x = example_input(size)
    with _eval(model), _quiet():
        onnx_program = torch.onnx.export(
            program if program is not None else model, (x,), None, opset_version=int(opset),
            dynamo=True, optimize=False, external_data=False, verbose=False,
            input_names=["image"], output_names=["logits"],
            dynamic_shapes=_batch_dim() if dynamic_batch and program is None else None)
        _keep_ties(onnx_program.model)
    imports = onnx_program.model.opset_imports
    got = imports.get("", imports.get("ai.onnx"))
    if got != opset:   # the exporter keeps its own opset when a version conversion fails
        lo, hi = opset_range()
        raise ReprolibError(f"opset={opset} was not honoured: torch.onnx wrote this model at "
                            f"opset {got} (its version conversion failed); ask for opset "
                            f"{got}, or another of {lo}..{hi} that it reaches for this model")
    path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write(path, lambda tmp: onnx_program.save(str(tmp), external_data=False))
    return path


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(path: str | os.PathLike, x: torch.Tensor) -> np.ndarray:
    """The output of the ONNX file at ``path`` on ``x`` under ONNX Runtime (CPU)."""
    path = Path(path)
    if not path.exists():
        raise ReprolibError(f"ONNX file {paths.rel(path)} does not exist")
    sess = _session(path)
    return sess.run(None, {sess.get_inputs()[0].name: x.detach().cpu().numpy()})[0]


def tied_weights(model: nn.Module, path: str | os.PathLike, uses: dict[str, int]) -> dict:
    """Whether each tied weight of ``model`` (a parameter read by more than one operation,
    ``uses`` from :func:`parameter_uses`) is stored once among the ONNX file's initializers.

    A weight is found by its values (as stored or transposed / reshaped: the sorted values
    are compared), so a copy under another name counts.  Returns ``{"tied": [names],
    "copies": {name: initializers holding it}, "stay_tied": bool | None}``; ``stay_tied``
    is None when the model has no tied weight, and weights whose entries are all equal (a
    fresh LayerNorm) cannot be told apart and are left out.
    """
    import onnx
    from onnx import numpy_helper

    params = dict(model.named_parameters(remove_duplicate=False))   # every alias of a shared one
    tied = sorted(n for n, k in uses.items() if k > 1 and n in params)
    by_size: dict[int, list[np.ndarray]] = {}
    for init in onnx.load(str(path)).graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and a.size > 1:
            by_size.setdefault(a.size, []).append(np.sort(a.ravel()))
    copies = {}
    for n in tied:
        v = np.sort(params[n].detach().cpu().float().numpy().ravel())
        if v.size < 2 or v[0] == v[-1]:
            continue
        copies[n] = sum(1 for a in by_size.get(v.size, []) if np.array_equal(a, v))
    return {"tied": tied, "copies": copies,
            "stay_tied": all(c == 1 for c in copies.values()) if copies else None}


def verify_onnx(model: nn.Module, path: str | os.PathLike, input_size=(3, 224, 224), *,
                batch_size: int = 3, seed: int = 1, uses: dict[str, int] | None = None) -> dict:
    """ONNX Runtime's output of ``path`` against ``model``'s on a random batch.

    batch_size: 3 by default, other than the exporter's example batch of 2, so the dynamic
    batch dimension is exercised.  uses: :func:`parameter_uses` of the model (to check that
    tied weights stay tied; None = not checked).  Returns ``max_abs_diff``,
    ``max_abs_output`` (the scale the difference is measured against), ``opset``,
    ``initializers``, ``onnx_weights`` (elements stored in float initializers), ``params``
    and, with ``uses``, the :func:`tied_weights` report.
    """
    import onnx

    path = Path(path)
    x = example_input(input_size, batch_size=batch_size, seed=seed)
    got = run_onnx(path, x)
    with _eval(model), torch.no_grad():
        ref = model(x).detach().cpu().numpy()
    if got.shape != ref.shape:
        raise ReprolibError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    om = onnx.load(str(path))
    opset = max(o.version for o in om.opset_import if o.domain in ("", "ai.onnx"))
    weights = sum(int(np.prod(i.dims)) for i in om.graph.initializer
                  if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                     onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE))
    out = {"max_abs_diff": float(np.abs(got - ref).max()),
           "max_abs_output": float(np.abs(ref).max()), "batch_size": batch_size,
           "opset": int(opset), "initializers": len(om.graph.initializer),
           "onnx_weights": weights, "params": sum(p.numel() for p in model.parameters()),
           "file_bytes": path.stat().st_size}
    if uses is not None:
        out["ties"] = tied_weights(model, path, uses)
    return out


def verify_exported_program(model: nn.Module, program: torch.export.ExportedProgram,
                            input_size=(3, 224, 224), *, batch_size: int = 3,
                            seed: int = 1) -> float:
    """Max abs difference between ``program.module()`` and ``model`` on a random batch."""
    x = example_input(input_size, batch_size=batch_size, seed=seed)
    with _eval(model), torch.no_grad():
        return float((program.module()(x) - model(x)).abs().max())


def export_check(model: nn.Module, path: str | os.PathLike, input_size=(3, 224, 224), *,
                 opset: int = OPSET) -> dict:
    """Everything the issue asks of one compressed model: ``torch.export`` (and its output
    difference), the ONNX file at ``path`` (:func:`to_onnx`), ONNX Runtime parity and the
    tied-weight report (:func:`verify_onnx`).  Returns one dict of JSON-ready numbers."""
    program = to_exported_program(model, input_size)
    uses = parameter_uses(program)
    ep_diff = verify_exported_program(model, program, input_size)
    to_onnx(model, path, input_size, opset=opset, program=program)
    return {"torch_export_max_abs_diff": ep_diff, **verify_onnx(model, path, input_size,
                                                                uses=uses)}


# --------------------------------------------------------------------------- saved models


def input_size_of(model: nn.Module) -> tuple[int, int, int]:
    """The image size a (loaded) model takes: its builder's ``img_size`` / ``image_size``
    argument, else the model's own record of it (timm's ``patch_embed.img_size``, the CIFAR
    ViT's ``arch``), else the builder's default, else 32 px for the CIFAR / test builders and
    224 px for the rest."""
    import inspect

    from reprolib.core import registry

    spec = getattr(model, "reprolib_spec", None) or {}
    kw = spec.get("kwargs", {})
    side = kw.get("img_size", kw.get("image_size"))
    if side is None:
        side = getattr(getattr(model, "patch_embed", None), "img_size", None)
    arch = getattr(model, "arch", None)
    if side is None and isinstance(arch, dict):
        side = arch.get("image_size")
    b = spec.get("builder", "")
    if side is None and b:
        try:
            params = inspect.signature(registry.builder(b)).parameters
        except ReprolibError:
            params = {}
        for name in ("img_size", "image_size"):
            if name in params and params[name].default is not inspect.Parameter.empty:
                side = params[name].default
    if side is None:
        side = 32 if any(t in b for t in ("cifar", "test", "tiny", "small_cnn")) else 224
    if isinstance(side, (list, tuple)):
        side = side[0]
    return (3, int(side), int(side))


def export_saved(path: str | os.PathLike, fmt: str = "onnx", input_size=None,
                 opset: int = OPSET) -> dict:
    """Export a model written by ``reprolib.save_compressed`` (``PATH`` = its stem, .json or
    .safetensors) to ``fmt`` beside it (``PATH.onnx``) and check it; returns the
    :func:`export_check` report plus ``onnx`` (the file) and ``input_size``.  Nothing is
    written when the format is unknown or the file cannot be loaded."""
    from reprolib.core.compressed import _stems, load_compressed

    choose("format", fmt, FORMATS)
    size = _check_size(input_size) if input_size else None
    opset = _check_opset(opset)
    js, _ = _stems(paths.resolve(path))
    model = load_compressed(js)
    size = size or input_size_of(model)
    out = js.with_suffix(".onnx")
    report = export_check(model, out, size, opset=opset)
    return {"onnx": str(out), "input_size": list(size), **report}
