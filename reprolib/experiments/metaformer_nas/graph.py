"""The stages of MetaFormer-NAS: what each one runs (``run_toy``, ``run_search``,
``run_random``, ``run_retrain``), its key, and its builder (``toy_stage``, ``search_stage``,
``random_stage``, ``retrain_stage``, ``retrain_cell_stage``), each declaring the model it
builds, what it trains and what it reads.  The graph that assembles them is the package's
``MetaFormerNAS.declare``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from reprolib.configs import TrainConfig
from reprolib.core.device import resolve_device
from reprolib.core.measure import count_params
from reprolib.core.pipeline import (ModelSpec, Stage, Training, key_of, load_data,
                                    resources, train_and_measure, training)
from reprolib.core.registry import create_model
from reprolib.core.train import fit
from reprolib.data.catalog import num_classes
from reprolib.experiments import evidence as ev
from reprolib.methods.metaformer_nas import (NASConfig, search, toy_reinforce,
                                             uniform_architecture)
from reprolib.models.metaformer import OPS, Architecture, save_architecture

#: The paper's figure-5 example cell (0, id) (1, pool) (1, id) (3, pool).
FIG5_ARCH = [[0, "identity"], [1, "pooling"], [1, "identity"], [3, "pooling"]]
#: PoolFormer's (and the paper's) initial layer scale.
POOLFORMER_LAYER_SCALE = 1e-5


# --------------------------------------------------------------------------- configs


def nas_config(cfg, n_nodes: int) -> NASConfig:
    """The ``NASConfig`` of the paper config ``cfg`` (``MetaFormerNASConfig``) for
    ``n_nodes``, field by field: every search field of ``cfg`` under its own name, and
    ``shared_clip`` None (the paper clips no shared-weight gradient; ``cfg`` has no such
    field).  A field renamed on either side is an error here, not a silent default."""
    return NASConfig(
        n_nodes=n_nodes,
        rounds=cfg.rounds,
        shared_epochs=cfg.shared_epochs,
        arch_per=cfg.arch_per,
        shared_lr=cfg.shared_lr,
        shared_wd=cfg.shared_wd,
        shared_clip=None,
        max_train_batches=cfg.max_train_batches,
        controller_samples=cfg.controller_samples,
        controller_lr=cfg.controller_lr,
        controller_hidden=cfg.controller_hidden,
        controller_clip=cfg.controller_clip,
        temperature=cfg.temperature,
        tanh_c=cfg.tanh_c,
        entropy_weight=cfg.entropy_weight,
        baseline_decay=cfg.baseline_decay,
        derive_samples=cfg.derive_samples,
        derive_batches=cfg.derive_batches,
        reward_batches=cfg.reward_batches,
        uniform_samples=cfg.uniform_samples,
    )


def search_run_config(cfg, n_nodes: int) -> dict:
    """The key of stage ``search-nas<N>``: the data, backbone and layer scale of the shared
    model, the search batch and validation split, and the whole ``NASConfig``."""
    nas = dataclasses.asdict(nas_config(cfg, n_nodes))
    return key_of(cfg, "dataset", "model", "image_size", "batch_size", "val_fraction",
                  "layer_scale_init", **nas)


def search_recipe(cfg) -> TrainConfig:
    """What the search trains the shared weights with, as a recipe (for ``plan``): ``rounds
    x shared_epochs`` epochs of AdamW (``shared_lr``, ``shared_wd``) at batch ``batch_size``,
    no schedule (the search itself runs ``reprolib.methods.metaformer_nas.search``)."""
    return TrainConfig(epochs=cfg.rounds * cfg.shared_epochs, batch_size=cfg.batch_size,
                       optimizer="adamw", lr=cfg.shared_lr, weight_decay=cfg.shared_wd,
                       schedule="constant", progress=False)


def search_training(cfg) -> Training:
    """What the search trains, for ``plan``: :func:`search_recipe` on the training split
    (rewards on the validation split), the paper's stated values under ``search``.  Built
    directly: ``reprolib.core.pipeline.training`` looks up ``cfg.search`` even when given
    the recipe, and this config has no such field."""
    return Training(search_recipe(cfg), "search", cfg.dataset, cfg.image_size,
                    val_split=True)


def toy_target(n_nodes: int) -> Architecture:
    """The best architecture of the toy reward: the paper's figure-5 cell extended (node i
    > 4 takes node i - 2, ops alternate)."""
    nodes = [tuple(x) for x in FIG5_ARCH][:n_nodes]
    for i in range(len(nodes) + 1, n_nodes + 1):
        nodes.append((i - 2, OPS[i % 2]))
    return Architecture(tuple(nodes))


def model_spec(cfg, mixer, note: str = "") -> ModelSpec:
    """``cfg.model`` with token mixer ``mixer``, as the stages build it."""
    return ModelSpec(cfg.model, {"mixer": mixer, "num_classes": num_classes(cfg.dataset),
                                 "image_size": cfg.image_size,
                                 "layer_scale_init_value": cfg.layer_scale_init},
                     (3, cfg.image_size, cfg.image_size), note=note)


def _cell_spec(cfg, n_nodes: int, what: str) -> ModelSpec:
    """A searched ``n_nodes`` cell's model, counted with a stand-in cell (the toy target):
    every N-node cell has N shared-MLP edges, so the parameters are the same; FLOPs differ by
    the cell's pooling nodes."""
    return model_spec(cfg, toy_target(n_nodes).to_json(),
                      note=f"{what}: counted with a stand-in {n_nodes}-node cell (same "
                      "parameters as any; FLOPs differ by its pooling nodes)")


