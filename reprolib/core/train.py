"""One training loop for every paper: ``fit(model, data, cfg)``.

What it does, in order, each step: (mixup/cutmix) -> forward under bf16 autocast on CUDA ->
task loss (+ ``extra_loss(model)``, e.g. an L1 penalty on pruning scores) -> backward ->
``grad_hook(model)`` -> gradient clipping -> optimizer step -> per-step LR schedule.  After
each epoch it evaluates on the test loader, writes an atomic checkpoint (model, optimizer,
scheduler, history, RNG state) and, when restarted on the same ``ckpt_dir``, resumes from
the last finished epoch with the same final numbers on CPU: every epoch reseeds torch's RNG
and the data order from (seed, epoch), so nothing depends on what ran before.

No host-device synchronisation per step: the loss sum and the correct count accumulate in
device tensors and are read once per epoch (``evaluate`` likewise once per pass); progress
bars read the loss back every ``PROGRESS_EVERY`` steps only, and only when shown.

Multi-GPU: start ``reprolib compute PAPER`` with ``torchrun --nproc_per_node=N``;
``reprolib.device.init_distributed`` sets up the process group, ``get_data`` shards by rank, and ``fit`` wraps the model in
DistributedDataParallel and all-reduces the metrics.  The same code runs on one device.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from reprolib import paths
from reprolib.core import io
from reprolib.configs import TrainConfig
from reprolib.core.device import is_main_process, resolve_device, world
from reprolib.errors import ReprolibError

__all__ = ["TrainConfig", "FitResult", "fit", "evaluate", "build_optimizer", "lr_factor",
           "load_checkpoint", "show_progress", "PROGRESS_EVERY"]

#: A shown progress bar reads the running loss back from the device every this many steps
#: (the only host-device synchronisation inside an epoch, and only when the bar is shown).
PROGRESS_EVERY = 25


@dataclass
class FitResult:
    """What ``fit`` returns; ``history`` has one dict per epoch."""

    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0         # training time of this call (resumed epochs excluded)
    resumed_from: int = 0            # epochs loaded from a checkpoint

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def acc(self) -> float:
        """Final test top-1 accuracy (%)."""
        ev = [h for h in self.history if "test_acc" in h]
        return ev[-1]["test_acc"] if ev else float("nan")

    @property
    def loss(self) -> float:
        ev = [h for h in self.history if "test_loss" in h]
        return ev[-1]["test_loss"] if ev else float("nan")


# --------------------------------------------------------------------------- helpers


def show_progress(enabled: bool = True) -> bool:
    """Progress bars are shown unless disabled, or running under CI / nbval / papermill batch."""
    return enabled and not any(os.environ.get(v) for v in ("CI", "NBVAL", "REPROLIB_NO_PROGRESS"))


def _all_sum(values: list, device) -> list[float]:
    """Sum ``values`` (numbers or device scalars) over the processes; the device scalars are
    read back in one transfer (the only synchronisation)."""
    dt = _acc_dtype(device)
    if world()[1] > 1:
        t = torch.stack([torch.as_tensor(v, device=device).to(dt).reshape(()) for v in values])
        dist.all_reduce(t)
        return t.tolist()
    idx = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
    out = [float(v) if i not in idx else 0.0 for i, v in enumerate(values)]
    if idx:
        for i, v in zip(idx, torch.stack([values[i].to(dt).reshape(()) for i in idx]).tolist()):
            out[i] = v
    return out


def _acc_dtype(device) -> torch.dtype:
    """float64 where the device has it (CPU, CUDA), else float32 (MPS)."""
    return torch.float64 if torch.device(device).type in ("cpu", "cuda") else torch.float32


def _to(t, device: torch.device):
    """``t`` on ``device`` (the same tensor when it is already there): a loader built for
    another device (a CPU loader feeding a CUDA model) can no longer mismatch the model.
    Lists, tuples and dicts (a detector's images and targets) are moved element by element."""
    if isinstance(t, (list, tuple)):
        return type(t)(_to(v, device) for v in t)
    if isinstance(t, dict):
        return {k: _to(v, device) for k, v in t.items()}
    if hasattr(t, "device") and hasattr(t, "to"):       # a tensor (or one standing for it)
        return t if t.device == device else t.to(device, non_blocking=True)
    return t


def _zeros(device) -> torch.Tensor:
    return torch.zeros((), dtype=_acc_dtype(device), device=device)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.no_decay_norm_bias:
        decay = [p for p in params if p.ndim > 1]
        rest = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
    else:
        groups = [{"params": params}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based)."""
    epoch = step / steps_per_epoch
    warm = cfg.warmup_epochs
    if warm > 0 and epoch < warm:
        return cfg.warmup_start + (1 - cfg.warmup_start) * epoch / warm
    if cfg.schedule == "cosine":
        t = (epoch - warm) / max(cfg.epochs - warm, 1e-8)
        floor = cfg.min_lr / cfg.lr if cfg.lr else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    e = int(epoch)  # step schedules change at epoch boundaries
    if cfg.schedule == "step":
        return cfg.lr_decay ** (e // cfg.step_size)
    if cfg.schedule == "multistep":
        return cfg.lr_decay ** sum(e >= m for m in cfg.milestones)
    return 1.0


#: What a checkpoint of ``fit`` holds (besides ``config`` and, when selecting, ``best``).
CKPT_KEYS = ("model", "optimizer", "scheduler", "epoch", "history")


def load_checkpoint(path: Path, cfg: TrainConfig | None = None) -> dict:
    """Load a checkpoint written by ``fit`` (``weights_only=True``: nothing is unpickled); a
    corrupt or refused file is a clear ReprolibError.  With ``cfg`` (the recipe as ``fit``
    runs it), the checkpoint must have been saved by that recipe (:func:`io.check_resume`)
    and its epoch and history must agree."""
    ck = io.load_torch(path, "checkpoint")
    if not isinstance(ck, dict) or "model" not in ck or "epoch" not in ck:
        raise ReprolibError(f"checkpoint {paths.rel(path)} is not a reprolib training "
                            "checkpoint; delete it (or rerun with --force) to start the stage "
                            "over")
    if cfg is None:
        return ck
    io.check_resume(ck, path, _ckpt_config(cfg), "checkpoint", CKPT_KEYS)
    epoch, hist = ck["epoch"], ck["history"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= cfg.epochs \
            or not isinstance(hist, list) or len(hist) != epoch \
            or not all(isinstance(h, dict) for h in hist):
        raise ReprolibError(f"checkpoint {paths.rel(path)}: epoch {epoch!r} and its history of "
                            f"{len(hist) if isinstance(hist, list) else type(hist).__name__} "
                            f"epochs do not describe epochs 0..{cfg.epochs} of this recipe; "
                            "delete it (or rerun with --force) to start the stage over")
    return ck


def _ckpt_config(cfg: TrainConfig) -> dict:
    """The recipe as a checkpoint stores it: every field that changes the run."""
    from reprolib.configs import NOT_HASHED

    return {k: v for k, v in asdict(cfg).items() if k not in NOT_HASHED}


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, loader, device=None, amp: bool = True,
             per_image: bool = False) -> dict:
    """Top-1 accuracy (%) and mean cross-entropy of ``model`` over ``loader``; with
    ``per_image`` (one process), also ``correct``: whether each image, in the loader's order,
    was classified right (a bool array), so two models tested on the same images can be
    compared image by image."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    correct, loss, total = _zeros(device), _zeros(device), 0
    hits = [] if per_image else None
    use_amp = amp and device.type == "cuda"
    for x, y in loader:
        x, y = _to(x, device), _to(y, device)
        with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
            out = model(x)
        loss += F.cross_entropy(out.float(), y, reduction="sum").to(loss.dtype)
        hit = out.argmax(1) == y
        correct += hit.sum()
        if hits is not None:
            hits.append(hit)
        total += y.numel()
    correct, total, loss = _all_sum([correct, total, loss], device)
    model.train(was)
    out = {"acc": 100.0 * correct / max(total, 1), "loss": loss / max(total, 1)}
    if hits is not None and world()[1] == 1:
        out["correct"] = torch.cat(hits).cpu().numpy() if hits else torch.zeros(0).bool().numpy()
    return out


# --------------------------------------------------------------------------- fit


def fit(model: nn.Module, data, cfg: TrainConfig, *,
        extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
        grad_hook: Callable[[nn.Module], None] | None = None,
        ckpt_dir: str | os.PathLike | None = None, device=None, desc: str = "",
        criterion: Callable | None = None, evaluator: Callable | None = None) -> FitResult:
    """Train ``model`` on ``data`` (a :class:`reprolib.data.Data`) with ``cfg``.

    extra_loss: ``f(model) -> scalar`` added to the task loss (e.g. gamma * sum |scores|).
    grad_hook: ``f(model)`` called after backward, before clipping and the step.
    criterion: ``f(net, x, y) -> scalar`` task loss of a batch, for a model that computes
        its own loss (a detector: the sum of ``net(images, targets)``'s losses); default
        cross-entropy of ``net(x)`` (with label smoothing / mixup).
    evaluator: ``f(model, loader, device, amp) -> dict`` of test metrics, recorded per
        evaluated epoch as ``test_<key>`` (default :func:`evaluate`: ``acc``, ``loss``).
    ckpt_dir: folder for ``last.pt``; an existing checkpoint there is resumed.
    device: "auto"/None = cuda when available.  The model is moved there in place.
    desc: label of the progress bar.
    Returns a :class:`FitResult`; the model holds the final weights.
    """
    from reprolib.core.progress import tqdm  # text bars, tidy in Jupyter (no ipywidgets needed)

    device = resolve_device(device)
    rank, nproc = world()
    if cfg.lr_ref_batch:  # the linear scaling rule: lr given for lr_ref_batch images per step
        cfg = replace(cfg, lr=cfg.peak_lr(nproc), lr_ref_batch=0)
    model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg)
    steps = max(len(data.train), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps))
    result, start = FitResult(), 0
    ckpt = Path(ckpt_dir) / "last.pt" if ckpt_dir else None
    if ckpt is not None and ckpt.exists():
        ck = load_checkpoint(ckpt, cfg)
        io.load_state(model, ck["model"], ckpt, "checkpoint", "model")
        io.load_state(opt, ck["optimizer"], ckpt, "checkpoint", "optimizer state")
        io.load_state(sched, ck["scheduler"], ckpt, "checkpoint", "scheduler state")
        result.history, start = ck["history"], ck["epoch"]
        result.resumed_from = start
        if is_main_process() and start < cfg.epochs:
            print(f"{desc + ': ' if desc else ''}resuming from {ckpt} at epoch "
                  f"{start + 1}/{cfg.epochs} ({start} done)", flush=True)
    net = model
    if nproc > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        from timm.data import Mixup

        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                      label_smoothing=cfg.label_smoothing, num_classes=data.num_classes)
    use_amp = cfg.amp and device.type == "cuda"
    bar = show_progress(cfg.progress) and rank == 0
    select = cfg.select_every > 0
    if select and getattr(data, "val", None) is None:
        raise ReprolibError("select_every > 0 selects the checkpoint best on validation, but "
                            "the data has no validation split (load it with val_fraction > 0)")
    best = ck.get("best") if ckpt is not None and ckpt.exists() and select else None
    if best is not None and not (isinstance(best, dict) and {"epoch", "val_acc", "model"} <= set(best)):
        raise ReprolibError(f"checkpoint {paths.rel(ckpt)}: its 'best' entry is not the "
                            "weights best on validation; delete it (or rerun with --force) to "
                            "start the stage over")
    t0 = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)   # dropout, drop-path, mixup
        data.train.set_epoch(epoch)
        net.train()
        tot_loss, tot_correct, tot_n = _zeros(device), _zeros(device), 0
        te = time.perf_counter()
        it = tqdm(data.train, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}".strip(),
                  leave=False, disable=not bar)
        for step, (x, y) in enumerate(it):
            x, y = _to(x, device), _to(y, device)   # a no-op when the loader is on the device
            if device.type == "cuda" and cfg.channels_last and getattr(x, "ndim", 0) == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            target, out = y, None
            if criterion is not None:
                with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                    loss = criterion(net, x, y).float()
            else:
                if mixup is not None:
                    if len(x) % 2:  # timm's Mixup needs an even batch
                        x, y = x[:-1], y[:-1]
                    x, target = mixup(x, y)
                with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                    out = net(x)
                out = out.float()
            if out is None:
                pass
            elif mixup is not None:
                loss = torch.sum(-target * F.log_softmax(out, dim=-1), dim=-1).mean()
            else:
                loss = F.cross_entropy(out, target, label_smoothing=cfg.label_smoothing)
            total = loss + extra_loss(model) if extra_loss is not None else loss
            opt.zero_grad(set_to_none=True)
            total.backward()
            if grad_hook is not None:
                grad_hook(model)
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            sched.step()
            tot_loss += loss.detach().to(tot_loss.dtype) * len(y)   # on the device: no sync
            if mixup is None and out is not None:
                tot_correct += (out.argmax(1) == y).sum()
            tot_n += len(y)
            if bar and (step + 1) % PROGRESS_EVERY == 0:
                it.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        tot_loss, tot_correct, tot_n = _all_sum([tot_loss, tot_correct, tot_n], device)
        rec = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
               "train_loss": tot_loss / max(tot_n, 1)}
        if mixup is None and criterion is None:
            rec["train_acc"] = 100.0 * tot_correct / max(tot_n, 1)
        if select and ((epoch + 1) % cfg.select_every == 0 or epoch + 1 == cfg.epochs):
            rec["val_acc"] = evaluate(model, data.val, device, cfg.amp)["acc"]
            if best is None or rec["val_acc"] > best["val_acc"]:
                best = {"epoch": epoch + 1, "val_acc": rec["val_acc"],
                        "model": {k: v.detach().to("cpu", copy=True)
                                  for k, v in model.state_dict().items()}}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            if select and epoch + 1 == cfg.epochs and best is not None:
                # the weights best on validation
                io.load_state(model, best["model"], ckpt or Path("last.pt"), "checkpoint",
                              "best model")
                rec["selected_epoch"], rec["selected_val_acc"] = best["epoch"], best["val_acc"]
            ev = (evaluator or evaluate)(model, data.test, device, cfg.amp)
            rec.update({f"test_{k}": v for k, v in ev.items()})
        rec["time_s"] = time.perf_counter() - te
        result.history.append(rec)
        if ckpt is not None and rank == 0:
            io.save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "epoch": epoch + 1,
                           "history": result.history, "config": _ckpt_config(cfg),
                           **({"best": best} if select else {})}, ckpt)
        if nproc > 1:
            dist.barrier()
    result.wall_time_s = time.perf_counter() - t0
    return result
