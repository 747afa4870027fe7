"""The command line: listing, and bad input -> one message, exit code 2, nothing written."""

import os
import subprocess
import sys

import pytest

from reprolib import cli, paths


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
])
def test_bad_input_exits_2_without_outputs(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("REPROLIB_RUNS", str(tmp_path / "runs"))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "runs").exists()


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
