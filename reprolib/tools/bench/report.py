"""The bench's tables, figure and CSV, read back from its records: the speedup-vs-FLOP table
(:func:`table`), the fit-loops table (:func:`fit_table`), the figure "measured speedup vs FLOP
reduction" (:func:`figures`), the CSV named like timm's benchmark files (:func:`csv_name`),
the summary and the README's section."""

from __future__ import annotations

import re

from reprolib.configs.bench import parse_variant
from reprolib.tools.bench.graph import slug
from reprolib.tools.bench.timing import environment

FIG_DIR = "bench"
#: Targets of issue 17: efficiency (measured speedup / FLOP reduction) at the large batch.
TARGET_EFFICIENCY = 0.8


def _records(cfg) -> list[dict]:
    from reprolib.tools.bench import PIPELINE

    return [st.record() for st in PIPELINE.stages(cfg) if st.done]


def done(cfg) -> bool:
    """Whether any benchmark record of ``cfg`` exists (the README shows it then)."""
    from reprolib.tools.bench import PIPELINE

    return any(st.done for st in PIPELINE.stages(cfg))


def _is_target(group: str, row: dict) -> bool:
    """The issue's targets: SiDT at 40 % and the VTP-pruned model (no decomposition)."""
    return (group == "sidt" and row["method"] == "SiDT" and "40%" in row["label"]) or \
        (group == "vtp" and row["method"] == "VTP")


def table(cfg, variant: str | None = None):
    """The speedup-vs-FLOP table: one row per compressed model (every family of ``cfg`` that
    has a record, ``variant`` = the first of ``cfg.variants`` unless given), with its FLOP
    ratio and, at batch 1, at the large batch and for a training step, the dense and
    compressed times, the measured speedup and the efficiency (speedup / FLOP reduction);
    the layers decomposition left dense, the widths not a multiple of 8, and a note saying
    why a case stays below the target where the records show it."""
    import pandas as pd

    variant = variant or cfg.variants[0]
    rows = []
    for rec in _records(cfg):
        m = rec["metrics"]
        if "rows" not in m or m.get("variant") != variant:
            continue
        dense = m["rows"][0]
        by_label = {r["label"]: r for r in m["rows"]}
        for r in m["rows"][1:]:
            fr = r["flops"] / dense["flops"]
            row = {"family": m["family"], "method": r["method"], "model": r["label"],
                   "round_to": r.get("round_to"), "params (M)": r["params"] / 1e6,
                   "FLOPs (G)": r["flops"] / 1e9, "FLOP ratio": fr}
            for kind, b in (("b1", 1), ("large", m["batch_large"]), ("train", m["train_batch"])):
                if f"{kind}_ms" not in r:         # ONNX Runtime: no training step
                    continue
                sp = dense[f"{kind}_ms"] / r[f"{kind}_ms"]
                tag = {"b1": "b1", "large": "large", "train": "train"}[kind]
                row[f"{tag} batch"] = b
                row[f"{tag} dense (ms)"] = dense[f"{kind}_ms"]
                row[f"{tag} (ms)"] = r[f"{kind}_ms"]
                row[f"{tag} speedup"] = sp
                row[f"{tag} efficiency"] = sp * fr
            row["unaligned widths"] = (f"{r['unaligned_widths']}/{r['widths']}"
                                       if "widths" in r else "")
            row["kept dense"] = ", ".join(r.get("kept_dense", [])) or ""
            row["peer of"] = r.get("peer_of", "")
            row["FLOP error vs match"] = r.get("flop_error", float("nan"))
            row["vs best TP (large)"] = _vs_peer(r, m["rows"])
            row["target"] = ""
            if _is_target(m["group"], r):
                ok = row["large efficiency"] >= TARGET_EFFICIENCY
                row["target"] = (f">= {TARGET_EFFICIENCY} at batch {m['batch_large']}: "
                                 f"{'met' if ok else 'missed'}")
            row["note"] = _note(r, row, by_label, fr)
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["caption"] = _caption(cfg, variant)
    return df


def _vs_peer(r: dict, rows: list[dict]) -> float:
    """Our case's large-batch time against the fastest Torch-Pruning peer at its FLOPs
    (peer time / ours: > 1 = ours is faster); NaN for a peer or without one."""
    peers = [p["large_ms"] for p in rows if p.get("peer_of") == r["label"]]
    return min(peers) / r["large_ms"] if peers and "peer_of" not in r else float("nan")


