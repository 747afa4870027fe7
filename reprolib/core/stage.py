"""One cached step of a paper's graph: :class:`Stage`, and what it declares.

A stage is a results record (``results/<paper>/<profile>/<name>-<hash>.json``, the hash taken
over the stage's key) plus its checkpoint folder (``results/<paper>/<profile>/ckpt/<name>-
<hash>/``), where training checkpoints and the stage's saved models live.  Besides its key
and its function a stage declares, as data, everything a tool needs without running it:

* ``after``: *every* stage whose record or model it reads.  Their run ids enter its key
  (changing an upstream setting re-keys everything after it), and while it runs it may read
  no other stage (:meth:`Stage.record` / :meth:`Stage.model` refuse one it does not declare),
  so any stage can run alone, in another process or on another machine, once its upstream
  records are there;
* ``model``: the model it builds (:class:`ModelSpec`, builder + keyword arguments, counted on
  the meta device by ``plan``);
* ``train``: what it trains (:class:`Training`: the recipe, its field in the config, the data
  set and image size, an L1 weight, whether a validation split is held out; a tuple when
  it trains with several recipes in turn);
* ``resources``: what one run of it needs (:class:`Resources`: processes, GPUs, CPUs);
* ``role`` / ``tags`` / ``group``: where it sits in its paper's graph (``role="finetune",
  tags={"seed": 0, "ratio": 0.4}``); stages of one ``group`` have the same shape (``plan``
  counts them together, a cluster runs them as one array).

    stage = Stage(cfg, "search", key, fn, after=[baseline], model=ModelSpec("swin_cifar", kw),
                  train=Training(cfg.search, "search", cfg.dataset, cfg.image_size, l1=1e-4))

Inside ``fn(stage)``: the global RNGs are seeded from the stage's seed, ``stage.ckpt_dir`` is
where to checkpoint, ``stage.save_model(model)`` writes a model in the one compressed-model
format, and ``upstream.model()`` / ``upstream.metrics()`` read a declared upstream stage.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from reprolib import paths
from reprolib.core import results
from reprolib.errors import ReprolibError

#: The stage whose function is running in this context (reads of other stages are checked
#: against its ``after``).
_RUNNING: contextvars.ContextVar["Stage | None"] = contextvars.ContextVar("stage", default=None)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy's global RNG."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# --------------------------------------------------------------------------- declarations


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model a stage builds: ``create_model(builder, **kwargs)``, fed ``input_size``
    images.  ``note`` says how the stage's real model differs (a pruned model is counted as
    its unpruned parent: an upper bound)."""

    builder: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_size: tuple = (3, 32, 32)
    note: str = ""

    def build(self, device: str = "meta"):
        """The untrained model on ``device`` (the meta device: shapes only, nothing
        allocated)."""
        import torch

        from reprolib.core.registry import create_model

        with torch.device(device):
            return create_model(self.builder, **dict(self.kwargs))

    def counts(self) -> tuple[int, int | None]:
        """``(parameters, FLOPs)`` counted on the meta device (FLOPs None when the model
        cannot be traced there); memoised per spec."""
        return _counts(self.builder, json.dumps(dict(self.kwargs), sort_keys=True, default=list),
                       tuple(self.input_size))


@functools.lru_cache(maxsize=512)
def _counts(builder: str, kwargs_json: str, input_size: tuple) -> tuple[int, int | None]:
    from reprolib.core.measure import count_flops, count_params

    m = ModelSpec(builder, json.loads(kwargs_json), input_size).build()
    try:
        flops = count_flops(m, input_size)
    except Exception:  # noqa: BLE001 - a model the meta device cannot trace: params only
        flops = None
    return count_params(m), flops


