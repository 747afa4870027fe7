"""The command line: listing, and bad input -> one message, exit code 2, nothing written."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reprolib import cli, paths
from reprolib.tools import runner


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "reprolib", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})}, cwd=paths.ROOT)


def test_list():
    out = _cli("list")
    assert out.returncode == 0
    assert "quickstart" in out.stdout and "small_cnn" in out.stdout and "npz:PATH" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "nopaper"], "unknown paper 'nopaper'; valid papers: "),
    (["run", "quickstart", "--profile", "huge"], "unknown profile 'huge' for quickstart; valid profiles: smoke"),
    (["run", "quickstart", "-p", "epoch=3"], "unknown quickstart override key 'epoch'; valid keys"),
    (["run", "quickstart", "-p", "train.epochs=many"], "train.epochs='many' is not a valid int"),
    (["run", "quickstart", "-p", "dataset=npz:missing.npz"], "data set file missing.npz does not exist"),
    (["run", "quickstart", "-p", "dataset=mnist"], "unknown data set 'mnist'; valid data sets"),
    (["reproduce", "--profile", "nope"], "no notebook has a profile 'nope'"),
    (["run", "quickstart", "-p", "widths=(0.3,-1)"], "widths=(0.3, -1): widths[1]=-1 must be > 0"),
    (["run", "sidt", "-p", "ratios=(0.2,1.5)"], "ratios[1]=1.5 must be in [0, 1)"),
    (["run", "sidt", "-p", "search.epochs=0"], "search.epochs=0 must be >= 1"),
    (["run", "quickstart", "-p", "train.lr=1e999"], "train.lr=inf must be a finite number"),
    (["run", "quickstart", "-p", "train.epochs=True"], "train.epochs=True is not a valid int"),
    (["run", "quickstart", "-p", "profile=cpu"], "the profile is chosen with --profile"),
    (["run", "templates", "-p", "models=vgg"], "models=('vgg',): models[0]='vgg' is not a registered model"),
    (["compute", "quickstart", "-p", "train.epochs=0"], "train.epochs=0 must be >= 1"),
    (["run", "quickstart", "--output", "RUNS/"], "is a folder; give the executed notebook's file"),
    (["run", "quickstart", "--output", "RUNS/x.txt"], "must end in .ipynb"),
    (["run", "quickstart", "--output", "/proc/reprolib/x.ipynb"],
     "--output folder /proc/reprolib cannot be created: /proc is on a virtual file system"),
    (["run", "quickstart", "-p", "train.lr=nan"], "train.lr='nan' is not a valid float"),
    (["run", "quickstart", "-p", "dataset=cifar10", "-p", "data_root=TMP/f"],
     "data root TMP/f is not a folder"),
    (["run", "quickstart", "-p", "dataset=cifar10", "--data-root", "TMP/nowhere"],
     "data root TMP/nowhere does not exist; pass --data-root"),
    (["run", "quickstart", "-p", "dataset=cifar10", "--data-root", "TMP"],
     "data set cifar10 is not under TMP (looked for TMP/cifar-10-batches-py/data_batch_1); pass --download"),
    (["run", "metaformer_nas", "--profile", "paper", "-p", "device=cpu", "--data-root", "TMP/datasets"],
     "data root TMP/datasets does not exist"),
])
def test_bad_input_exits_2_without_outputs(tmp_path, monkeypatch, capsys, args, message):
    """One line naming the problem (and the key as typed), exit 2, and nothing written: no
    results, figures, runs, and no folder made under a --data-root outside the project."""
    for var in ("RUNS", "RESULTS", "FIGURES"):
        monkeypatch.setenv(f"REPROLIB_{var}", str(tmp_path / var.lower()))
    monkeypatch.delenv("REPROLIB_DOWNLOAD", raising=False)
    args = [a.replace("RUNS", str(tmp_path / "runs")).replace("TMP", str(tmp_path))
            for a in args]
    message = message.replace("TMP", str(tmp_path))
    (tmp_path / "runs").mkdir()
    if "TMP/f" in message.replace(str(tmp_path), "TMP"):
        (tmp_path / "f").write_text("a file, not a folder")
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "f") == ["runs"]
    assert not list((tmp_path / "runs").iterdir())


def test_cuda_without_cuda_is_one_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli.main(["run", "quickstart", "-p", "device=cuda"]) == 2
    assert "device='cuda' but this machine has no CUDA device" in capsys.readouterr().err
    assert cli.main(["run", "vtp_svd", "--profile", "gpu"]) == 2   # a preset naming cuda
    assert "no CUDA device" in capsys.readouterr().err


def test_list_help_and_bad_values_import_no_torch():
    """The answers that must be instant (well under 2 s) never import torch (3-20 s on a
    loaded machine): `import reprolib`, `list`, `list PAPER`, `run PAPER --help`, a bad value."""
    code = textwrap.dedent("""
        import contextlib, io, sys, time
        t0 = time.perf_counter()
        import reprolib
        from reprolib import cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            assert cli.main(["list"]) == 0
            assert cli.main(["list", "templates"]) == 0
            try:
                cli.main(["run", "sidt", "--help"])
            except SystemExit:
                pass
            assert cli.main(["run", "sidt", "-p", "finetune.epochs=-1"]) == 2
        heavy = [m for m in ("torch", "torchvision", "timm", "pandas", "matplotlib") if m in sys.modules]
        print(heavy, round(time.perf_counter() - t0, 2))
        assert "finetune.lr" in out.getvalue() and "train.milestones" in out.getvalue()
        assert reprolib.create_model("swin_tiny_test", num_classes=3) is not None   # lazy
        assert "torch" in sys.modules and "timm" in sys.modules
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("[] "), out.stdout


