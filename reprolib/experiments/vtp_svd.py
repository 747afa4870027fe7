"""VTP + matrix decomposition pipeline (Tianyi Sun, "Vision Transformer Pruning Via Matrix
Decomposition", ``../shared/papers/vtp_svd.md``) on the engine of
:mod:`reprolib.experiments.common`.

Stages, in the paper's order, per patch size ``p`` of ``cfg.patch_sizes`` (each one cached
record; ``cfg.patch_overrides[p]`` may give a patch size its own model or epochs):

* ``dense-p{p}``: the code book's ViT with importance scores (all 1) trained from scratch
  (``pretrain``) then fine-tuned (``baseline``), no L1 (section 3.2.1);
* ``sparse-p{p}`` (after dense): ``sparsity`` training with the L1 term of weight
  ``l1_strength`` on the scores (3.2.2);
* ``vtp-p{p}`` (after dense, sparse): ``vtp.prune`` at ``prune_rate`` (a physically smaller
  ViT), then ``finetune`` without L1 (3.2.3);
* ``decomp-p{p}-{method}-r{ratio}-ft{epochs}`` (after vtp): every pruned linear layer
  factored by ``method`` at ``rank_ratio`` (``decompose.decompose_model``), then
  ``decompose_finetune`` (Table 2: ``cfg.methods``);

and at ``cfg.sweep_patch``: the rank sweep (``sweep_methods`` x ``sweep_ratios``, each
fine-tuned with ``sweep_finetune``, also ``decomp-...`` stages), ``analysis-p{p}``
(reconstruction error vs rank and section 2.3's least-squares merits on the pruned layers)
and ``identity-p{p}`` (full-rank factors reproduce every pruned layer).  Models pass from
stage to stage through ``stage.save_model`` / ``upstream.model()``.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from reprolib.core import report
from reprolib.configs import TrainConfig, field_names, recipe_dict
from reprolib.configs.vtp_svd import PAPER_TABLE1, PAPER_TABLE2, TABLE2_METHODS
from reprolib.core.device import resolve_device
from reprolib.errors import ReprolibError
from reprolib.experiments import evidence
from reprolib.core.pipeline import (Stage, key_of, load_data, profile_note, records,
                                         run_stages, seed_everything)
from reprolib.core.measure import count_params, measure_model
from reprolib.methods import decompose, vtp
from reprolib.models.vit_cifar import TEXT_GEOMETRY_NOTE
from reprolib.core.registry import create_model
from reprolib.core.train import evaluate, fit

PAPER = "vtp_svd"
README_FIGURE = "acc_vs_params"
README_EVIDENCE_FIGURE = "evidence"

#: Keys a ``patch_overrides`` entry may not change (they are not per-patch settings).
_NOT_PER_PATCH = ("profile", "seed", "patch_sizes", "patch_overrides", "sweep_patch")


# --------------------------------------------------------------------------- config helpers


def patch_cfg(cfg, patch: int):
    """``cfg`` with ``cfg.patch_overrides[patch]`` applied (dotted keys, as in presets:
    ``{"model": "vit_cifar_small_d2", "pretrain.epochs": 6}``); the same ``cfg`` when the
    patch size has no overrides."""
    over = dict((cfg.patch_overrides or {}).get(patch, {}))
    if not over:
        return cfg
    valid = [n for n in field_names(type(cfg))
             if n not in _NOT_PER_PATCH and not n.endswith(".seed")]
    new = cfg
    for k, v in over.items():
        if k not in valid:
            raise ReprolibError(f"patch_overrides[{patch}] key {k!r} is not a per-patch setting; "
                                f"valid: {', '.join(valid)}")
        if "." in k:
            r, sub = k.split(".", 1)
            new = dataclasses.replace(new, **{r: dataclasses.replace(getattr(new, r), **{sub: v})})
        else:
            new = dataclasses.replace(new, **{k: v})
    return new


def phase_note(cfg, patches=None, decomposition: str = "table2") -> str:
    """One line for captions: the model and the epochs of each phase (dense baseline, L1,
    fine-tune after pruning, fine-tune after decomposition: ``decomposition`` = "table2"
    (``decompose_finetune``), "sweep" (``sweep_finetune``) or "" (left out, for results of
    the VTP model itself)), grouped by patch size where ``cfg.patch_overrides`` makes them
    differ."""
    def one(c):
        txt = (f"{c.model}: dense baseline {c.pretrain.epochs + c.baseline.epochs} ep, L1 "
               f"{c.sparsity.epochs} ep, fine-tune {c.finetune.epochs} ep")
        if decomposition:
            dec = c.sweep_finetune if decomposition == "sweep" else c.decompose_finetune
            txt += f", decomposition fine-tune {dec.epochs} ep"
        return txt
    patches = list(cfg.patch_sizes if patches is None else patches)
    over = cfg.patch_overrides or {}
    base = [p for p in patches if p not in over]
    parts = [f"patch {', '.join(map(str, base))}: {one(cfg)}"] if base else []
    parts += [f"patch {p}: {one(patch_cfg(cfg, p))}" for p in patches if p in over]
    return "; ".join(parts)


# --------------------------------------------------------------------------- stages


@dataclass
class _Pipeline:
    """The stages of ``cfg`` and where each table finds its own."""

    stages: list[Stage] = field(default_factory=list)
    dense: dict[int, Stage] = field(default_factory=dict)
    sparse: dict[int, Stage] = field(default_factory=dict)
    vtp: dict[int, Stage] = field(default_factory=dict)
    table2: dict[tuple[int, str], Stage] = field(default_factory=dict)   # (patch, method)
    sweep: dict[tuple[str, float], Stage] = field(default_factory=dict)  # (method, ratio)
    analysis: Stage | None = None
    identity: Stage | None = None
    # evidence (cfg.seeds): seed -> {"dense", "vtp", "sweep": {(method, ratio): Stage},
    # "control": the VTP model fine-tuned like the decomposed ones, not decomposed}
    evidence: dict[int, dict] = field(default_factory=dict)

    def add(self, stage: Stage) -> Stage:
        for s in self.stages:
            if s.name == stage.name:
                if s.run_id == stage.run_id:
                    return s                   # the same computation: one record
                raise ReprolibError(f"two different stages are named {stage.name!r} (e.g. the "
                                    "rank sweep and Table 2 at the same ratio and epochs but "
                                    "different fine-tune settings); change one's epochs")
        self.stages.append(stage)
        return stage


def _pipeline(cfg) -> _Pipeline:
    pl = _Pipeline()
    for p in cfg.patch_sizes:
        pc = patch_cfg(cfg, p)
        d = pl.dense[p] = pl.add(_dense_stage(pc, p))
        s = pl.sparse[p] = pl.add(_sparse_stage(pc, p, d))
        v = pl.vtp[p] = pl.add(_vtp_stage(pc, p, d, s))
        for m in cfg.methods:
            pl.table2[(p, m)] = pl.add(_decomp_stage(pc, p, v, m, cfg.rank_ratio,
                                                     pc.decompose_finetune))
    if cfg.sweep_patch in cfg.patch_sizes:
        p = cfg.sweep_patch
        pc, v = patch_cfg(cfg, p), pl.vtp[p]
        for m in cfg.sweep_methods:
            for r in cfg.sweep_ratios:
                pl.sweep[(m, float(r))] = pl.add(_decomp_stage(pc, p, v, m, r, pc.sweep_finetune))
        pl.analysis = pl.add(_analysis_stage(pc, p, v))
        pl.identity = pl.add(_identity_stage(pc, p, v))
    if cfg.seeds:
        _add_evidence(pl, cfg)
    return pl


def _add_evidence(pl: _Pipeline, cfg) -> None:
    """Per seed of ``cfg.seeds``, at ``cfg.sweep_patch``: its own dense -> L1 -> VTP chain
    (``cfg.seed`` reuses the stages above), the rank sweep (``sweep_methods`` x
    ``sweep_ratios``, each fine-tuned with ``sweep_finetune``) and the control: the VTP model
    fine-tuned with the same recipe, not decomposed."""
    p = cfg.sweep_patch
    if p not in cfg.patch_sizes:
        raise ReprolibError(f"the evidence stages run at sweep_patch={p}, which is not one of "
                            f"patch_sizes={tuple(cfg.patch_sizes)}")
    for seed in dict.fromkeys(int(x) for x in cfg.seeds):
        c = evidence.seeded(cfg, seed)
        pc, sfx = patch_cfg(c, p), evidence.seed_suffix(seed, cfg.seed)
        if seed == cfg.seed:
            d, v = pl.dense[p], pl.vtp[p]
            sweep = {k: pl.sweep[k] for k in pl.sweep}
        else:
            d = pl.add(_dense_stage(pc, p, sfx))
            v = pl.add(_vtp_stage(pc, p, d, pl.add(_sparse_stage(pc, p, d, sfx)), sfx))
            sweep = {(m, float(r)): pl.add(_decomp_stage(pc, p, v, m, r, pc.sweep_finetune, sfx))
                     for m in cfg.sweep_methods for r in cfg.sweep_ratios}
        ctl = pl.add(_decomp_stage(pc, p, v, "none", 1.0, pc.sweep_finetune, sfx))
        pl.evidence[seed] = {"dense": d, "vtp": v, "sweep": sweep, "control": ctl}


def stages(cfg) -> list[Stage]:
    """Every stage in run order: per patch ``dense-p{p}``, ``sparse-p{p}``, ``vtp-p{p}``,
    ``decomp-p{p}-{method}-r{ratio}-ft{epochs}`` (Table 2), then at ``cfg.sweep_patch`` the
    rank sweep's ``decomp-...``, ``analysis-p{p}`` and ``identity-p{p}``."""
    return _pipeline(cfg).stages


