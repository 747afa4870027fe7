"""The VTP + decomposition graph as data (nothing runs): every profile's stages declare what
they read, the model they build and what they train; readers find their stages by role and
tags (reprolib.experiments.vtp_svd)."""

import pytest

from reprolib import configs
from reprolib.core.stage import declared_reads
from reprolib.experiments import vtp_svd

#: The recipe each training role trains with (the dense stage: the first of pretrain /
#: baseline that has epochs).
RECIPE = {"sparse": "sparsity", "vtp": "finetune", "control": "sweep_finetune"}


def _recipe(cfg, s):
    pc = vtp_svd.patch_cfg(cfg, s.tags["patch"])
    if s.role == "dense":
        return next((r for r in ("pretrain", "baseline") if getattr(pc, r).epochs > 0), None)
    if s.role == "decompose":
        return "decompose_finetune" if s.tags["use"] == "table2" else "sweep_finetune"
    if s.role == "flops_control":     # vtp_more: finetune, then sweep_finetune
        return "finetune" if s.tags["control"] == "vtp_more" else "sweep_finetune"
    return RECIPE.get(s.role)


@pytest.mark.parametrize("profile", configs.profiles("vtp_svd"))
def test_every_stage_declares_its_reads_model_and_training(profile):
    cfg = configs.get_config("vtp_svd", profile)
    g = vtp_svd.PIPELINE.graph(cfg)
    assert len(g) == len(vtp_svd.stages(cfg))
    for s in g:
        assert declared_reads(s) == [], s.name
        recipe = _recipe(cfg, s)
        pc = vtp_svd.patch_cfg(cfg, s.tags["patch"])
        trains = recipe is not None and getattr(pc, recipe).epochs > 0
        if trains:
            assert s.train is not None and s.model_spec is not None, s.name
            assert s.train.recipe_name == recipe, s.name
            assert s.train.l1 == (cfg.l1_strength if s.role == "sparse" else 0.0), s.name
            assert s.train.dataset == pc.dataset and s.train.image_size == pc.image_size
            assert s.model_spec.kwargs["patch_size"] == s.tags["patch"]
            assert s.model_spec.builder == pc.model
        else:
            assert s.train is None, s.name
        assert s.note and s.group
        # every read is declared: decompositions, analysis and identity read the VTP stage,
        # the VTP stage the dense and the sparse one, the sparse stage the dense one
        up = {u.role for u in s.after}
        if s.role == "flops_control":      # the SVD point it matches, and its parent
            assert up == {"decompose", "sparse" if s.tags["control"] == "vtp_more" else "vtp"}
            continue
        assert up == {"dense": set(), "sparse": {"dense"}, "vtp": {"dense", "sparse"}}.get(
            s.role, {"vtp"}), s.name


def test_roles_and_tags():
    g = vtp_svd.PIPELINE.graph(configs.get_config("vtp_svd", "evidence", flops_controls=()))
    assert g.roles() == ["dense", "sparse", "vtp", "decompose", "analysis", "identity",
                         "control"]
    cfg = configs.get_config("vtp_svd", "evidence")     # its equal-FLOP controls: both
    assert cfg.flops_controls == ("vtp_more", "tp_global")
    g = vtp_svd.PIPELINE.graph(cfg)
    # the equal-FLOP controls: per seed, sweep ratio and control, matched to SVD's point
    fc = g.get("flops_control", seed=1, ratio=0.125, control="tp_global")
    assert fc.name == "tp_global-p8-r0.125-ft2-s1"
    assert fc.after == [g.get("vtp", patch=8, seed=1),
                        g.get("decompose", use="sweep", seed=1, method="svd", ratio=0.125)]
    vm = g.get("flops_control", seed=0, ratio=0.5, control="vtp_more")
    assert vm.after[0] is g.get("sparse", patch=8, seed=0)
    assert len(g.select("flops_control")) == len(cfg.seeds) * 3 * len(cfg.flops_controls)
    assert g.get("vtp", patch=8, seed=0).name == "vtp-p8"
    assert g.get("vtp", patch=8, seed=2).name == "vtp-p8-s2"
    assert [s.name for s in g.select("control", patch=8)] == [
        "vtpft-p8-ft2", *(f"vtpft-p8-ft2-s{i}" for i in range(1, len(cfg.seeds)))]
    # Table 2's SVD point (rank 0.25, 2 ep) is also the sweep's: one stage under both tags
    t2 = g.get("decompose", use="table2", patch=8, method="svd", seed=0)
    assert g.get("decompose", use="sweep", patch=8, method="svd", ratio=0.25, seed=0) is t2
    assert len(g.select("decompose", use="sweep", seed=1)) == 3 * 3
    assert g.get("control", seed=1).after == [g.get("vtp", patch=8, seed=1)]
    # cpu: patch 2 has its own model (patch_overrides), the other sizes the profile's
    cpu = vtp_svd.PIPELINE.graph(configs.get_config("vtp_svd", "cpu"))
    assert cpu.get("dense", patch=2).model_spec.builder == "vit_cifar_small_d2"
    assert cpu.get("dense", patch=4).model_spec.builder == "vit_cifar_small"
    assert cpu.find("analysis").name == "analysis-p4"


def test_plan_counts_the_groups():
    from reprolib.tools.plan import plan

    rows = {s["name"]: s["runs"] for s in plan("vtp_svd", "evidence")["stages"]}
    n = len(configs.get_config("vtp_svd", "evidence").seeds)     # 21
    # per seed 9 sweep points; the base seed's three at rank 0.25 are Table 2's stages
    assert rows == {f"dense-p8 x{n}": n, f"sparse-p8 x{n}": n, f"vtp-p8 x{n}": n,
                    "table2-p8 x3": 3, f"sweep-p8 x{9 * n - 3}": 9 * n - 3, f"vtpft-p8 x{n}": n,
                    # the equal-FLOP controls: per seed 3 ratios, vtp_more trains finetune then
                    # sweep_finetune, tp_global sweep_finetune
                    f"flops-control-p8 x{3 * n} (finetune)": 3 * n,
                    f"flops-control-p8 x{6 * n} (sweep_finetune)": 6 * n}
