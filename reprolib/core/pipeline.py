"""The one engine every paper's pipeline runs on.

A pipeline is a list of :class:`Stage` objects.  A stage is one cached step: a results record
(``results/<paper>/<profile>/<name>-<hash>.json``, the hash taken over the stage's config)
plus its checkpoint folder (``results/<paper>/<profile>/ckpt/<name>-<hash>/``), where training
checkpoints and the stage's saved models live.  A stage that depends on another names it in
``after``: the upstream stage's run id enters the downstream key, so changing an upstream
setting re-keys everything after it, and a stage asks its upstream for its model with
:meth:`Stage.model`, which recomputes the upstream stage only if its file is gone.

    search = Stage(cfg, "search", {...}, fn=do_search)
    tune = Stage(cfg, "finetune-p40", {...}, fn=do_finetune, after=[search])
    records = run_stages([search, tune], force=False)

Inside ``fn(stage)``: the global RNGs are seeded from the stage's seed, ``stage.ckpt_dir`` is
where to checkpoint, :func:`train_and_measure` trains and measures a model, and
``stage.save_model(model)`` writes it in the one compressed-model format.  Every paper module
in ``reprolib.experiments`` exposes ``stages(cfg)``, ``run(cfg, force=False)``,
``tables(cfg)``, ``figures(cfg)`` and ``summary(cfg)`` on top of this.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from reprolib import paths
from reprolib.core import results
from reprolib.core.compressed import load_compressed, save_compressed
from reprolib.configs import TrainConfig, config_dict, recipe_dict
from reprolib.core.device import resolve_device
from reprolib.errors import ReprolibError
from reprolib.core.measure import measure_model
from reprolib.core.train import fit


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy's global RNG."""
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


class Stage:
    """One cached step of a pipeline (see the module docstring).

    cfg: the paper config (gives paper, profile and the default seed).
    name: the record's name, unique within the paper and profile (``search``, ``dense-p4``).
    config: JSON-ready dict of everything the result depends on (the record key); the seed
        is added when it is missing.
    fn: ``fn(stage) -> dict`` of JSON-ready metrics; runs only when no record exists.
    after: upstream stages; their run ids are part of this stage's key.
    """

    def __init__(self, cfg, name: str, config: dict, fn: Callable[["Stage"], dict], *,
                 after: Iterable["Stage"] = (), paper: str | None = None):
        self.paper = paper or _paper_of(cfg)
        self.profile = cfg.profile
        self.name = name
        self.after = list(after)
        key = dict(config)
        key.setdefault("seed", getattr(cfg, "seed", 0))
        if self.after:
            key["after"] = {s.name: s.run_id for s in self.after}
        self.config = key
        self.seed = int(key["seed"])
        self.fn = fn
        self.path = results.record_path(self.paper, self.profile, name, key)

    def __repr__(self) -> str:
        return f"Stage({self.paper}/{self.profile}/{self.run_id})"

    @property
    def run_id(self) -> str:
        return self.path.stem

    @property
    def ckpt_dir(self) -> Path:
        return self.path.parent / "ckpt" / self.path.stem

    @property
    def done(self) -> bool:
        return self.path.exists()

    def run(self, force: bool = False) -> dict:
        """The stage's record, computed (seeded, checkpointing in ``ckpt_dir``) if needed."""

        def compute(_ckpt):
            seed_everything(self.seed)
            return self.fn(self)

        return results.run_cached(self.paper, self.profile, self.name, self.config, compute,
                                  force=force)

    def record(self) -> dict:
        """The stored record; a ReprolibError saying how to make it when there is none."""
        if not self.done:
            raise ReprolibError(f"no record for stage {self.name!r} of {self.paper} at profile "
                                f"{self.profile!r} ({paths.rel(self.path)}); run it first: "
                                f"reprolib run {self.paper} --profile {self.profile}")
        return results.load_record(self.path)

    def metrics(self) -> dict:
        return self.record()["metrics"]

    # ---- the stage's models, in the one compressed-model format
    def save_model(self, model: nn.Module, stem: str = "model") -> Path:
        """Write ``model`` as ``ckpt_dir/<stem>.json`` + ``.safetensors``."""
        return save_compressed(model, self.ckpt_dir / stem)

    def model(self, stem: str = "model") -> nn.Module:
        """The model this stage saved; recomputes the stage (same config, same seed) when
        the file is missing, e.g. in a fresh clone that has only the records."""
        js = self.ckpt_dir / f"{stem}.json"
        if not js.exists():
            print(f"[{self.paper}] recomputing stage {self.name}: its saved model "
                  f"{paths.rel(js)} is missing", flush=True)
            self.run(force=True)
        return load_compressed(js)


