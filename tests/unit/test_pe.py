"""PE (row / column space layers): tied weights, identities with untied layers, closed-form
counts, the printed counts, the sharing rule, the compressed-format round trip, the recipes
and their lr scaling, the stage graph (roles, tags, declarations)."""

import pytest
import torch
import torch.nn as nn

import reprolib  # noqa: I001  (installs the torchvision shim before timm)
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torchvision.models.resnet import Bottleneck

from reprolib.configs import get_config, profiles
from reprolib.core.stage import declared_reads
from reprolib.errors import ReprolibError
from reprolib.experiments import pe as E
from reprolib.core.measure import count_flops, count_params
from reprolib.methods import pe as M
from reprolib.models.pe import PEAttention, PEBottleneck, PEMlp

torch.set_num_threads(1)


def _meta(name, **kw):
    with torch.device("meta"):
        return reprolib.create_model(name, **kw)


# ----------------------------------------------------------------------------- ViT-PE
def test_pe_attention_equals_timm_attention_with_tied_copies():
    torch.manual_seed(0)
    d, h = 24, 3
    pe = PEAttention(d, h).eval()
    for b in (pe.b_q, pe.b_k, pe.b_v, pe.b_o):
        nn.init.normal_(b)
    ref = Attention(d, h, qkv_bias=True).eval()
    with torch.no_grad():  # eq. (1)-(2): qkv = [W_q; W_kv; W_kv^T], proj = W_q^T
        ref.qkv.weight.copy_(torch.cat([pe.w_q, pe.w_kv, pe.w_kv.t()]))
        ref.qkv.bias.copy_(torch.cat([pe.b_q, pe.b_k, pe.b_v]))
        ref.proj.weight.copy_(pe.w_q.t())
        ref.proj.bias.copy_(pe.b_o)
    x = torch.randn(2, 7, d)
    assert (pe(x) - ref(x)).abs().max().item() < 1e-5
    assert count_params(pe) == 2 * d * d + 4 * d
    assert count_params(ref) == 4 * d * d + 4 * d


def test_pe_attention_gradient_sums_both_uses():
    torch.manual_seed(0)
    d, h = 16, 2
    pe = PEAttention(d, h)
    ref = Attention(d, h, qkv_bias=True)
    with torch.no_grad():
        ref.qkv.weight.copy_(torch.cat([pe.w_q, pe.w_kv, pe.w_kv.t()]))
        ref.qkv.bias.copy_(torch.cat([pe.b_q, pe.b_k, pe.b_v]))
        ref.proj.weight.copy_(pe.w_q.t())
        ref.proj.bias.copy_(pe.b_o)
    x = torch.randn(2, 5, d)
    pe(x).square().sum().backward()
    ref(x).square().sum().backward()
    gq, gk, gv = ref.qkv.weight.grad.split(d)
    assert torch.allclose(pe.w_q.grad, gq + ref.proj.weight.grad.t(), atol=1e-5)
    assert torch.allclose(pe.w_kv.grad, gk + gv.t(), atol=1e-5)


def test_pe_mlp_equals_timm_mlp_and_sums_gradients():
    torch.manual_seed(0)
    d, hid = 12, 48
    pe = PEMlp(d, hid)
    nn.init.normal_(pe.b1)
    nn.init.normal_(pe.b2)
    ref = Mlp(d, hid)
    with torch.no_grad():  # eq. (4): fc1 = W, fc2 = W^T
        ref.fc1.weight.copy_(pe.weight)
        ref.fc1.bias.copy_(pe.b1)
        ref.fc2.weight.copy_(pe.weight.t())
        ref.fc2.bias.copy_(pe.b2)
    x = torch.randn(3, 4, d)
    y = pe(x)
    assert (y - ref(x)).abs().max().item() < 1e-5
    y.square().sum().backward()
    ref(x).square().sum().backward()
    assert torch.allclose(pe.weight.grad, ref.fc1.weight.grad + ref.fc2.weight.grad.t(), atol=1e-5)
    assert [n for n, _ in pe.named_parameters()] == ["weight", "b1", "b2"]


