"""Files: atomic writes under unique temporary names, strict JSON, and checkpoints that are
read without running code."""

import json
import math
import os

import pytest
import torch

from reprolib import io
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