def _note(r: dict, row: dict, by_label: dict, fr: float) -> str:
    """Why a case runs below its FLOP promise, from what the records show."""
    notes = []
    if "peer_of" in r:
        if not r.get("within_tol", True):
            notes.append(f"FLOPs {100 * r['flop_error']:.1f} % off its match: Torch-Pruning's "
                         f"channel steps at round_to {r.get('round_to')} skip the target")
        return "; ".join(notes)
    if "train efficiency" not in row:
        notes.append("ONNX Runtime: inference only")
    e1, eL = row["b1 efficiency"], row["large efficiency"]
    if 0.9 <= fr <= 1.1:
        notes.append("FLOPs within 10 % of the parent: the ratio measures overhead, "
                     "not compression")
    elif fr > 1.1:
        notes.append("more FLOPs than the parent (a redistribution, not a compression)")
    if min(e1, eL) >= TARGET_EFFICIENCY or fr > 1.1:
        return "; ".join(notes)
    if r.get("round_to") == 1:
        twin = by_label.get(r["label"].replace("rt1", "rt8"))
        if twin is not None and r.get("unaligned_widths"):
            notes.append(f"{r['unaligned_widths']} of {r['widths']} widths not a multiple of 8; "
                         "round_to=8 row beside it")
    if e1 < eL - 0.1:
        notes.append(f"batch 1 is bound by fixed per-layer costs (efficiency {e1:.2f} vs "
                     f"{eL:.2f} at batch {row['large batch']})")
    if "+" in r["method"] and r["method"].startswith("VTP"):
        notes.append("each factored layer is two thin matmuls (rank "
                     f"{'/'.join(map(str, r.get('ranks', [])))}): more, smaller kernels; "
                     "norms, softmax and attention are not reduced by the factorisation")
    elif r["method"] in ("SiDT", "VTP") and eL < TARGET_EFFICIENCY:
        notes.append("element-wise work (LayerNorm, GELU, softmax, reshapes) and the "
                     "unpruned patch embedding / head do not shrink with the pruned FLOPs")
    return "; ".join(notes)


def provenance(cfg, variant: str) -> str:
    """One line naming what produced the records of ``variant``: profile, device, threads,
    precision and layout, torch (and CUDA) version."""
    recs = [r for r in _records(cfg) if r["metrics"].get("variant") == variant]
    if not recs:
        return f"profile={cfg.profile} · {variant} · no records"
    env = recs[0]["metrics"]
    cuda = f" · CUDA {env['cuda']}" if env.get("cuda") and env["device_type"] == "cuda" else ""
    return (f"profile={cfg.profile} · device={env['device_name']} · threads={env['threads']} · "
            f"{variant} · torch {env['torch']}{cuda}")


def _caption(cfg, variant: str) -> str:
    return (f"Measured speedup vs FLOP reduction (`reprolib bench --profile {cfg.profile}`): "
            f"{provenance(cfg, variant)} · median of interleaved repeats ({cfg.repeats} at "
            f"batch 1, {cfg.large_repeats} at the large batch, {cfg.train_repeats} training "
            "steps). efficiency = measured speedup / FLOP reduction (1 = as fast as the FLOPs "
            "promise); FLOPs: one multiply-add = one FLOP.")


def fit_table(cfg):
    """``fit`` images/s beside the bare loop's and the code-book loop's, per model and
    variant, with the two ratios."""
    import pandas as pd

    rows = []
    for rec in _records(cfg):
        m = rec["metrics"]
        if "fit_vs_bare" not in m:
            continue
        rows.append({"model": m["model"], "data": m["dataset"], "variant": m["variant"],
                     "images": m["images"], "batch": m["batch_size"],
                     "fit (img/s)": m["fit_images_per_s"], "bare (img/s)": m["bare_images_per_s"],
                     "code-book (img/s)": m["codebook_images_per_s"],
                     "fit / bare": m["fit_vs_bare"], "fit / code-book": m["fit_vs_codebook"],
                     "workers": m["workers"], "device": m["device_name"],
                     "threads": m["threads"]})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = (
        f"`fit` vs a bare PyTorch loop vs a code-book loop (`reprolib bench --profile "
        f"{cfg.profile}`): training images/s, one epoch per round, median of "
        f"{cfg.fit_repeats} interleaved rounds; bare = the same on-device batches, no "
        "metrics; code-book = DataLoader with per-image torchvision transforms and "
        "per-step .item() (goal: fit / bare >= 0.95).")
    return df