def test_vit_pe_small_counts_closed_form_and_paper():
    pe, plain = _meta("vit_pe_small", num_classes=1000), _meta("vit_small", num_classes=1000)
    assert count_params(pe) == M.vit_param_count(pe=True) == 11_433_832
    assert count_params(plain) == M.vit_param_count(pe=False) == 22_050_664  # DeiT-S
    assert count_flops(pe) == count_flops(plain) == 4_598_882_304  # tying saves no arithmetic
    # the paper's 11.1 M is the count with a 100-class classifier
    assert round(count_params(_meta("vit_pe_small", num_classes=100)) / 1e6, 1) == 11.1
    assert round(count_params(plain) / 1e6, 1) == 22.1  # Table 1 DeiT-S/16


def test_vit_tiny_variants_forward_and_counts():
    for name, pe in (("vit_pe_test", True), ("vit_test_unshared", False),
                     ("vit_pe_cifar", True), ("vit_cifar_unshared", False)):
        m = reprolib.create_model(name, num_classes=10)
        kw = {"embed_dim": m.embed_dim, "depth": len(m.blocks), "num_classes": 10,
              "img_size": 32, "patch_size": m.patch_embed.patch_size[0]}
        assert count_params(m) == M.vit_param_count(pe=pe, **kw)
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------------ ResNet50-PE
def test_pe_bottleneck_equals_torchvision_bottleneck_with_tied_conv3():
    torch.manual_seed(0)
    b = Bottleneck(32, 8).eval()
    for bn in (b.bn1, b.bn2, b.bn3):
        nn.init.normal_(bn.running_mean)
        nn.init.uniform_(bn.running_var, 0.5, 2)
    with torch.no_grad():  # eq. (6): conv3 = W^T
        b.conv3.weight.copy_(b.conv1.weight.transpose(0, 1))
    pe = PEBottleneck(b.conv1, b.conv2, b.bn1, b.bn2, b.bn3).eval()
    x = torch.randn(2, 32, 6, 6)
    assert (pe(x) - b(x)).abs().max().item() < 1e-5
    assert count_params(b) - count_params(pe) == 32 * 8


def test_resnet50_pe_counts_closed_form_and_paper():
    full = _meta("resnet50", num_classes=1000)
    assert count_params(full) == M.resnet_param_count() == 25_557_032
    for stages in ((1, 2, 3, 4), (3, 4)):
        for s1 in (False, True):
            for s3 in (False, True):
                m = _meta("resnet50_pe", num_classes=1000, pe_stages=stages, share_1x1=s1,
                          share_3x3=s3)
                assert count_params(m) == M.resnet_param_count(pe_stages=stages, share_1x1=s1,
                                                               share_3x3=s3)
    pe1 = _meta("resnet50_pe", num_classes=1000)
    pe2 = _meta("resnet50_pe", num_classes=1000, pe_stages=(3, 4))
    assert count_params(pe1) == 14_624_808 and count_params(pe2) == 15_333_416
    assert count_flops(pe1) == count_flops(pe2) == count_flops(full) == 4_089_184_256
    # with a 100-class classifier PE^1 is the printed 12.8 M (PE^2: 13.49 M vs 13.4 printed)
    assert round(M.resnet_param_count(100, pe_stages=(1, 2, 3, 4)) / 1e6, 1) == 12.8
    assert round(M.resnet_param_count(100, pe_stages=(3, 4)) / 1e6, 2) == 13.49


