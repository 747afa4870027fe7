"""Reliability against crafted input: no code from a command-line value, no record or
checkpoint trusted without its key, atomic tables and figures, a `clean` that removes only
records.  One test (or group) per numbered item of the reliability issue."""

import ast
import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import reprolib
from reprolib import cli, configs, data
from reprolib.core import io, report, results
from reprolib.errors import ReprolibError
from reprolib.core.train import TrainConfig, fit

# The crafted value of the issue: a tuple nested in a dict-typed key whose string breaks out
# of papermill's "{str(val)}" quoting when the tuple reaches the parameters cell as text.
PAYLOAD = '" + str(__import__("os").system("touch PWNED_REPROLIB")) + "'
PWNED = reprolib.paths.ROOT / "notebooks" / "PWNED_REPROLIB"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    for var in ("RESULTS", "FIGURES", "RUNS"):
        monkeypatch.setenv(f"REPROLIB_{var}", str(tmp_path / var.lower()))
    PWNED.unlink(missing_ok=True)
    yield tmp_path
    PWNED.unlink(missing_ok=True)


# --------------------------------------------------------------------------- 1. -p values


def _injected(params: dict) -> dict:
    """The parameters cell papermill writes for ``params``, read back as literals (it must be
    nothing but literals: ast.literal_eval refuses any call)."""
    from papermill.translators import PythonTranslator

    code = PythonTranslator.codify(params)
    out = {}
    for node in ast.parse(code).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def test_parameters_reach_the_notebook_as_json_literals():
    over = {"model_kwargs": {"depths": (PAYLOAD,), "nested": {"a": (1, (2, 3))}},
            "ratios": (0.2, 0.4), "search.epochs": 2}
    params = cli.notebook_parameters("smoke", over, False)
    assert params["overrides"]["model_kwargs"]["depths"] == [PAYLOAD]   # a list, not text
    assert _injected(params) == params                  # the cell is literals, value for value
    assert json.loads(json.dumps(params)) == params
    for bad in ({"x": {1, 2}}, {"x": float("inf")}, {"x": object()}):
        with pytest.raises(ReprolibError):
            cli.notebook_parameters("smoke", bad, False)


def test_crafted_override_runs_nothing(isolated, capsys):
    """Refused before any work (an unknown builder argument) ..."""
    rc = cli.main(["run", "sidt", "-p", f"model_kwargs={{'a': ({PAYLOAD!r},)}}"])
    assert rc == 2 and "'a' is not an argument of model 'swin_tiny_test'" in capsys.readouterr().err
    assert not PWNED.exists()


def test_crafted_override_is_inert_even_unchecked(isolated):
    """... and inert even when it reaches a notebook unchecked: the injected cell holds a
    string, the config cell refuses the key, nothing ran."""
    with pytest.raises(Exception) as e:
        cli.run_notebook("quickstart", "smoke", {"bogus": {"a": (PAYLOAD,)}}, checked=True)
    assert type(e.value).__name__ == "PapermillExecutionError"
    assert "unknown quickstart override key 'bogus'" in str(e.value)
    assert not PWNED.exists()


def _profiles():
    return [(p, prof) for p, info in configs.papers().items() for prof in info.presets]


@pytest.mark.parametrize("paper, profile", _profiles())
def test_run_and_compute_build_the_same_config_for_every_key(paper, profile):
    """Every key, with its value in this profile: the config ``compute`` builds from the
    parsed override equals the one the notebook builds from the JSON it receives."""
    cfg = configs.get_config(paper, profile)
    for key in configs.field_names(type(cfg)):
        if key == "profile" or key.endswith(".seed"):
            continue
        head, _, sub = key.partition(".")
        value = getattr(getattr(cfg, head), sub) if sub else getattr(cfg, head)
        over = {key: value}
        compute = configs.get_config(paper, profile, **over)
        shipped = json.loads(json.dumps(cli.notebook_parameters(profile, over, False)))
        run = configs.get_config(paper, profile, **shipped["overrides"])
        assert run == compute, key


@pytest.mark.parametrize("paper, key, value", [
    ("sidt", "model_kwargs", {"depths": (1, 1, 1, 1)}),
    ("sidt_detection", "model_kwargs", {"min_sizes": (64, 96), "max_size": 128}),
    ("pe", "vit_kwargs", {"depth": 2, "embed_dim": 48}),
    ("pe", "resnet_kwargs", {"base": 8}),
    ("vtp_svd", "patch_overrides", {2: {"pretrain.epochs": 3, "sweep_ratios": (0.5,)}}),
])
def test_dict_keys_arrive_typed_both_ways(paper, key, value):
    compute = configs.get_config(paper, "smoke", **{key: value})
    shipped = json.loads(json.dumps(cli.notebook_parameters("smoke", {key: value}, False)))
    run = configs.get_config(paper, "smoke", **shipped["overrides"])
    assert getattr(run, key) == getattr(compute, key) == configs.canonical(key, value)
    assert run == compute