_MARKERS = {"SiDT": "o", "VTP": "s", "VTP+SVD": "^", "VTP+QR": "v", "VTP+LU": "<",
            "VTP+QR_REDUCED": ">", "VTP+QR_PIVOTED": "P", "VTP+COD": "X", "PE": "D",
            "MetaFormer-NAS": "*", "templates": "h", "Torch-Pruning": "8"}

#: One colour per method, no two alike (matplotlib's cycle has ten colours for eleven
#: methods: templates wrapped around to SiDT's blue).
_COLORS = {"SiDT": "tab:blue", "VTP": "tab:orange", "VTP+SVD": "tab:green", "VTP+QR": "tab:red",
           "VTP+LU": "tab:purple", "VTP+QR_REDUCED": "tab:pink", "VTP+QR_PIVOTED": "tab:gray",
           "VTP+COD": "black", "PE": "tab:olive", "MetaFormer-NAS": "tab:cyan",
           "templates": "tab:brown", "Torch-Pruning": "darkgoldenrod"}


def figures(cfg, variant: str | None = None) -> dict:
    """``speedup_vs_flops``: measured speedup against FLOP reduction at batch 1, at the
    large batch and for a training step, the line y = x (as fast as the FLOPs promise), one
    marker shape and colour per method (no two alike), hollow for round_to 1, filled for
    round_to 8 (or none); plain tick labels (0.1, 1) on the log axes."""
    import matplotlib.pyplot as plt

    from reprolib.core import report

    df = table(cfg, variant)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), sharey=True)
    if not len(df):
        return {"speedup_vs_flops": fig}
    x = 1 / df["FLOP ratio"]
    kinds = [k for k in ("b1", "large", "train") if f"{k} speedup" in df]
    lo = min(x.min(), *(df[f"{k} speedup"].min() for k in kinds)) * 0.8
    hi = max(x.max(), *(df[f"{k} speedup"].max() for k in kinds)) * 1.25
    titles = {"b1": "inference", "large": "inference, large batch", "train": "training step"}
    for ax in axes[len(kinds):]:
        ax.set_axis_off()                          # ONNX Runtime: no training step
    for ax, kind in zip(axes, kinds):
        title = titles[kind]
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="y = x")
        for meth, g in df.groupby("method", sort=False):
            for rt, gg in g.groupby(g["round_to"].fillna(0), sort=True):
                filled = rt != 1
                c = _COLORS.get(meth, "k")
                ax.scatter(1 / gg["FLOP ratio"], gg[f"{kind} speedup"],
                           marker=_MARKERS.get(meth, "o"), s=46, edgecolors=c,
                           facecolors=c if filled else "none",
                           label=f"{meth}" + (f" rt{int(rt)}" if rt else ""))
        batches = sorted(set(df[f"{kind} batch"]))
        ax.set_title(f"{title} (batch {'/'.join(map(str, batches))})", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        report.log_axis(ax, "x")
        report.log_axis(ax, "y")
        ax.set_xlabel("FLOP reduction (dense / compressed FLOPs)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("measured speedup (dense / compressed time)")
    h, lab = axes[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle(f"Measured speedup vs FLOP reduction\n{provenance(cfg, variant or cfg.variants[0])}",
                 fontsize=9)
    fig.tight_layout()
    return {"speedup_vs_flops": fig}


def _ops_records(cfg):
    """``(stage, metrics, frame)`` of every ``ops`` stage of ``cfg`` with a record, the frame
    rebuilt as :func:`.ops.op_profile` made it (its ``attrs`` included)."""
    import pandas as pd

    from reprolib.tools.bench import PIPELINE

    for st in PIPELINE.graph(cfg).select("ops"):
        if st.done:
            m = st.metrics()
            df = pd.DataFrame(m["rows"], columns=m["columns"])
            df.attrs.update(m["attrs"])
            yield st, m, df


def ops_markdown(cfg) -> dict[str, str]:
    """The per-operator profiles of ``cfg.op_profiles`` that have records, as Markdown per
    group (:func:`.ops.to_markdown`: the table, then which operators bound each model)."""
    from reprolib.tools.bench import ops

    out = {}
    for st, m, df in _ops_records(cfg):
        a, env = m["attrs"], m["attrs"].get("environment", {})
        prov = " · ".join([
            f"`reprolib bench --profile {cfg.profile}` (stage {st.name})",
            f"device={env.get('device_name')}", f"threads={env.get('threads')}",
            f"torch {env.get('torch')}", f"batch={a.get('batch')}",
            f"input={a.get('input_size')}", f"warmup={a.get('warmup')}",
            f"repeats={a.get('repeats')}", f"stat={a.get('stat')}",
            f"loadavg at start {a.get('loadavg_start')}, at end {a.get('loadavg_end')}"])
        out[m["group"]] = ops.to_markdown(df, f"Per-operator profile: {m['family']}", prov)
    return out


def runtime_table(cfg):
    """Every compressed model's large-batch speedup and efficiency under each variant (each
    against the dense parent in the same runtime and run), and the runtime that gives it the
    best of each: "which runtime to deploy it with"."""
    import pandas as pd

    wide = {}
    for v in cfg.variants:
        df = table(cfg, v)
        for _, r in df.iterrows():
            key = (r["family"], r["model"])
            d = wide.setdefault(key, {"family": r["family"], "method": r["method"],
                                      "model": r["model"], "FLOP ratio": r["FLOP ratio"]})
            d[f"{v} (ms)"] = r["large (ms)"]
            d[f"{v} speedup"] = r["large speedup"]
            d[f"{v} efficiency"] = r["large efficiency"]
    rows = []
    for d in wide.values():
        have = [v for v in cfg.variants if f"{v} speedup" in d]
        if len(have) > 1:
            d["fastest (ms)"] = min(have, key=lambda v: d[f"{v} (ms)"])
            d["best efficiency"] = max(have, key=lambda v: d[f"{v} efficiency"])
        rows.append(d)
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (
        f"Runtimes (`reprolib bench --profile {cfg.profile}`): each compressed model's speedup "
        "and efficiency at the large batch under each variant, against the dense parent timed "
        "in the same runtime, interleaved in the same run; 'fastest' = the variant with the "
        "lowest time of the model itself, 'best efficiency' = the one where its speedup comes "
        "closest to its FLOP reduction. " + "; ".join(provenance(cfg, v) for v in cfg.variants))
    return out


def csv_name(cfg, variant: str) -> str:
    """A CSV name that carries device, precision, layout and torch version, as timm's
    benchmark results do: ``benchmark-fp32-nchw-pt2130-cpu-amd_epyc_x2-cpu.csv``."""
    recs = [r for r in _records(cfg) if r["metrics"].get("variant") == variant]
    env = recs[0]["metrics"] if recs else environment(cfg.device)
    o = parse_variant(variant)
    pt = "pt" + re.sub(r"\D", "", env["torch"].split("+")[0])
    cu = f"cu{env['cuda'].replace('.', '')}" if env.get("cuda") and \
        env["device_type"] == "cuda" else "cpu"
    layout = "nhwc" if o["channels_last"] else "nchw"
    comp = {"eager": "", "compile": "-compile", "ort": "-ort"}[o["runtime"]]
    return (f"benchmark-{o['precision']}-{layout}{comp}-{pt}-{cu}-"
            f"{slug(env['device_name']).lower()}-{cfg.profile}.csv")


def write_outputs(cfg) -> list:
    """Write, from the records: per variant the speedup table as CSV (:func:`csv_name`) and
    Markdown (``figures/bench/speedup[-VARIANT]-PROFILE.md``), the fit-loops table and the
    figure ``figures/bench/speedup_vs_flops[-VARIANT]-PROFILE.png``; returns the paths."""
    import matplotlib.pyplot as plt

    from reprolib.core import io, report

    out = []
    for i, v in enumerate(cfg.variants):
        df = table(cfg, v)
        if not len(df):
            continue
        suffix = "" if i == 0 else f"-{slug(v)}"
        d = report.figures_dir(FIG_DIR)
        out.append(io.write_text(df.to_csv(index=False), d / csv_name(cfg, v)))
        md = f"{df.attrs['caption']}\n\n{report.to_markdown(df, '.3g')}\n"
        out.append(io.write_text(md, d / f"speedup{suffix}-{cfg.profile}.md"))
        for name, fig in figures(cfg, v).items():
            out.append(report.save_figure(fig, FIG_DIR, f"{name}{suffix}", cfg.profile))
            plt.close(fig)
    if len(cfg.variants) > 1:
        rt = runtime_table(cfg)
        if len(rt):
            out.append(report.save_table(rt, FIG_DIR, "runtimes", cfg.profile,
                                         rt.attrs["caption"], floatfmt=".3g"))
    for group, text in ops_markdown(cfg).items():
        out.append(io.write_text(text, report.figures_dir(FIG_DIR)
                                 / f"ops-{group}-{cfg.profile}.md"))
    ft = fit_table(cfg)
    if len(ft):
        out.append(report.save_table(ft, FIG_DIR, "fit_loops", cfg.profile,
                                     ft.attrs["caption"], floatfmt=".3g"))
    return out


# --------------------------------------------------------------------------- summary


def summary(cfg) -> str:
    """Markdown sentences and a compact table about the benchmark records of ``cfg`` (every
    number read from them); "" when there are none."""
    import pandas as pd

    from reprolib.core.report import to_markdown

    v = cfg.variants[0]
    df = table(cfg, v)
    ft = fit_table(cfg)
    if not len(df) and not len(ft):
        return ""
    env = next(r["metrics"] for r in _records(cfg) if r["metrics"].get("variant") == v)
    dev = f"{env['device_name']}, {env['threads']} threads, torch {env['torch']}, {v}"
    parts = [f"`reprolib bench --profile {cfg.profile}` on {dev} (records in "
             f"`results/bench/{cfg.profile}/`, table `figures/bench/speedup-{cfg.profile}.md`, "
             f"CSV `figures/bench/{csv_name(cfg, v)}`). Efficiency = measured speedup / FLOP "
             "reduction: 1 means the compressed model is exactly as much faster as its FLOPs "
             "promise."]
    if len(df):
        tg = df[df["target"] != ""]
        if len(tg):
            items = [f"{r['model']} {r['large efficiency']:.2f} "
                     f"({'met' if r['large efficiency'] >= TARGET_EFFICIENCY else 'missed'})"
                     for _, r in tg.iterrows()]
            parts.append(f"Targets (efficiency >= {TARGET_EFFICIENCY} at batch "
                         f"{'/'.join(str(b) for b in sorted(set(tg['large batch'])))}): "
                         + "; ".join(items) + ".")
        g = df.assign(rt=df["round_to"].map(lambda x: "" if pd.isna(x) else f"{int(x)}"))
        has_train = "train efficiency" in g
        agg = (g.groupby(["method", "rt"], sort=False)
               .agg(models=("model", "size"), flop=("FLOP ratio", "median"),
                    b1=("b1 efficiency", "median"), large=("large efficiency", "median"),
                    **({"train": ("train efficiency", "median")} if has_train else {}))
               .reset_index())
        agg.columns = ["method", "round_to", "models", "FLOP ratio (median)",
                       "efficiency b1", "efficiency large batch"] + (
                           ["efficiency training"] if has_train else [])
        parts.append("Median per method:\n\n" + to_markdown(agg, ".2f"))
    if len(df):
        parts += _peer_sentences(df, v) + _runtime_sentences(cfg) + _ops_sentences(cfg)
    if len(ft):
        for _, r in ft.iterrows():
            parts.append(f"`fit` trains `{r['model']}` on `{r['data']}` at "
                         f"{r['fit (img/s)']:.0f} images/s: {r['fit / bare']:.2f} x a bare "
                         f"PyTorch loop ({r['bare (img/s)']:.0f} images/s) and "
                         f"{r['fit / code-book']:.2f} x a code-book loop "
                         f"({r['code-book (img/s)']:.0f} images/s: DataLoader with "
                         f"{int(r['workers'])} workers, per-image transforms, per-step "
                         f".item()) (`figures/bench/fit_loops-{cfg.profile}.md`).")
    return "\n\n".join(parts)


def _peer_sentences(df, variant: str) -> list[str]:
    """Ours against Torch-Pruning at equal FLOPs, per family (large batch)."""
    out = []
    if "vs best TP (large)" not in df:
        return out
    for fam, g in df.groupby("family", sort=False):
        v = g["vs best TP (large)"].dropna()
        if not len(v):
            continue
        ahead = int((v > 1).sum())
        tp = g[g["method"] == "Torch-Pruning"]
        off = int((tp["FLOP error vs match"] > 0.02).sum())
        out.append(
            f"{fam}, {variant}, large batch: against the faster of Torch-Pruning uniform / global "
            f"pruned to the same FLOPs, ours is ahead for {ahead} of {len(v)} models (time of "
            f"the peer / ours: median {v.median():.2f}, range {v.min():.2f}-{v.max():.2f})"
            + (f"; {off} of {len(tp)} peers missed their FLOPs by more than 2 % (channel "
               "rounding), see the table" if off else "") + ".")
    return out


def _ops_sentences(cfg) -> list[str]:
    """Per profiled model, the three operators that bound its speedup (from the ops records)."""
    from reprolib.tools.bench import ops

    out = []
    for _, m, df in _ops_records(cfg):
        names, fr = m["attrs"]["models"], m["attrs"]["flop_ratio"]
        items = []
        for n in names[1:]:
            top = ops.bound_ops(df, names[0], n, fr[n])[:3]
            items.append(f"{n}: " + ", ".join(f"{b['op']} (ratio {b['ratio']:.2f} vs FLOPs "
                                               f"{fr[n]:.2f})" for b in top))
        out.append(f"Per-operator profile of {m['family']} at batch {m['attrs'].get('batch')} "
                   f"(`figures/bench/ops-{m['group']}-{cfg.profile}.md`; op time / dense op "
                   "time against the FLOP ratio), the ops that bound each model: "
                   + "; ".join(items) + ".")
    return out


def _runtime_sentences(cfg) -> list[str]:
    """Which runtime gives the compressed models their lowest time and best efficiency."""
    if len(cfg.variants) < 2:
        return []
    rt = runtime_table(cfg)
    if not len(rt) or "fastest (ms)" not in rt:
        return []
    rt = rt[rt["fastest (ms)"].notna() & (rt["method"] != "Torch-Pruning")]
    if not len(rt):
        return []
    fast = rt["fastest (ms)"].value_counts()
    eff = rt["best efficiency"].value_counts()
    effs = [c for c in rt if c.endswith(" efficiency") and c != "best efficiency"]
    best = rt[effs].max(axis=1)
    hit = int((best >= TARGET_EFFICIENCY).sum())
    return [f"Runtimes (`figures/bench/runtimes-{cfg.profile}.md`, {', '.join(cfg.variants)}; "
            f"large batch): the fastest runtime for our {len(rt)} compressed SiDT / VTP models "
            "is " + ", ".join(f"{k} for {n}" for k, n in fast.items()) + "; the best "
            "efficiency " + ", ".join(f"{k} for {n}" for k, n in eff.items())
            + f"; {hit} of {len(rt)} reach efficiency >= {TARGET_EFFICIENCY} in their best "
            "runtime."]


def readme_section() -> str:
    """The README's "Performance" subsection: the figure and :func:`summary` of every
    profile with records (``cpu``, ``gpu``), and a line saying which have not run."""
    from reprolib.tools.bench import get_config

    parts, missing = [], []
    for prof in ("cpu", "gpu"):
        cfg = get_config(prof)
        if done(cfg):
            fig = f"figures/bench/speedup_vs_flops-{prof}.png"
            parts.append(f"![bench {prof}]({fig})\n\n{summary(cfg)}")
        else:
            missing.append(prof)
    if not parts:
        return ""
    if "gpu" in missing:
        parts.append("GPU runs outstanding: no GPU was available to this project's sessions; "
                     "`reprolib bench --profile gpu` (fp32, bf16, channels_last, compile at "
                     "batch 256) and `pytest -m gpu` are written and wait for one.")
    return "### Performance: measured speedup vs FLOP reduction\n\n" + "\n\n".join(parts) + "\n"