def run(cfg, force: bool = False) -> dict[str, dict]:
    """Run (or reuse) every stage; returns ``{stage name: record}``."""
    return run_stages(stages(cfg), force)


def _scored_model(pc, patch: int, num_classes: int):
    model = create_model(pc.model, image_size=pc.image_size, patch_size=patch,
                         num_classes=num_classes, dropout=pc.dropout, emb_dropout=pc.dropout,
                         attn_scale=pc.attn_scale)
    return vtp.attach_scores(model)


def _train(model, pc, recipe: TrainConfig, ckpt_dir: Path, desc: str, l1: bool = False):
    """``fit`` one phase (with the L1 term on the scores when ``l1``); the FitResult."""
    kw = {}
    if l1 and pc.l1_mode == "grad":
        kw["grad_hook"] = vtp.l1_grad_hook(pc.l1_strength)
    elif l1:
        kw["extra_loss"] = lambda m: vtp.l1_penalty(m, pc.l1_strength)
    return fit(model, load_data(pc, recipe.batch_size), recipe, ckpt_dir=ckpt_dir,
               device=pc.device, desc=desc, **kw)


def _measure(model, pc) -> dict:
    """params, FLOPs (one image) and CPU latency (batch 1) of ``model`` (moved to the CPU)."""
    return measure_model(model.cpu(), (3, pc.image_size, pc.image_size))


def _dense_stage(pc, patch: int, suffix: str = "") -> Stage:
    def fn(stage: Stage) -> dict:
        data = load_data(pc, pc.pretrain.batch_size)
        seed_everything(pc.seed)
        model = _scored_model(pc, patch, data.num_classes).to(resolve_device(pc.device))
        hist, wall = {}, {}
        for phase in ("pretrain", "baseline"):
            rec = getattr(pc, phase)
            if rec.epochs > 0:
                r = _train(model, pc, rec, stage.ckpt_dir / phase, f"p{patch} {phase}")
                hist[phase], wall[phase] = r.history, r.wall_time_s
        acc = evaluate(model, data.test)["acc"]
        metrics = {"patch_size": patch, "acc": acc, **_measure(model, pc), "history": hist,
                   "train_wall_s": wall, "train_size": data.train_size}
        stage.save_model(model)
        return metrics

    key = key_of(pc, "dataset", "image_size", "model", "attn_scale", "dropout", "pretrain",
                 "baseline", patch_size=patch)
    return Stage(pc, f"dense-p{patch}{suffix}", key, fn)