# --------------------------------------------------------------------------- stage bodies


def run_toy(cfg, n_nodes: int) -> dict:
    """REINFORCE on the toy reward (``toy_reinforce``) with ``cfg.toy_samples`` updates."""
    h = toy_reinforce(n_nodes, toy_target(n_nodes), samples=cfg.toy_samples, lr=cfg.toy_lr,
                      seed=cfg.seed, clip=cfg.controller_clip,
                      entropy_weight=cfg.entropy_weight, baseline_decay=cfg.baseline_decay)
    h["converged"] = h["most_likely"] == h["target"]
    return h


def _print(line: str) -> None:
    print(line, flush=True)


def run_search(cfg, n_nodes: int, ckpt_dir=None, log=_print) -> dict:
    """Search an ``n_nodes`` mixer with the settings of ``cfg``; returns the metrics of a
    results record (``search``'s dict, the 10 best candidates, ``n_nodes``, ``device``,
    ``shared_params``).  The derived architecture is also saved as ``ckpt_dir/arch.json``."""
    device = resolve_device(cfg.device)
    data = load_data(cfg, cfg.batch_size, val_fraction=cfg.val_fraction,
                     eval_batch_size=cfg.batch_size)
    model = create_model(cfg.model, mixer={"shared": n_nodes}, num_classes=data.num_classes,
                         image_size=cfg.image_size, layer_scale_init_value=cfg.layer_scale_init)
    out = search(model, data, nas_config(cfg, n_nodes), ckpt_dir=ckpt_dir, device=device,
                 seed=cfg.seed, log=log)
    if ckpt_dir is not None:
        save_architecture(out["arch"], Path(ckpt_dir) / "arch.json")
    out["candidates"] = out["candidates"][:10]
    out.update(n_nodes=n_nodes, device=str(device), shared_params=count_params(model))
    return out


