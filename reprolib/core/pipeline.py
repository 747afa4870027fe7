"""A paper is one declared graph of stages: :class:`Pipeline` (the paper's description),
:class:`Graph` (its stages for one config) and the helpers stage functions share.

A paper module subclasses :class:`Pipeline`, names itself, and declares its stages by role
in :meth:`Pipeline.declare`; every tool walks the graph that builds -- ``run`` / ``compute``
(all stages, or ``--stage NAME`` alone once its upstream records exist), ``plan`` (what each
training stage would do, counted on the meta device), ``graph`` (stages, edges, done or
missing, resources), ``clean``, ``bench`` (:meth:`Pipeline.bench_families`), the overview
(:meth:`Pipeline.points`, :meth:`Pipeline.conformance`, :meth:`Pipeline.export_cases`) and
the cluster launcher.  What is generic lives here once: running and reading records,
seeds, the data-set label, test-image counts, the empty claims table of a profile without
seeds.

    class Quickstart(Pipeline):
        name = "quickstart"

        def declare(self, cfg, g):
            for w in cfg.widths:
                g.add(Stage(cfg, f"{cfg.model}-w{w}", key, fn, model=..., train=...),
                      role="width", width=w)

    PIPELINE = register_pipeline(Quickstart())
    stages, run, tables, figures, summary, claims = PIPELINE.api()

A new paper is a config module (``reprolib/configs/<paper>.py``), a pipeline module
(``reprolib/experiments/<paper>.py``) and a notebook (``notebooks/<paper>.ipynb``); nothing
else lists it (``reprolib.experiments.get_experiment`` finds it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from reprolib import paths
from reprolib.configs import TrainConfig, config_dict, recipe_dict, seeded
from reprolib.core.claims import claims_frame, not_run
from reprolib.core.stage import (RECORD_NAME, ModelSpec, Resources, Stage,  # noqa: F401
                                 Training, declared_reads, foreign_files, records,
                                 remove_record, run_stages, seed_everything, stale_records)
from reprolib.data.catalog import check_dataset, dataset_label
from reprolib.errors import ReprolibError

# --------------------------------------------------------------------------- the graph


class Graph:
    """The stages of one config, in run order, each under a ``role`` with ``tags``.

    ``add`` keeps the first of two stages with the same run id (the same computation, e.g.
    a sweep point Table 2 also needs) and refuses two different stages of one name, or a
    stage whose upstream is not in the graph yet (so the order is a topological one and the
    graph is closed)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._stages: dict[str, Stage] = {}
        self._index: list[tuple[str, dict, Stage]] = []

    def add(self, stage: Stage, role: str | None = None, **tags) -> Stage:
        """Add ``stage`` (or find the identical one already there) under ``role`` / ``tags``
        (default: the stage's own); returns the stage in the graph."""
        old = self._stages.get(stage.name)
        if old is not None and old.run_id != stage.run_id:
            raise ReprolibError(f"two different stages are named {stage.name!r} in the "
                                f"{stage.paper} graph (keys {old.run_id} and {stage.run_id}); "
                                "name them apart")
        if old is None:
            missing = [s.name for s in stage.after if self._stages.get(s.name) is None
                       or self._stages[s.name].run_id != s.run_id]
            if missing:
                raise ReprolibError(f"stage {stage.name!r} reads {', '.join(missing)}, which "
                                    "the graph does not hold (add upstream stages first)")
            if role is not None:
                stage.role = role
            if tags:
                stage.tags = {**stage.tags, **tags}
            self._stages[stage.name] = stage
        s = old or stage
        self._index.append((role or s.role, {**s.tags, **tags}, s))
        return s

    @property
    def stages(self) -> list[Stage]:
        return list(self._stages.values())

    def __iter__(self) -> Iterator[Stage]:
        return iter(self._stages.values())

    def __len__(self) -> int:
        return len(self._stages)

    def __getitem__(self, name: str) -> Stage:
        if name not in self._stages:
            raise ReprolibError(f"no stage {name!r}; stages: {', '.join(self._stages)}")
        return self._stages[name]

    def __contains__(self, name: str) -> bool:
        return name in self._stages

    def select(self, role: str, **tags) -> list[Stage]:
        """The stages under ``role`` whose tags include ``tags``, in the order they were
        added (a stage added under two roles or tag sets is found by each)."""
        out = []
        for r, t, s in self._index:
            if r == role and all(t.get(k) == v for k, v in tags.items()) and s not in out:
                out.append(s)
        return out

    def find(self, role: str, **tags) -> Stage | None:
        """The one stage of ``role`` / ``tags``, or None; more than one is an error."""
        got = self.select(role, **tags)
        if len(got) > 1:
            raise ReprolibError(f"{len(got)} stages of role {role!r} with {tags}: "
                                f"{', '.join(s.name for s in got)}")
        return got[0] if got else None

    def get(self, role: str, **tags) -> Stage:
        """The one stage of ``role`` / ``tags``; none is an error."""
        s = self.find(role, **tags)
        if s is None:
            raise ReprolibError(f"no stage of role {role!r} with {tags} in the graph")
        return s

    def roles(self) -> list[str]:
        return list(dict.fromkeys(r for r, _, _ in self._index))

    def downstream(self, stage: Stage) -> list[Stage]:
        """Every stage that reads ``stage``, directly or through others."""
        out, frontier = [], {stage.run_id}
        for s in self._stages.values():
            if any(u.run_id in frontier for u in s.after):
                out.append(s)
                frontier.add(s.run_id)
        return out