def _sparse_stage(pc, patch: int, dense: Stage, suffix: str = "") -> Stage:
    def fn(stage: Stage) -> dict:
        data = load_data(pc, pc.sparsity.batch_size)
        model = dense.model().to(resolve_device(pc.device))
        hist, wall = {}, {}
        if pc.sparsity.epochs > 0:
            r = _train(model, pc, pc.sparsity, stage.ckpt_dir / "sparsity", f"p{patch} sparsity",
                       l1=True)
            hist["sparsity"], wall["sparsity"] = r.history, r.wall_time_s
        acc = evaluate(model, data.test)["acc"]
        metrics = {"patch_size": patch, "acc": acc, **_measure(model, pc),
                   "scores": [s.detach().cpu().tolist() for s in vtp.scores(model).values()],
                   "history": hist, "train_wall_s": wall}
        stage.save_model(model)
        return metrics

    key = key_of(pc, "sparsity", "l1_strength", "l1_mode")
    return Stage(pc, f"sparse-p{patch}{suffix}", key, fn, after=[dense])


def _vtp_stage(pc, patch: int, dense: Stage, sparse: Stage, suffix: str = "") -> Stage:
    def fn(stage: Stage) -> dict:
        dm, sm = dense.metrics(), sparse.metrics()
        data = load_data(pc, pc.finetune.batch_size)
        model = sparse.model().to(resolve_device(pc.device))
        plan = vtp.plan(model, pc.prune_rate)
        pruned = vtp.prune(model, pc.prune_rate)
        acc0 = evaluate(pruned, data.test)["acc"]
        r = _train(pruned, pc, pc.finetune, stage.ckpt_dir / "finetune", f"p{patch} finetune")
        hist = {**dm["history"], **sm["history"], "finetune": r.history}
        wall = {**dm["train_wall_s"], **sm["train_wall_s"], "finetune": r.wall_time_s}
        acc = evaluate(pruned, data.test)["acc"]
        metrics = {"patch_size": patch, "acc_dense": dm["acc"], "acc_sparse": sm["acc"],
                   "params_dense": dm["params"], "flops_dense": dm["flops"],
                   "acc_pruned_no_ft": acc0, "acc": acc, **_measure(pruned, pc),
                   "block_dims": pruned.architecture()["block_dims"],
                   "threshold": plan.threshold, "kept_fraction": plan.kept_fraction,
                   "scores": sm["scores"], "history": hist, "train_wall_s": wall,
                   "train_size": data.train_size, "test_size": data.test_size}
        stage.save_model(pruned)
        return metrics

    key = key_of(pc, "prune_rate", "finetune")
    return Stage(pc, f"vtp-p{patch}{suffix}", key, fn, after=[dense, sparse])


def _decomp_stage(pc, patch: int, vtp_stage: Stage, method: str, ratio: float,
                  recipe: TrainConfig, suffix: str = "") -> Stage:
    """Every pruned linear layer factored by ``method`` at ``ratio``, then fine-tuned with
    ``recipe``; ``method="none"``: the VTP model fine-tuned alike, not decomposed (the
    evidence control, stage ``vtpft-p{patch}-ft{epochs}``)."""
    ratio = float(ratio)

    def fn(stage: Stage) -> dict:
        data = load_data(pc, recipe.batch_size)
        base = vtp_stage.model().to(resolve_device(pc.device))
        model = (base if method == "none" else decompose.decompose_model(base, method, ratio))
        acc0 = evaluate(model, data.test)["acc"]
        wall, hist = 0.0, []
        if recipe.epochs > 0:
            r = _train(model, pc, recipe, stage.ckpt_dir / "finetune", f"p{patch} {method}")
            wall, hist = r.wall_time_s, r.history
        acc = evaluate(model, data.test)["acc"]
        metrics = {"patch_size": patch, "method": method, "rank_ratio": ratio,
                   "finetune_epochs": recipe.epochs, "acc_no_ft": acc0, "acc": acc,
                   **_measure(model, pc), "ranks": decompose.current_ranks(model),
                   "train_wall_s": wall, "history": hist}
        stage.save_model(model)
        return metrics

    key = {"method": method, "rank_ratio": ratio, "finetune": recipe_dict(recipe)}
    name = (f"vtpft-p{patch}-ft{recipe.epochs}{suffix}" if method == "none" else
            f"decomp-p{patch}-{method}-r{ratio:g}-ft{recipe.epochs}{suffix}")
    return Stage(pc, name, key, fn, after=[vtp_stage])


def _analysis_stage(pc, patch: int, vtp_stage: Stage) -> Stage:
    def fn(stage: Stage) -> dict:
        model = vtp_stage.model()
        ratios = sorted({*map(float, pc.sweep_ratios), 1.0})
        mats = {n: lin.weight for n, lin in decompose.target_layers(model)}
        merits = []
        for dt in ("float32", "float64"):
            merits += decompose.lstsq_merits(mats, dtype=dt, repeats=pc.merits_repeats,
                                             seed=pc.seed)
        return {"patch_size": patch, "errors": decompose.error_curve(model, ratios),
                "merits": merits, "blas_threads": torch.get_num_threads()}

    key = key_of(pc, "sweep_ratios", "merits_repeats")
    return Stage(pc, f"analysis-p{patch}", key, fn, after=[vtp_stage])


def _identity_stage(pc, patch: int, vtp_stage: Stage) -> Stage:
    def fn(stage: Stage) -> dict:
        return {"patch_size": patch,
                "identity": decompose.full_rank_identity(vtp_stage.model())}

    return Stage(pc, f"identity-p{patch}", {}, fn, after=[vtp_stage])


# --------------------------------------------------------------------------- tables


def _data_name(cfg) -> str:
    ds = str(cfg.dataset)
    return Path(ds[4:]).name if ds.startswith("npz:") else ds


def _provenance(cfg, recs) -> str:
    """``profile=... · data=... · device=...`` of ``recs`` plus the profile note (the epochs
    of each phase are in :func:`phase_note`)."""
    return (report.provenance(None, None, profile=cfg.profile, data=_data_name(cfg))
            + f" · device={report.device_label(recs)}" + profile_note(cfg))


