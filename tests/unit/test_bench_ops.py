"""The bench's per-operator profile (reprolib.tools.bench.ops): the smoke families profile,
shares add up, a narrow model's matmuls cost less than a wide one's, bound_ops ranks by
excess milliseconds, bad names are one ReprolibError naming the valid ones."""

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

import reprolib  # noqa: F401  (before torchvision / timm: the compatibility shim)
from reprolib.errors import ReprolibError
from reprolib.tools.bench import ops

MATMULS = ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear")


pytestmark = pytest.mark.usefixtures("one_thread")


def _stack(width: int, depth: int = 4) -> nn.Module:
    layers = [nn.Linear(256, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


@pytest.mark.parametrize("group", ["sidt", "vtp"])
def test_smoke_family_profiles_with_dense_first_and_shares_summing_to_one(group):
    df = ops.family_profile("smoke", group, None, None, warmup=1, repeats=1)
    names = df.attrs["models"]
    assert names[0] == "dense" and len(names) >= 2
    assert df["op"].iloc[-1] == ops.OTHER
    assert df["dense share"].sum() == pytest.approx(1.0, abs=1e-6)
    for n in names:
        assert df[f"{n} ms"].sum() == pytest.approx(df.attrs["total_ms"][n])
    for n in names[1:]:
        assert f"{n} ratio" in df and 0 < df.attrs["flop_ratio"][n] < 1
    assert any(op.startswith("aten::") for op in df["op"])
    assert df.attrs["environment"]["torch"] == torch.__version__


def test_labels_select_cases_and_the_dense_parent_is_always_first():
    df = ops.family_profile("smoke", "vtp", ["VTP+SVD rt1"], 4, warmup=0, repeats=1)
    assert df.attrs["models"] == ["dense", "VTP+SVD rt1"]
    assert df.attrs["batch"] == 4


def test_a_narrow_linear_stack_spends_less_in_its_matmuls_than_a_wide_one():
    torch.manual_seed(0)
    df = ops.op_profile({"wide": _stack(512), "narrow": _stack(64)}, (256,), 64,
                        warmup=1, repeats=7, coverage=1.0, stat="median")
    mm = df[df["op"].isin(MATMULS)]
    assert len(mm), df["op"].tolist()
    # FLOPs fall ~40x; the matmul time must fall by far more than 2x (per-op medians: a
    # round another job preempts on this shared machine moves nothing)
    assert mm["narrow ms"].sum() < 0.5 * mm["wide ms"].sum()
    assert df["wide share"].sum() == pytest.approx(1.0, abs=1e-6)


class _Transpose(nn.Module):
    def forward(self, x):
        return x.t().contiguous() + 1


def test_copies_are_named_by_their_caller_and_python_time_has_its_row():
    df = ops.op_profile({"a": _Transpose(), "b": _Transpose()}, (64,), 64, warmup=1,
                        repeats=2, coverage=1.0)
    assert "aten::copy_ (in aten::clone)" in set(df["op"])
    assert ops.BETWEEN in set(df["op"])
    assert "aten::copy_" not in set(df["op"])


def _synthetic() -> pd.DataFrame:
    df = pd.DataFrame({"op": ["a", "b", "c", "d", ops.OTHER],
                       "dense ms": [10.0, 4.0, 1.0, 0.0, 0.5],
                       "small ms": [5.0, 4.0, 3.0, 1.0, 0.2]})
    df.attrs["models"] = ["dense", "small"]
    return df


def test_bound_ops_keeps_ops_shrinking_less_than_the_flops_ranked_by_excess_ms():
    out = ops.bound_ops(_synthetic(), "dense", "small", 0.5)
    # a: ratio 0.5, not above the FLOP ratio; other: 0.4
    assert [r["op"] for r in out] == ["c", "b", "d"]
    assert out[0]["excess_ms"] == pytest.approx(3.0 - 0.5 * 1.0)
    assert out[1]["ratio"] == pytest.approx(1.0)
    assert math.isinf(out[2]["ratio"])


def test_bound_ops_unknown_model_names_the_valid_ones():
    with pytest.raises(ReprolibError, match="valid models: dense, small"):
        ops.bound_ops(_synthetic(), "dense", "tiny", 0.5)
    with pytest.raises(ReprolibError, match="flop_ratio"):
        ops.bound_ops(_synthetic(), "dense", "small", 0)


@pytest.mark.parametrize("group, match", [
    ("nope", r"unknown benchmark family group 'nope'; valid groups: sidt, pe, vtp"),
    ("fit", r"unknown benchmark family group 'fit'; valid groups: .*\(or a family: "
            r"sidt-swin_tiny_test"),
    ("pe", r"has 2 families; name one: pe-"),
])
def test_unknown_or_ambiguous_group_names_the_valid_ones(group, match):
    with pytest.raises(ReprolibError, match=match):
        ops.family_profile("smoke", group, None, None)


def test_unknown_label_names_the_family_labels():
    with pytest.raises(ReprolibError, match=r"unknown case 'SiDT 99% rt1'.*SiDT 40% rt1"):
        ops.family_profile("smoke", "sidt", ["SiDT 99% rt1"], None)


def test_op_profile_rejects_no_models_and_bad_counts():
    with pytest.raises(ReprolibError, match="models is empty"):
        ops.op_profile({}, (4,), 2)
    with pytest.raises(ReprolibError, match="repeats"):
        ops.op_profile({"m": nn.Linear(4, 4)}, (4,), 2, repeats=0)
    with pytest.raises(ReprolibError, match="valid statistics: mean, median"):
        ops.op_profile({"m": nn.Linear(4, 4)}, (4,), 2, stat="max")


def test_main_writes_the_table_with_its_provenance(tmp_path, capsys):
    out = tmp_path / "ops.md"
    rc = ops.main(["--profile", "smoke", "--group", "vtp", "--labels", "dense,VTP+SVD rt1",
                   "--batch", "4", "--warmup", "0", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    for s in ("# Per-operator profile", "threads=", f"torch {torch.__version__}", "batch=4",
              "repeats=1", "loadavg at start", "| op |", "| total |", "VTP+SVD rt1 ratio",
              "Which operators bound the speedup", "**VTP+SVD rt1**: FLOP ratio"):
        assert s in text, s
    assert not list(tmp_path.glob(".*.tmp"))
    assert ops.main(["--profile", "smoke", "--group", "nope", "--out", str(out)]) == 2
    assert "valid groups" in capsys.readouterr().err


def test_the_bench_keeps_op_profiles_as_records_and_writes_them(tmp_path, monkeypatch):
    """``op_profiles``: one ``ops`` stage per (group, labels), a record like any other, and
    ``write_outputs`` renders it as ``ops-<group>-<profile>.md`` from the record alone."""
    from reprolib.tools import bench

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path / "figures"))
    cfg = bench.get_config("smoke", groups=("vtp",), vtp_methods=("svd",), round_to=(1,),
                           repeats=1, large_repeats=1, train_repeats=1, warmup=1, threads=1,
                           vtp_batch=4, vtp_train_batch=4,
                           op_profiles=(("vtp", ("dense", "VTP+SVD rt1")),))
    recs = bench.run(cfg, log=lambda s: None)
    ops_rec = recs["ops-vtp-test_vit_cifar-p4"]["metrics"]
    assert ops_rec["labels"] == ["dense", "VTP+SVD rt1"] and ops_rec["rows"]
    names = {p.name for p in bench.write_outputs(cfg)}
    assert "ops-vtp-smoke.md" in names
    text = (tmp_path / "figures" / "bench" / "ops-vtp-smoke.md").read_text()
    assert "stage ops-vtp-test_vit_cifar-p4" in text and "VTP+SVD rt1" in text
    assert "Which operators bound the speedup" in text
