"""SiDT on detection end to end at the smoke profile, made small (16 generated training and
8 test images, one epoch per stage, one ratio): run -> tables -> figures -> summary, the
saved detectors reloaded (results in the test session's temporary folder)."""

import math

import pytest
import torch

import reprolib  # noqa: F401,I001  (installs the torchvision shim before timm)
from reprolib.configs import get_config
from reprolib.errors import ReprolibError
from reprolib.experiments import sidt_detection
from reprolib.core.measure import count_params
from reprolib.methods import sidt

# the module's pipeline run takes ~16 s on 2 cores (nbval runs the notebook at its smoke
# defaults in the default tier)
pytestmark = pytest.mark.slow

SMALL = {"train_images": 16, "val_images": 8, "train.epochs": 1, "ratios": (0.4,)}


@pytest.fixture(scope="module")
def cfg():
    c = get_config("sidt_detection", "smoke", **SMALL)
    sidt_detection.run(c)
    return c


def test_stages_and_records(cfg):
    st = sidt_detection.stages(cfg)
    assert [s.name for s in st] == ["train", "search", "finetune-p00", "finetune-p40",
                                    "reference"]
    assert all(s.done for s in st)
    first = {n: r["started"] for n, r in sidt_detection.run(cfg).items()}
    assert {n: r["started"] for n, r in sidt_detection.run(cfg).items()} == first   # cached
    g = sidt_detection.PIPELINE.graph(cfg)         # found by role and tags, not by name
    assert g.get("finetune", ratio=0.4) is g["finetune-p40"]
    assert g.get("reference").after == g.select("finetune")
    train, search, p00, p40, ref = (s.record() for s in st)
    assert search["config"]["after"] == {"train": train["run_id"]}
    assert p40["config"]["after"] == {"search": search["run_id"]}
    t = train["metrics"]
    assert t["epochs"] == 1 and t["train_images"] == 16 and t["test_images"] == 8
    for m in (t, t["untrained"], search["metrics"], p40["metrics"], p40["metrics"]["pruned_no_ft"]):
        assert all(0 <= m[k] <= 100 for k in sidt_detection.AP_KEYS)
    s = search["metrics"]
    assert s["n_scores"] == 8 * 32 + 2 * 4 * (32 + 64 + 128 + 256)   # head dims + MLP units
    # ratio 0 removes only the scores: the searched detector's parameters minus the scores
    assert s["params"] - s["n_scores"] == p00["metrics"]["params"]
    ident = p00["metrics"]["identity"]
    assert ident["same_detections"] and ident["images"] == 8
    assert ident["max_box_diff"] < 1e-2 and ident["max_score_diff"] < 1e-4
    m40 = p40["metrics"]
    assert m40["params"] < p00["metrics"]["params"] and m40["flops"] < p00["metrics"]["flops"]
    assert m40["backbone_params"] < p00["metrics"]["backbone_params"]
    assert m40["params"] - m40["backbone_params"] == \
        p00["metrics"]["params"] - p00["metrics"]["backbone_params"]     # heads unchanged
    rows = {(r["kind"], r["ratio"]): r for r in ref["metrics"]["rows"]}
    assert set(rows) == {("uniform", 0.0), ("uniform", 0.4), ("learned", 0.0), ("learned", 0.4)}
    assert rows[("uniform", 0.0)]["params"] == 85_629_804
    assert rows[("learned", 0.0)]["params"] == 85_629_804
    assert rows[("uniform", 0.4)]["params"] < 80e6


def test_saved_detectors_come_back(cfg):
    _, search, _, p40, _ = sidt_detection.stages(cfg)
    scored = search.model()
    assert sidt.scores(scored) and count_params(scored) == search.metrics()["params"]
    small = p40.model().eval()
    assert not sidt.scores(small) and count_params(small) == p40.metrics()["params"]
    assert sidt.arch(small.backbone.body)["attn_dims"] == p40.metrics()["attn_dims"]
    with torch.no_grad():
        out = small([torch.rand(3, 90, 70)])
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"}


def test_tables_figures_summary(cfg):
    tabs = sidt_detection.tables(cfg)
    assert list(tabs) == ["table2", "runs"]
    t2 = tabs["table2"]
    assert list(t2["PR"]) == ["0%", "40%"]
    assert t2["paper box mAP"].tolist() == [50.5, 49.2]
    assert t2["paper total (M)"].tolist() == [86, 74]
    assert t2["total params uniform (M)"].iloc[0] == 85.63
    assert t2["FLOPs uniform (G)"].iloc[0] == pytest.approx(745, abs=5)
    assert t2["Swin baseline FLOPs (G)"].iloc[0] == 745 and math.isnan(
        t2["Swin baseline FLOPs (G)"].iloc[1])
    runs = tabs["runs"]
    assert list(runs["stage"]) == ["untrained", "train", "search", "pruned, no FT",
                                   "fine-tuned", "pruned, no FT", "fine-tuned"]
    for df in tabs.values():
        cap = df.attrs["caption"]
        assert "profile=smoke" in cap and "[smoke run: not the paper's setting]" in cap
        assert "coco_shapes (generated shapes, not COCO)" in cap and "train=1 ep" in cap
    assert set(sidt_detection.figures(cfg)) == {"tradeoff"}
    text = sidt_detection.summary(cfg)
    assert "85.63 M parameters" in text and "same detections" in text
    assert "not COCO" in text and "1 epochs" in text


def test_bad_config_fails_before_any_work():
    with pytest.raises(ReprolibError, match=r"ratios\[1\]=1.5 must be in \[0, 1\)"):
        get_config("sidt_detection", "smoke", ratios=(0.2, 1.5))
    with pytest.raises(ReprolibError, match="dataset='digits' is not one of: coco, coco_shapes"):
        get_config("sidt_detection", "smoke", dataset="digits")
    with pytest.raises(ReprolibError, match="model='nope' is not a registered model"):
        get_config("sidt_detection", "smoke", model="nope")
    with pytest.raises(ReprolibError, match="flops_size=.* must be \\(H, W\\)"):
        get_config("sidt_detection", "smoke", flops_size=(800,))
    # a registered model that is not a detector: refused by the graph, before any stage
    with pytest.raises(ReprolibError, match="model='swin_t' is not a detector"):
        sidt_detection.stages(get_config("sidt_detection", "smoke", model="swin_t"))


def test_missing_coco_fails_before_any_work(tmp_path):
    c = get_config("sidt_detection", "paper", data_root=str(tmp_path / "nowhere"))
    with pytest.raises(ReprolibError, match="data set coco: .*train2017.*missing.*COCO's layout"):
        sidt_detection.run(c)
    assert not any(s.done for s in sidt_detection.stages(c))
    assert not (tmp_path / "nowhere").exists()


def test_cli_names_missing_coco_before_starting_a_kernel(tmp_path, capsys):
    from reprolib import cli

    rc = cli.main(["run", "sidt_detection", "--profile", "paper", "-p",
                   f"data_root={tmp_path / 'coco'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "data set coco:" in err and "annotations/instances_train2017.json" in err
    assert not (tmp_path / "coco").exists()