def _epoch_seconds(history: list[dict]) -> float:
    """Training wall time of a phase: the sum of its epochs' ``time_s`` (kept across resumes)."""
    return float(sum(h.get("time_s", 0.0) for h in history))


def _table2(cfg, pl: _Pipeline) -> pd.DataFrame:
    rows = []
    for patch in cfg.patch_sizes:
        m = pl.vtp[patch].metrics()
        paper = PAPER_TABLE2.get(patch, {})
        pc = patch_cfg(cfg, patch)
        dense_ep = pc.pretrain.epochs + pc.baseline.epochs
        train_ep = dense_ep + pc.sparsity.epochs
        phases = f"{dense_ep}+{pc.sparsity.epochs}"
        h = m["history"]
        wall_base = sum(_epoch_seconds(h.get(k, [])) for k in ("pretrain", "baseline"))
        wall_dense = wall_base + _epoch_seconds(h.get("sparsity", []))
        wall_vtp = wall_dense + _epoch_seconds(h.get("finetune", []))
        common = {"patch": patch, "acc_paper": float("nan"), "arch": pc.model}
        rows.append({**common, "model": "ViT (dense baseline)", "acc": m["acc_dense"],
                     "params": m["params_dense"], "flops": m["flops_dense"], "epochs": dense_ep,
                     "phases": f"{dense_ep}", "wall_s": wall_base})
        rows.append({**common, "model": "ViT (after L1, before pruning)", "acc": m["acc_sparse"],
                     "params": m["params_dense"], "flops": m["flops_dense"], "epochs": train_ep,
                     "phases": phases, "wall_s": wall_dense})
        rows.append({**common, "model": "VTP", "acc": m["acc"],
                     "acc_paper": paper.get("VTP", float("nan")), "params": m["params"],
                     "flops": m["flops"], "epochs": train_ep + pc.finetune.epochs,
                     "phases": f"{phases}+{pc.finetune.epochs}", "wall_s": wall_vtp})
        for col, meth in TABLE2_METHODS.items():
            if (patch, meth) not in pl.table2:
                continue
            dm = pl.table2[(patch, meth)].metrics()
            dft = pc.decompose_finetune.epochs
            rows.append({**common, "model": col, "acc": dm["acc"],
                         "acc_paper": paper.get(col, float("nan")), "params": dm["params"],
                         "flops": dm["flops"], "epochs": train_ep + pc.finetune.epochs + dft,
                         "phases": f"{phases}+{pc.finetune.epochs}+{dft}",
                         "wall_s": wall_vtp + _epoch_seconds(dm["history"])})
    cols = ["patch", "model", "acc", "acc_paper", "params", "flops", "epochs", "phases", "arch",
            "wall_s"]
    return pd.DataFrame(rows, columns=cols)


def _table2_layout(long: pd.DataFrame) -> pd.DataFrame:
    """Table 2's own layout: rows = patch sizes, columns = VTP / VTP+SVD / VTP+QR / VTP+LU,
    cells "ours (paper)" accuracy in %."""
    cols = ["VTP", "VTP+SVD", "VTP+QR", "VTP+LU"]
    out = []
    for patch, g in long.groupby("patch", sort=True):
        dec = g[g["model"].isin(cols[1:])]
        row = {"patch": f"ViT patch={patch}", "model": g["arch"].iloc[0],
               "epochs (dense+L1+ft+dec-ft)": (dec["phases"].iloc[0] if len(dec)
                                               else g["phases"].iloc[-1])}
        for c in cols:
            hit = g[g["model"] == c]
            if len(hit):
                row[c] = f"{hit['acc'].iloc[0]:.1f} ({hit['acc_paper'].iloc[0]:.1f})"
        out.append(row)
    return pd.DataFrame(out, columns=["patch", "model", "epochs (dense+L1+ft+dec-ft)", *cols])


def _sweep(pl: _Pipeline) -> pd.DataFrame:
    rows = []
    for st in pl.sweep.values():
        m = st.metrics()
        rows.append({"method": m["method"], "rank_ratio": m["rank_ratio"], "acc": m["acc"],
                     "params": m["params"], "flops": m["flops"]})
    df = pd.DataFrame(rows, columns=["method", "rank_ratio", "acc", "params", "flops"])
    return df.sort_values(["method", "rank_ratio"]).reset_index(drop=True)


def _errors(pl: _Pipeline) -> pd.DataFrame:
    df = pd.DataFrame(pl.analysis.metrics()["errors"])
    return (df.groupby(["method", "rank_ratio"])["rel_fro"].agg(["mean", "max"])
            .rename(columns={"mean": "rel_fro_mean", "max": "rel_fro_max"}).reset_index())


def _merits(pl: _Pipeline) -> pd.DataFrame:
    df = pd.DataFrame(pl.analysis.metrics()["merits"])
    order = {"normal_equations": 0, "qr": 1, "svd": 2}
    g = df.groupby(["dtype", "solver"]).agg(
        layers=("matrix", "count"), rel_error_median=("rel_error", "median"),
        rel_error_max=("rel_error", "max"), rel_residual_median=("rel_residual", "median"),
        time_ms_total=("time_ms", "sum"), cond_median=("cond", "median"),
        cond_max=("cond", "max")).reset_index()
    g["_o"] = g["solver"].map(order)
    return g.sort_values(["dtype", "_o"]).drop(columns="_o").reset_index(drop=True)


def _identity(pl: _Pipeline) -> pd.DataFrame:
    df = pd.DataFrame(pl.identity.metrics()["identity"])
    return df.groupby("method", sort=False).agg(layers=("layer", "count"),
                                                max_abs_diff=("max_abs_diff", "max")).reset_index()


