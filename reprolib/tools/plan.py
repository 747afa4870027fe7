"""``reprolib plan PAPER``: what a profile would really run, before a GPU hour is spent.

It walks the paper's stage graph (``Pipeline.graph``): for every group of training stages
of one shape (their ``group`` and recipe; the fine-tunes of every ratio, the cells of one
model) at a profile (and ``--nproc N`` processes under torchrun) it resolves, from what each
stage declares (``Stage.train``, ``Stage.model``), what ``fit`` and the data path will use: the model (parameters
and FLOPs, counted on the meta device: nothing is allocated), the data set and image size
(and whether the data is on this machine, checked without reading it), the global and
per-process batch, optimizer, lr after the linear scaling rule, schedule and warmup, epochs
and optimizer steps, augmentations, regularisers (L1, drop path, label smoothing,
mixup / cutmix), the checkpoint folder, and the estimated device-hours where a benchmark
record (``results/bench/<profile>/``, ``reprolib bench``) of the device type the profile
trains on (a GPU for ``gpu`` / ``paper``, :data:`reprolib.core.pipeline.GPU_PROFILES`; else
the CPU) times a training step of the same model at the same size: the estimate names the
record's device, and without such a record it is absent, with the command that makes one
(a CPU record never stands in for a GPU).  Beside every field the paper states (the pipeline's ``stated``) it shows
the paper's value, and a ``≠`` mark with the reason (its ``departures``) where the profile
departs from it.

    reprolib plan pe --profile paper --nproc 8
    from reprolib.tools.plan import plan, format_plan
    print(format_plan(plan("sidt", "paper")))

Nothing is trained, no data set is read, nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import math

from reprolib import paths
from reprolib.configs import TrainConfig, get_config
from reprolib.data import catalog as _catalog
from reprolib.errors import ReprolibError

__all__ = ["plan", "format_plan", "training_groups", "DATASET_INFO", "data_present",
           "model_size", "bench_estimate"]

# --------------------------------------------------------------------------- data sets

#: classes, training images (the split ``fit`` trains on) and test images, per data set
#: (kept here as a name for scripts: the facts are ``reprolib.data.catalog``'s)
DATASET_INFO = _catalog.DATASET_INFO


def data_present(dataset: str, data_root=None) -> str:
    """Whether ``dataset`` is on this machine, by looking at files only (nothing is read)."""
    root = paths.resolve(data_root) if data_root else paths.data_root()
    if dataset == "digits":
        return "yes (embedded)"
    if dataset.startswith("npz:"):
        p = paths.resolve(dataset[4:])
        return f"yes ({paths.rel(p)})" if p.exists() else f"MISSING: {dataset[4:]}"
    if dataset == "cifar10_subset":
        from reprolib.data import cifar10_subset_file
        try:
            return f"yes ({paths.rel(cifar10_subset_file(data_root, build=False))})"
        except ReprolibError:
            return "MISSING: built once from the CIFAR-10 download on first use"
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
              "flowers102": "flowers-102"}.get(dataset)
    if folder:
        p = root / folder
        return (f"yes ({paths.rel(p)})" if p.exists()
                else f"MISSING: {paths.rel(p)} (downloaded on first use, or -p data_root=DIR)")
    if dataset == "imagenet":
        if not data_root:
            return "MISSING: pass -p data_root=/path/to/imagenet (train/ and val/ folders)"
        ok = (root / "train").is_dir() and (root / "val").is_dir()
        return f"yes ({paths.rel(root)})" if ok else f"MISSING: {paths.rel(root)}/train, val"
    return "unknown data set"


# --------------------------------------------------------------------------- models


def model_size(name: str, kwargs: dict, image_size: int) -> tuple[int, int | None]:
    """(parameters, FLOPs of one image) of ``create_model(name, **kwargs)``, on the meta
    device (cached): :meth:`reprolib.core.stage.ModelSpec.counts`."""
    from reprolib.core.stage import ModelSpec

    return ModelSpec(name, kwargs, (3, int(image_size), int(image_size))).counts()


# --------------------------------------------------------------------------- bench records


def _record_kind(met: dict) -> str:
    """``"cuda"`` or ``"cpu"``: the device type a benchmark record was measured on (its
    ``device_type``; records without one: from the device's name)."""
    kind = str(met.get("device_type") or "").lower()
    if kind:
        return "cuda" if kind.startswith("cuda") else kind
    name = str(met.get("device_name") or met.get("device") or "").lower()
    return "cuda" if any(w in name for w in ("cuda", "gpu", "nvidia")) else "cpu"


def _device_text(dev: str, kind: str) -> str:
    return dev if kind == "cuda" or "cpu" in dev.lower() else f"{dev} (CPU)"


#: What makes a benchmark record of each device type.
BENCH_COMMAND = {"cuda": "`reprolib bench --profile gpu` on a GPU machine",
                 "cpu": "`reprolib bench --profile cpu`"}


def target_device(cfg) -> str:
    """``"cuda"`` or ``"cpu"``: what a profile's training stages run on, by the rule of
    :func:`reprolib.core.pipeline.resources` (``device=cuda``, or ``auto`` in a GPU profile:
    ``gpu`` / ``paper``)."""
    from reprolib.core.pipeline import GPU_PROFILES

    dev = str(cfg.device)
    return "cuda" if dev.startswith("cuda") or (dev == "auto" and cfg.profile in GPU_PROFILES) \
        else "cpu"


def bench_estimate(model: str, image_size: int, images: int, device_hint: str = "cuda",
                   params: int | None = None):
    """``(hours, text)``: ``images`` training images of ``model`` at ``image_size`` timed by
    the training step (``train_ms`` / ``train_batch``) of a benchmark record measured on
    ``device_hint``'s device type (``"cuda"`` or ``"cpu"``); ``(None, why)`` when no record
    of that device type times this model at this size -- a record of another device type
    never stands in, and ``why`` names the command that makes one.  With ``params``, only a
    record of a model of that size (within 2 %: the same width, classes, template) counts.
    ``text`` names the record's device and file: ``"8.0 device-hours on NVIDIA H100 (3.600
    ms / image at batch 100, results/bench/gpu/...)"``."""
    hours, text, _ = _estimate(model, image_size, images, device_hint, params)
    return hours, text


def _estimate(model: str, image_size: int, images: int, device_hint: str,
              params: int | None = None):
    """:func:`bench_estimate` and the device the record names (None without one)."""
    want = "cuda" if str(device_hint).lower().startswith(("cuda", "gpu")) else "cpu"
    root = paths.results_root() / "bench"
    best, other, sizes = None, [], []
    for f in sorted(root.glob("*/*.json")) if root.exists() else []:
        try:
            rec = json.loads(f.read_text())
            fam, met = rec["config"]["family"], rec["metrics"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if int(fam.get("input_size", [0, 0, 0])[-1]) != int(image_size):
            continue
        for case, row in zip(fam.get("cases", []), met.get("rows", [])):
            if case.get("model") == model and row.get("train_ms") and met.get("train_batch"):
                # a compressed case is built by the same builder: its size tells it apart
                sized = bool(params and row.get("params"))
                if sized and abs(row["params"] - params) > 0.02 * params:
                    if case.get("method") == "dense":
                        sizes.append(row["params"])
                    continue
                if not sized and case.get("method") != "dense":
                    continue
                kind = _record_kind(met)
                dev = _device_text(str(met.get("device_name") or met.get("device") or "?"),
                                   kind)
                if kind != want:
                    other.append(dev)
                    continue
                cand = (row["train_ms"] / met["train_batch"], dev, f, met["train_batch"])
                if best is None:
                    best = cand
    what = "GPU" if want == "cuda" else "CPU"
    if best is None:
        seen = (f" (a record on {', '.join(sorted(set(other)))} does not stand in for a "
                f"{what})" if other else "")
        if sizes:
            return None, (f"none: the benchmark records of {model} at {image_size} px time "
                          f"other configurations ({', '.join(f'{n / 1e6:.2f}' for n in sorted(set(sizes)))} M "
                          f"parameters; this stage's model has {params / 1e6:.2f} M)"), None
        return None, (f"none: no {what} benchmark record of {model} at {image_size} px{seen}; "
                      f"{BENCH_COMMAND[want]} makes one (-p picks its models and sizes: "
                      "reprolib list bench)"), None
    hours = best[0] * images / 3.6e6
    return hours, (f"{hours:,.1f} device-hours on {best[1]} ({best[0]:.3f} ms / image at "
                   f"batch {best[3]}, {paths.rel(best[2])})"), best[1]


# --------------------------------------------------------------------------- the graph's training stages


def _reason(pipe, profile: str, stated_key: str, fld: str, nproc: int) -> str:
    """Why ``profile`` departs from the paper's value of ``fld``: the pipeline's
    ``departures`` for the paper profile, else the obvious reasons."""
    for key in ((stated_key, fld), ("*", fld)):
        if key in pipe.departures and profile == "paper":
            return pipe.departures[key]
    if fld == "global_batch" and nproc > 1:
        return (f"the recipe states a per-process batch: {nproc} processes multiply it "
                "(set <recipe>.global_batch to fix the global batch)")
    if profile != "paper":
        return f"{profile} profile: scaled down on purpose (configs/{pipe.name}.py)"
    return "not explained: check configs/" + pipe.name + ".py"


def training_groups(g) -> list[list]:
    """The graph's trainings grouped by shape (the stage's ``group`` and the recipe), in run
    order, as ``(stage, Training)`` pairs: what ``plan`` shows one block for (a stage that
    trains with two recipes in turn is in two groups)."""
    groups: dict[tuple, list] = {}
    for s in g:
        for t in s.trains:
            groups.setdefault((s.group, t.recipe_name), []).append((s, t))
    return list(groups.values())


@dataclasses.dataclass
class _Stage:
    """One block of the plan: a group of training stages of one shape, by its first stage."""

    name: str                      # the stage's name, or "<group> xN"
    recipe_name: str
    stated_key: str
    recipe: TrainConfig
    model: str
    kwargs: dict
    counts: tuple
    runs: int
    dataset: str
    image_size: int
    l1: float
    drop_path: float | None
    val_split: bool
    note: str
    ckpt: str

    @classmethod
    def of(cls, group: list) -> "_Stage":
        first, t = group[0]
        m = first.model_spec
        name = first.name if len(group) == 1 else f"{first.group} x{len(group)}"
        note = first.note
        if m is not None and m.note:
            note = f"{note}; {m.note}" if note else m.note
        if len(first.trains) > 1:
            name = f"{name} ({t.recipe_name})"
        if len(group) > 1:
            note = (f"{note}; " if note else "") + "sizes shown: " + first.name
        counts = m.counts() if m is not None else (None, None)
        kwargs = dict(m.kwargs) if m is not None else {}
        return cls(name, t.recipe_name, t.stated_key, t.recipe, m.builder if m else "",
                   kwargs, counts, len(group) * t.runs, t.dataset, t.image_size, t.l1,
                   _drop_path_of(m.builder, kwargs) if m else None, t.val_split, note,
                   paths.rel(first.ckpt_dir))


def _drop_path_of(model: str, kwargs: dict) -> float | None:
    import inspect

    from reprolib.core import registry

    try:
        fn = registry.builder(model)
    except ReprolibError:
        return None
    p = inspect.signature(fn).parameters.get("drop_path_rate")
    return kwargs.get("drop_path_rate", p.default if p is not None else None)


# --------------------------------------------------------------------------- the plan


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def plan(paper: str, profile: str = "smoke", nproc: int = 1, **overrides) -> dict:
    """The plan of ``paper`` at ``profile`` under ``nproc`` processes: ``{"paper",
    "profile", "nproc", "device", "target_device" ("cuda" | "cpu": what the estimates must
    be measured on), "stages": [{"name", "runs", "fields": [{"field", "value", "paper",
    "source", "departs", "reason"}], "note"}], "total_hours" (the known part),
    "hours_by_device" ({record device: hours}), "hours_known"}``."""
    if int(nproc) < 1:
        raise ReprolibError(f"--nproc {nproc}: need at least one process")
    nproc = int(nproc)
    from reprolib.experiments import get_experiment

    cfg = get_config(paper, profile, **overrides)
    pipe = get_experiment(paper)
    stated = pipe.stated
    out = {"paper": paper, "profile": profile, "nproc": nproc, "device": cfg.device,
           "target_device": target_device(cfg), "data_root": cfg.data_root, "stages": [],
           "total_hours": 0.0, "hours_by_device": {}, "hours_known": True}
    for group in training_groups(pipe.graph(cfg)):
        s = _Stage.of(group)
        r = s.recipe
        info = DATASET_INFO.get(s.dataset, {})
        n_img = info.get("train_only" if s.val_split else "train")
        if n_img is None:
            n_img = info.get("train")
        pb = r.process_batch(nproc)
        gb = r.total_batch(nproc)
        steps = (n_img // gb if n_img else None)
        params, flops = s.counts
        augs = ["crop + flip"]
        if r.randaugment:
            augs.append(f"RandAugment {r.randaugment}")
        if r.random_erasing:
            augs.append(f"random erasing {r.random_erasing:g}")
        if r.repeated_aug > 1:
            folder = s.dataset in ("imagenet", "flowers102")
            # timm's RepeatAugSampler keeps the epoch length: each image x N, 1/N as many
            augs.append(f"repeated aug x{r.repeated_aug}"
                        + ("" if folder else " (folder sets only: not applied here)"))
        values = {
            "model": s.model + (f" {_kw(s.kwargs)}" if s.kwargs else ""),
            "params / FLOPs": (f"{params / 1e6:.2f} M / {flops / 1e9:.2f} GFLOPs"
                               if params is not None and flops is not None else
                               f"{params / 1e6:.2f} M / FLOPs not countable" if params else "-"),
            "dataset": s.dataset,
            "data present": data_present(s.dataset, cfg.data_root),
            "image_size": s.image_size,
            "global_batch": gb,
            "batch per process": f"{pb} x {nproc} process(es)",
            "optimizer": r.optimizer,
            "lr": r.peak_lr(nproc),
            "schedule": r.schedule + (f" {r.milestones}" if r.schedule == "multistep" else ""),
            "warmup_epochs": r.warmup_epochs,
            "epochs": r.epochs,
            "steps": (f"{steps:,} / epoch, {steps * r.epochs:,} in all"
                      + (f" (x{s.runs} runs)" if s.runs > 1 else "") if steps else "-"),
            "weight_decay": r.weight_decay,
            "augmentation": ", ".join(augs),
            "randaugment": r.randaugment or "off",
            "random_erasing": r.random_erasing,
            "repeated_aug": r.repeated_aug,
            "l1": s.l1,
            "drop_path": s.drop_path if s.drop_path is not None else "-",
            "label_smoothing": r.label_smoothing,
            "mixup": r.mixup, "cutmix": r.cutmix,
            "select_every": r.select_every,
            "milestones": r.milestones,
            "checkpoints": s.ckpt or "results/<paper>/<profile>/ckpt/<stage>-<hash>/",
        }
        st = stated.get(s.stated_key, {})
        fields = []
        for k, v in values.items():
            if k in ("milestones",) and k not in st:
                continue
            if k in ("randaugment", "random_erasing", "repeated_aug", "select_every") \
                    and k not in st and not v:
                continue
            f = {"field": k, "value": _fmt(v), "paper": "", "source": "", "departs": False,
                 "reason": ""}
            if k in st:
                pv, src = st[k]
                cmp = (r.schedule if k == "schedule" else r.randaugment if k == "randaugment"
                       else s.model if k == "model" else v)
                f["paper"], f["source"] = _fmt(pv), src
                if k == "model":
                    f["departs"] = s.model not in _TEXT_GEOMETRY
                else:
                    f["departs"] = not _same(cmp, pv if pv != "" else cmp)
                if f["departs"]:
                    f["reason"] = _reason(pipe, profile, s.stated_key, k, nproc)
            fields.append(f)
        # the device-hour estimate, from a benchmark record of the device the profile trains on
        hours, text, dev = (None, "none: no training images known", None)
        if n_img and s.model:
            hours, text, dev = _estimate(s.model, s.image_size, n_img * r.epochs * s.runs,
                                         out["target_device"], params)
        if hours is None:
            out["hours_known"] = False
        else:
            out["total_hours"] += hours
            out["hours_by_device"][dev] = out["hours_by_device"].get(dev, 0.0) + hours
            if nproc > 1:
                text += f"; ~{hours / nproc:,.1f} h on {nproc} processes"
        fields.append({"field": ESTIMATE_FIELD, "value": text, "paper": "",
                       "source": "", "departs": False, "reason": ""})
        out["stages"].append({"name": s.name, "runs": s.runs, "fields": fields, "note": s.note})
    return out


#: The plan's field holding a stage's estimate (device-hours, from a benchmark record).
ESTIMATE_FIELD = "estimate"

#: Models with the text's VTP geometry (12 layers, 768, 10 heads): no departure on "model".
_TEXT_GEOMETRY = ("vit_cifar_text",)


def _kw(kwargs: dict) -> str:
    shown = {k: v for k, v in kwargs.items() if k != "num_classes"}
    body = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
    return f"({kwargs.get('num_classes', '?')} classes{', ' + body if body else ''})"


def _compact(s: dict) -> list[str]:
    f = {x["field"]: x for x in s["fields"]}

    def v(k):
        return f[k]["value"] if k in f else "-"
    dep = [x for x in s["fields"] if x["departs"]]
    out = [f"== {s['name']}: {v('model')}; {v('params / FLOPs')}",
           f"   data {v('dataset')} @ {v('image_size')} px ({v('data present')}); batch "
           f"{v('global_batch')} global = {v('batch per process')}; {v('optimizer')} lr "
           f"{v('lr')}, {v('schedule')}, warmup {v('warmup_epochs')}, {v('epochs')} epochs "
           f"({v('steps')})",
           f"   aug: {v('augmentation')}; reg: l1 {v('l1')}, drop path {v('drop_path')}, "
           f"smoothing {v('label_smoothing')}, mixup {v('mixup')} / cutmix {v('cutmix')}"
           + (f", select every {v('select_every')}" if "select_every" in f else ""),
           f"   ckpt {v('checkpoints')}; estimate {v(ESTIMATE_FIELD)}",
           f"   paper values stated for {sum(bool(x['paper']) for x in s['fields'])} fields, "
           f"{len(dep)} departing" + "".join(f"; ≠ {x['field']} {x['value']} (paper "
                                            f"{x['paper']}): {x['reason']}" for x in dep)]
    return out


def format_plan(p: dict, compact: bool = False) -> str:
    """The plan as text: one block per stage, ``field  value  [paper: X (source)]`` with ``≠``
    and the reason where the profile departs from the paper (``compact``: five lines per
    stage, departures listed)."""
    lines = [f"plan: {p['paper']} --profile {p['profile']} --nproc {p['nproc']} "
             f"(device {p['device']}); nothing is trained or read"]
    if not p["stages"]:
        lines.append("this pipeline trains nothing (no training recipe): it measures or reads "
                     "other pipelines' records")
    for s in p["stages"]:
        if compact:
            lines += _compact(s)
            continue
        lines.append("")
        lines.append(f"== {s['name']}" + (f"  [{s['note']}]" if s["note"] else ""))
        for f in s["fields"]:
            mark = "≠" if f["departs"] else " "
            line = f"  {mark} {f['field']:<20} {f['value']}"
            if f["paper"]:
                line += f"   [paper: {f['paper']} ({f['source']})]"
            if f["departs"]:
                line += f"  <- {f['reason']}"
            lines.append(line)
    lines.append("")
    tot = _total_text(p)
    n_dep = sum(f["departs"] for s in p["stages"] for f in s["fields"])
    lines.append(f"total estimate: {tot}; {n_dep} field(s) depart from the paper (≠)")
    return "\n".join(lines)


def _total_text(p: dict) -> str:
    """The plan's last line's estimate: hours per record device, or why there is none."""
    kind = "GPU" if p.get("target_device") == "cuda" else "CPU"
    known = " + ".join(f"{h:,.1f} device-hours on {d}"
                       for d, h in p.get("hours_by_device", {}).items())
    if not p["stages"]:
        return "none (nothing trains)"
    if p["hours_known"]:
        return known
    missing = sum(any(f["field"] == ESTIMATE_FIELD and f["value"].startswith("none")
                      for f in s["fields"]) for s in p["stages"])
    cmd = BENCH_COMMAND["cuda" if kind == "GPU" else "cpu"]
    return (f"none for {missing} of {len(p['stages'])} stage group(s): no {kind} benchmark "
            f"record of their model ({cmd} makes them)" + (f"; the others {known}" if known
                                                            else ""))


def plan_text(paper: str, profile: str = "smoke", nproc: int = 1, **overrides) -> str:
    return format_plan(plan(paper, profile, nproc, **overrides))
