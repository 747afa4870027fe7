"""One view over all five papers: a cross-method chart, a conformance table, and every
compressed model exported to ONNX.

* **Cross-method chart** (:func:`points`, figure ``tradeoff``): every compressed model the
  five pipelines recorded at ``cfg.profiles`` -- accuracy minus that of the method's own dense
  parent, against parameters, FLOPs and measured latency relative to the parent, one colour
  per method, one marker per profile -- and, below, the same axes at the points the papers
  themselves report.  The parents: SiDT the searched Swin at PR 0 (same fine-tune budget);
  VTP the dense ViT of the same patch size; PE the unshared twin; MetaFormer-NAS the pooling
  mixer (MetaFormer-S12 as PoolFormer); templates the base distribution at the same width.
  Records are read through each paper's ``stages(cfg)`` (only the stages of the current
  configuration count); records of several seeds of one condition (names ending in
  ``-s<k>`` / ``-seed<k>``) are averaged.  Latency comes from the record itself, or from a
  benchmark record when one names the same compressed model: ``results/bench/<profile>/*.json``
  whose metrics hold ``paper``, ``stage`` (the paper's stage name, e.g. ``finetune-p40``),
  ``latency_ratio`` (compressed / dense, measured), ``device`` and ``batch_size``.
* **Conformance** (:func:`conformance`): every architecture-determined number the five papers
  print, counted from code (on PyTorch's meta device: no memory, no weights), beside the
  printed value, with the printed precision as tolerance and a verdict.
* **Export** (stages ``export-<case>``): each method's compressed model built at
  ``cfg.scale`` (seeded random weights and scores; BatchNorm statistics calibrated on random
  images so that outputs have a trained model's scale), written with
  :func:`reprolib.export.to_onnx`, run under ONNX Runtime and through ``torch.export``; the
  record holds the differences to PyTorch and whether tied weights stayed one initializer.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from reprolib import paths
from reprolib.core import report, results
from reprolib.configs import get_config, get_paper
from reprolib.errors import ReprolibError, choose
from reprolib.core.pipeline import Stage, key_of, profile_note, run_stages
from reprolib.core.measure import count_flops, count_params
from reprolib.core.registry import create_model

PAPER = "overview"
README_FIGURE = "tradeoff"

#: The five papers, in the order of the README, with their labels and colours.
METHODS = {"sidt": "SiDT (Swin dims)", "vtp_svd": "VTP + decomposition", "pe": "PE (tied W/Wᵀ)",
           "metaformer_nas": "MetaFormer-NAS", "templates": "filter templates"}
COLORS = {"sidt": "tab:blue", "vtp_svd": "tab:orange", "pe": "tab:green",
          "metaformer_nas": "tab:red", "templates": "tab:purple"}
MARKERS = {"cpu": "o", "evidence": "s", "smoke": "^", "gpu": "D", "paper": "*"}
VERDICTS = ("match", "explained mismatch", "unexplained mismatch", "not counted", "not printed")
CONFORMANCE_COLUMNS = ("paper", "table", "quantity", "unit", "paper_value", "ours", "difference",
                       "tolerance", "verdict", "explanation", "counted")


# =========================================================================== conformance


def _meta(builder: str, **kw):
    with torch.device("meta"):
        return create_model(builder, **kw)


def _row(paper: str, table: str, quantity: str, unit: str, printed, decimals: int | None,
         ours, counted: str, explanation: str = "", explained: bool = False) -> dict:
    """One conformance row; ``decimals``: the printed precision (None = an exact count)."""
    return {"paper": paper, "table": table, "quantity": quantity, "unit": unit,
            "paper_value": printed, "decimals": decimals, "ours": ours, "counted": counted,
            "explanation": explanation, "explained": explained}


def _swin_uniform(base, ratio: float):
    """``base`` (an unpruned Swin) pruned by ``ratio`` in every layer, as SiDT's
    ``scope="layer"`` keeps ``n - round(ratio n)`` of each layer's ``n`` dimensions; built
    on the meta device from its widths (``reprolib.methods.sidt.compressed_spec``)."""
    from reprolib.core.compressed import build
    from reprolib.methods import sidt

    full = sidt.arch(base)
    keep = lambda n: max(1, n - round(ratio * n))   # noqa: E731
    spec = sidt.compressed_spec({"swin": full["swin"],
                                 "attn_dims": {k: keep(v) for k, v in full["attn_dims"].items()},
                                 "mlp_dims": {k: keep(v) for k, v in full["mlp_dims"].items()}})
    with torch.device("meta"):
        return build(spec)


def _sidt_rows() -> list[dict]:
    from reprolib.configs.sidt import PAPER_TABLE1, PAPER_TABLE2

    rows = []
    base = _meta("swin_t", num_classes=100, img_size=224)
    size = (3, 224, 224)
    how = "swin_t (timm Swin-T), 100 classes, 224 px"
    counts = {}
    for r in PAPER_TABLE1:
        m = base if r == 0 else _swin_uniform(base, r)
        n = count_params(m)
        counts[r] = {"params": n / 1e6, "backbone": (n - count_params(m.head)) / 1e6,
                     "flops": count_flops(m, size) / 1e9}
    for r, (_, p_params, p_flops) in PAPER_TABLE1.items():
        c = counts[r]
        why = ("" if r == 0 else
               f"the paper's PR {r:.0%} widths come from its learned global ranking of |score| "
               f"and are not printed, so its pruned model cannot be rebuilt; our Swin-T with every "
               f"layer pruned by {r:.0%} counts {c['params']:.2f} M / {c['flops']:.2f} G")
        tag = "unpruned" if r == 0 else f"PR {r:.0%}, every layer pruned alike"
        rows.append(_row("SiDT", "Table I", f"Swin-T params, PR {r:.0%}", "M", p_params, 2,
                         c["params"], f"{how}; {tag}", why, bool(why)))
        rows.append(_row("SiDT", "Table I", f"Swin-T FLOPs, PR {r:.0%}", "G", p_flops, 2,
                         c["flops"], f"{how}; {tag}", why, bool(why)))
    ten = count_params(_meta("swin_t", num_classes=10, img_size=224)) / 1e6
    rows.append(_row("SiDT", "section 4 text", "Swin-T params", "M", 27.53, 2,
                     counts[0.0]["params"], f"{how} (the head of Table I)",
                     f"the text's 27.53 M is Swin-T with a 10-class head ({ten:.2f} M); with "
                     f"Table I's 100-class head it counts {counts[0.0]['params']:.2f} M, as "
                     f"Table I prints", round(ten, 2) == 27.53))
    for r, (_, _, p_total, p_backbone) in PAPER_TABLE2.items():
        c = counts.get(r) or {"backbone": count_params(_swin_uniform(base, r)) / 1e6}
        why = ("" if r == 0 else
               f"learned widths, not printed (as Table I); every layer pruned by {r:.0%} gives "
               f"{c['backbone']:.2f} M")
        rows.append(_row("SiDT", "Table II", f"Swin-T backbone params, PR {r:.0%}", "M",
                         p_backbone, 0, c["backbone"], f"{how}, classifier head left out", why,
                         bool(why)))
        rows.append(_row("SiDT", "Table II", f"Cascade Mask R-CNN params (total), PR {r:.0%}",
                         "M", p_total, 0, None, "",
                         "reprolib registers no Cascade Mask R-CNN detector to count"))
    return rows


def _pe_rows() -> list[dict]:
    from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
    from reprolib.experiments import pe
    from reprolib.methods import pe as pe_method

    rows = []
    vit100 = pe.model_counts(100, 224, models=("ViT-PE",))[0]["params"] / 1e6
    sharing = pe.resnet_sharing_table((1000, 100))
    p1 = PAPER_TABLE2["ResNet50-PE¹ (Ours)"]["params_M"]
    p2 = PAPER_TABLE2["ResNet50-PE² (Ours)"]["params_M"]
    verdict = pe_method.sharing_verdict(sharing, p1, p2)
    default = {r["num_classes"]: r for r in sharing if r["share_1x1"] and r["share_3x3"]}
    for table, sources, printed in (("Table 1", pe.TABLE1_SOURCES, PAPER_TABLE1),
                                    ("Table 2", pe.TABLE2_SOURCES, PAPER_TABLE2)):
        for r in pe.count_table(sources, printed):
            name, src = r["model"], sources[r["model"]]
            counted = f"{r['source']}, 1000 classes, 224 px"
            if src is None:
                for q, unit in (("params", "M"), ("FLOPs", "G")):
                    rows.append(_row("PE", table, f"{name} {q}", unit,
                                     r["paper_params_M"] if q == "params" else r["paper_GFLOPs"],
                                     1, None, "", f"{name} is in neither timm nor torchvision; "
                                                  "PE copies its numbers from its own paper"))
                continue
            ours_p, ours_f = r["params_M"], r["GFLOPs"]
            pp, pf = r["paper_params_M"], r["paper_GFLOPs"]
            # parameters
            why, ok = "", False
            if name.startswith("ViT-PE"):
                ok = round(vit100, 1) == pp
                why = (f"with a 100-class head ViT-PE counts {vit100:.2f} M"
                       + (" (the printed value)" if ok else "") + f"; Table 1 is ImageNet-1k, "
                       f"1000 classes, where it counts {ours_p:.2f} M")
            elif name.startswith("ResNet50-PE"):
                tag, pv = ("PE1", p1) if "¹" in name else ("PE2", p2)
                d100 = default[100][f"{tag}_params_M"]
                ok = bool(verdict["both"]) or round(d100, 1) == pv
                why = (f"with a 100-class head (and one W and one 3x3 kernel per stage) it counts "
                       f"{d100:.2f} M; ")
                if verdict["both"]:
                    b = verdict["both"][0]
                    why += (f"{pe_method.sharing_rule_name(b['share_1x1'], b['share_3x3'])} with "
                            f"{b['num_classes']} classes gives both printed counts")
                else:
                    why += (f"no sharing rule ({len(sharing) // 2} rules x 2 head widths, "
                            f"figures/pe/sharing) gives both printed counts {p1:g} / {p2:g} M: "
                            f"they cannot come from one model definition")
                    ok = True
            elif pp == round(pp) and round(ours_p) == pp:
                ok = True
                why = (f"printed as {pp:.1f} but a whole number of millions; {r['source']} "
                       f"counts {ours_p:.2f} M, which rounds to {pp:.0f} M")
            else:
                why = (f"{r['source']} counts {ours_p:.2f} M, not the printed {pp:g} M even at "
                       f"whole millions; PE copies its baselines' numbers from their papers")
            rows.append(_row("PE", table, f"{name} params", "M", pp, 1, ours_p, counted, why, ok))
            # FLOPs
            dec = 2 if pf != round(pf, 1) or (table == "Table 2" and name != "ResNet18") else 1
            why, ok = "", False
            if abs(ours_f - pf) > 0.5 * 10 ** -dec + 1e-9 and src[0] != "reprolib":
                fa = _flops_without_attention(pe.build(src), (3, 224, 224)) / 1e9
                if round(fa, dec) == pf:
                    ok = True
                    why = (f"the printed value equals our count without the attention matmuls "
                           f"({fa:.2f} G; with them {ours_f:.2f} G): its source left them out")
                else:
                    why = (f"{r['source']} counts {ours_f:.2f} G ({fa:.2f} G without the attention "
                           f"matmuls); neither gives the printed {pf:g} G")
            rows.append(_row("PE", table, f"{name} FLOPs", "G", pf, dec, ours_f, counted, why, ok))
    return rows


def _flops_without_attention(model, size) -> int:
    """FLOPs (1 MAC = 1 FLOP) of ``model`` without the attention matmuls (batched matmuls and
    scaled-dot-product attention), counted by the same counter as ``measure.count_flops``."""
    from reprolib.core import measure

    was = model.training
    model.eval()
    with torch.no_grad(), measure._flop_mode() as fc:
        model(measure._input(model, size, 1))
    model.train(was)
    ops = fc.get_flop_counts().get("Global", {})
    skip = ("bmm", "scaled_dot_product")
    return sum(v for op, v in ops.items() if not any(s in str(op) for s in skip)) // 2


def _vtp_rows() -> list[dict]:
    from reprolib.experiments.vtp_svd import codebook_params

    m = _meta("vit_cifar", patch_size=4, num_classes=10)
    a = m.arch
    book = (f"the code book (github.com/Cydia2018/ViT-cifar10-pruning, vitprune.py) builds "
            f"depth {a['depth']}, {a['heads']} heads, dim {a['dim']} at 32 px, and the paper says "
            f"it leaves the code book's components unmodified")
    nondiv = 768 % 10 != 0
    extra = (f"; 768 dimensions do not split into 10 equal heads ({768 / 10:g} each), so the "
             f"printed triple is not one ViT" if nondiv else "")
    how = "create_model('vit_cifar'): the code book's ViT"
    rows = [
        _row("VTP+SVD", "section 3.2.1", "baseline ViT depth (layers)", "", 12, None, a["depth"],
             how, f"the text describes a 12-layer, 10-head, 768-dim ViT (VTP's DeiT-B-like "
                  f"ImageNet model); {book}{extra}", True),
        _row("VTP+SVD", "section 3.2.1", "baseline ViT heads", "", 10, None, a["heads"], how,
             f"as the depth: {book}", True),
        _row("VTP+SVD", "section 3.2.1", "baseline ViT embedding dimension", "", 768, None,
             a["dim"], how, f"as the depth: {book}", True),
        _row("VTP+SVD", "code book", "code book ViT params (patch 4, 10 classes)", "",
             None, None, codebook_params(4), how,
             "neither the paper nor the code book prints a parameter count"),
    ]
    return rows


def _nas_rows() -> list[dict]:
    from reprolib.configs.metaformer_nas import PAPER_TABLE1
    from reprolib.methods.metaformer_nas import count_architectures, paper_space_size

    rows = []
    for n, p in PAPER_TABLE1.items():
        ours = count_architectures(n)
        rows.append(_row("MetaFormer-NAS", "Table 1", f"search-space size, N = {n}", "",
                         p["space_size"], None, ours,
                         "controller decisions enumerated and decoded, distinct DAGs counted",
                         f"2^N (N-1)! = {paper_space_size(n):,}", False))
    return rows


def _templates_rows() -> list[dict]:
    from reprolib.configs.templates import PAPER_TABLE2, TEMPLATES
    from reprolib.experiments.templates import LABELS, MODEL_LABELS, PARAMS_NOTES

    rows = []
    for model, cells in PAPER_TABLE2["params_M"].items():
        for t in TEMPLATES:
            ours = count_params(_meta(model, num_classes=10, template=t)) / 1e6
            rows.append(_row("Templates", "Table 2", f"{MODEL_LABELS[model]} {LABELS[t]} params",
                             "M", cells[t], 1, ours,
                             f"create_model('{model}', template='{t}'), 10 classes, width 1.0",
                             PARAMS_NOTES.get(model, ""), bool(PARAMS_NOTES.get(model))))
    return rows


def _verdict(r: dict) -> str:
    if r["ours"] is None:
        return "not counted"
    if r["paper_value"] is None:
        return "not printed"
    if abs(r["difference"]) <= r["tolerance"] + 1e-9:
        return "match"
    return "explained mismatch" if r["explained"] and r["explanation"] else "unexplained mismatch"


@functools.lru_cache(maxsize=1)
def _conformance_rows() -> tuple:
    rows = _sidt_rows() + _pe_rows() + _vtp_rows() + _nas_rows() + _templates_rows()
    for r in rows:
        p, o, d = r["paper_value"], r["ours"], r["decimals"]
        r["tolerance"] = 0.0 if d is None else 0.5 * 10 ** -d
        r["difference"] = None if p is None or o is None else o - p
        r["verdict"] = _verdict(r)
        if r["verdict"] == "match":
            r["explanation"] = ""
    return tuple(rows)


def conformance() -> pd.DataFrame:
    """Every architecture-determined number the five papers print, counted from code.

    Columns: ``paper``, ``table`` (where it is printed), ``quantity``, ``unit``,
    ``paper_value`` (as printed), ``ours`` (counted: parameters of the distinct tensors,
    FLOPs with one multiply-add = one FLOP, on PyTorch's meta device), ``difference`` (ours -
    paper), ``tolerance`` (half a unit of the printed last digit; 0 for exact counts),
    ``verdict`` (:data:`VERDICTS`: ``match`` when the difference is within the tolerance;
    ``explained mismatch`` with the reason, e.g. a different classifier width or the
    paper's learned widths that it does not print; ``unexplained mismatch`` when no reading
    we tried gives the printed number; ``not counted`` when reprolib, timm and torchvision
    lack the model; ``not printed``), ``explanation`` and ``counted`` (what was built).
    Deterministic; computed once per process (a few seconds).
    """
    df = pd.DataFrame([{k: r[k] for k in CONFORMANCE_COLUMNS} for r in _conformance_rows()],
                      columns=list(CONFORMANCE_COLUMNS))
    df.attrs["caption"] = (
        "Conformance: every architecture-determined number the five papers print, counted "
        "from reprolib's code on PyTorch's meta device (no training, no records), beside the "
        f"printed value. {report.FLOPS_NOTE}. Tolerance: half a unit of the printed last "
        "digit (0 for exact counts); verdict: match / explained mismatch / unexplained "
        "mismatch / not counted (no implementation in reprolib, timm or torchvision) / not "
        "printed.")
    return df


def conformance_counts(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows per paper and verdict (columns :data:`VERDICTS`, plus ``total``)."""
    df = conformance() if df is None else df
    c = pd.crosstab(df["paper"], df["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
    c = c.reindex([p for p in dict.fromkeys(df["paper"])])
    c.loc["all"] = c.sum()
    c["total"] = c.sum(axis=1)
    c.columns.name = None
    return c.reset_index().rename(columns={"index": "paper"})


# =========================================================================== export


#: Builders of every method's compressed model at each scale: (builder, kwargs, input side).
_SIDT = {"tiny": ("swin_tiny_test", {"num_classes": 10, "img_size": 32}, 32),
         "cifar": ("swin_cifar", {"num_classes": 10, "img_size": 32}, 32),
         "paper": ("swin_t", {"num_classes": 100, "img_size": 224}, 224)}
_VIT = {"tiny": ("test_vit_cifar", {"num_classes": 10}, 32),
        "cifar": ("vit_cifar_small", {"num_classes": 10}, 32),
        "paper": ("vit_cifar", {"num_classes": 10}, 32)}
_VIT_PE = {"tiny": ("vit_pe_test", {"num_classes": 10}, 32),
           "cifar": ("vit_pe_cifar", {"num_classes": 10}, 32),
           "paper": ("vit_pe_small", {"num_classes": 1000}, 224)}
_RES_PE = {"tiny": ("resnet_pe_test", {"num_classes": 10}, 32),
           "cifar": ("resnet50_pe_cifar", {"num_classes": 10}, 32),
           "paper": ("resnet50_pe", {"num_classes": 1000, "pe_stages": [1, 2, 3, 4]}, 224)}
_NAS = {"tiny": ("test_metaformer", {"num_classes": 10, "image_size": 16}, 16),
        "cifar": ("metaformer_tiny", {"num_classes": 10, "image_size": 32}, 32),
        "paper": ("metaformer_s12", {"num_classes": 102, "image_size": 224}, 224)}
_CNN = {"tiny": "{m}_cifar_tiny", "cifar": "{m}_cifar", "paper": "{m}_cifar"}
#: The paper's figure 5 cell (4 nodes): the DAG exported when no search has been recorded.
FIG5_CELL = [[0, "identity"], [1, "pooling"], [1, "identity"], [3, "pooling"]]

EXPORT_LABELS = {"sidt": "SiDT pruned Swin", "vtp": "VTP pruned ViT",
                 "vtp_svd": "VTP + SVD", "vtp_qr": "VTP + QR", "vtp_lu": "VTP + LU",
                 "vit_pe": "ViT-PE", "resnet50_pe": "ResNet50-PE¹",
                 "metaformer_nas": "searched MetaFormer",
                 "vgg19_template": "VGG-19 template", "resnet50_template": "ResNet-50 template",
                 "googlenet_template": "Inception template",
                 "mobilenet_template": "MobileNet template"}
EXPORT_METHOD = {"sidt": "sidt", "vtp": "vtp_svd", "vtp_svd": "vtp_svd", "vtp_qr": "vtp_svd",
                 "vtp_lu": "vtp_svd", "vit_pe": "pe", "resnet50_pe": "pe",
                 "metaformer_nas": "metaformer_nas", "vgg19_template": "templates",
                 "resnet50_template": "templates", "googlenet_template": "templates",
                 "mobilenet_template": "templates"}


def searched_cell(cfg) -> tuple[list, str]:
    """The MetaFormer-NAS cell to export: the largest searched cell the metaformer_nas
    records hold at the first of ``cfg.profiles`` that has one, else the paper's figure 5
    cell.  Returns ``(nodes, where it came from)``."""
    from reprolib.experiments import metaformer_nas as nas

    for prof in cfg.profiles:
        if prof not in get_paper("metaformer_nas").presets:
            continue
        pc = get_config("metaformer_nas", prof)
        done = [s for s in nas.stages(pc) if s.name.startswith("search-") and s.done]
        if done:
            best = max(done, key=lambda s: s.metrics()["n_nodes"])
            return ([list(x) for x in best.metrics()["arch"]["nodes"]],
                    f"metaformer_nas/{prof} {best.name}")
    return [list(x) for x in FIG5_CELL], "the paper's figure 5 cell"


def _randomise_scores(scores: dict, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in scores.values():
            a.copy_(torch.rand(a.shape, generator=g) + 0.05)


def build_case(case: str, scale: str = "tiny", *, prune_ratio: float = 0.4,
               vtp_rate: float = 0.3, rank_ratio: float = 0.25, template: str = "uniform",
               template_width: float = 1.0, nas_cell=None, seed: int = 0):
    """Method ``case``'s compressed model (:data:`EXPORT_CASES`) at ``scale`` (``tiny`` /
    ``cifar`` / ``paper``), with seeded random weights and scores and calibrated BatchNorm
    statistics.  Returns ``(model, input_size)``."""
    from reprolib.configs.overview import EXPORT_CASES, SCALES
    from reprolib.core.export import calibrate_batchnorm
    from reprolib.methods import decompose, sidt, vtp

    choose("export case", case, EXPORT_CASES)
    choose("scale", scale, SCALES)
    torch.manual_seed(seed)
    if case == "sidt":
        b, kw, side = _SIDT[scale]
        m = sidt.attach_scores(create_model(b, **kw))
        _randomise_scores(sidt.scores(m), seed)
        model = sidt.prune(m, prune_ratio)
    elif case.startswith("vtp"):
        b, kw, side = _VIT[scale]
        m = vtp.attach_scores(create_model(b, **kw))
        _randomise_scores(vtp.scores(m), seed)
        model = vtp.prune(m, vtp_rate)
        if case != "vtp":
            model = decompose.decompose_model(model, case.split("_")[1], rank_ratio)
    elif case == "vit_pe":
        b, kw, side = _VIT_PE[scale]
        model = create_model(b, **kw)
    elif case == "resnet50_pe":
        b, kw, side = _RES_PE[scale]
        model = create_model(b, **kw)
    elif case == "metaformer_nas":
        b, kw, side = _NAS[scale]
        model = create_model(b, mixer=nas_cell or FIG5_CELL, **kw)
    else:
        name = _CNN[scale].format(m=case.split("_")[0])
        model, side = create_model(name, num_classes=10, template=template,
                                   width=template_width), 32
    size = (3, side, side)
    calibrate_batchnorm(model, size, seed=seed)
    return model.eval(), size


def _export_stage(cfg, case: str) -> Stage:
    cell, cell_from = searched_cell(cfg) if case == "metaformer_nas" else (None, "")

    def fn(stage: Stage) -> dict:
        import time

        from reprolib.core.export import export_check

        model, size = build_case(case, cfg.scale, prune_ratio=cfg.prune_ratio,
                                 vtp_rate=cfg.vtp_rate, rank_ratio=cfg.rank_ratio,
                                 template=cfg.template, template_width=cfg.template_width,
                                 nas_cell=cell, seed=stage.seed)
        t0 = time.perf_counter()
        out = export_check(model, stage.ckpt_dir / f"{case}.onnx", size, opset=cfg.opset)
        ties = out.pop("ties")
        spec = getattr(model, "reprolib_spec", {})
        return {**out, "case": case, "builder": spec.get("builder", ""),
                "input_size": list(size), "export_s": round(time.perf_counter() - t0, 2),
                "flops": count_flops(model, size), "tied_weights": len(ties["copies"]),
                "tied_names": ties["tied"], "tied_copies": ties["copies"],
                "ties_kept": ties["stay_tied"], "nas_cell": cell, "nas_cell_from": cell_from}

    extra = {"case": case}
    if case == "sidt":
        extra["prune_ratio"] = cfg.prune_ratio
    if case.startswith("vtp"):
        extra["vtp_rate"] = cfg.vtp_rate
        if case != "vtp":
            extra["rank_ratio"] = cfg.rank_ratio
    if case.endswith("_template"):
        extra.update(template=cfg.template, template_width=cfg.template_width)
    if cell is not None:
        extra["nas_cell"] = cell
    key = key_of(cfg, "scale", "opset", **extra)
    return Stage(cfg, f"export-{case}", key, fn)


def stages(cfg) -> list[Stage]:
    """One ``export-<case>`` stage per entry of ``cfg.export_cases``."""
    from reprolib.configs.overview import EXPORT_CASES, SCALES

    choose("scale", cfg.scale, SCALES)
    for c in cfg.export_cases:
        choose("export case", c, EXPORT_CASES)
    return [_export_stage(cfg, c) for c in cfg.export_cases]


def run(cfg, force: bool = False) -> dict[str, dict]:
    """Export every case (cached records); returns ``{stage name: record}``.  The chart and
    the conformance table need no stage: they read the papers' records and the code."""
    return run_stages(stages(cfg), force)


def export_frame(cfg) -> pd.DataFrame:
    """One row per export record that exists: method, model, input, params, ONNX initializer
    weights, file size, ONNX Runtime and ``torch.export`` max abs difference to PyTorch,
    output scale, tied weights and whether each stayed one initializer."""
    rows = []
    for s in stages(cfg):
        if not s.done:
            continue
        m = s.metrics()
        rows.append({"method": METHODS[EXPORT_METHOD[m["case"]]],
                     "model": EXPORT_LABELS[m["case"]], "builder": m["builder"],
                     "input": "x".join(map(str, m["input_size"])),
                     "params": int(m["params"]), "onnx weights": int(m["onnx_weights"]),
                     "ONNX MB": m["file_bytes"] / 1e6, "opset": m["opset"],
                     "ORT max abs diff": m["max_abs_diff"],
                     "max abs output": m["max_abs_output"],
                     "torch.export max abs diff": m["torch_export_max_abs_diff"],
                     "tied weights": m["tied_weights"],
                     "tied stay tied": ("" if m["ties_kept"] is None else
                                        "yes" if m["ties_kept"] else "no"),
                     "device": s.record()["device"].split(" threads")[0]})
    return pd.DataFrame(rows)


# =========================================================================== the chart


_SEED = re.compile(r"-(s|seed)\d+$")


def _by_condition(recs: list[dict]) -> dict[str, dict]:
    """Records grouped by stage name without a seed suffix; numeric metrics averaged."""
    groups: dict[str, list[dict]] = {}
    for r in recs:
        groups.setdefault(_SEED.sub("", r["name"]), []).append(r)
    out = {}
    for name, rs in groups.items():
        m = {}
        for k in ("acc", "params", "flops", "latency_ms"):
            v = [r["metrics"].get(k) for r in rs]
            v = [float(x) for x in v if isinstance(x, (int, float)) and math.isfinite(x)]
            m[k] = float(np.mean(v)) if v else None
        out[name] = {"metrics": m, "config": rs[0]["config"], "n": len(rs),
                     "device": report.device_label(rs), "records": rs}
    return out


def _paper_records(paper: str, profile: str) -> dict[str, dict]:
    """The stored records of ``paper``'s current stages at ``profile`` ({} when it has no
    such profile or nothing ran), grouped by condition."""
    from reprolib.experiments import get_experiment

    if profile not in get_paper(paper).presets:
        return {}
    try:
        st = get_experiment(paper).stages(get_config(paper, profile))
    except ReprolibError:
        return {}
    return _by_condition([s.record() for s in st if s.done])


def _pair(paper, profile, label, name, child, parent) -> dict | None:
    c, p = child["metrics"], parent["metrics"]
    if c["acc"] is None or p["acc"] is None or not c["params"] or not p["params"]:
        return None
    ratio = lambda k: (c[k] / p[k]) if c.get(k) and p.get(k) else None   # noqa: E731
    return {"method": paper, "profile": profile, "label": label, "stage": name,
            "acc_change": c["acc"] - p["acc"], "params_ratio": ratio("params"),
            "flops_ratio": ratio("flops"), "latency_ratio": ratio("latency_ms"),
            "latency_from": "record" if ratio("latency_ms") else "",
            "seeds": child["n"], "device": child["device"], "parent": parent.get("label", "")}


def _sidt_points(recs: dict, profile: str) -> list[dict]:
    parent = recs.get("finetune-p00")
    if not parent:
        return []
    parent = {**parent, "label": "PR 0 (searched, fine-tuned)"}
    out = []
    for n, r in sorted(recs.items()):
        mm = re.fullmatch(r"finetune-p(\d\d)", n)
        if mm and int(mm.group(1)) > 0:
            out.append(_pair("sidt", profile, f"PR {int(mm.group(1))}%", n, r, parent))
    return out


def _vtp_points(recs: dict, profile: str) -> list[dict]:
    out = []
    for n, r in sorted(recs.items()):
        mm = re.fullmatch(r"vtp-p(\d+)", n)
        if mm and f"dense-p{mm.group(1)}" in recs:
            p = mm.group(1)
            parent = {**recs[f"dense-p{p}"], "label": f"dense ViT patch {p}"}
            out.append(_pair("vtp_svd", profile, f"VTP p{p}", n, r, parent))
            for dn, d in sorted(recs.items()):
                dm = re.fullmatch(rf"decomp-p{p}-(\w+)-r([\d.]+)-ft(\d+)", dn)
                if dm and int(dm.group(3)) > 0:
                    out.append(_pair("vtp_svd", profile, f"+{dm.group(1).upper()} p{p}", dn, d,
                                     parent))
    return out


def _pe_points(recs: dict, profile: str) -> list[dict]:
    from reprolib.experiments.pe import training_runs

    try:
        cfg = get_config("pe", profile)
    except ReprolibError:
        return []
    out = []
    pairs = [(cfg.vit_model, cfg.vit_twin)]
    pairs += [(r["name"], cfg.resnet_twin) for r in training_runs(cfg)
              if r["recipe"] == "resnet_train" and r["name"] != cfg.resnet_twin]
    for pe_run, twin in pairs:
        if pe_run in recs and twin in recs:
            parent = {**recs[twin], "label": f"unshared twin {twin}"}
            out.append(_pair("pe", profile, pe_run, pe_run, recs[pe_run], parent))
    return out


def _nas_points(recs: dict, profile: str) -> list[dict]:
    parent = recs.get("retrain-pooling")
    if not parent:
        return []
    parent = {**parent, "label": "pooling mixer"}
    return [_pair("metaformer_nas", profile, n.replace("retrain-", ""), n, r, parent)
            for n, r in sorted(recs.items()) if re.fullmatch(r"retrain-nas\d+", n)]


def _template_points(recs: dict, profile: str) -> list[dict]:
    from reprolib.experiments.templates import LABELS, MODEL_LABELS

    cells = {}
    for n, r in recs.items():
        c = r["config"]
        if "template" in c and "width" in c and "dataset" in c and not n.startswith("measure-"):
            cells[(c["model"], c["template"], float(c["width"]), c["dataset"])] = (n, r)
    out = []
    for (model, t, w, ds), (n, r) in sorted(cells.items()):
        base = cells.get((model, "base", w, ds))
        if t != "base" and base:
            parent = {**base[1], "label": f"base, width {w:g}"}
            out.append(_pair("templates", profile,
                             f"{MODEL_LABELS.get(model, model)} {LABELS.get(t, t)} w{w:g}",
                             n, r, parent))
    return out


_EXTRACT = {"sidt": _sidt_points, "vtp_svd": _vtp_points, "pe": _pe_points,
            "metaformer_nas": _nas_points, "templates": _template_points}


def bench_records() -> list[dict]:
    """Every benchmark record under ``results/bench/`` that names a paper's stage and a
    measured latency ratio (module docstring); [] when there are none."""
    base = paths.results_root() / "bench"
    out = []
    for p in sorted(base.glob("*/*.json")) if base.exists() else []:
        try:
            r = results.load_record(p)
        except ReprolibError:
            continue
        m = r["metrics"]
        if isinstance(m.get("latency_ratio"), (int, float)) and m.get("paper") and m.get("stage"):
            out.append(r)
    return out


def points(cfg) -> pd.DataFrame:
    """The chart's points: one row per compressed model recorded at any of ``cfg.profiles``
    (columns ``method``, ``profile``, ``label``, ``stage``, ``acc_change`` (pp vs the
    parent), ``params_ratio``, ``flops_ratio``, ``latency_ratio`` (compressed / parent),
    ``latency_from`` ("record" / "bench <device> batch <b>"), ``seeds``, ``device``,
    ``parent``).  Benchmark records replace the latency ratio of the point they name."""
    rows = []
    for prof in cfg.profiles:
        for paper, extract in _EXTRACT.items():
            recs = _paper_records(paper, prof)
            if recs:
                rows += [p for p in extract(recs, prof) if p]
    df = pd.DataFrame(rows, columns=["method", "profile", "label", "stage", "acc_change",
                                     "params_ratio", "flops_ratio", "latency_ratio",
                                     "latency_from", "seeds", "device", "parent"])
    for b in bench_records():
        m = b["metrics"]
        hit = (df["method"] == m["paper"]) & (df["stage"] == m["stage"])
        if m.get("profile"):
            hit &= df["profile"] == m["profile"]
        if hit.any():
            df.loc[hit, "latency_ratio"] = float(m["latency_ratio"])
            df.loc[hit, "latency_from"] = (f"bench {str(m.get('device', b.get('device', '')))}"
                                           f" batch {m.get('batch_size', '?')}")
    return df


def paper_points() -> pd.DataFrame:
    """The points the papers themselves report, relative to their own dense parents:
    SiDT Table I (vs PR 0), PE Tables 1-2 (ViT-PE vs DeiT-S/16, ResNet50-PE vs ResNet50),
    templates Tables 1-2 (CIFAR-10, each template vs base at width 1.0; time = the printed
    inference time).  VTP and MetaFormer-NAS print no sizes, so they have no point."""
    from reprolib.configs.pe import PAPER_TABLE1 as PE1, PAPER_TABLE2 as PE2
    from reprolib.configs.sidt import PAPER_TABLE1 as S1
    from reprolib.configs.templates import PAPER_TABLE1 as T1, PAPER_TABLE2 as T2
    from reprolib.experiments.templates import LABELS, MODEL_LABELS

    rows = []
    a0, p0, f0 = S1[0.0]
    for r, (a, p, f) in S1.items():
        if r > 0:
            rows.append({"method": "sidt", "label": f"PR {r:.0%}", "acc_change": a - a0,
                         "params_ratio": p / p0, "flops_ratio": f / f0, "latency_ratio": None})
    for child, parent, table in (("ViT-PE¹ (ours)", "DeiT-S/16", PE1),
                                 ("ViT-PE² (ours)", "DeiT-S/16", PE1),
                                 ("ResNet50-PE¹ (Ours)", "ResNet50", PE2),
                                 ("ResNet50-PE² (Ours)", "ResNet50", PE2)):
        c, p = table[child], table[parent]
        rows.append({"method": "pe", "label": child.split(" (")[0],
                     "acc_change": c["top1"] - p["top1"],
                     "params_ratio": c["params_M"] / p["params_M"],
                     "flops_ratio": c["GFLOPs"] / p["GFLOPs"], "latency_ratio": None})
    for model, accs in T1["cifar10"].items():
        for t, a in accs.items():
            if t == "base":
                continue
            rows.append({"method": "templates", "label": f"{MODEL_LABELS[model]} {LABELS[t]}",
                         "acc_change": a - accs["base"],
                         "params_ratio": T2["params_M"][model][t] / T2["params_M"][model]["base"],
                         "flops_ratio": None,
                         "latency_ratio": T2["time_us"][model][t] / T2["time_us"][model]["base"]})
    return pd.DataFrame(rows)


def _provenance_lines(df: pd.DataFrame) -> list[str]:
    """Per method: profiles, seeds, devices and where the latency came from."""
    lines = []
    for meth in METHODS:
        d = df[df["method"] == meth]
        if not len(d):
            continue
        prof = "/".join(dict.fromkeys(d["profile"]))
        dev = "/".join(sorted(set("/".join(d["device"]).split("/"))))
        lat = d["latency_from"].replace("", np.nan).dropna()
        lat_txt = ("latency: " + "/".join(sorted(set(lat)))) if len(lat) else "no latency recorded"
        seeds = sorted(set(int(s) for s in d["seeds"]))
        lines.append(f"{METHODS[meth]}: profile {prof}, {'/'.join(map(str, seeds))} seed(s), "
                     f"{dev}, {lat_txt}")
    return lines


def figures(cfg) -> dict:
    """``tradeoff``: top row, our compressed models at ``cfg.profiles`` (accuracy change vs
    the method's own parent against params / FLOPs / latency ratios; colour = method, marker
    = profile); bottom row, the papers' reported points on the same axes."""
    import matplotlib.pyplot as plt

    ours, paper = points(cfg), paper_points()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), sharey="row")
    cols = (("params_ratio", "parameters / parent"), ("flops_ratio", "FLOPs / parent"),
            ("latency_ratio", "latency / parent"))
    for row, (df, who) in enumerate(((ours, "ours"), (paper, "paper"))):
        for ax, (x, xl) in zip(axes[row], cols):
            seen = set()
            for meth in METHODS:
                d = df[(df["method"] == meth) & df[x].notna()]
                if not len(d):
                    continue
                groups = d.groupby("profile") if "profile" in d else [("paper", d)]
                for prof, g in groups:
                    lab = f"{METHODS[meth]}" + (f" ({prof})" if who == "ours" else "")
                    ax.scatter(g[x], g["acc_change"], color=COLORS[meth],
                               marker=MARKERS.get(prof, "o") if who == "ours" else "x",
                               s=36, label=lab if lab not in seen else None, zorder=3)
                    seen.add(lab)
            ax.axhline(0, color="grey", lw=0.8, ls="--")
            ax.axvline(1, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_xlabel(xl + " (log)")
            ax.grid(alpha=0.3)
            if not df[x].notna().any():
                ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center", color="grey")
        axes[row][0].set_ylabel(("ours" if who == "ours" else "papers' reported") +
                                ": accuracy − parent (pp)")
        h, lab = [], []
        for ax in axes[row]:
            for hh, ll in zip(*ax.get_legend_handles_labels()):
                if ll not in lab:
                    h.append(hh)
                    lab.append(ll)
        if h:
            axes[row][2].legend(h, lab, fontsize=7, loc="best")
    prov = _provenance_lines(ours)
    axes[0][1].set_title("Our records (" + ", ".join(cfg.profiles) + "; absent profiles "
                         "skipped)", fontsize=9)
    axes[1][1].set_title("The papers' own numbers: SiDT Table I, PE Tables 1-2 (ImageNet), "
                         "templates Tables 1-2 (CIFAR-10, Titan X time); VTP and "
                         "MetaFormer-NAS print no sizes", fontsize=8)
    fig.suptitle("Accuracy relative to each method's own dense parent vs its size and speed\n"
                 + ("\n".join(prov) if prov else "no records at these profiles")
                 + ("" if cfg.profile == "paper" else
                    f"\n[{', '.join(cfg.profiles)} records: not the papers' settings]"),
                 fontsize=8)
    fig.tight_layout()
    return {"tradeoff": fig}


# =========================================================================== tables, summary


def tables(cfg) -> dict[str, pd.DataFrame]:
    """``conformance`` (:func:`conformance`), ``conformance_counts`` (per paper and
    verdict), ``export`` (:func:`export_frame`), ``points`` (:func:`points`) and
    ``paper_points`` (:func:`paper_points`)."""
    conf = conformance()
    counts = conformance_counts(conf)
    counts.attrs["caption"] = ("Conformance counts: rows per paper and verdict "
                               f"(`figures/overview/conformance-{cfg.profile}.md`).")
    ex = export_frame(cfg)
    recs = [s.record() for s in stages(cfg) if s.done]
    ex.attrs["caption"] = (
        f"Every method's compressed model exported: torch.onnx (dynamo, opset {cfg.opset}, "
        f"dynamic batch) and torch.export; max abs difference to PyTorch on a random batch "
        f"of 3 (ONNX Runtime, CPU); models at scale '{cfg.scale}' with seeded random weights "
        f"and BatchNorm statistics calibrated on random images; tied weights checked by value "
        f"among the initializers · profile={cfg.profile} · "
        f"device={report.device_label(recs)}")
    pts = points(cfg)
    prov = "; ".join(_provenance_lines(pts)) or "no records at these profiles"
    pts.attrs["caption"] = ("Cross-method points: accuracy change (pp) and size / speed ratios "
                            f"vs each method's own parent · {prov} · "
                            f"profiles={','.join(cfg.profiles)}{profile_note(cfg)}")
    pp = paper_points()
    pp.attrs["caption"] = "The papers' own reported points, relative to their own parents."
    return {"conformance": conf, "conformance_counts": counts, "export": ex, "points": pts,
            "paper_points": pp}


def _fmt_e(x: float) -> str:
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def summary(cfg) -> str:
    """The README paragraph: conformance counts (per verdict, the unexplained ones named),
    the chart's sources, and the export parity per method, every number from the code and
    the records."""
    conf = conformance()
    n = conf["verdict"].value_counts()
    counted = int(len(conf) - n.get("not counted", 0) - n.get("not printed", 0))
    un = conf[conf["verdict"] == "unexplained mismatch"]
    out = [f"Conformance (`figures/overview/conformance-{cfg.profile}.md`, counted from code on "
           f"the meta device): of {len(conf)} architecture-determined numbers the five papers "
           f"print, {counted} can be counted here: {n.get('match', 0)} match to the printed "
           f"precision, {n.get('explained mismatch', 0)} differ for a stated reason "
           f"(learned widths not printed, another classifier width, a model definition that "
           f"cannot give both printed counts, FLOPs without the attention matmuls, the "
           f"templates' width rules), {n.get('unexplained mismatch', 0)} differ unexplained"]
    if len(un):
        out[-1] += " (" + "; ".join(
            f"{r.quantity} {r.ours:.2f} vs {r.paper_value:g} {r.unit}".strip()
            for r in un.itertuples()) + ")"
    out[-1] += (f"; {n.get('not counted', 0)} are of models neither reprolib, timm nor "
                f"torchvision builds and {n.get('not printed', 0)} has no printed value.")
    counts = conformance_counts(conf)
    out.append("\n\n" + report.to_markdown(counts) + "\n\n")
    pts = points(cfg)
    if len(pts):
        per = pts.groupby("method").size()
        out.append(f"The chart (`reprolib run overview --profile {cfg.profile}`) puts "
                   + ", ".join(f"{per[m]} {METHODS[m]}" for m in METHODS if m in per)
                   + " compressed models on one set of axes, each against its own dense parent; "
                   + "; ".join(_provenance_lines(pts)) + ".")
    else:
        out.append(f"No paper has records at {', '.join(cfg.profiles)} yet: the chart shows "
                   "the papers' own points only.")
    ex = export_frame(cfg)
    if len(ex):
        worst = ex["ORT max abs diff"].max()
        tied = ex[ex["tied weights"] > 0]
        parts = [f"{row['model']} {_fmt_e(row['ORT max abs diff'])}" for _, row in ex.iterrows()]
        ties = ("; ".join(f"{row['model']}: {row['tied weights']} tied weights, "
                          f"{'each one initializer' if row['tied stay tied'] == 'yes' else 'copied'}"
                          for _, row in tied.iterrows()) or "no tied weights")
        out.append(f"Export (`reprolib.export.to_onnx`, `reprolib export PATH --format onnx`): "
                   f"{len(ex)} compressed models at scale '{cfg.scale}' "
                   f"(`figures/overview/export-{cfg.profile}.md`) export through torch.onnx "
                   f"(opset {int(ex['opset'].max())}) and torch.export; ONNX Runtime vs PyTorch, "
                   f"max abs difference on a random batch: " + ", ".join(parts)
                   + f" (largest {_fmt_e(worst)}; torch.export "
                   f"{_fmt_e(ex['torch.export max abs diff'].max())}). Tied weights in the ONNX "
                   f"initializers: {ties}.")
    return " ".join(out)