# --------------------------------------------------------------------------- the pipeline


class Pipeline:
    """A paper's description (module docstring).  Subclasses set :attr:`name` (the paper,
    as its config is registered) and implement :meth:`declare`; the rest is optional."""

    name: str = ""
    #: The figures the README shows: the profile's headline figure and the evidence one.
    readme_figure: str = ""
    readme_evidence_figure: str = ""
    #: What the paper states per recipe, for ``plan``: ``{stated key: {field: (value,
    #: source)}}`` (fields: dataset, image_size, epochs, global_batch, optimizer, lr,
    #: schedule, warmup_epochs, weight_decay, label_smoothing, mixup, cutmix, drop_path,
    #: randaugment, random_erasing, repeated_aug, l1, select_every, milestones, model).
    stated: dict[str, dict[str, tuple]] = {}
    #: Why a ``paper`` profile departs from a stated value: ``{(stated key | "*", field):
    #: reason}``.
    departures: dict[tuple[str, str], str] = {}
    #: How the overview shows this paper: label, colour, short name, where the paper reports
    #: its sizes, mismatch reasons (``reprolib.experiments.overview``); {} = not shown.
    overview: dict = {}

    # ---- what a paper declares
    def declare(self, cfg, g: Graph) -> None:
        """Add every stage of ``cfg`` to ``g``, upstream stages first."""
        raise NotImplementedError

    def tables(self, cfg) -> dict:
        """``{stem: DataFrame}`` read back from the records (``attrs["caption"]``)."""
        return {}

    def figures(self, cfg) -> dict:
        """``{stem: Figure}`` built from the records."""
        return {}

    def summary(self, cfg) -> str:
        """Markdown sentences about the results, numbers from the records."""
        return ""

    def evidence_claims(self, cfg):
        """The claims table of an evidence run whose stages all have records (``claims``
        calls it only then)."""
        return claims_frame([])

    # ---- what the tools read (optional)
    def bench_families(self, bench_cfg) -> list[dict]:
        """The compressed-model examples ``reprolib bench`` times: families of a dense
        parent and its compressed models (``reprolib.tools.bench``)."""
        return []

    def points(self, recs: dict[str, dict], profile: str) -> list[dict]:
        """The overview chart's points of this paper's records at ``profile`` (``recs`` by
        stage name): one per compressed model against its own dense parent."""
        return []

    def conformance(self) -> list[dict]:
        """The overview's conformance rows: the architecture-determined numbers the paper
        prints, counted (on the meta device)."""
        return []

    def export_cases(self) -> dict:
        """The compressed models of this paper the overview exports to ONNX: ``{case:
        {"label": str, "settings": fn(overview cfg) -> dict (enters the export stage's key),
        "build": fn(scale, seed=0, **settings) -> (model, input_size), "about": fn(cfg) ->
        dict (optional)}}``."""
        return {}

    def reported_points(self) -> list[dict]:
        """The overview chart's points of the paper's own printed results (its tables'
        sizes and accuracies), beside ours."""
        return []

    # ---- generic
    def graph(self, cfg) -> Graph:
        """The graph of ``cfg``: every stage, in run order; each stage's data set checked
        (known name, an ``npz:`` file that exists) before anything runs."""
        if getattr(cfg, "profile", None) is None:
            raise ReprolibError(f"{self.name}: not a config: {cfg!r}")
        g = Graph(cfg)
        self.declare(cfg, g)
        for ds in dict.fromkeys(t.dataset for s in g for t in s.trains):
            check_dataset(ds)
        return g

    def stages(self, cfg) -> list[Stage]:
        """Every stage of ``cfg`` in run order (nothing runs)."""
        return self.graph(cfg).stages

    def run(self, cfg, force: bool = False, only: Iterable[str] | None = None) -> dict:
        """Run (or reuse) every stage -- or only the stages named in ``only``, whose upstream
        records must then exist -- and return ``{stage name: record}``."""
        g = self.graph(cfg)
        if only is None:
            return run_stages(g.stages, force)
        chosen = select_stages(g, only)
        return run_stages(chosen, force)

    def records(self, cfg, role: str | None = None, **tags) -> dict[str, dict]:
        """The stored records of the graph's stages (of ``role`` / ``tags`` when given), by
        stage name; a missing one is a ReprolibError saying how to make it."""
        g = self.graph(cfg)
        return records(g.select(role, **tags) if role else g.stages)

    def seeds(self, cfg) -> list[int]:
        """``cfg.seed`` first, then every other seed of ``cfg.seeds`` (the evidence
        replicates), each once."""
        return list(dict.fromkeys([int(cfg.seed), *(int(s) for s in getattr(cfg, "seeds", ()))]))

    def seeded(self, cfg, seed: int):
        """``cfg`` at ``seed`` (its recipes' seeds too): :func:`reprolib.configs.seeded`."""
        return seeded(cfg, seed)

    def data_label(self, cfg) -> str:
        """How captions name ``cfg``'s data set (:func:`reprolib.data.dataset_label`)."""
        return dataset_label(cfg.dataset)

    def claims(self, cfg):
        """The claims table (columns ``evidence.CLAIM_COLUMNS``): :meth:`evidence_claims` of
        an evidence run whose stages all have records; otherwise an empty table whose
        caption says why there is nothing to test and how to make it -- the same for every
        paper."""
        empty = not_run(self.name, cfg, self.stages(cfg))
        return empty if empty is not None else self.evidence_claims(cfg)

    def notebook(self) -> Path:
        """The paper's notebook: ``notebooks/<name>.ipynb``."""
        return paths.ROOT / "notebooks" / f"{self.name}.ipynb"

    def api(self):
        """``stages, run, tables, figures, summary, claims`` of this pipeline, for the paper
        module's namespace (the functions notebooks call)."""
        return self.stages, self.run, self.tables, self.figures, self.summary, self.claims