def _paper_of(cfg) -> str:
    from reprolib.configs import papers

    for name, p in papers().items():
        if type(cfg) is p.config_cls:
            return name
    raise ReprolibError(f"{type(cfg).__name__} is not a registered paper config")


def run_stages(stages: Iterable[Stage], force: bool = False) -> dict[str, dict]:
    """Run (or reuse) each stage in order; returns ``{stage name: record}``."""
    return {s.name: s.run(force) for s in stages}


#: A record's file name: ``<stage name>-<10 hex digits>.json`` (results.record_path).
RECORD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=,-]*-[0-9a-f]{10}\.json")


def stale_records(stages: Iterable[Stage]) -> list[Path]:
    """The records in the folders of ``stages`` that none of them names: what an earlier
    config of the profile left (a changed key writes a new record and keeps the old one).
    Their checkpoints are ``path.parent / "ckpt" / path.stem``.  Only files named like a
    record (:data:`RECORD_NAME`) are records; :func:`foreign_files` lists the rest."""
    stages = list(stages)
    keep = {s.path.resolve() for s in stages}
    folders = sorted({s.path.parent for s in stages})
    return [p for f in folders for p in sorted(f.glob("*.json"))
            if RECORD_NAME.fullmatch(p.name) and not p.is_symlink() and p.resolve() not in keep]


def foreign_files(stages: Iterable[Stage]) -> list[Path]:
    """The ``.json`` files in the folders of ``stages`` that are not named like a record
    (``...json``, a symlink, ``notes.json``): never removed by ``clean``."""
    folders = sorted({s.path.parent for s in stages})
    return [p for f in folders for p in sorted(f.glob("*.json"))
            if not RECORD_NAME.fullmatch(p.name) or p.is_symlink()]


def remove_record(path: Path) -> list[Path]:
    """Remove the record file ``path`` and its own checkpoint folder
    (``path.parent / "ckpt" / path.stem``), after checking that both are what they claim: a
    file named like a record directly inside its profile folder, and a real folder (not a
    link) directly inside that folder's ``ckpt/``.  Anything else is a ReprolibError naming
    it, and nothing is removed.  Returns what was removed."""
    path = Path(path)
    folder = path.parent.resolve()
    if not RECORD_NAME.fullmatch(path.name) or path.is_symlink() or not path.is_file() \
            or path.resolve().parent != folder:
        raise ReprolibError(f"refusing to remove {paths.rel(path)}: it is not a record file "
                            "of this profile folder")
    ckpt = path.parent / "ckpt" / path.stem
    if ckpt.is_symlink() or (ckpt.exists() and (not ckpt.is_dir()
                                                or ckpt.resolve().parent != folder / "ckpt")):
        raise ReprolibError(f"refusing to remove {paths.rel(ckpt)}: it is not the checkpoint "
                            f"folder of {path.name} (a link, a file, or outside "
                            f"{paths.rel(folder / 'ckpt')})")
    path.unlink()
    removed = [path]
    if ckpt.is_dir():
        shutil.rmtree(ckpt)
        removed.append(ckpt)
    return removed