@dataclasses.dataclass(frozen=True)
class Training:
    """What a training stage trains: ``recipe`` (the config's field ``recipe_name``, where
    ``plan`` finds the paper's stated values; ``stated`` when another key holds them) on
    ``dataset`` at ``image_size``; ``l1`` the weight of an L1 penalty on scores;
    ``val_split``: it trains on the training split only (a held-out split selects or
    rewards); ``runs``: trainings of this shape inside the one stage."""

    recipe: Any                   # a reprolib.configs.TrainConfig
    recipe_name: str
    dataset: str
    image_size: int
    l1: float = 0.0
    val_split: bool = False
    stated: str = ""
    runs: int = 1

    @property
    def stated_key(self) -> str:
        return self.stated or self.recipe_name


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one run of a stage needs: ``processes`` (torchrun ranks, a multi-task job on a
    cluster; they share the recipe's global batch), ``gpus`` per process (0: CPU only) and
    ``cpus`` per process."""

    processes: int = 1
    gpus: int = 0
    cpus: int = 1

    def __post_init__(self):
        for k in ("processes", "cpus"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise ReprolibError(f"resources: {k}={getattr(self, k)!r} must be an integer >= 1")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise ReprolibError(f"resources: gpus={self.gpus!r} must be an integer >= 0")


# --------------------------------------------------------------------------- the stage


class Stage:
    """One cached step of a pipeline (see the module docstring).

    cfg: the config the stage is built from (gives paper, profile and the default seed).
    name: the record's name, unique within the paper and profile (``search``, ``dense-p4``).
    config: JSON-ready dict of everything the result depends on (the record key); the seed
        is added when it is missing.
    fn: ``fn(stage) -> dict`` of JSON-ready metrics; runs only when no record exists.
    after: every upstream stage it reads; their run ids are part of this stage's key.
    model, train, resources, role, tags, group, note: declarations (module docstring).
    """

    def __init__(self, cfg, name: str, config: dict, fn: Callable[["Stage"], dict], *,
                 after: Iterable["Stage"] = (), paper: str | None = None,
                 model: ModelSpec | None = None,
                 train: "Training | tuple[Training, ...] | None" = None,
                 resources: Resources | None = None, role: str = "", tags: dict | None = None,
                 group: str = "", note: str = ""):
        self.cfg = cfg
        self.paper = paper or _paper_of(cfg)
        self.profile = cfg.profile
        self.name = name
        self.after = list(dict.fromkeys(after))
        key = dict(config)
        key.setdefault("seed", getattr(cfg, "seed", 0))
        if self.after:
            key["after"] = {s.name: s.run_id for s in self.after}
        self.config = key
        self.seed = int(key["seed"])
        self.fn = fn
        self.path = results.record_path(self.paper, self.profile, name, key)
        self.model_spec = model
        #: what it trains, in order (a dense model's pretraining then its baseline
        #: fine-tune are two); ``train`` is the first (None: it trains nothing)
        self.trains = tuple(train) if isinstance(train, (tuple, list)) else \
            ((train,) if train is not None else ())
        self.train = self.trains[0] if self.trains else None
        self.resources = resources or Resources()
        self.role = role or name
        self.tags = dict(tags or {})
        self.group = group or name
        self.note = note

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
            token = _RUNNING.set(self)
            try:
                return self.fn(self)
            finally:
                _RUNNING.reset(token)

        return results.run_cached(self.paper, self.profile, self.name, self.config, compute,
                                  force=force)

    def _check_read(self) -> None:
        cur = _RUNNING.get()
        if cur is None or cur.run_id == self.run_id:
            return
        if self.run_id not in {s.run_id for s in cur.after}:
            raise ReprolibError(f"stage {cur.name!r} of {cur.paper} read stage {self.name!r}, "
                                f"which it does not declare in its `after`; a stage may read "
                                f"only the stages it declares (add it there)")

    def record(self) -> dict:
        """The stored record; a ReprolibError saying how to make it when there is none."""
        self._check_read()
        if not self.done:
            raise ReprolibError(f"no record for stage {self.name!r} of {self.paper} at profile "
                                f"{self.profile!r} ({paths.rel(self.path)}); run it first: "
                                f"reprolib run {self.paper} --profile {self.profile}")
        return results.load_record(self.path)

    def metrics(self) -> dict:
        return self.record()["metrics"]

    # ---- the stage's models, in the one compressed-model format
    def save_model(self, model, stem: str = "model") -> Path:
        """Write ``model`` as ``ckpt_dir/<stem>.json`` + ``.safetensors``."""
        from reprolib.core.compressed import save_compressed

        return save_compressed(model, self.ckpt_dir / stem)

    def model(self, stem: str = "model"):
        """The model this stage saved; recomputes the stage (same config, same seed) when
        the file is missing, e.g. in a fresh clone that has only the records."""
        from reprolib.core.compressed import load_compressed

        self._check_read()
        js = self.ckpt_dir / f"{stem}.json"
        if not js.exists():
            print(f"[{self.paper}] recomputing stage {self.name}: its saved model "
                  f"{paths.rel(js)} is missing", flush=True)
            token = _RUNNING.set(None)       # recomputing reads its own upstreams
            try:
                self.run(force=True)
            finally:
                _RUNNING.reset(token)
        return load_compressed(js)


def _paper_of(cfg) -> str:
    from reprolib.configs import papers

    for name, p in papers().items():
        if type(cfg) is p.config_cls:
            return name
    raise ReprolibError(f"{type(cfg).__name__} is not a registered paper config")


def declared_reads(stage: Stage) -> list[str]:
    """The names of the stages ``stage.fn`` can reach through its closure (captured Stage
    objects, also inside lists, tuples, dicts and nested functions' closures) that it does
    not declare in ``after``: what a static check of the graph reports."""
    seen, found = set(), {}

    def walk(obj, depth=0):
        if depth > 4 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Stage):
            found[obj.run_id] = obj
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for x in obj:
                walk(x, depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, depth + 1)
        elif callable(obj) and hasattr(obj, "__code__"):
            for cell in obj.__closure__ or ():
                try:
                    walk(cell.cell_contents, depth + 1)
                except ValueError:          # an empty cell
                    pass
            for d in obj.__defaults__ or ():
                walk(d, depth + 1)
        elif isinstance(obj, functools.partial):
            walk(obj.func, depth + 1)
            walk(obj.args, depth + 1)
            walk(obj.keywords, depth + 1)

    walk(stage.fn)
    ok = {s.run_id for s in stage.after} | {stage.run_id}
    return sorted(s.name for rid, s in found.items() if rid not in ok)


# --------------------------------------------------------------------------- records on disk


def run_stages(stages: Iterable[Stage], force: bool = False) -> dict[str, dict]:
    """Run (or reuse) each stage in order; returns ``{stage name: record}``."""
    return {s.name: s.run(force) for s in stages}


def records(stages: Iterable[Stage]) -> dict[str, dict]:
    """The stored records of ``stages`` (all must exist), by stage name."""
    return {s.name: s.record() for s in stages}


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