def test_run_help_lists_the_papers_keys(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "quickstart", "--help"])
    text = capsys.readouterr().out
    assert "--data-root" in text and "--download" in text
    assert "train.epochs" in text and "smoke 3 · cpu 15 · gpu 30" in text
    assert "passes over the training set" in text


def test_stale_partial_notebooks_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".quickstart-cpu.{dead}.partial.ipynb"
    live = tmp_path / f".quickstart-cpu.{os.getpid()}.partial.ipynb"
    for p in (stale, live, tmp_path / f".quickstart-cpu.{dead}.kernel.log"):
        p.write_text("{}")
    assert sorted(p.name for p in cli.clean_partials(tmp_path)) == sorted(
        [stale.name, f".quickstart-cpu.{dead}.kernel.log"])
    assert live.exists() and not stale.exists()


def test_a_read_only_folder_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    ro = next((p for p in ("/sys", "/proc/sys/kernel", "/usr") if os.path.isdir(p)
               and runner._read_only(Path(p))), None)
    if ro is None:  # no read-only mount here (and root writes anywhere): simulate one
        ro = tmp_path / "ro"
        ro.mkdir()
        real = os.access
        monkeypatch.setattr(runner.os, "access", lambda p, m: False if Path(p) == ro else real(p, m))
        monkeypatch.setattr(runner, "_read_only", lambda p: Path(p) == ro)
    monkeypatch.setenv("REPROLIB_RESULTS", f"{ro}/reprolib-results")
    assert cli.main(["run", "quickstart"]) == 2
    err = capsys.readouterr().err
    assert "the results folder" in err and "not writable (read-only file system" in err
    assert "REPROLIB_RESULTS" in err


def test_failing_notebook_leaves_no_output(tmp_path):
    """A value that passes validation but fails inside the notebook: exit 2, no notebook."""
    runs = tmp_path / "runs"
    out = _cli("run", "quickstart", "-p", "train.epochs=-1", env={"REPROLIB_RUNS": str(runs)})
    assert out.returncode == 2 and "epochs=-1" in out.stderr, out.stderr
    assert not runs.exists() or not list(runs.iterdir())


