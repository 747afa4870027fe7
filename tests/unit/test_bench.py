"""Issue 17: the benchmark harness, hardware-aligned widths (round_to), the decomposition
break-even, fit without per-step synchronisation, no hard-coded thread counts."""

import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import reprolib
from reprolib import cli, data
from reprolib.tools import bench
from reprolib.errors import ReprolibError
from reprolib.methods import decompose, round_width, sidt, vtp
from reprolib.core.train import PROGRESS_EVERY, TrainConfig, evaluate, fit


pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(256, width), nn.ReLU(), nn.Linear(width, 10))


# --------------------------------------------------------------------------- speedup()


def test_speedup_reports_the_ratios_and_their_quotient():
    r = bench.speedup(_mlp(512), _mlp(128), input_size=(256,), batch_size=4, repeats=3,
                      warmup=1)
    for k in ("flop_ratio", "latency_ratio", "efficiency", "dense_ms", "compressed_ms",
              "threads", "torch", "device_name"):
        assert k in r
    assert r["flop_ratio"] == pytest.approx((256 * 128 + 128 * 10) / (256 * 512 + 512 * 10))
    assert r["latency_ratio"] == pytest.approx(r["compressed_ms"] / r["dense_ms"])
    assert r["efficiency"] == pytest.approx(r["flop_ratio"] / r["latency_ratio"])
    assert r["speedup"] == pytest.approx(1 / r["latency_ratio"])
    assert r["threads"] == 1 and r["precision"] == "fp32" and r["batch_size"] == 4


def test_a_physically_smaller_model_is_measurably_faster():
    """16x fewer multiply-adds at batch 256: at least 3x faster (a generous margin)."""
    r = bench.speedup(_mlp(4096), _mlp(256), input_size=(256,), batch_size=256, repeats=5,
                      warmup=1)
    assert r["flop_ratio"] < 0.07
    assert r["speedup"] > 3, r


def test_training_mode_times_a_step():
    r = bench.speedup(_mlp(64), _mlp(32), input_size=(256,), batch_size=8, repeats=2,
                      warmup=1, train=True)
    assert r["mode"] == "train" and r["dense_ms"] > 0 and r["compressed_ms"] > 0


def test_the_bench_times_with_measure():
    """One timing implementation: the bench's is ``reprolib.measure.interleaved`` (its
    rotation and naming are tested in test_measure.py); records keep their metric names."""
    from reprolib.core import measure

    assert bench.interleaved is measure.interleaved and bench.time_call is measure.time_call
    res = bench.time_models({"a": _mlp(8), "b": _mlp(4)}, (256,), 2, "cpu", warmup=1,
                            repeats=3, mode="train")
    assert set(res["a"]) == {"ms", "ms_iqr", "times_ms", "images_per_s"}
    r = bench.speedup(_mlp(8), _mlp(4), input_size=(256,), batch_size=2, repeats=2, warmup=0)
    assert r["dense_iqr_ms"] >= 0 and r["compressed_iqr_ms"] >= 0


def test_bad_settings_are_clear_errors():
    with pytest.raises(ReprolibError, match="unknown precision 'fp8'"):
        bench.parse_variant("fp8")
    with pytest.raises(ReprolibError, match="unknown variant option 'nhwc'"):
        bench.parse_variant("bf16+nhwc")
    with pytest.raises(ReprolibError, match="unknown benchmark key 'sidt_ratio'"):
        bench.get_config("smoke", sidt_ratio=(0.4,))
    with pytest.raises(ReprolibError, match="unknown benchmark group 'swin'"):
        bench.get_config("smoke", groups=("swin",))
    with pytest.raises(ReprolibError, match="unknown benchmark profile 'huge'"):
        bench.get_config("huge")
    with pytest.raises(ReprolibError, match="batch_size=0"):
        bench.speedup(_mlp(8), _mlp(8), input_size=(256,), batch_size=0)


# --------------------------------------------------------------------------- round_to


def test_round_width():
    assert [round_width(k, 64, 8) for k in (1, 3, 4, 12, 13, 60, 63, 64)] == \
        [8, 8, 8, 16, 16, 64, 64, 64]
    assert round_width(5, 6, 8) == 6                  # never above the unpruned width
    assert round_width(37, 100, 1) == 37
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ReprolibError, match="round_to"):
            round_width(3, 8, bad)