def test_stage_sharing_is_one_parameter_with_summed_gradients():
    torch.manual_seed(0)
    m = reprolib.create_model("resnet_pe_test", num_classes=10, pe_stages=(2, 3))
    assert isinstance(m.layer1[1], Bottleneck) and isinstance(m.layer4[1], Bottleneck)
    for layer in (m.layer2, m.layer3):
        assert isinstance(layer[0], Bottleneck)  # projection block kept
        blocks = list(layer)[1:]
        assert all(isinstance(b, PEBottleneck) for b in blocks)
        assert all(b.conv1.weight is blocks[0].conv1.weight for b in blocks)
        assert all(b.conv2.weight is blocks[0].conv2.weight for b in blocks)
        assert len({id(b.bn1.weight) for b in blocks}) == len(blocks)  # own BatchNorms
    m.eval()
    w = m.layer3[1].conv1.weight
    # gradient from every use (conv1 and the transposed conv3 of each block) accumulates
    ref = reprolib.create_model("resnet_pe_test", num_classes=10, pe_stages=(2, 3)).eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 32, 32)
    m(x).sum().backward()
    g_total = w.grad.clone()
    per_use = []
    for i in range(1, len(ref.layer3)):
        b = ref.layer3[i]
        b.conv1.weight = nn.Parameter(w.detach().clone())  # untie block i (conv1 and its W^T)
        per_use.append(b.conv1.weight)
    ref(x).sum().backward()
    assert torch.allclose(g_total, sum(p.grad for p in per_use), atol=1e-4)
    assert w.grad.abs().sum() > 0


def test_pe_stages_validation_and_twin_forward():
    with pytest.raises(ReprolibError):
        reprolib.create_model("resnet_pe_test", pe_stages=(0, 5))
    m = reprolib.create_model("resnet_test_unshared", num_classes=10)
    assert all(isinstance(b, Bottleneck) for b in m.layer3)
    p = reprolib.create_model("resnet_pe_test", num_classes=10)
    assert count_params(p) == M.resnet_param_count(10, (2, 3, 3, 2), 8, True, (1, 2, 3, 4))
    assert p(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------ compressed format
def _perturbed(name, **kw):
    torch.manual_seed(1)
    m = reprolib.create_model(name, num_classes=10, **kw)
    with torch.no_grad():   # weights no fresh skeleton has: equality below means "loaded"
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            nn.init.uniform_(mod.running_var, 0.5, 2.0)
    return m.eval()


def test_vit_pe_round_trip_keeps_ties_and_outputs(tmp_path):
    m = _perturbed("vit_pe_test")
    js = reprolib.save_compressed(m, tmp_path / "vit")
    back = reprolib.load_compressed(js).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x), back(x))
    assert count_params(back) == count_params(m) == M.vit_param_count(
        embed_dim=32, depth=2, num_classes=10, img_size=32, patch_size=8)
    for blk in back.blocks:   # W_q serves Q and the output, W_kv serves K and V: one tensor each
        assert isinstance(blk.attn, PEAttention) and isinstance(blk.mlp, PEMlp)
        assert [n for n, _ in blk.attn.named_parameters()][:2] == ["w_q", "w_kv"]


def test_resnet_pe_round_trip_keeps_stage_sharing(tmp_path):
    m = _perturbed("resnet_pe_test", pe_stages=(1, 2, 3, 4))
    js = reprolib.save_compressed(m, tmp_path / "res")
    back = reprolib.load_compressed(js).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x), back(x))
    assert count_params(back) == count_params(m) == M.resnet_param_count(10, (2, 3, 3, 2), 8, True,
                                                                          (1, 2, 3, 4))
    for layer in (back.layer2, back.layer3):
        blocks = list(layer)[1:]
        assert all(b.conv1.weight is blocks[0].conv1.weight for b in blocks)   # one tensor
        assert all(b.conv2.weight is blocks[0].conv2.weight for b in blocks)
    # the tied weight is stored once, not once per block
    from safetensors import safe_open
    with safe_open(str(js.with_suffix(".safetensors")), "pt") as f:
        stored = set(f.keys())
    assert len(stored) < len(m.state_dict())
    assert not {"layer3.2.conv1.weight", "layer3.2.conv2.weight"} & stored


