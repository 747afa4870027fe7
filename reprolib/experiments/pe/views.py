"""What the overview shows of PE (``reprolib.experiments.overview``): the conformance rows
(Tables 1-2, params and FLOPs of every row reprolib, timm or torchvision builds, counted on
the meta device, and the ResNet sharing rule), the chart's points (each PE model against its
unshared twin) and the points Tables 1-2 report."""

from __future__ import annotations

from reprolib.configs import get_config
from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
from reprolib.errors import ReprolibError
from reprolib.experiments.overview.rows import pair, row
from reprolib.experiments.pe.graph import (TABLE1_SOURCES, TABLE2_SOURCES, count_table,
                                            model_counts, resnet_sharing_table, source_counts,
                                            training_runs)

#: How the overview presents PE.
OVERVIEW = {"label": "PE (tied W/Wᵀ)", "color": "tab:green", "short": "PE",
            "reported": "Tables 1-2 (ImageNet)",
            "mismatch_reasons": ("another classifier width",
                                 "a model definition that cannot give both printed counts",
                                 "FLOPs without the attention matmuls")}


def flops_without_attention(source, size=224) -> int:
    """FLOPs (1 MAC = 1 FLOP) of the ``(library, name, kwargs)`` ``source`` at ``size`` px
    without the attention matmuls (batched matmuls and scaled-dot-product attention), from the
    same count as the tables' (``graph.source_counts``, memoised)."""
    ops = source_counts(source, 1000, size)["ops"]
    skip = ("bmm", "scaled_dot_product")
    return sum(v for op, v in ops.items() if not any(s in op for s in skip)) // 2


def conformance_rows() -> list[dict]:
    """Every row of Tables 1-2: params and FLOPs counted beside the printed ones, each
    mismatch with the reading that explains it where one does (another classifier width,
    the sharing rule, FLOPs without the attention matmuls, whole millions)."""
    from reprolib.methods import pe as pe_method

    rows = []
    vit100 = model_counts(100, 224, models=("ViT-PE",))[0]["params"] / 1e6
    sharing = resnet_sharing_table((1000, 100))
    p1 = PAPER_TABLE2["ResNet50-PE¹ (Ours)"]["params_M"]
    p2 = PAPER_TABLE2["ResNet50-PE² (Ours)"]["params_M"]
    verdict = pe_method.sharing_verdict(sharing, p1, p2)
    default = {r["num_classes"]: r for r in sharing if r["share_1x1"] and r["share_3x3"]}
    for table, sources, printed in (("Table 1", TABLE1_SOURCES, PAPER_TABLE1),
                                    ("Table 2", TABLE2_SOURCES, PAPER_TABLE2)):
        for r in count_table(sources, printed):
            name, src = r["model"], sources[r["model"]]
            counted = f"{r['source']}, 1000 classes, 224 px"
            if src is None:
                for q, unit in (("params", "M"), ("FLOPs", "G")):
                    rows.append(row("PE", table, f"{name} {q}", unit,
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
            rows.append(row("PE", table, f"{name} params", "M", pp, 1, ours_p, counted, why, ok))
            # FLOPs
            dec = 2 if pf != round(pf, 1) or (table == "Table 2" and name != "ResNet18") else 1
            why, ok = "", False
            if abs(ours_f - pf) > 0.5 * 10 ** -dec + 1e-9 and src[0] != "reprolib":
                fa = flops_without_attention(src) / 1e9
                if round(fa, dec) == pf:
                    ok = True
                    why = (f"the printed value equals our count without the attention matmuls "
                           f"({fa:.2f} G; with them {ours_f:.2f} G): its source left them out")
                else:
                    why = (f"{r['source']} counts {ours_f:.2f} G ({fa:.2f} G without the attention "
                           f"matmuls); neither gives the printed {pf:g} G")
            rows.append(row("PE", table, f"{name} FLOPs", "G", pf, dec, ours_f, counted, why, ok))
    return rows


def points(pipe, recs: dict, profile: str) -> list[dict]:
    """The chart's PE points at ``profile``: the ViT-PE run against its unshared twin, and
    every other ResNet run (the PE variants, the narrowed twin) against the ResNet twin."""
    try:
        cfg = get_config(pipe.name, profile)
    except ReprolibError:
        return []
    out = []
    pairs = [(cfg.vit_model, cfg.vit_twin)]
    pairs += [(r["name"], cfg.resnet_twin) for r in training_runs(cfg)
              if r["recipe"] == "resnet_train" and r["name"] != cfg.resnet_twin]
    for pe_run, twin in pairs:
        if pe_run in recs and twin in recs:
            parent = {**recs[twin], "label": f"unshared twin {twin}"}
            out.append(pair(pipe.name, profile, pe_run, pe_run, recs[pe_run], parent))
    return out


def reported_points() -> list[dict]:
    """Tables 1-2's PE models against their parents: ViT-PE¹ / ² vs DeiT-S/16,
    ResNet50-PE¹ / ² vs ResNet50 (no time printed)."""
    rows = []
    for child, parent, table in (("ViT-PE¹ (ours)", "DeiT-S/16", PAPER_TABLE1),
                                 ("ViT-PE² (ours)", "DeiT-S/16", PAPER_TABLE1),
                                 ("ResNet50-PE¹ (Ours)", "ResNet50", PAPER_TABLE2),
                                 ("ResNet50-PE² (Ours)", "ResNet50", PAPER_TABLE2)):
        c, p = table[child], table[parent]
        rows.append({"method": "pe", "label": child.split(" (")[0],
                     "acc_change": c["top1"] - p["top1"],
                     "params_ratio": c["params_M"] / p["params_M"],
                     "flops_ratio": c["GFLOPs"] / p["GFLOPs"], "latency_ratio": None})
    return rows
