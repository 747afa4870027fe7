"""Glue every notebook uses: a paper config -> TrainConfig, and train + measure one model.

    tcfg = train_config(cfg, epochs=cfg.finetune_epochs)
    metrics = train_and_measure(model, data, tcfg, ckpt_dir, input_size=(3, 32, 32))

``train_and_measure`` returns a JSON-ready dict for ``results.run_cached``: final test
accuracy, the per-epoch history, parameters, FLOPs (1 MAC = 1 FLOP), CPU latency at batch 1
and the training wall time.
"""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from reprolib import measure
from reprolib.train import TrainConfig, fit, resolve_device


def train_config(cfg, **overrides) -> TrainConfig:
    """A TrainConfig from the fields of a paper config that TrainConfig knows, plus overrides."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k in names}
    values.update(overrides)
    return TrainConfig(**values)


def train_and_measure(model: nn.Module, data, tcfg: TrainConfig, ckpt_dir=None, *,
                      input_size=None, device=None, desc: str = "", extra_loss=None,
                      grad_hook=None, latency_device="cpu", latency_repeats: int = 20) -> dict:
    """Train ``model`` with ``fit`` and measure it; returns the metrics of a results record."""
    device = resolve_device(device)
    input_size = input_size or (3, data.image_size, data.image_size)
    res = fit(model, data, tcfg, ckpt_dir=ckpt_dir, device=device, desc=desc,
              extra_loss=extra_loss, grad_hook=grad_hook)
    model = model.cpu() if latency_device == "cpu" else model
    lat = measure.latency(model, input_size, 1, latency_device, repeats=latency_repeats)
    return {"acc": res.acc, "test_loss": res.loss, "epochs": res.epochs,
            "train_time_s": round(sum(h["time_s"] for h in res.history), 2),
            "history": res.history, "params": measure.count_params(model),
            "flops": measure.count_flops(model, input_size), "latency_ms": lat["ms"],
            "latency_device": lat["device"], "latency_threads": lat["threads"],
            "train_device": str(device)}