def run_retrain(cfg, mixer, stage: Stage | None = None) -> dict:
    """Train ``cfg.model`` with token mixer ``mixer`` (a name or an architecture's JSON) from
    scratch with the ``retrain`` recipe and measure it: on the whole training set, or, when
    ``retrain.select_every`` > 0 (the paper: every 10 epochs), on the training split with the
    checkpoint best on the validation split reported (Flowers-102: its official val split); with a
    ``stage``, checkpoint in its folder and save the trained model there."""
    # select_every > 0 (paper): the checkpoint best on the validation split is reported
    # (Flowers-102: its official val split; other sets: val_fraction of train held out)
    data = load_data(cfg, cfg.retrain,
                     val_fraction=cfg.val_fraction if cfg.retrain.select_every else 0.0)
    model = create_model(cfg.model, mixer=mixer, num_classes=data.num_classes,
                         image_size=cfg.image_size, layer_scale_init_value=cfg.layer_scale_init)
    name = mixer if isinstance(mixer, str) else f"searched {Architecture.parse(mixer).n_nodes}-node"
    metrics = train_and_measure(model, data, cfg.retrain, stage.ckpt_dir if stage else None,
                                device=cfg.device, desc=f"retrain {name}", latency_repeats=5)
    metrics["test_images"] = data.test_size
    if stage is not None:
        stage.save_model(model)
    return metrics


def run_random(cfg, n_nodes: int, stage: Stage | None = None) -> dict:
    """The random-search control: ``cfg.random_samples`` cells drawn uniformly (seeded by
    ``cfg.seed``), each trained from scratch with the ``proxy`` recipe on the search's
    training split and scored on its validation split (the test images are never seen);
    returns the metrics of a results record: ``arch`` (the best on validation), every
    ``candidate`` with its validation accuracy, history and time, and ``search_time_s``."""
    import torch

    data = load_data(cfg, cfg.proxy, val_fraction=cfg.val_fraction,
                     eval_batch_size=cfg.batch_size)
    on_val = dataclasses.replace(data, test=data.val)     # fit evaluates on the held-out split
    gen = torch.Generator().manual_seed(cfg.seed)
    cands, t0 = [], time.perf_counter()
    for k in range(cfg.random_samples):
        arch = uniform_architecture(n_nodes, gen)
        model = create_model(cfg.model, mixer=arch.to_json(), num_classes=data.num_classes,
                             image_size=cfg.image_size,
                             layer_scale_init_value=cfg.layer_scale_init)
        ck = stage.ckpt_dir / f"candidate{k}" if stage else None
        res = fit(model, on_val, cfg.proxy, ckpt_dir=ck, device=cfg.device,
                  desc=f"random cell {k + 1}/{cfg.random_samples}")
        cands.append({"arch": arch.to_json(), "arch_str": str(arch), "val_acc": res.acc,
                      "history": res.history,
                      "time_s": round(sum(h["time_s"] for h in res.history), 2)})
    best = max(cands, key=lambda c: c["val_acc"])
    return {"arch": best["arch"], "arch_str": best["arch_str"], "val_acc": best["val_acc"],
            "candidates": cands, "n_nodes": n_nodes, "val_images": data.val.dataset_size,
            "search_time_s": round(sum(c["time_s"] for c in cands), 2),
            "wall_time_s": round(time.perf_counter() - t0, 2),
            "device": str(resolve_device(cfg.device))}


# --------------------------------------------------------------------------- stages


def _sfx(cfg) -> str:
    """The stage-name suffix of a seeded config: ``-s<seed>`` with ``cfg.seeds``, else ""."""
    return ev.seed_suffix(cfg.seed) if cfg.seeds else ""


def toy_stage(cfg, n_nodes: int) -> Stage:
    """``toy-nas<N>``: REINFORCE on the toy reward (:func:`run_toy`); trains only the
    controller, on no data."""
    key = key_of(cfg, "toy_samples", "toy_lr", "controller_clip", "entropy_weight",
                 "baseline_decay", n_nodes=n_nodes)
    return Stage(cfg, f"toy-nas{n_nodes}", key, lambda st: run_toy(cfg, n_nodes),
                 resources=resources(cfg, trains=False), group="toy",
                 note=f"REINFORCE on a toy reward whose best {n_nodes}-node cell is known "
                 f"({cfg.toy_samples} controller updates, CPU)")