def select_stages(g: Graph, names: Iterable[str]) -> list[Stage]:
    """The stages of ``g`` named in ``names`` (in run order), each of whose upstream stages
    is either chosen too or already has its record; otherwise one ReprolibError naming the
    missing upstream stages."""
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in g]
    if unknown:
        raise ReprolibError(f"unknown stage {unknown[0]!r}; stages: {', '.join(s.name for s in g)}")
    chosen = [s for s in g if s.name in names]
    ids = {s.run_id for s in chosen}
    missing = sorted({u.name for s in chosen for u in s.after if u.run_id not in ids and not u.done})
    if missing:
        raise ReprolibError(f"stage(s) {', '.join(names)} read {', '.join(missing)}, which have "
                            f"no record yet: run them first (--stage {','.join(missing)}) or run "
                            "the whole graph")
    return chosen


# --------------------------------------------------------------------------- registry


_PIPELINES: dict[str, Pipeline] = {}


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    """Register ``pipeline`` under its name (the paper's config must be registered under the
    same name); returns it."""
    if not pipeline.name:
        raise ValueError(f"{type(pipeline).__name__} has no name")
    _PIPELINES[pipeline.name] = pipeline
    return pipeline


def registered() -> dict[str, Pipeline]:
    """The pipelines registered so far, by name (``reprolib.experiments.pipelines()`` imports
    the package's own first)."""
    return dict(_PIPELINES)