def test_round_trip_mismatch_and_corrupt_file_are_errors(tmp_path):
    import json
    js = reprolib.save_compressed(_perturbed("resnet_pe_test", pe_stages=(3, 4)), tmp_path / "r")
    spec = json.loads(js.read_text())
    spec["kwargs"]["pe_stages"] = [1, 2, 3, 4]   # a different architecture than the weights
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match="do not fit"):
        reprolib.load_compressed(js)
    js2 = reprolib.save_compressed(_perturbed("vit_pe_test"), tmp_path / "v")
    st = js2.with_suffix(".safetensors")
    st.write_bytes(st.read_bytes()[:200])
    with pytest.raises(ReprolibError):
        reprolib.load_compressed(js2)


# ----------------------------------------------------------------------- tables, rules
def test_count_table_counts_baselines_beside_paper():
    from reprolib.configs.pe import PAPER_TABLE1
    src = {k: E.TABLE1_SOURCES[k] for k in ("DeiT-T/16", "ViT-PE¹ (ours)", "PVT-T")}
    rows = {r["model"]: r for r in E.count_table(src, PAPER_TABLE1)}
    assert round(rows["DeiT-T/16"]["params_M"], 1) == 5.7
    assert round(rows["DeiT-T/16"]["GFLOPs"], 1) == 1.3
    assert rows["ViT-PE¹ (ours)"]["params_M"] == pytest.approx(11.433832)
    assert rows["PVT-T"]["params_M"] is None and rows["PVT-T"]["paper_params_M"] == 13.2


def test_model_counts_give_the_printed_sizes_at_100_classes():
    c100 = {r["model"]: r for r in E.model_counts(100)}
    c1000 = {r["model"]: r for r in E.model_counts(1000)}
    assert c100["ViT-PE"]["params"] == 11_087_332
    assert round(c100["ViT-PE"]["params"] / 1e6, 1) == 11.1                  # printed 11.1
    assert round(c100["ViT-PE"]["flops"] / 1e9, 1) == 4.6
    assert c1000["ViT-PE"]["params"] == 11_433_832 and c1000["DeiT-S"]["params"] == 22_050_664
    assert c100["ResNet50-PE¹"]["params"] == 12_780_708     # printed 12.8
    assert c100["ResNet50-PE²"]["params"] == 13_489_316     # printed 13.4: not reproduced
    assert round(c1000["ResNet50-PE¹"]["flops"] / 1e9, 2) == 4.09


def test_sharing_verdict_on_the_closed_forms():
    rows = [{"share_1x1": s1, "share_3x3": s3, "num_classes": nc,
             "PE1_params_M": M.resnet_param_count(nc, pe_stages=(1, 2, 3, 4), share_1x1=s1,
                                                  share_3x3=s3) / 1e6,
             "PE2_params_M": M.resnet_param_count(nc, pe_stages=(3, 4), share_1x1=s1,
                                                  share_3x3=s3) / 1e6}
            for s1, s3 in M.SHARING_RULES for nc in (1000, 100)]
    v = M.sharing_verdict(rows, 12.8, 13.4)
    pe1 = [(r["share_1x1"], r["share_3x3"], r["num_classes"]) for r in v["pe1"]]
    assert pe1 == [(True, True, 100)]
    assert v["pe2"] == [] and v["both"] == []
    assert (v["gap_rule"]["share_1x1"], v["gap_rule"]["share_3x3"]) == (False, True)  # 0.56 M
    assert v["printed_gap"] == pytest.approx(0.6)
    # a table that does hold both printed numbers is found
    v2 = M.sharing_verdict(rows, 12.8, 13.49, ndigits=2)
    assert v2["pe2"] and v2["both"] == [] and M.sharing_verdict(rows, 12.78, 13.49, 2)["both"]
    assert M.sharing_rule_name(True, True) == "one W and one 3x3 kernel per stage"