def _scored_swin():
    torch.manual_seed(0)
    m = sidt.attach_scores(reprolib.create_model("swin_t", num_classes=10))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a in sidt.scores(m).values():
            a.copy_(torch.rand(a.shape, generator=g))
    return m


def test_sidt_round_to_gives_aligned_widths_and_keeps_the_largest_scores():
    m = _scored_swin()
    for scope in ("global", "layer"):
        a1 = sidt.arch(sidt.prune(m, 0.4, scope))
        a8 = sidt.arch(sidt.prune(m, 0.4, scope, round_to=8))
        assert any(v % 8 for v in [*a1["attn_dims"].values(), *a1["mlp_dims"].values()])
        assert all(v % 8 == 0 for v in [*a8["attn_dims"].values(), *a8["mlp_dims"].values()])
        for n in a1["attn_dims"]:                     # nearest multiple of 8
            assert abs(a8["attn_dims"][n] - a1["attn_dims"][n]) <= 4
    keep = sidt.keep_indices(m, 0.4, "layer", round_to=8)
    s = sidt.scores(m)
    for n, idx in keep.items():                      # the kept set is the top-|alpha| set
        top = torch.sort(s[n].detach().abs(), descending=True).indices[:len(idx)]
        assert set(idx.tolist()) == set(top.tolist())
    assert sidt.prune(m, 0.4, round_to=8).reprolib_spec["arch"][-1]["round_to"] == 8
    with pytest.raises(ReprolibError, match="round_to"):
        sidt.prune(m, 0.4, round_to=0)


def test_vtp_round_to_aligned_and_pruned_equals_masked():
    torch.manual_seed(0)
    m = vtp.attach_scores(reprolib.create_model("vit_cifar_small", patch_size=4))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for a in vtp.score_parameters(m):
            a.copy_(torch.rand(a.shape, generator=g) + 0.1)
    small = vtp.prune(m, 0.5, round_to=8)
    dims = [(b.attn.head_dim, b.mlp.fc1.out_features) for b in small.blocks]
    assert all(hd % 8 == 0 and hid % 8 == 0 for hd, hid in dims), dims
    x = torch.randn(2, 3, 32, 32)
    m.eval(), small.eval()
    masked = vtp.mask(m, 0.5, round_to=8).eval()
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-5)
    assert vtp.plan(m, 0.5, round_to=8).round_to == 8