@pytest.mark.parametrize("paper, over, message", [
    ("sidt", {"model_kwargs": {"bogus": 1}}, "'bogus' is not an argument of model"),
    ("sidt", {"model_kwargs": {"depths": "deep"}}, "depths='deep' must be a tuple"),
    ("sidt", {"model_kwargs": {"embed_dim": 2.5}}, "embed_dim=2.5 must be an integer"),
    ("sidt", {"model_kwargs": {"num_classes": 3}}, "'num_classes' is set by the pipeline"),
    ("sidt", {"model_kwargs": {"1x": 3}}, "key '1x' is not an argument name"),
    ("pe", {"vit_kwargs": {"depht": 2}}, "'depht' is not an argument of model 'vit_pe_test'"),
    ("pe", {"resnet_model": "resnet_pe_test", "resnet_twin": "resnet_test_unshared",
            "resnet_kwargs": {"base": "wide"}}, "base='wide' must be an integer"),
])
def test_dict_keys_are_validated_before_any_work(isolated, paper, over, message):
    with pytest.raises(ReprolibError, match=message):
        cli.check_run(paper, "smoke", over, data=False)
    assert not (isolated / "results").exists()


# --------------------------------------------------------------------------- 2. clean


def _quickstart_records(isolated):
    assert cli.main(["compute", "quickstart"]) == 0
    folder = isolated / "results" / "quickstart" / "smoke"
    return folder, sorted(folder.glob("*.json")), sorted((folder / "ckpt").iterdir())


@pytest.mark.parametrize("stray", ["...json", "..json", ".json", "x-..json"])
def test_clean_never_leaves_the_profile(isolated, capsys, stray):
    folder, recs, ckpts = _quickstart_records(isolated)
    (folder / stray).write_text("{}")
    assert cli.main(["clean", "quickstart", "--yes"]) == 0
    assert "left alone, not named like a record" in capsys.readouterr().out
    assert [p for p in recs if p.exists()] == recs
    assert sorted((folder / "ckpt").iterdir()) == ckpts
    assert (folder / stray).exists()


def test_clean_removes_a_stale_record_and_refuses_a_linked_checkpoint(isolated, tmp_path):
    from reprolib.core.pipeline import remove_record

    folder, recs, ckpts = _quickstart_records(isolated)
    stale = folder / "old-0123456789.json"
    stale.write_text("{}")
    (folder / "ckpt" / stale.stem).mkdir()
    assert cli.main(["clean", "quickstart", "--yes"]) == 0
    assert not stale.exists() and not (folder / "ckpt" / stale.stem).exists()
    assert sorted(folder.glob("*.json")) == recs
    # a checkpoint "folder" that is a link elsewhere: refused by name, nothing removed
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    stale.write_text("{}")
    (folder / "ckpt" / stale.stem).symlink_to(victim)
    with pytest.raises(ReprolibError, match="refusing to remove .*old-0123456789"):
        remove_record(stale)
    assert stale.exists() and (victim / "keep.txt").exists()
    with pytest.raises(ReprolibError, match="not a record file"):
        remove_record(folder / "ckpt" / ckpts[0].name)


# --------------------------------------------------------------------------- 3. records


def _record(isolated):
    folder, recs, _ = _quickstart_records(isolated)
    return folder, recs


def test_a_copied_record_is_refused_by_name(isolated, capsys):
    folder, (r1, r2) = _record(isolated)
    shutil.copy(r2, r1)                 # w0.5's record under w0.25's name
    with pytest.raises(ReprolibError, match=f"{r1.name} does not belong under this name"):
        results.load_record(r1)
    rc = cli.main(["compute", "quickstart"])
    assert rc == 2 and r1.name in capsys.readouterr().err
    assert cli.main(["compute", "quickstart", "--force"]) == 0   # --force recomputes it
    assert results.load_record(r1)["config"] != results.load_record(r2)["config"]


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(acc=float("nan")), "metrics.acc=nan is not a finite number"),
    (lambda m: m.update(acc=150.0), "metrics.acc=150.0 is a percentage outside"),
    (lambda m: m.update(params=-5), "metrics.params=-5 must not be negative"),
    (lambda m: m.update(acc="high"), "metrics.acc='high' must be a number"),
    (lambda m: m.clear(), "holds no metrics"),
    (lambda m: m["history"][0].update(test_acc=-1.0), r"metrics.history\[0\].test_acc=-1.0"),
])
def test_record_values_are_checked(isolated, edit, message):
    folder, (r1, _) = _record(isolated)
    rec = json.loads(r1.read_text())
    edit(rec["metrics"])
    r1.write_text(json.dumps(rec))          # json writes NaN as a bare NaN token, as a hand edit
    with pytest.raises(ReprolibError, match=message):
        results.load_record(r1)


def test_a_record_of_another_folder_is_refused(isolated):
    folder, (r1, _) = _record(isolated)
    other = folder.parent / "cpu"
    other.mkdir()
    shutil.copy(r1, other / r1.name)
    with pytest.raises(ReprolibError, match="record of profile 'smoke', not of the folder's 'cpu'"):
        results.load_record(other / r1.name)


# --------------------------------------------------------------------------- 4. checkpoints