# --------------------------------------------------------------------------- stage helpers


_DATA: dict[tuple, Any] = {}


def load_data(cfg, batch_size: "int | TrainConfig", *, dataset: str | None = None,
              image_size: int | None = None, augment: bool = True, val_fraction: float = 0.0,
              eval_batch_size: int | None = None):
    """``reprolib.data.get_data`` for ``cfg`` (its data set, size, root, device, seed), kept
    for the process so the stages of a pipeline share one copy.

    batch_size: the per-process batch, or the recipe (``TrainConfig``) the data is for: then
    the per-process batch follows from its global batch and the world size
    (``TrainConfig.process_batch``) and its RandAugment / random erasing / repeated
    augmentation are applied (``reprolib.data.augment``)."""
    from reprolib.core.device import resolve_device, world
    from reprolib.data import get_data
    from reprolib.data.augment import recipe_aug

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


def train_and_measure(model, data, recipe: TrainConfig, ckpt_dir=None, *,
                      device="auto", desc: str = "", extra_loss=None, grad_hook=None,
                      input_size=None, latency_batch: int = 1, latency_repeats: int = 20,
                      memory_batch: int | None = None) -> dict:
    """Train ``model`` with ``fit`` and measure it (``reprolib.measure.measure_model``, on the
    CPU); returns the metrics of a results record: final test ``acc`` (%), ``test_loss``,
    ``epochs``, ``train_time_s`` (sum of the epochs' times, kept across resumes),
    ``history``, ``train_device``, ``test_images``, ``test_correct`` (which test images the
    final model classifies right, :func:`reprolib.core.io.pack_bits`: comparisons over the
    same images are paired), params, FLOPs, latency (and peak memory when asked)."""
    from reprolib.core import io
    from reprolib.core.device import resolve_device
    from reprolib.core.measure import measure_model
    from reprolib.core.train import evaluate, fit

    dev = resolve_device(device)
    res = fit(model, data, recipe, ckpt_dir=ckpt_dir, device=dev, desc=desc,
              extra_loss=extra_loss, grad_hook=grad_hook)
    per_image = evaluate(model, data.test, dev, recipe.amp, per_image=True).get("correct")
    input_size = input_size or (3, data.image_size, data.image_size)
    meas = measure_model(model.cpu(), input_size, latency_batch=latency_batch,
                         latency_repeats=latency_repeats, memory_batch=memory_batch)
    return {"acc": res.acc, "test_loss": res.loss, "epochs": res.epochs,
            "train_time_s": round(sum(h["time_s"] for h in res.history), 2),
            "history": res.history, "train_device": str(dev),
            "test_images": getattr(data, "test_size", None),
            "train_images": getattr(data, "train_size", None),
            **({"test_correct": io.pack_bits(per_image)} if per_image is not None else {}),
            **meas}


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


