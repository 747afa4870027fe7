"""Files: atomic writes under unique temporary names, strict JSON, and checkpoints that are
read without running code."""

import json
import math
import os

import pytest
import torch

from reprolib.core import io
from reprolib.errors import ReprolibError


def test_strict_json_has_no_nan(tmp_path):
    p = io.write_json({"a": float("nan"), "b": [1.0, float("inf")], "c": (1, 2)}, tmp_path / "r.json")
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": [1, 2]}


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(tmp_path / "x.json", boom)
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_are_unique(tmp_path):
    seen = []
    for _ in range(2):
        io.atomic_write(tmp_path / "x", lambda tmp: (seen.append(tmp.name), tmp.write_text("1")))
    assert seen[0] != seen[1] and str(os.getpid()) in seen[0]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    with open(path, "wb") as f:
        torch.save({"model": _Evil(str(target)), "epoch": 1}, f)
    with pytest.raises(ReprolibError, match="last.pt was refused.*never unpickles"):
        io.load_torch(path)
    assert not target.exists()
    # unpickled the old way, the same file does create it: the test is not vacuous
    torch.load(path, weights_only=False)
    assert target.exists()


def test_plain_checkpoints_load(tmp_path):
    obj = {"w": torch.ones(3), "epoch": 2, "hist": [{"acc": 1.5}], "rng": torch.get_rng_state()}
    io.save_torch(obj, tmp_path / "c.pt")
    back = io.load_torch(tmp_path / "c.pt")
    assert back["epoch"] == 2 and torch.equal(back["w"], obj["w"])
    (tmp_path / "g.pt").write_bytes(b"garbage")
    with pytest.raises(ReprolibError, match="g.pt is corrupt"):
        io.load_torch(tmp_path / "g.pt")
    assert not math.isnan(back["hist"][0]["acc"])


def test_resuming_from_a_planted_checkpoint_runs_no_code(tmp_path):
    """A crafted last.pt in a stage's checkpoint folder (results shared between machines):
    fit refuses it with one clear error before touching the model, and the code never runs."""
    from reprolib.configs import TrainConfig
    from reprolib.data import get_data
    from reprolib.core.registry import create_model
    from reprolib.core.train import fit

    target = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"model": _Evil(str(target)), "epoch": 1, "optimizer": {}, "scheduler": {},
                "history": []}, ckpt / "last.pt")
    data = get_data("digits", 8, 64)
    with pytest.raises(ReprolibError, match="checkpoint .*last.pt was refused"):
        fit(create_model("test_small_cnn", num_classes=10), data, TrainConfig(epochs=1),
            ckpt_dir=ckpt)
    assert not target.exists()


def _lock_worker(args):
    """One process of the lock test: hold the lock 0.3 s and log when."""
    import time

    target, log, i = args
    with io.file_lock(target) as waited:
        t0 = time.time()
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(f"{i} {t0:.4f} {time.time():.4f} {int(waited)}\n")


def test_file_lock_serialises_real_processes(tmp_path):
    import multiprocessing as mp

    log = tmp_path / "log"
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_lock_worker, [(tmp_path / "x", log, i) for i in range(4)])
    spans = sorted(tuple(map(float, ln.split()[1:3])) for ln in log.read_text().splitlines())
    assert len(spans) == 4
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two processes held the lock at once"
    assert sum(int(ln.split()[3]) for ln in log.read_text().splitlines()) >= 1   # some waited
    assert list(tmp_path.glob(".*.lock")) == []                                   # cleaned up


def _stage_worker(args):
    """One process of the run_cached test: ask for the same record as the others."""
    import time

    from reprolib.core import results

    root, log, i = args
    results.ACTIVITY.clear()          # a forked copy of the parent's counts

    def fn(ckpt):
        with open(log, "a") as f:
            f.write(f"computed by {i}\n")
        time.sleep(0.5)
        return {"value": 42, "by": i}

    rec = results.run_cached("lockpaper", "smoke", "stage", {"seed": 0}, fn, root=root)
    return i, rec["metrics"]["by"], dict(results.ACTIVITY)


def test_run_cached_computes_a_record_once_across_processes(tmp_path):
    """N processes ask for the same missing record at once: one computes it, the others wait
    for its lock and reuse its record (what two `reprolib run`s of one profile do)."""
    import multiprocessing as mp

    log = tmp_path / "log"
    with mp.get_context("fork").Pool(4) as pool:
        out = pool.map(_stage_worker, [(tmp_path / "results", log, i) for i in range(4)])
    assert len(log.read_text().splitlines()) == 1
    who = {by for _, by, _ in out}
    assert len(who) == 1                              # every process got the same record
    computed = [i for i, _, act in out if act.get("computed")]
    reused = [i for i, _, act in out if act.get("reused")]
    assert len(computed) == 1 and len(reused) == 3 and computed[0] in who
    assert not list((tmp_path / "results").rglob(".*.lock"))


def test_a_parent_recomputed_inside_a_stage_is_not_counted_in_its_wall_time(tmp_path):
    """A stage whose parent's saved model is missing recomputes the parent inside its own
    computation: the parent's seconds go to the parent's record, and the stage's record
    names them as upstream_time_s instead of adding them to its wall_time_s."""
    import time

    from reprolib.core import results

    def parent(ckpt):
        time.sleep(0.6)
        return {"value": 1}

    def child(ckpt):
        results.run_cached("nestpaper", "smoke", "parent", {"seed": 0}, parent,
                           root=tmp_path, force=True)
        time.sleep(0.1)
        return {"value": 2}

    rec = results.run_cached("nestpaper", "smoke", "child", {"seed": 0}, child, root=tmp_path)
    par = results.load_record(results.record_path("nestpaper", "smoke", "parent", {"seed": 0},
                                                  tmp_path))
    assert par["wall_time_s"] >= 0.6 and "upstream_time_s" not in par
    assert 0.1 <= rec["wall_time_s"] < 0.5
    assert rec["upstream_time_s"] >= 0.6
    assert results._NESTED[0] >= rec["wall_time_s"] + rec["upstream_time_s"] - 1e-3