def records(stages: Iterable[Stage]) -> dict[str, dict]:
    """The stored records of ``stages`` (all must exist), by stage name."""
    return {s.name: s.record() for s in stages}


# --------------------------------------------------------------------------- data


_DATA: dict[tuple, Any] = {}


def load_data(cfg, batch_size: "int | TrainConfig", *, dataset: str | None = None,
              image_size: int | None = None, augment: bool = True, val_fraction: float = 0.0,
              eval_batch_size: int | None = None):
    """``reprolib.data.get_data`` for ``cfg`` (its data set, size, root, device, seed), kept
    for the process so the stages of a pipeline share one copy.

    batch_size: the per-process batch, or the recipe (``TrainConfig``) the data is for: then
    the per-process batch follows from its global batch and the world size
    (``TrainConfig.process_batch``) and its RandAugment / random erasing / repeated
    augmentation are applied (``reprolib.augment``)."""
    from reprolib.data.augment import recipe_aug
    from reprolib.data import get_data
    from reprolib.core.device import world

    aug = {}
    if isinstance(batch_size, TrainConfig):
        aug = recipe_aug(batch_size)
        batch_size = batch_size.process_batch(world()[1])
    dev = resolve_device(cfg.device)
    key = (dataset or cfg.dataset, image_size or cfg.image_size, batch_size, cfg.data_root,
           str(dev), cfg.seed, augment, val_fraction, eval_batch_size, tuple(sorted(aug.items())))
    if key not in _DATA:
        _DATA.clear()            # one data set at a time: a notebook may hold many configs
        _DATA[key] = get_data(key[0], key[1], batch_size, root=cfg.data_root, device=dev,
                              seed=cfg.seed, augment=augment, val_fraction=val_fraction,
                              eval_batch_size=eval_batch_size, aug=aug or None)
    return _DATA[key]


# --------------------------------------------------------------------------- train + measure


def train_and_measure(model: nn.Module, data, recipe: TrainConfig, ckpt_dir=None, *,
                      device="auto", desc: str = "", extra_loss=None, grad_hook=None,
                      input_size=None, latency_batch: int = 1, latency_repeats: int = 20,
                      memory_batch: int | None = None) -> dict:
    """Train ``model`` with ``fit`` and measure it (``reprolib.measure.measure_model``, on the
    CPU); returns the metrics of a results record: final test ``acc`` (%), ``test_loss``,
    ``epochs``, ``train_time_s`` (sum of the epochs' times, kept across resumes),
    ``history``, ``train_device``, ``test_images``, params, FLOPs, latency (and peak memory
    when asked)."""
    dev = resolve_device(device)
    res = fit(model, data, recipe, ckpt_dir=ckpt_dir, device=dev, desc=desc,
              extra_loss=extra_loss, grad_hook=grad_hook)
    input_size = input_size or (3, data.image_size, data.image_size)
    meas = measure_model(model.cpu(), input_size, latency_batch=latency_batch,
                         latency_repeats=latency_repeats, memory_batch=memory_batch)
    return {"acc": res.acc, "test_loss": res.loss, "epochs": res.epochs,
            "train_time_s": round(sum(h["time_s"] for h in res.history), 2),
            "history": res.history, "train_device": str(dev),
            "test_images": getattr(data, "test_size", None), **meas}


# --------------------------------------------------------------------------- record keys


def key_of(cfg, *fields: str, **extra) -> dict:
    """A stage key from some of ``cfg``'s fields (recipes as :func:`recipe_dict`), plus
    ``extra``.  Only what the stage's result depends on belongs in its key."""
    d = config_dict(cfg)
    out = {}
    for f in fields:
        v = getattr(cfg, f)
        out[f] = recipe_dict(v) if isinstance(v, TrainConfig) else d[f]
    out.update(extra)
    return out


def profile_note(cfg) -> str:
    """" [cpu run: not the paper's setting]" for every profile but ``paper``."""
    return "" if cfg.profile == "paper" else f" [{cfg.profile} run: not the paper's setting]"