def training(cfg, recipe_name: str, **kw) -> Training:
    """The :class:`Training` of a stage that trains with ``cfg``'s recipe ``recipe_name`` on
    ``cfg``'s data set and image size (``kw``: ``l1``, ``val_split``, ``stated``, ``runs``,
    or another ``dataset`` / ``image_size`` / ``recipe``)."""
    recipe = kw.pop("recipe") if "recipe" in kw else getattr(cfg, recipe_name)
    return Training(recipe, recipe_name, kw.pop("dataset", cfg.dataset),
                    kw.pop("image_size", cfg.image_size), **kw)


#: Profiles made for GPUs: a training stage of theirs on ``device=auto`` wants one GPU per
#: process (the smoke / cpu / evidence profiles are made for CPUs).
GPU_PROFILES = ("gpu", "paper")


def resources(cfg, trains: bool = True, processes: int = 1) -> Resources:
    """What one run of a stage of ``cfg`` needs: ``processes`` processes, one CPU each, and
    one GPU each when it trains on CUDA (``device=cuda``, or ``auto`` in a
    :data:`GPU_PROFILES` profile)."""
    dev = str(cfg.device)
    cuda = dev.startswith("cuda") or (dev == "auto" and cfg.profile in GPU_PROFILES)
    return Resources(processes=processes, gpus=1 if trains and cuda else 0)


def test_images(recs: Iterable[dict], infer: bool = True) -> int | None:
    """The number of test images behind the records' accuracies: what their metrics report
    (``test_images``, else ``test_size``) when every record says and they agree; otherwise
    (records made before it was stored), with ``infer``, the smallest ``n`` <= 10^6 for which
    every test accuracy they hold (``history[*].test_acc``, ``acc_pruned_no_ft``) is
    ``100 k / n`` for a whole number ``k`` -- None when there are too few to tell."""
    import numpy as np

    recs = [r for r in recs if r]
    said = [r["metrics"].get("test_images") or r["metrics"].get("test_size") for r in recs]
    if said and all(s is not None for s in said) and len(set(said)) == 1:
        return int(said[0])
    if not infer:
        return None
    accs = [h["test_acc"] for r in recs for h in r["metrics"].get("history", [])
            if isinstance(h, dict) and isinstance(h.get("test_acc"), float)]
    accs += [r["metrics"]["acc_pruned_no_ft"] for r in recs
             if isinstance(r["metrics"].get("acc_pruned_no_ft"), float)]
    accs = np.array([a for a in accs if np.isfinite(a)])
    if len(accs) < 4:
        return None
    for lo in range(1, 1_000_001, 100_000):
        n = np.arange(lo, lo + 100_000)
        k = accs[:, None] * n[None, :] / 100.0
        ok = np.all(np.abs(k - np.round(k)) < 1e-6, axis=0)
        if ok.any():
            return int(n[ok.argmax()])
    return None


def profile_note(cfg) -> str:
    """" [cpu run: not the paper's setting]" for every profile but ``paper``."""
    return "" if cfg.profile == "paper" else f" [{cfg.profile} run: not the paper's setting]"


def field_of(cfg, name: str):
    """``cfg``'s value of ``name`` (``recipe.field`` for a recipe's), for tools that read a
    config by key."""
    head, _, sub = name.partition(".")
    v = getattr(cfg, head)
    return getattr(v, sub) if sub else v


__all__ = ["Pipeline", "Graph", "Stage", "ModelSpec", "Training", "Resources",
           "register_pipeline", "registered", "select_stages", "load_data",
           "train_and_measure", "key_of", "training", "resources", "test_images",
           "profile_note", "run_stages", "records", "stale_records", "foreign_files",
           "remove_record", "seed_everything", "declared_reads"]