def search_stage(cfg, n_nodes: int) -> Stage:
    """``search-nas<N>[-s<seed>]``: the search (:func:`run_search`): shared weights trained
    on the training split, rewards on the held-out validation split."""
    cap = f", capped at {cfg.max_train_batches} batches" if cfg.max_train_batches else ""
    return Stage(cfg, f"search-nas{n_nodes}{_sfx(cfg)}", search_run_config(cfg, n_nodes),
                 lambda st: run_search(cfg, n_nodes, st.ckpt_dir),
                 model=model_spec(cfg, {"shared": n_nodes}, note="the shared-weight model"),
                 train=search_training(cfg),
                 resources=resources(cfg), group=f"search-nas{n_nodes}",
                 note=f"{cfg.rounds} rounds x (shared weights {cfg.shared_epochs} epoch{cap}, "
                 f"{cfg.controller_samples} controller samples, Adam {cfg.controller_lr:g}); "
                 "rewards on the val split")


def random_stage(cfg, n_nodes: int) -> Stage:
    """``random-nas<N>[-s<seed>]``: the random-search control (:func:`run_random`)."""
    key = key_of(cfg, "dataset", "model", "image_size", "batch_size", "val_fraction",
                 "layer_scale_init", "random_samples", "proxy", n_nodes=n_nodes)
    return Stage(cfg, f"random-nas{n_nodes}{_sfx(cfg)}", key,
                 lambda st: run_random(cfg, n_nodes, st),
                 model=_cell_spec(cfg, n_nodes, "uniformly drawn cells"),
                 train=training(cfg, "proxy", val_split=True, runs=cfg.random_samples),
                 resources=resources(cfg), group=f"random-nas{n_nodes}",
                 note=f"{cfg.random_samples} uniform {n_nodes}-node cells x {cfg.proxy.epochs} "
                 "proxy epochs, best on the val split")


def _retrain_key(cfg, **extra) -> dict:
    return key_of(cfg, "dataset", "model", "image_size", "layer_scale_init", "retrain", **extra)


def _retrain_train(cfg):
    """The retraining recipe: on the training split when ``retrain.select_every`` > 0 (a
    validation split selects the checkpoint), else on the whole training set."""
    return training(cfg, "retrain", val_split=cfg.retrain.select_every > 0)


def retrain_stage(cfg, mixer: str) -> Stage:
    """``retrain-<mixer>[-s<seed>]`` for a hand-designed mixer ("pooling", "mlp",
    "attention"), trained from scratch (:func:`run_retrain`)."""
    return Stage(cfg, f"retrain-{mixer}{_sfx(cfg)}", _retrain_key(cfg, mixer=mixer),
                 lambda st: run_retrain(cfg, mixer, st), model=model_spec(cfg, mixer),
                 train=_retrain_train(cfg), resources=resources(cfg), group="retrain",
                 note=f"{mixer} mixer from scratch")


def retrain_cell_stage(cfg, chosen: Stage, n_nodes: int, kind: str) -> Stage:
    """``retrain-nas<N>[-s<seed>]`` (``kind`` "nas", after the search stage ``chosen``) or
    ``retrain-random<N>[-s<seed>]`` (``kind`` "random", after the random-search stage
    ``chosen``): the architecture ``chosen`` picked, read from its metrics, trained from
    scratch.  Keyed by ``chosen`` (its run id), not by the architecture."""
    if kind not in ("nas", "random"):
        raise ValueError(f"kind={kind!r}: 'nas' or 'random'")

    def fn(st: Stage) -> dict:
        return run_retrain(cfg, Architecture.parse(chosen.metrics()["arch"]).to_json(), st)

    what = "the searched cell" if kind == "nas" else "the random-search cell"
    return Stage(cfg, f"retrain-{kind}{n_nodes}{_sfx(cfg)}", _retrain_key(cfg), fn,
                 after=[chosen], model=_cell_spec(cfg, n_nodes, what),
                 train=_retrain_train(cfg), resources=resources(cfg), group="retrain",
                 note=f"{what} of {chosen.name} from scratch")