def test_override_parsing():
    from reprolib.configs import parse_overrides

    assert parse_overrides(["a=3", "b=(1, 2)", "c=npz:x.npz", "d=True", "e.f=1e-3"]) == {
        "a": 3, "b": (1, 2), "c": "npz:x.npz", "d": True, "e.f": 1e-3}


@pytest.mark.slow
@pytest.mark.parametrize("event, rc, line", [
    ("sigterm", 143, "reprolib: terminated (SIGTERM); finished stages are kept"),
    ("ctrl-c", 130, "reprolib: interrupted; finished stages are kept"),
    ("kernel-killed", 1, "reprolib: quickstart: the notebook's kernel died"),
])
def test_an_interrupted_run_prints_one_line_and_leaves_no_partial_notebook(tmp_path, event, rc,
                                                                           line):
    """SIGTERM (a timeout, a scheduler), Ctrl-C (SIGINT to the whole process group, as a
    terminal sends it) and a kernel killed mid-cell: one line on stderr, no traceback, no
    `runs/.<paper>-<profile>.<pid>.partial.ipynb` left, no kernel left running."""
    env = {**os.environ, **{f"REPROLIB_{v.upper()}": str(tmp_path / v)
                            for v in ("results", "figures", "runs")}, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    sockets = set((paths.ROOT / "notebooks").glob("kernel-ipc*"))
    p = subprocess.Popen([sys.executable, "-m", "reprolib", "run", "quickstart",
                          "-p", "widths=0.5", "-p", "train.epochs=200"], cwd=paths.ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240          # wait until training runs (its checkpoint exists)
    while not list((tmp_path / "results").rglob("last.pt")) and time.time() < deadline:
        time.sleep(0.5)
    assert p.poll() is None, p.communicate()
    kernel = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                            text=True).stdout.split()
    if event == "sigterm":
        p.send_signal(signal.SIGTERM)
    elif event == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(int(kernel[0]), signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.startswith("Executing")]
    assert p.returncode == rc and len(lines) == 1 and lines[0].startswith(line), err[-3000:]
    assert not [f.name for f in (tmp_path / "runs").iterdir()]
    figures = tmp_path / "figures"                      # no table or figure from a cut run
    assert not figures.exists() or not [f for f in figures.rglob("*") if f.is_file()]
    # the kernel's sockets lived in a private temporary folder, gone with the run
    assert set((paths.ROOT / "notebooks").glob("kernel-ipc*")) == sockets
    assert not list((tmp_path / "tmp").glob("reprolib-kernel-*"))
    time.sleep(3)
    for k in kernel:                   # the kernel went with it (gone, or a zombie)
        stat = Path(f"/proc/{k}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_clean_lists_then_removes_only_records_no_stage_names(tmp_path, monkeypatch, capsys):
    """`reprolib clean`: a record of an earlier config (and its checkpoints) is listed, kept
    without --yes and removed with it; the records the profile's stages name stay."""
    from reprolib.configs import get_config
    from reprolib.experiments import quickstart

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    stages = quickstart.stages(get_config("quickstart", "smoke"))
    live = stages[0].path
    live.parent.mkdir(parents=True)
    live.write_text("{}")
    old = live.parent / "train-0123456789.json"
    old.write_text("{}")
    (live.parent / "ckpt" / old.stem).mkdir(parents=True)

    assert cli.main(["clean", "quickstart"]) == 0
    out = capsys.readouterr().out
    assert f"{len(stages)} stages, 1 records" in out and old.name in out and live.name not in out
    assert old.exists() and "add --yes" in out

    assert cli.main(["clean", "quickstart", "--yes"]) == 0
    assert not old.exists() and not (live.parent / "ckpt" / old.stem).exists()
    assert live.exists()
    assert cli.main(["clean", "quickstart"]) == 0
    assert ", 0 records" in capsys.readouterr().out
