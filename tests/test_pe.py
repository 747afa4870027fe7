"""PE (row / column space layers): tied weights, identities with untied layers, closed-form
counts, the sharing rule, recipes."""

import pytest
import torch
import torch.nn as nn

import reprolib  # noqa: I001  (installs the torchvision shim before timm)
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torchvision.models.resnet import Bottleneck

from reprolib.configs import get_config
from reprolib.errors import ReprolibError
from reprolib.measure import count_flops, count_params
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


# ----------------------------------------------------------------------- tables, recipes
def test_count_table_measures_baselines_beside_paper():
    from reprolib.configs.pe import PAPER_TABLE1
    src = {k: M.TABLE1_SOURCES[k] for k in ("DeiT-T/16", "ViT-PE¹ (ours)", "PVT-T")}
    rows = {r["model"]: r for r in M.count_table(src, PAPER_TABLE1)}
    assert round(rows["DeiT-T/16"]["params_M"], 1) == 5.7
    assert round(rows["DeiT-T/16"]["GFLOPs"], 1) == 1.3
    assert rows["ViT-PE¹ (ours)"]["params_M"] == pytest.approx(11.433832)
    assert rows["PVT-T"]["params_M"] is None and rows["PVT-T"]["paper_params_M"] == 13.2


def test_recipes_map_onto_trainconfig():
    paper = get_config("pe", "paper")
    tc = M.train_config(paper, "vit")
    assert tc.optimizer == "adamw" and tc.lr == pytest.approx(5e-4 * 1024 / 512)
    assert (tc.weight_decay, tc.mixup, tc.cutmix, tc.label_smoothing) == (0.05, 0.8, 1.0, 0.1)
    assert tc.warmup_epochs == 5 and tc.schedule == "cosine" and tc.epochs == 300
    assert tc.lr * tc.warmup_start == pytest.approx(1e-6)
    rc = M.train_config(paper, "resnet")
    assert (rc.optimizer, rc.lr, rc.weight_decay, rc.warmup_epochs) == ("sgd", 0.1, 1e-4, 5)
    assert [r["name"] for r in M.training_runs(paper)] == [
        "vit_pe_small", "vit_small", "resnet50_pe-stages1234", "resnet50_pe-stages34", "resnet50"]
    assert M.training_runs(paper)[3]["kwargs"] == {"pe_stages": (3, 4)}
    with pytest.raises(ReprolibError):
        get_config("pe", "smoke", vit_lr=1.0)


def test_smoke_training_one_epoch():
    cfg = get_config("pe", "smoke", vit_epochs=1)
    out = M.train_model(cfg, "vit_pe_test")
    assert out["epochs"] == 1 and 0 <= out["acc"] <= 100
    assert out["params"] == count_params(reprolib.create_model("vit_pe_test"))


def test_main_records_training_run(tmp_path, monkeypatch, capsys):
    from reprolib.results import load_results
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    M.main(["--profile", "smoke", "-p", "vit_epochs=1", "-p", "vit_twin="])
    df = load_results("pe", "smoke", root=tmp_path)
    assert list(df["name"]) == ["vit_pe_test"] and int(df["params"][0]) == 20_266
    assert "vit_pe_test: top-1" in capsys.readouterr().out
    tr = M.training_frame(df)
    assert list(tr.columns) == ["run", "params", "flops", "epochs", "top1", "train_time_s", "data"]
