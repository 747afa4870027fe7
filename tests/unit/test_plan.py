"""`reprolib plan`: every paper x profile resolves in seconds, needs no data, trains nothing,
and shows the paper's values with departures marked (issue 16)."""

import time

import pytest

from reprolib.cli import main
from reprolib.configs import papers, profiles
from reprolib.errors import ReprolibError
from reprolib.tools.plan import format_plan, plan

CASES = [(p, pr) for p in papers() for pr in profiles(p)]


@pytest.mark.parametrize("paper,profile", CASES)
def test_plan_every_paper_and_profile(paper, profile, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    t0 = time.perf_counter()
    p = plan(paper, profile, nproc=2)
    text = format_plan(p)
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "results").exists()            # nothing written
    if not p["stages"]:   # only a graph without training stages (overview, bench) plans none
        from reprolib.configs import get_config
        from reprolib.experiments import get_experiment
        g = get_experiment(paper).graph(get_config(paper, profile))
        assert not any(s.trains for s in g) and "trains nothing" in text
    for s in p["stages"]:
        f = {x["field"]: x for x in s["fields"]}
        for k in ("model", "params / FLOPs", "dataset", "data present", "global_batch",
                  "batch per process", "optimizer", "lr", "schedule", "warmup_epochs",
                  "epochs", "steps", "augmentation", "label_smoothing", "mixup", "cutmix",
                  "checkpoints", "estimated GPU-hours"):
            assert k in f, (paper, profile, s["name"], k)
        for x in s["fields"]:
            assert not x["departs"] or x["reason"], (paper, profile, s["name"], x)
    assert f"plan: {paper} --profile {profile} --nproc 2" in text


def test_pe_paper_under_8_processes_is_deits_global_batch():
    p = plan("pe", "paper", nproc=8)
    names = [s["name"] for s in p["stages"]]
    assert names[:3] == ["vit_pe_small", "vit_small", "vit_pe_small-600ep"]
    f = {x["field"]: x for x in p["stages"][0]["fields"]}
    assert f["global_batch"]["value"] == "1024" and not f["global_batch"]["departs"]
    assert f["batch per process"]["value"].startswith("128 x 8")
    assert float(f["lr"]["value"]) == pytest.approx(1e-3) and not f["lr"]["departs"]
    assert f["params / FLOPs"]["value"].startswith("11.43 M / 4.60 GFLOPs")
    assert "RandAugment rand-m9-mstd0.5-inc1" in f["augmentation"]["value"]
    assert "repeated aug x3" in f["augmentation"]["value"]
    assert "data_root" in f["data present"]["value"]          # ImageNet not here: said
    long = {x["field"]: x for x in p["stages"][2]["fields"]}
    assert long["epochs"]["value"] == "600" and long["epochs"]["paper"] == "600"
    res = {x["field"]: x for x in p["stages"][3]["fields"]}
    assert res["batch per process"]["value"].startswith("32 x 8") and res["lr"]["value"] == "0.1"
    assert not any(x["departs"] for s in p["stages"] for x in s["fields"])


def test_departures_are_marked_with_their_reason():
    # a per-process recipe under 2 processes doubles the paper's global batch: marked
    t = {x["field"]: x for x in plan("templates", "paper", nproc=2)["stages"][0]["fields"]}
    assert t["global_batch"]["departs"] and "per-process" in t["global_batch"]["reason"]
    # an override off the paper's value is marked, and a smaller profile says why
    st = {x["name"]: x for x in plan("sidt", "paper", **{"search.lr": 1e-3})["stages"]}
    s = {x["field"]: x for x in st["search"]["fields"]}
    assert s["lr"]["departs"] and s["lr"]["paper"] == "0.00025"
    c = {x["field"]: x for x in plan("sidt", "cpu")["stages"][0]["fields"]}
    assert c["epochs"]["departs"] and "cpu profile" in c["epochs"]["reason"]
    # VTP: the released model departs from the text's geometry; the text variant does not
    v = {x["field"]: x for x in plan("vtp_svd", "paper")["stages"][0]["fields"]}
    assert v["model"]["departs"] and "vit_cifar_text" in v["model"]["reason"]
    v2 = {x["field"]: x for x in
          plan("vtp_svd", "paper", model="vit_cifar_text")["stages"][0]["fields"]}
    assert not v2["model"]["departs"]


def test_metaformer_paper_selects_on_flowers_val():
    p = plan("metaformer_nas", "paper")
    r = {x["field"]: x for x in p["stages"][-1]["fields"]}
    assert r["select_every"]["value"] == "10" and not r["select_every"]["departs"]
    assert r["dataset"]["value"] == "flowers102" and r["image_size"]["value"] == "224"
    assert r["steps"]["value"].startswith("7 / epoch")        # 1,020 train images / 128
    g = {x["field"]: x for x in plan("metaformer_nas", "gpu")["stages"][-1]["fields"]}
    assert g["dataset"]["value"] == "flowers102" and g["image_size"]["value"] == "224"


def test_gpu_hours_from_a_bench_record(tmp_path, monkeypatch):
    import json
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    d = tmp_path / "bench" / "gpu"
    d.mkdir(parents=True)
    rec = {"config": {"family": {"input_size": [3, 224, 224],
                                 "cases": [{"model": "swin_t", "method": "dense"}]}},
           "metrics": {"train_batch": 100, "device_name": "NVIDIA H100",
                       "rows": [{"label": "dense", "train_ms": 360.0}]}}
    (d / "sidt-swin_t-fp32-abc.json").write_text(json.dumps(rec))
    p = plan("sidt", "paper")
    f = {x["field"]: x for x in p["stages"][0]["fields"]}
    # 3.6 ms / image x 50,000 images x 160 epochs = 8 h
    assert f["estimated GPU-hours"]["value"].startswith("8.0 device-hours on NVIDIA H100")
    assert p["hours_known"] and p["total_hours"] == pytest.approx(8.0 * 7)   # baseline + search + 5 tunes


def test_plan_cli(capsys):
    assert main(["plan", "sidt", "--profile", "paper", "--nproc", "8"]) == 0
    out = capsys.readouterr().out
    assert "batch per process    32 x 8" in out and "27.60 M / 4.49 GFLOPs" in out
    assert main(["plan", "nope"]) == 2
    assert "valid papers" in capsys.readouterr().err
    assert main(["plan", "templates", "--profile", "paper", "--nproc", "2", "--brief"]) == 0
    out = capsys.readouterr().out
    assert "1 departing; ≠ global_batch 128 (paper 64)" in out and len(out.splitlines()) < 60
    assert main(["plan", "pe", "--profile", "paper", "--nproc", "3"]) == 2   # 1024 / 3
    assert "does not split" in capsys.readouterr().err
    with pytest.raises(ReprolibError):
        plan("pe", "paper", nproc=0)