def test_decompose_round_to_and_the_break_even():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("square", nn.Linear(64, 64))    # rank 32 of 64x64: 32*128 = 64*64
    model.add_module("thin", nn.Linear(64, 20))      # rank 10: 10*84 < 20*64
    with pytest.warns(UserWarning, match=r"left 1 layer\(s\) dense.*square"):
        new = decompose.decompose_model(model, "svd", 0.5, layers=("*",))
    assert decompose.current_ranks(new) == {"thin": 10}
    kd = decompose.kept_dense(new)
    assert list(kd) == ["square"] and kd["square"]["factored_macs"] >= kd["square"]["dense_macs"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new8 = decompose.decompose_model(model, "svd", 0.35, layers=("*",), round_to=8)
    assert decompose.current_ranks(new8) == {"square": 24, "thin": 8}   # 22 -> 24, 7 -> 8
    assert decompose.kept_dense(new8) == {}
    vit = vtp.prune(reprolib.create_model("test_vit_cifar"), 0.0)
    with pytest.warns(UserWarning):
        full = decompose.decompose_model(vit, "qr", 1.0)
    assert decompose.current_ranks(full) == {}
    assert full.reprolib_spec["arch"][-1]["kept_dense"] == sorted(decompose.kept_dense(full))


# --------------------------------------------------------------------------- fit


def _count_item(monkeypatch) -> list:
    calls = []
    orig = torch.Tensor.item

    def item(self):
        calls.append(1)
        return orig(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    return calls


def test_fit_reads_nothing_back_per_step(monkeypatch):
    """Loss and accuracy accumulate on the device: no .item() in an epoch without a bar, one
    every PROGRESS_EVERY steps with one."""
    d = data.get_data("digits", 16, 16)
    steps = len(d.train)
    assert steps > 2 * PROGRESS_EVERY
    calls = _count_item(monkeypatch)
    torch.manual_seed(0)
    res = fit(reprolib.create_model("test_small_cnn"), d,
              TrainConfig(epochs=1, lr=0.05, progress=False))
    assert calls == [] and res.acc > 10 and res.history[0]["train_loss"] > 0
    for var in ("CI", "NBVAL", "REPROLIB_NO_PROGRESS"):
        monkeypatch.delenv(var, raising=False)
    fit(reprolib.create_model("test_small_cnn"), d, TrainConfig(epochs=1, lr=0.05))
    assert len(calls) == steps // PROGRESS_EVERY


def test_fit_metrics_equal_a_host_side_count():
    torch.manual_seed(0)
    d = data.get_data("digits", 16, 64)
    model = reprolib.create_model("test_small_cnn")
    ev = evaluate(model, d.test, "cpu")
    correct = total = loss = 0.0
    model.eval()
    with torch.no_grad():
        for x, y in d.test:
            out = model(x)
            loss += torch.nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += len(y)
    assert ev["acc"] == pytest.approx(100 * correct / total)
    assert ev["loss"] == pytest.approx(loss / total, rel=1e-6)


def test_no_hard_coded_thread_counts():
    """Threads follow the machine or an explicit option: only the benchmark's ``threads``
    setting and a local launch's share of the cores (``cpus // --jobs``, passed to its
    workers as REPROLIB_LAUNCH_THREADS) call torch.set_num_threads."""
    pkg = Path(reprolib.__file__).parent
    hits = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                  if "set_num_threads(" in p.read_text())
    assert hits == ["tools/bench/graph.py", "tools/launch/worker.py"], hits
    assert re.search(r'threads = os\.environ\.get\("REPROLIB_LAUNCH_THREADS"\)\n\s+if threads:',
                     (pkg / "tools" / "launch" / "worker.py").read_text())
    assert re.search(r"if cfg\.threads:\n\s+torch\.set_num_threads\(cfg\.threads\)",
                     (pkg / "tools" / "bench" / "graph.py").read_text())


# --------------------------------------------------------------------------- the harness


def _tiny(**over):
    base = dict(groups=("vtp", "fit"), repeats=2, large_repeats=1, train_repeats=1, warmup=1,
                vtp_batch=4, vtp_train_batch=4, fit_images=128, fit_batch=64, fit_repeats=1)
    return bench.get_config("smoke", **{**base, **over})


def test_the_config_is_registered_like_a_papers():
    from reprolib import configs
    from reprolib.experiments import names

    assert bench.get_config("cpu", repeats=5) == configs.get_config("bench", "cpu", repeats=5)
    assert configs.get_paper("bench").notebook is False and "bench" not in names()
    assert bench.get_config("gpu").variants[-1] == "bf16+cl+compile"
    with pytest.raises(ReprolibError, match=r"sidt_ratios=\(0.4, 1.0\)"):
        bench.get_config("smoke", sidt_ratios=(0.4, 1.0))
    with pytest.raises(ReprolibError, match="round_to"):
        bench.get_config("smoke", round_to=(0,))


def test_families_come_from_the_papers_pipelines():
    """Each paper's family is its pipeline's ``bench_families`` (built with its examples
    module); the bench adds only its own fit stages; the families are stages of a graph."""
    from reprolib.experiments import pipelines
    from reprolib.tools.graph import graph_rows

    cfg = bench.get_config("smoke")
    own = {p.name: [f["name"] for f in p.bench_families(cfg)] for p in pipelines().values()}
    assert own["sidt"] == ["sidt-swin_tiny_test"] and own["vtp_svd"] == ["vtp-test_vit_cifar-p4"]
    assert own["metaformer_nas"] == ["metaformer-test_metaformer"] and not own["quickstart"]
    assert [f["name"] for f in bench.families(cfg)] == [n for ns in own.values() for n in ns]
    g = bench.PIPELINE.graph(cfg)
    assert [s.name for s in g.select("fit")] == ["fit-test_small_cnn-fp32"]
    assert g.get("family", family="sidt-swin_tiny_test").tags["group"] == "sidt"
    rows = graph_rows("bench", "smoke")
    assert len(rows) == len(g) and {r["role"] for r in rows} == {"family", "fit"}
    # a family's builders are not part of its key (the key is the data)
    fam = next(f for f in bench.families(cfg) if f["group"] == "sidt")
    st = g.get("family", family=fam["name"])
    assert set(st.config["family"]) == set(bench.FAMILY_KEYS) and callable(fam["build"])
    from reprolib.core.measure import count_params

    dense, pruned = (bench.build_case(c, 0, fam) for c in fam["cases"][:2])
    assert count_params(pruned) < count_params(dense)


def test_families_are_data_with_the_dense_parent_first():
    cfg = bench.get_config("cpu")
    fams = {f["name"]: f for f in bench.families(cfg)}
    assert set(fams) >= {"sidt-swin_t", "vtp-vit_cifar-p4", "pe-vit_small", "pe-resnet50",
                         "metaformer-metaformer_s12", "templates-vgg19_cifar"}
    sidt_f = fams["sidt-swin_t"]
    assert sidt_f["input_size"] == [3, 224, 224] and sidt_f["cases"][0]["method"] == "dense"
    ours = [c for c in sidt_f["cases"] if c["method"] != "Torch-Pruning"]
    assert len(ours) == 1 + 4 * 2                                # 4 ratios x round_to 1, 8
    # the peer: Torch-Pruning uniform and global at each of our 8 models' FLOPs
    assert len(sidt_f["cases"]) == len(ours) + 8 * 2
    vtp_f = fams["vtp-vit_cifar-p4"]
    assert [c["label"] for c in vtp_f["cases"]][:3] == ["dense", "VTP 50% rt1", "VTP 50% rt8"]
    assert {c.get("decompose") for c in vtp_f["cases"]} == {None, "svd", "qr", "lu"}
    # peers at VTP's and VTP+SVD's FLOPs (QR / LU have SVD's shapes), x round_to 1, 8 x 2 scopes
    assert sum(c["method"] == "Torch-Pruning" for c in vtp_f["cases"]) == 2 * 2 * 2
    none = bench.get_config("cpu", peer_scopes=())
    assert all(c["method"] != "Torch-Pruning" for f in bench.families(none) for c in f["cases"])
    assert len(fams["templates-resnet50_cifar"]["cases"]) == 5


def test_bench_pipeline_records_table_csv_figure_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path / "figures"))
    cfg = _tiny()
    logs = []
    recs = bench.run(cfg, log=logs.append)
    assert set(recs) == {"vtp-test_vit_cifar-p4-fp32", "fit-test_small_cnn-fp32"}
    rec = recs["vtp-test_vit_cifar-p4-fp32"]
    m = rec["metrics"]
    for k in ("device_name", "threads", "torch", "cuda", "precision", "batch_large",
              "train_batch"):
        assert k in m
    assert m["threads"] == 1 and m["precision"] == "fp32" and rec["versions"]["torch"]
    saved = list((tmp_path / "results" / "bench" / "smoke").glob("*.json"))
    assert len(saved) == 2
    assert bench.run(cfg, log=logs.append) and all("cached" in x for x in logs[2:])

    df = bench.table(cfg)
    assert list(df["model"]) == ["VTP 50% rt1", "VTP 50% rt8", "VTP+SVD rt1", "VTP+SVD rt8"]
    for k in ("b1", "large", "train"):
        assert (df[f"{k} efficiency"] - df[f"{k} speedup"] * df["FLOP ratio"]).abs().max() < 1e-9
    assert (df["FLOP ratio"] < 1).all()
    assert df["target"].str.startswith(">= 0.8 at batch 4").sum() == 2

    paths = bench.write_outputs(cfg)
    names = {p.name for p in paths}
    csv = [n for n in names if n.endswith(".csv") and n.startswith("benchmark-")]
    assert csv and re.match(r"benchmark-fp32-nchw-pt\d+-cpu-.+-smoke\.csv", csv[0])
    assert {"speedup-smoke.md", "speedup_vs_flops-smoke.png", "fit_loops-smoke.md"} <= names
    s = bench.summary(cfg)
    assert "VTP 50% rt8" in s and "x a bare PyTorch loop" in s and "code-book loop" in s

    fit_rec = recs["fit-test_small_cnn-fp32"]["metrics"]
    for k in ("fit_images_per_s", "bare_images_per_s", "codebook_images_per_s"):
        assert fit_rec[k] > 0
    assert fit_rec["fit_vs_bare"] == pytest.approx(
        fit_rec["fit_images_per_s"] / fit_rec["bare_images_per_s"])


def test_readme_performance_section_only_with_records(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    assert bench.readme_section() == ""


def test_cli_bench(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "--profile" in out and "smoke | cpu | gpu" in out
    assert cli.main(["bench", "--only", "nothing"]) == 2
    assert "unknown benchmark group 'nothing'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["bench", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