def tables(cfg) -> dict[str, pd.DataFrame]:
    """From the records of :func:`stages` (run them first):

    ``table2``: Table 2 in long form, one row per (patch, model): our accuracy (%), the
    paper's, params, FLOPs (1 MAC = 1 FLOP, one image), the cumulative epochs behind the
    model (``phases``: dense + L1 + fine-tune + decomposition fine-tune), the model and the
    wall time of those epochs (s); ``table2_layout``: the paper's layout, "ours (paper)";
    and at ``cfg.sweep_patch``: ``rank_sweep`` (accuracy, params, FLOPs per method and rank
    ratio), ``error_vs_rank`` (relative Frobenius error ||W - AB||_F / ||W||_F, mean and max
    over the pruned layers), ``lstsq_merits`` (Table 1 measured: least squares by normal
    equations / QR / SVD on the pruned layer matrices, float32 and float64) and
    ``full_rank_identity`` (largest output difference of full-rank factors per method).
    """
    pl = _pipeline(cfg)
    prov = _provenance(cfg, list(records(pl.stages).values()))
    t2 = _table2(cfg, pl)
    t2.attrs["caption"] = (f"VTP+decomposition Table 2 (long form). Ours: {prov}; rank ratio "
                           f"{cfg.rank_ratio}, prune rate {cfg.prune_rate}; {phase_note(cfg)}. "
                           f"{report.FLOPS_NOTE}. Paper: Table 2 (CIFAR-10, accuracy only). "
                           f"{TEXT_GEOMETRY_NOTE}")
    t2w = _table2_layout(t2)
    t2w.attrs["caption"] = (f"Table 2 layout, accuracy % as 'ours (paper)'. Ours: {prov}; "
                            f"{phase_note(cfg)}. {TEXT_GEOMETRY_NOTE}")
    out = {"table2": t2, "table2_layout": t2w}
    if pl.analysis is None:
        return out
    sp = cfg.sweep_patch
    note, vnote = phase_note(cfg, [sp], "sweep"), phase_note(cfg, [sp], "")
    sw = _sweep(pl)
    sw.attrs["caption"] = (f"Rank sweep, patch {sp}. Ours: {prov}; {note}. "
                           f"{report.FLOPS_NOTE}.")
    err = _errors(pl)
    err.attrs["caption"] = (f"Relative Frobenius error of rank-r factorizations of the pruned "
                            f"layers, patch {sp}. {prov}; {vnote}.")
    mt = _merits(pl)
    mt.attrs["caption"] = (f"Table 1 measured on the pruned layer matrices (patch {sp}). Ours: "
                           f"{prov}; {vnote}. Paper: {PAPER_TABLE1}.")
    idt = _identity(pl)
    idt.attrs["caption"] = (f"Full-rank identity on the pruned layers, patch {sp}. {prov}; "
                            f"{vnote}.")
    out.update(rank_sweep=sw, error_vs_rank=err, lstsq_merits=mt, full_rank_identity=idt)
    if cfg.seeds:
        out.update(evidence_tables(cfg))
    return out


# --------------------------------------------------------------------------- figures


#: One colour / marker / dash per decomposition (and the VTP model), fixed across figures.
METHOD_STYLES = {
    "svd": {"color": "tab:red", "marker": "o", "ls": "-"},
    "qr": {"color": "tab:blue", "marker": "s", "ls": "--"},
    "qr_reduced": {"color": "tab:cyan", "marker": "v", "ls": "--"},
    "qr_pivoted": {"color": "tab:green", "marker": "^", "ls": "-."},
    "cod": {"color": "tab:olive", "marker": "P", "ls": "-."},
    "lu": {"color": "tab:purple", "marker": "D", "ls": ":"},
    "none": {"color": "black", "marker": "*", "ls": "-"},
}


def coinciding(df: pd.DataFrame, key: str, value: str) -> list[list[str]]:
    """Groups of methods whose ``value`` curves over ``key`` are identical (to 1e-9), e.g.
    ``qr`` and ``qr_reduced`` (the same rank-r product), in first-seen order."""
    groups: dict[tuple, list[str]] = {}
    for m, g in df.groupby("method", sort=False):
        sig = tuple((round(float(k), 9), round(float(v), 9))
                    for k, v in sorted(zip(g[key], g[value])))
        groups.setdefault(sig, []).append(str(m))
    return list(groups.values())


def _plot_grouped(ax, df: pd.DataFrame, x: str, y: str, key: str) -> None:
    """One line per group of coinciding methods (:func:`coinciding`), labelled "a = b"."""
    for group in coinciding(df, key, y):
        g = df[df["method"] == group[0]].sort_values(x)
        st = METHOD_STYLES.get(group[0], {})
        label = " = ".join(group) + (" (identical)" if len(group) > 1 else "")
        ax.plot(g[x], g[y], label=label, ms=7, **{"marker": "o", **st})


