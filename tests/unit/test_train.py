"""fit: schedules, hooks, exact resume after a kill, corrupt checkpoints, DDP on CPU (gloo)."""

import math
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import reprolib
from reprolib import data
from reprolib.errors import ReprolibError
from reprolib.core.train import TrainConfig, fit, lr_factor

SCRIPT = textwrap.dedent("""
    import sys, torch, reprolib
    from reprolib import data
    from reprolib.core import train
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = reprolib.create_model("test_small_cnn")
    d = data.get_data("digits", 16, 64, seed=1)
    cfg = train.TrainConfig(epochs=4, lr=0.05, optimizer="sgd", schedule="cosine",
                            warmup_epochs=1, seed=1, progress=False)
    res = train.fit(model, d, cfg, ckpt_dir=sys.argv[1])
    torch.save({"state": model.state_dict(), "history": res.history}, sys.argv[2])
""")


def test_schedules():
    cos = TrainConfig(epochs=10, lr=1.0, schedule="cosine", warmup_epochs=2, warmup_start=0.1)
    assert lr_factor(cos, 0, 10) == pytest.approx(0.1)
    assert lr_factor(cos, 10, 10) == pytest.approx(0.55)       # half-way through warmup
    assert lr_factor(cos, 20, 10) == pytest.approx(1.0)        # peak after warmup
    assert lr_factor(cos, 60, 10) == pytest.approx(0.5)        # cosine mid-point
    ms = TrainConfig(epochs=160, lr=0.1, schedule="multistep", milestones=(80, 120))
    assert [lr_factor(ms, e * 5, 5) for e in (0, 79, 80, 119, 120)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01])
    st = TrainConfig(epochs=9, schedule="step", step_size=3, lr_decay=0.5)
    assert lr_factor(st, 7, 1) == pytest.approx(0.25)
    with pytest.raises(ReprolibError, match="optimizer='lamb' is not one of: sgd, adam, adamw"):
        TrainConfig(optimizer="lamb")


def test_fit_learns_and_calls_hooks():
    torch.manual_seed(0)
    model = reprolib.create_model("test_small_cnn")
    d = data.get_data("digits", 16, 64)
    calls = {"extra": 0, "grad": 0}

    def extra(m):
        calls["extra"] += 1
        return 1e-4 * sum(p.abs().sum() for p in m.parameters())

    def hook(m):
        calls["grad"] += 1
        assert all(p.grad is not None for p in m.parameters())

    res = fit(model, d, TrainConfig(epochs=3, lr=0.05, progress=False), extra_loss=extra,
              grad_hook=hook)
    assert calls["extra"] == calls["grad"] == 3 * len(d.train)
    assert res.epochs == 3 and res.acc > 30  # 10 classes: chance is 10 %
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_mixup_and_label_smoothing_run():
    model = reprolib.create_model("test_small_cnn")
    d = data.get_data("digits", 16, 63)  # odd batch: mixup drops one sample
    res = fit(model, d, TrainConfig(epochs=1, lr=0.01, optimizer="adamw", weight_decay=0.05,
                                    mixup=0.8, cutmix=1.0, label_smoothing=0.1, clip_grad=1.0,
                                    progress=False))
    assert math.isfinite(res.history[0]["train_loss"]) and "train_acc" not in res.history[0]


@pytest.mark.slow          # ~13 s on 2 cores: two subprocesses, one killed mid-training
def test_resume_after_kill_gives_the_same_model(tmp_path):
    """Kill a run with SIGKILL after its 2nd epoch's checkpoint, restart it, compare with an
    uninterrupted run: weights and history are identical."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), str(tmp_path / "a.pt")],
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]

    ck = tmp_path / "b" / "last.pt"
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "b"), str(tmp_path / "b.pt")])
    deadline = time.time() + 300
    while time.time() < deadline:
        if ck.exists() and torch.load(ck, weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = torch.load(ck, weights_only=True)["epoch"]
    assert 2 <= killed_at < 4 and not (tmp_path / "b.pt").exists()
    again = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), str(tmp_path / "b.pt")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    strip = [{k: v for k, v in h.items() if k != "time_s"} for h in a["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "time_s"} for h in b["history"]]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ReprolibError, match="checkpoint .*last.pt is corrupt"):
        fit(reprolib.create_model("test_small_cnn"), data.get_data("digits", 16, 64),
            TrainConfig(epochs=1, progress=False), ckpt_dir=tmp_path)


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, reprolib
    from reprolib import data
    from reprolib.core import device, train
    torch.set_num_threads(1)
    rank, world = device.init_distributed()          # gloo on CPU, from torchrun's variables
    torch.manual_seed(0)
    model = reprolib.create_model("test_small_cnn")
    d = data.get_data("digits", 16, 32, seed=0)     # shards by rank
    res = train.fit(model, d, train.TrainConfig(epochs=2, lr=0.05, progress=False), device="cpu")
    torch.save({"state": model.state_dict(), "acc": res.acc, "world": world,
                "n_test": sum(len(y) for _, y in d.test),
                "n_train": sum(len(y) for _, y in d.train)}, f"{sys.argv[1]}/rank{rank}.pt")
    torch.distributed.destroy_process_group()
""")


def test_ddp_two_processes_gloo_via_torchrun(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world"] == 2
    assert r0["n_test"] == r1["n_test"] == 180           # each rank reads half the test set
    assert r0["n_train"] + r1["n_train"] <= 1437
    assert r0["acc"] == r1["acc"]                          # metrics all-reduced
    assert abs(r0["acc"] * 360 / 100 - round(r0["acc"] * 360 / 100)) < 1e-6  # over all 360
    for k, v in r0["state"].items():
        if "running" not in k and "num_batches" not in k:  # BN statistics stay per rank
            assert torch.allclose(v, r1["state"][k]), k  # gradients were averaged