# ----------------------------------------------------------------------- recipes, lr scaling
def test_recipes_are_nested_trainconfigs():
    paper = get_config("pe", "paper")
    tc = E.train_config(paper, "vit")
    assert tc is paper.vit_train and tc.optimizer == "adamw" and tc.lr_ref_batch == 512
    assert (tc.weight_decay, tc.mixup, tc.cutmix, tc.label_smoothing) == (0.05, 0.8, 1.0, 0.1)
    assert tc.warmup_epochs == 5 and tc.schedule == "cosine" and tc.epochs == 300
    assert tc.no_decay_norm_bias and tc.min_lr == 1e-5 and paper.vit_drop_path == 0.1
    rc = E.train_config(paper, "resnet")
    assert (rc.optimizer, rc.lr, rc.momentum, rc.weight_decay, rc.warmup_epochs, rc.lr_ref_batch) \
        == ("sgd", 0.1, 0.9, 1e-4, 5, 0)
    assert [r["name"] for r in E.training_runs(paper)] == [
        "vit_pe_small", "vit_small", "vit_pe_small-600ep", "resnet50_pe-stages1234",
        "resnet50_pe-stages34", "resnet50"]
    assert E.training_runs(paper)[4]["kwargs"] == {"pe_stages": (3, 4)}
    assert E.training_runs(paper)[2]["epochs"] == 600           # the ViT-PE^2 row
    st = {s.name: s for s in E.PIPELINE.graph(paper).select("train")}
    assert st["vit_pe_small-600ep"].config["vit_train"]["epochs"] == 600
    assert st["vit_pe_small"].config["vit_train"]["epochs"] == 300
    assert E.model_kwargs(paper, "vit_pe_small") == {"drop_path_rate": 0.1}
    assert E.model_kwargs(get_config("pe", "smoke", image_size=64), "vit_small") == \
        {"drop_path_rate": 0.0, "img_size": 64}
    with pytest.raises(ReprolibError):
        get_config("pe", "smoke", vit_lr_512=1.0)
    with pytest.raises(ReprolibError):
        E.train_config(paper, "swin")


# smoke / cpu state a per-process batch (lr = lr_512 x batch x world / 512); gpu / paper state
# DeiT's GLOBAL batch 1024: per-process batch 1024 / world and lr 1e-3 whatever the world size
@pytest.mark.parametrize("profile,batch,lr_512,glob", [("smoke", 64, 8e-3, 0),
                                                       ("cpu", 128, 4e-3, 0),
                                                       ("gpu", 64, 5e-4, 1024),
                                                       ("paper", 64, 5e-4, 1024)])
def test_lr_scaling_gives_todays_numbers(profile, batch, lr_512, glob):
    tc = get_config("pe", profile).vit_train
    assert (tc.batch_size, tc.lr, tc.global_batch) == (batch, lr_512, glob)
    for world in (1, 2, 8):
        if glob:
            assert E.scaled_lr(tc, world) == pytest.approx(1e-3)
            assert tc.process_batch(world) == 1024 // world
            assert tc.total_batch(world) == 1024
        else:
            assert E.scaled_lr(tc, world) == lr_512 * batch * world / 512
            assert tc.process_batch(world) == batch
    assert E.scaled_lr(tc, 1) == pytest.approx(1e-3)
    assert tc.warmup_start == min(1.0, 1e-6 / E.scaled_lr(tc, 1))   # warmup from DeiT's 1e-6
    rc = get_config("pe", profile).resnet_train
    assert E.scaled_lr(rc, 8) == 0.1                          # not scaled
    if glob:   # torchvision: 0.1 at the global batch 256, 32 per process on 8 GPUs
        assert (rc.total_batch(8), rc.process_batch(8)) == (256, 32)
        with pytest.raises(ReprolibError, match="does not split"):
            tc.process_batch(3)


def test_fit_runs_at_the_scaled_lr():
    import dataclasses
    from reprolib import data
    from reprolib.core.train import fit
    tc = dataclasses.replace(get_config("pe", "smoke").vit_train, epochs=1, schedule="constant",
                             progress=False)
    d = data.get_data("digits", 32, tc.batch_size)
    res = fit(reprolib.create_model("vit_pe_test", num_classes=10), d, tc)
    assert res.history[0]["lr"] == pytest.approx(E.scaled_lr(tc, 1)) and tc.lr == 8e-3