def _plot_sweep(sweep: pd.DataFrame, vtp_point=None, title: str = "", paper: dict | None = None):
    """Accuracy vs params over ranks, one curve per decomposition (fixed marker / dash per
    method; methods with identical curves drawn once, labelled "qr = qr_reduced");
    ``vtp_point`` = (params, acc) of the pruned model before decomposition: a black star with
    dashed reference lines; ``paper``: the paper's Table 2 accuracies at this patch size
    (``{"VTP": ..., "VTP+SVD": ...}``), dotted lines in the method's colour (the paper states
    no rank, so they are levels, not points)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    df = sweep.assign(params_k=sweep["params"] / 1e3)
    if len(df):
        _plot_grouped(ax, df, "params_k", "acc", "rank_ratio")
    if vtp_point is not None:
        ax.scatter([vtp_point[0] / 1e3], [vtp_point[1]], marker="*", s=120, color="black",
                   zorder=5, label="VTP (not decomposed)")
        ax.axvline(vtp_point[0] / 1e3, ls="--", lw=0.8, color="grey")
        ax.axhline(vtp_point[1], ls="--", lw=0.8, color="grey")
    for col, acc in (paper or {}).items():
        meth = TABLE2_METHODS.get(col, "none")
        what = " (the code book's unpruned ViT)" if col == "VTP" else ""
        ax.axhline(acc, ls=(0, (1, 2)), lw=1.2, color=METHOD_STYLES[meth]["color"],
                   label=f"paper Table 2: {col} {acc:g} %{what}")
    ax.set_xlabel("parameters (thousands)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _plot_errors(errors: pd.DataFrame, title: str = ""):
    """Mean relative Frobenius reconstruction error of the pruned layers vs rank ratio
    (methods with identical errors drawn once, labelled "a = b")."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    df = errors[errors["rank_ratio"] < 1.0]
    _plot_grouped(ax, df, "rank_ratio", "rel_fro_mean", "rank_ratio")
    ax.set_xlabel("rank / min(out, in)")
    ax.set_ylabel("relative error ||W - AB||_F / ||W||_F\n(mean over the pruned layers)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures(cfg) -> dict:
    """At ``cfg.sweep_patch`` (when it is one of ``cfg.patch_sizes``): ``acc_vs_params``
    (accuracy vs params over the rank sweep, the VTP model as a star) and ``error_vs_rank``
    (mean reconstruction error of the pruned layers vs rank ratio)."""
    pl = _pipeline(cfg)
    if pl.analysis is None:
        return {}
    prov = _provenance(cfg, list(records(pl.stages).values()))
    sp = cfg.sweep_patch
    v = pl.vtp[sp].metrics()
    wrap = functools.partial(textwrap.fill, width=95)
    fig1 = _plot_sweep(_sweep(pl), (v["params"], v["acc"]),
                       title=wrap(f"Accuracy vs params over ranks — "
                                  f"{phase_note(cfg, [sp], 'sweep')}") + "\n" + wrap(prov),
                       paper=PAPER_TABLE2.get(sp))
    fig2 = _plot_errors(_errors(pl), title=wrap(f"Reconstruction error of the pruned layers vs "
                                                f"rank — {phase_note(cfg, [sp], '')}")
                        + "\n" + wrap(prov))
    out = {"acc_vs_params": fig1, "error_vs_rank": fig2}
    if cfg.seeds:
        out["evidence"] = plot_evidence(cfg)
    return out


# --------------------------------------------------------------------------- summary


def codebook_params(patch_size: int, num_classes: int = 10) -> int:
    """Parameters of the code book's ViT (``create_model("vit_cifar")``, built on the meta
    device: no memory, no init) at ``patch_size``."""
    with torch.device("meta"):
        return count_params(create_model("vit_cifar", patch_size=patch_size,
                                         num_classes=num_classes))


def _e(x: float) -> str:
    """``3.0e-5`` (one decimal, no zero-padded exponent)."""
    m, ex = f"{x:.1e}".split("e")
    return f"{m}e{int(ex)}"


def _merits_sentence(mt: pd.DataFrame, n_layers: int, profile: str) -> str:
    """Table 1 measured: float32 errors and times per solver, then whether the paper's
    orderings hold in float32 and float64."""
    names = {"normal_equations": "normal equations", "qr": "QR", "svd": "SVD"}
    paper = {"accuracy": (["svd", "qr", "normal_equations"], "most to least accurate",
                          "rel_error_median", "normal equations < QR < SVD"),
             "speed": (["normal_equations", "qr", "svd"], "fastest to slowest",
                       "time_ms_total", "normal equations > QR > SVD")}
    f32 = mt[mt["dtype"] == "float32"].set_index("solver")
    head = ", ".join(f"{names[s]} {_e(f32.loc[s, 'rel_error_median'])}"
                     + (" median relative error" if s == "normal_equations" else "")
                     + f" in {f32.loc[s, 'time_ms_total']:.1f} ms"
                     for s in ("normal_equations", "qr", "svd") if s in f32.index)
    verdicts = []
    for what, (expect, words, col, printed) in paper.items():
        holds, fails = [], []
        for dt in ("float32", "float64"):
            g = mt[mt["dtype"] == dt].set_index("solver")[col].to_dict()
            if not g:
                continue
            seen = sorted(g, key=g.get)
            if seen == expect:
                holds.append(dt)
            else:
                fails.append(f"{dt}: " + " > ".join(names[x] for x in seen))
        txt = f"the paper's {what} order ({printed}) "
        if holds:
            txt += f"holds in {' and '.join(holds)}"
        if fails:
            txt += ("; " if holds else "") + f"does not hold ({words}, " + "; ".join(fails) + ")"
        verdicts.append(txt)
    return (f"Section 2.3 measured on those {n_layers} layers (`figures/vtp_svd/lstsq_merits-"
            f"{profile}.md`, float32): {head}; " + "; ".join(verdicts) + ".")


def summary(cfg) -> str:
    """The README paragraph, every number from the records of :func:`stages` (parameter
    counts of the code book ViT from the model itself)."""
    pl = _pipeline(cfg)
    recs = records(pl.stages)
    t2 = _table2(cfg, pl)
    counts = "; ".join(f"{codebook_params(p):,}{' params' if p == 4 else ''} at patch {p}"
                       for p in (4, 2, 8))
    first = (f"The code book's CIFAR ViT ({counts}, which the code book rejects), VTP scores "
             f"with L1 (strength {cfg.l1_strength:g}), one global threshold, physical pruning "
             f"that keeps head boundaries (pruned == masked, tested), then every pruned linear "
             f"layer as two rank-r layers by SVD, QR (full, reduced, pivoted), COD or LU; each "
             f"phase of the paper's order (dense baseline → L1 sparsity → prune "
             f"{cfg.prune_rate:g} → fine-tune → decompose at rank "
             f"{cfg.rank_ratio:g}·min(out, in) → fine-tune) is its own cached record.")
    secs = sum(r.get("wall_time_s", 0.0) for r in recs.values())
    took = f"{secs / 60:.0f} min" if secs >= 120 else f"{secs:.0f} s"
    data = _data_name(cfg)
    per_patch = []
    for p in cfg.patch_sizes:
        g = t2[t2["patch"] == p].set_index("model")
        cols = [c for c in ("VTP", "VTP+SVD", "VTP+QR", "VTP+LU") if c in g.index]
        per_patch.append(" / ".join(f"{g.loc[c, 'acc']:.1f}" for c in cols)
                         + f" % (patch {p})")
    labels = " / ".join(["VTP", *[c.replace("VTP", "") for c in TABLE2_METHODS
                                  if TABLE2_METHODS[c] in cfg.methods]])
    second = (f"`reprolib run vtp_svd --profile {cfg.profile}` (`{data}`; {phase_note(cfg)}; "
              f"{took} of recorded stage time{profile_note(cfg)}): {labels} = "
              + ", ".join(per_patch)
              + f", the paper's beside each in `figures/vtp_svd/table2_layout-{cfg.profile}.md`.")
    sents = [first, second]
    sp = cfg.sweep_patch if cfg.sweep_patch in cfg.patch_sizes else cfg.patch_sizes[0]
    g = t2[t2["patch"] == sp].set_index("model")
    dec = [c for c in TABLE2_METHODS if c in g.index]
    if dec:
        v, d = g.loc["VTP"], g.loc[dec[0]]
        sents.append(f"Decomposition at rank {cfg.rank_ratio:g} cuts patch {sp} from "
                     f"{v['params'] / 1e3:.0f}k to {d['params'] / 1e3:.0f}k params and "
                     f"{v['flops'] / 1e6:.1f} M to {d['flops'] / 1e6:.1f} M FLOPs.")
    if pl.identity is not None:
        idt = _identity(pl)
        sents.append(f"At full rank every factorization reproduces the real pruned layers to "
                     f"≤ {_e(idt['max_abs_diff'].max())} (float32, largest output difference).")
        mt = _merits(pl)
        sents.append(_merits_sentence(mt, int(mt["layers"].max()), cfg.profile))
    return " ".join(sents)


# --------------------------------------------------------------------------- evidence
# The claims test (profile ``evidence``: ``cfg.seeds``): per seed its own dense -> L1 -> VTP
# chain at ``sweep_patch``, every (method, rank) decomposed and fine-tuned alike, and the VTP
# model fine-tuned with the same recipe (control).

_NAMES = {"svd": "SVD", "qr": "QR", "qr_reduced": "reduced QR", "qr_pivoted": "pivoted QR",
          "cod": "COD", "lu": "LU", "none": "VTP (not decomposed)"}


def _need_seeds(cfg) -> None:
    if not cfg.seeds:
        raise ReprolibError(f"vtp_svd profile {cfg.profile!r} has no seeds: the claims are "
                            f"tested by the evidence profile (reprolib run vtp_svd --profile "
                            f"evidence)")


def evidence_frame(cfg) -> pd.DataFrame:
    """One row per (seed, method, rank ratio), plus the control (method "none", rank ratio
    1): accuracy right after decomposition (``acc_no_ft``) and after the fine-tune
    (``acc``), params, FLOPs, and the VTP model's accuracy before either (``acc_vtp``)."""
    _need_seeds(cfg)
    pl = _pipeline(cfg)
    rows = []
    for seed, ev in pl.evidence.items():
        vm = ev["vtp"].metrics()
        for (m, r), st in [*ev["sweep"].items(), (("none", 1.0), ev["control"])]:
            x = st.metrics()
            rows.append({"seed": seed, "method": m, "rank_ratio": r, "params": x["params"],
                         "flops": x["flops"], "acc_no_ft": x["acc_no_ft"], "acc": x["acc"],
                         "acc_vtp": vm["acc"], "acc_dense": vm["acc_dense"]})
    return pd.DataFrame(rows, columns=["seed", "method", "rank_ratio", "params", "flops",
                                       "acc_no_ft", "acc", "acc_vtp", "acc_dense"])


def _evidence_note(cfg) -> str:
    pl = _pipeline(cfg)
    sp = cfg.sweep_patch
    hist = [ev["dense"].metrics()["history"].get("pretrain", []) for ev in pl.evidence.values()]
    recs = [s.record() for s in pl.stages]
    seeds = ", ".join(str(s) for s in pl.evidence)
    return (f"{phase_note(cfg, [sp], 'sweep')}, `{_data_name(cfg)}`, seeds {seeds}; "
            f"{evidence.plateau_note(hist, what='the dense baseline')}; "
            f"{evidence.cost_note(recs)}{profile_note(cfg)}")


def evidence_tables(cfg) -> dict[str, pd.DataFrame]:
    """``evidence``: per method and rank ratio, params and accuracy right after decomposition
    and after its fine-tune, mean ± std over the seeds, beside the paper's Table 2 at
    ``sweep_patch``; ``evidence_runs``: every seed."""
    df = evidence_frame(cfg)
    paper = PAPER_TABLE2.get(cfg.sweep_patch, {})
    col = {m: c for c, m in TABLE2_METHODS.items()}
    rows = []
    order = {m: i for i, m in enumerate(["none", *cfg.sweep_methods])}
    for (m, r), g in sorted(df.groupby(["method", "rank_ratio"]),
                            key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        rows.append({"method": _NAMES.get(m, m), "rank ratio": "-" if m == "none" else f"{r:g}",
                     "params (k)": round(g["params"].mean() / 1e3, 1),
                     "FLOPs (M)": round(g["flops"].mean() / 1e6, 2),
                     "acc before FT (%)": evidence.fmt(g["acc_no_ft"]),
                     "acc after FT (%)": evidence.fmt(g["acc"]),
                     "paper acc (%)": paper.get(col.get(m, "VTP" if m == "none" else ""),
                                                float("nan"))})
    tab = pd.DataFrame(rows)
    note = _evidence_note(cfg)
    tab.attrs["caption"] = (f"VTP + decomposition evidence: accuracy right after decomposing "
                            f"every pruned layer at each rank and after the decomposition "
                            f"fine-tune, mean ± std over seeds; 'VTP (not decomposed)' is the "
                            f"VTP model fine-tuned alike (before FT: the VTP model). {note}. "
                            f"{report.FLOPS_NOTE}. Paper: Table 2 at patch {cfg.sweep_patch} "
                            f"(after fine-tuning; rank not stated).")
    runs = df.round({"acc": 2, "acc_no_ft": 2, "acc_vtp": 2, "acc_dense": 2})
    runs.attrs["caption"] = f"VTP + decomposition evidence, every seed. {note}."
    return {"evidence": tab, "evidence_runs": runs, "claims": claims(cfg)}


def claims(cfg) -> pd.DataFrame:
    """The paper's claims tested on the evidence records, at every rank ratio, right after
    decomposition and after its fine-tune: SVD keeps more accuracy than QR and than LU
    (Welch's t-test over the seeds, both must hold), and QR more than LU (Table 2's order)."""
    empty = evidence.not_run(PAPER, cfg, _pipeline(cfg).stages)
    if empty is not None:
        return empty
    df = evidence_frame(cfg)
    acc = {(m, r, ph): g[ph].tolist() for (m, r), g in df.groupby(["method", "rank_ratio"])
           for ph in ("acc_no_ft", "acc")}
    sp = cfg.sweep_patch
    paper = PAPER_TABLE2.get(sp, {})
    pt = (f"Table 2, patch {sp}: SVD {paper.get('VTP+SVD', float('nan')):g}, QR "
          f"{paper.get('VTP+QR', float('nan')):g}, LU {paper.get('VTP+LU', float('nan')):g} % "
          f"(after fine-tuning, rank not stated)")
    qr_lu = "; ".join(f"patch {p}: QR {v['VTP+QR']:g} > LU {v['VTP+LU']:g}"
                      for p, v in PAPER_TABLE2.items() if isinstance(p, int))
    rows = []
    phases = (("acc_no_ft", "right after decomposition"),
              ("acc", f"after {patch_cfg(cfg, sp).sweep_finetune.epochs} ep fine-tune"))
    have = set(df["method"])
    for ph, words in phases:
        for r in sorted({float(x) for x in cfg.sweep_ratios}):
            a = {m: acc.get((m, r, ph), []) for m in ("svd", "qr", "lu") if m in have}
            if "svd" in a and len(a) > 1:
                parts = [evidence.compare(a["svd"], a[m]) for m in a if m != "svd"]
                c = evidence.all_of(parts)
                rows.append(evidence.claim_row(
                    f"rank {r:g}·min(out, in), {words}: SVD keeps the most accuracy",
                    " vs ".join(f"{_NAMES[m]} {evidence.fmt(v)} %" for m, v in a.items()),
                    f"the text: 'SVD performs pretty well comparing with' QR and LU; {pt}",
                    c["verdict"], c["reason"]))
            if "qr" in a and "lu" in a:
                c = evidence.compare(a["qr"], a["lu"])
                rows.append(evidence.claim_row(
                    f"rank {r:g}·min(out, in), {words}: QR keeps more accuracy than LU",
                    f"QR {evidence.fmt(a['qr'])} % vs LU {evidence.fmt(a['lu'])} %",
                    f"Table 2: {qr_lu}", c["verdict"], c["reason"]))
    out = evidence.claims_frame(rows)
    out.attrs["caption"] = (f"VTP + decomposition claims (`{cfg.profile}` profile): "
                            f"{_evidence_note(cfg)}. Every pruned linear layer factored at the "
                            f"same rank ratio by each method, every model fine-tuned alike. "
                            f"'Keeps more': Welch's t-test over the seeds, p < 0.05 (for SVD "
                            f"against QR and against LU, both).")
    return out


def plot_evidence(cfg):
    """Three panels: accuracy right after decomposition and after its fine-tune vs rank
    ratio (mean ± std over seeds per method; the VTP model, before and after the same
    fine-tune, as a band; the paper's Table 2 levels dotted), and the dense baseline's test
    accuracy per epoch and seed (what the plateau rule read)."""
    import matplotlib.pyplot as plt

    df = evidence_frame(cfg)
    sp = cfg.sweep_patch
    dec, ctl = df[df["method"] != "none"], df[df["method"] == "none"]
    methods = [m for m in cfg.sweep_methods if m in set(dec["method"])]
    styles = {m: {k: v for k, v in METHOD_STYLES.get(m, {}).items()} for m in methods}
    paper = PAPER_TABLE2.get(sp, {})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ft = patch_cfg(cfg, sp).sweep_finetune.epochs
    for ax, ph, words, band in ((axes[0], "acc_no_ft", "right after decomposition", "acc_vtp"),
                                (axes[1], "acc", f"after {ft} ep fine-tune", "acc")):
        evidence.plot_mean_std(ax, dec, "rank_ratio", ph, "method", order=methods,
                               styles=styles, offset=0.06,
                               label_fmt="{}")
        m, sd, n = evidence.mean_std(ctl[band])
        ax.axhspan(m - sd, m + sd, color="black", alpha=0.08)
        ax.axhline(m, color="black", lw=1,
                   label="VTP, not decomposed" + ("" if ph == "acc_no_ft"
                                                  else f" (+{ft} ep alike)"))
        if ph == "acc":
            for c, meth in TABLE2_METHODS.items():
                if meth in methods and c in paper:
                    ax.axhline(paper[c], ls=(0, (1, 2)), lw=1.2,
                               color=METHOD_STYLES[meth]["color"],
                               label=f"paper Table 2 {c}: {paper[c]:g} % (rank not stated)")
        ax.set_xscale("log", base=2)
        ranks = sorted(dec["rank_ratio"].unique())
        ax.set_xticks(ranks, [f"{r:g}" for r in ranks])
        ax.set_xlabel("rank / min(out, in) of every pruned linear layer")
        ax.set_ylabel(f"test accuracy (%), {words}")
        ax.set_title(f"{words}: mean ± std over {n} seeds", fontsize=9)
        ax.legend(fontsize=6.5)
        ax.grid(alpha=0.3)
    pl = _pipeline(cfg)
    for seed, ev in pl.evidence.items():
        h = [x for x in ev["dense"].metrics()["history"].get("pretrain", [])
             if x.get("test_acc") is not None]
        axes[2].plot([x["epoch"] for x in h], [x["test_acc"] for x in h], marker=".",
                     label=f"seed {seed}")
    hist = [ev["dense"].metrics()["history"].get("pretrain", []) for ev in pl.evidence.values()]
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("test accuracy (%) of the dense baseline")
    axes[2].set_title(textwrap.fill(evidence.plateau_note(hist), 70), fontsize=8)
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"VTP + decomposition evidence — {_evidence_note(cfg)}", 200),
                 fontsize=8)
    fig.tight_layout()
    return fig