def _fit(ckpt, **kw):
    torch.manual_seed(0)
    model = reprolib.create_model("test_small_cnn")
    d = data.get_data("digits", 16, 128, seed=0)
    cfg = TrainConfig(**{"epochs": 2, "lr": 0.05, "seed": 0, "progress": False, **kw})
    return fit(model, d, cfg, ckpt_dir=ckpt), model


def test_a_foreign_checkpoint_is_refused_by_name(tmp_path):
    _fit(tmp_path / "a", epochs=3)
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    with pytest.raises(ReprolibError, match=r"last\.pt was written by a run with other settings: "
                                            r"epochs 3 \(checkpoint\) vs 2 \(this run\)"):
        _fit(tmp_path / "b", epochs=2)
    with pytest.raises(ReprolibError, match=r"lr 0.05 \(checkpoint\) vs 123"):
        _fit(tmp_path / "b", epochs=3, lr=123.0)
    res, _ = _fit(tmp_path / "b", epochs=3)          # its own settings: resumed, nothing to do
    assert res.resumed_from == 3 and res.epochs == 3


@pytest.mark.parametrize("tamper, message", [
    (lambda ck: ck.update(epoch="2"), "epoch '2' and its history"),
    (lambda ck: ck.pop("optimizer"), "lacks 'optimizer'"),
    (lambda ck: ck.pop("config"), "lacks 'config'"),
    (lambda ck: ck["model"].update({k: torch.zeros(3) for k in list(ck["model"])[:1]}),
     "its model does not fit this run"),
    (lambda ck: ck.update(history=ck["history"][:1]), "epoch 2 and its history of 1"),
])
def test_a_tampered_checkpoint_is_one_clear_error(tmp_path, tamper, message):
    _fit(tmp_path, epochs=2)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    tamper(ck)
    torch.save(ck, tmp_path / "last.pt")
    with pytest.raises(ReprolibError, match=message):
        _fit(tmp_path, epochs=2)


def test_a_foreign_search_checkpoint_is_refused(tmp_path):
    from reprolib.methods import metaformer_nas as nas

    cfg = nas.NASConfig(n_nodes=2, rounds=1, shared_epochs=1, controller_samples=2,
                        derive_samples=2, derive_batches=1, reward_batches=1)
    d = data.get_data("digits", 16, 64, seed=0, val_fraction=0.2)
    model = reprolib.create_model("test_metaformer", mixer={"shared": 2}, num_classes=10)
    nas.search(model, d, cfg, ckpt_dir=tmp_path, seed=0)
    model = reprolib.create_model("test_metaformer", mixer={"shared": 2}, num_classes=10)
    other = dataclasses.replace(cfg, rounds=2, controller_lr=0.5)
    with pytest.raises(ReprolibError, match=r"search\.pt was written by a run with other "
                                            r"settings: controller_lr"):
        nas.search(model, d, other, ckpt_dir=tmp_path, seed=0)
    with pytest.raises(ReprolibError, match=r"seed 0 \(checkpoint\) vs 1"):
        nas.search(model, d, cfg, ckpt_dir=tmp_path, seed=1)


# --------------------------------------------------------------------------- 5. atomic writes


def _full_disk(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_figure_and_a_table_survive_a_full_disk(isolated, monkeypatch):
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = report.save_figure(fig, "demo", "curve", "cpu")
    md = report.save_table(pd.DataFrame({"a": [1]}), "demo", "t", "cpu", "caption")
    before = {p: (p.read_bytes(), p.stat().st_ino) for p in (png, md, md.with_suffix(".csv"))}

    def half_then_full(self, fname, *a, **k):       # half a PNG written, then ENOSPC
        Path(fname).write_bytes(before[png][0][:100])
        _full_disk()

    monkeypatch.setattr(type(fig), "savefig", half_then_full)
    with pytest.raises(OSError) as e:
        report.save_figure(fig, "demo", "curve", "cpu")
    assert e.value.errno == errno.ENOSPC
    real_write = Path.write_text
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (real_write(self, "par"),
                                                                   _full_disk()))
    with pytest.raises(OSError):
        report.save_table(pd.DataFrame({"a": [2]}), "demo", "t", "cpu", "caption")
    monkeypatch.undo()
    for p, (content, inode) in before.items():
        assert p.read_bytes() == content and p.stat().st_ino == inode, p.name
    assert not [p for p in png.parent.iterdir() if p.name.endswith(".tmp")]
    plt.close(fig)


def test_torch_save_on_a_full_disk_is_one_line(isolated, monkeypatch, capsys, tmp_path):
    """torch.save reports ENOSPC as a RuntimeError; it becomes an OSError naming the file,
    and the command line prints one line (exit 1) instead of a traceback."""
    def failing_save(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(io, "_disk_full", lambda folder, below=2**20: True)
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")
    with pytest.raises(OSError) as e:
        io.save_torch({"x": torch.zeros(1)}, target)
    assert e.value.errno == errno.ENOSPC and target.read_bytes() == b"good"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    rc = cli.main(["compute", "quickstart"])          # fit's checkpoint hits the full disk
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "No space left on device" in err[0], err