@pytest.mark.parametrize("twin, pe_model, pe_kw", [
    ("vit_test_unshared", "vit_pe_test", {}),
    ("resnet_test_unshared", "resnet_pe_test", {"pe_stages": (1, 2, 3, 4)}),
])
def test_narrowed_twin_has_about_the_pe_models_parameters(twin, pe_model, pe_kw):
    from reprolib.experiments.pe import narrowed_kwargs

    with torch.device("meta"):
        target = count_params(reprolib.create_model(pe_model, num_classes=10, **pe_kw))
        full = count_params(reprolib.create_model(twin, num_classes=10))
    kw = narrowed_kwargs(twin, {}, target, 10)
    with torch.device("meta"):
        got = count_params(reprolib.create_model(twin, num_classes=10, **kw))
    assert got < full and abs(got - target) / target < 0.1
    assert set(kw) == ({"embed_dim"} if "vit" in twin else {"base"})


# ----------------------------------------------------------------------- the stage graph
@pytest.mark.parametrize("profile", profiles("pe"))
def test_every_stage_declares_its_reads_and_every_training_its_recipe_and_model(profile):
    g = E.PIPELINE.graph(get_config("pe", profile))
    assert [s.name for s in g.select("count")] == ["table1", "table2", "sharing"]
    for s in g:
        assert declared_reads(s) == [], s.name
        assert s.after == []                   # no stage reads another (a narrowed twin counts)
        assert s.resources.processes == 1
    for s in g.select("train"):
        assert s.train is not None and s.model_spec is not None, s.name
        assert s.model_spec.builder == s.tags["model"]
        assert s.model_spec.kwargs["num_classes"] == (1000 if profile in ("gpu", "paper") else 10)
        assert s.train.recipe_name == f"{s.tags['family']}_train"
        assert s.tags["kind"] in ("pe", "twin", "long", "narrow") and s.group == s.tags["run"]
    for s in g.select("count"):
        assert s.train is None and s.resources.gpus == 0


def test_graph_roles_and_tags_per_seed():
    cfg = get_config("pe", "evidence")
    g = E.PIPELINE.graph(cfg)
    assert len(g.select("train")) == 3 * 6
    for seed in (0, 1, 2):
        st = g.select("train", seed=seed)
        assert {s.tags["kind"] for s in st} == {"pe", "twin", "narrow"}
        assert all(s.name.endswith(f"-s{seed}") == (seed != cfg.seed) for s in st)
        narrow = g.get("train", family="vit", kind="narrow", seed=seed)
        assert narrow.tags["run"] == "vit_cifar_unshared-narrow"
        assert narrow.model_spec.note and narrow.config["narrow_to"]["model"] == "vit_pe_cifar"
    assert g.get("train", run="resnet50_pe_cifar-stages1234", seed=1).name == \
        "resnet50_pe_cifar-stages1234-s1"


def test_paper_graph_states_the_600_epoch_run():
    g = E.PIPELINE.graph(get_config("pe", "paper"))
    long_ = g.get("train", kind="long", seed=0)
    assert long_.name == "vit_pe_small-600ep" and long_.train.stated_key == "vit_train@600"
    assert long_.train.recipe.epochs == 600 and long_.train.recipe_name == "vit_train"
    assert E.PIPELINE.stated["vit_train@600"]["epochs"][0] == 600
    short = g.get("train", run="vit_pe_small", seed=0)
    assert short.train.stated_key == "vit_train" and short.train.recipe.epochs == 300
    assert short.model_spec.kwargs == {"num_classes": 1000, "drop_path_rate": 0.1}
    assert short.model_spec.input_size == (3, 224, 224)
    assert [s.tags["run"] for s in g.select("train", family="resnet", kind="pe")] == [
        "resnet50_pe-stages1234", "resnet50_pe-stages34"]
    assert E.PIPELINE.departures[("resnet_train", "epochs")].startswith("the paper does not")
