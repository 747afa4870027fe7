"""Help that lists everything (issue 27, item 5) and a data root that is not read (item 3):
`reprolib --help` names every command, `run` / `compute --help` every paper, every
argument has a help text, help into a closed pipe ends quietly, `reprolib list` hides the
test models unless asked and its columns fit five profiles, and a `--data-root` that the
profile does not read is an error (missing folder) or a warning naming what is read."""

import argparse
import os
import subprocess
import sys

import pytest

from reprolib import cli, paths
from reprolib.configs import papers
from reprolib.core.registry import is_test_model, list_models
from reprolib.experiments import names
from reprolib.tools import runner


def _subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    return dict(parser._subparsers._group_actions[0].choices)


def test_top_help_names_every_command(capsys):
    parser = cli.build_parser()
    commands = list(_subparsers(parser))
    assert {"list", "run", "compute", "graph", "plan", "clean", "reproduce", "readme",
            "bench", "export"} <= set(commands)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    description = " ".join(parser.description.split())
    for c in commands:                # the description and argparse's list, from the parser
        assert f" {c}," in description or f" {c} (" in description, c
        assert f"\n    {c} " in text or f"\n    {c}\n" in text, c


def test_a_command_added_later_is_named_by_the_description():
    """The description is built from the subparsers: a command added to them (the lead's
    `launch` / `status`) appears without editing it."""
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    for name in ("list", "launch", "status"):
        sub.add_parser(name, help=f"{name} help")
    assert "list, launch, status" in cli.describe_commands(sub)


@pytest.mark.parametrize("command", ["run", "compute", "plan", "graph", "clean"])
def test_paper_help_lists_every_paper_from_the_registry(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for paper in names():                      # sidt_detection and overview included
        assert paper in text, (command, paper)
    if command in ("plan", "graph"):
        tools = [n for n, p in papers().items() if not p.notebook]
        assert all(t in text for t in tools)
    for profile in ("smoke", "cpu", "evidence", "gpu", "paper"):
        assert profile in text


def test_every_argument_of_every_command_has_help():
    parser = cli.build_parser()
    missing = []
    for name, sp in _subparsers(parser).items():
        for action in sp._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"arguments without help: {missing}"


def test_help_into_a_closed_pipe_ends_without_a_traceback():
    """`reprolib run sidt --help | head` used to end in a BrokenPipeError traceback."""
    out = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m reprolib run "
                          "sidt --help | head -2"], capture_output=True, text=True,
                         timeout=120, cwd=paths.ROOT)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.stderr == ""
    assert out.stdout.startswith("usage: reprolib run")
    assert out.returncode == cli.EXIT_BROKEN_PIPE == 141


def test_list_hides_test_models_unless_asked(capsys):
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    tests = [m for m in list_models() if is_test_model(m)]
    assert {"test_metaformer", "swin_tiny_test", "vit_pe_test"} <= set(tests)
    models = text.split("models", 1)[1].split("data sets:")[0]
    assert not any(t in models.replace(",", " ").split() for t in tests)
    assert f"{len(tests)} test models left out: reprolib list --all" in text
    assert "swin_t" in models and "metaformer_tiny" in models      # *_tiny are not tests
    assert cli.main(["list", "--all"]) == 0
    everything = capsys.readouterr().out
    assert all(t in everything for t in tests)


def test_a_bad_model_names_the_choices_without_the_test_models(capsys):
    assert cli.main(["run", "sidt", "-p", "model=nope"]) == 2
    err = capsys.readouterr().err
    assert "model='nope' is not a registered model; valid models: " in err
    assert "swin_t" in err and "swin_tiny_test" not in err and "test_metaformer" not in err
    assert "test models: reprolib list --all)" in err
    # a test model stays a valid name
    from reprolib.configs import get_config

    assert get_config("sidt", "smoke", model="swin_tiny_test").model == "swin_tiny_test"


def test_list_columns_fit_five_profiles(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln for ln in lines if ln.startswith("  ") and ln.split()[0] in papers()}
    assert set(rows) == set(papers())
    starts = set()
    for name, ln in rows.items():
        p = papers()[name]
        profiles = ", ".join(p.presets)
        assert f" {profiles} " in ln, ln             # profiles never run into the title
        starts.add(ln.index(p.title))
    assert len(starts) == 1, "the titles do not start in one column"
    assert any(len(papers()[n].presets) == 5 for n in rows)


# --------------------------------------------------------------------------- data root


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    for var in ("RUNS", "RESULTS", "FIGURES"):
        monkeypatch.setenv(f"REPROLIB_{var}", str(tmp_path / var.lower()))
    return tmp_path


@pytest.mark.parametrize("args", [
    ["run", "quickstart", "--data-root", "TMP/nowhere"],
    ["compute", "quickstart", "--data-root", "TMP/nowhere"],
    ["run", "quickstart", "-p", "data_root=TMP/nowhere"],
    ["reproduce", "--data-root", "TMP/nowhere"],
])
def test_a_missing_data_root_the_profile_does_not_read_is_an_error(args, outputs, capsys):
    args = [a.replace("TMP", str(outputs)) for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{outputs}/nowhere is not a folder" in err
    assert "reads no data root: it reads digits (bundled with scikit-learn)" in err
    assert not (outputs / "nowhere").exists() and not (outputs / "results").exists()


def test_an_unread_data_root_is_a_warning_naming_what_is_read(outputs, capsys):
    cfg = runner.check_run("quickstart", "smoke", {}, data_root=str(outputs))
    err = capsys.readouterr().err
    assert cfg.data_root == str(outputs)
    assert err == (f"reprolib: warning: --data-root {outputs} is not read: quickstart --profile "
                   "smoke reads no data root: it reads digits (bundled with scikit-learn)\n")
    # a data set that reads it: no warning
    (outputs / "cifar-10-batches-py").mkdir()
    with pytest.raises(Exception):
        runner.check_run("quickstart", "smoke", {"dataset": "cifar10"}, data_root=str(outputs))
    assert "warning" not in capsys.readouterr().err


def test_sidt_cpu_with_a_missing_data_root(outputs, capsys, cifar10_subset):
    """The issue's case: `reprolib run sidt --profile cpu --data-root /nonexistent` exited 0
    and rewrote figures.  With the cifar10_subset file present the root is not read."""
    missing = str(outputs / "nonexistent")
    assert cli.main(["run", "sidt", "--profile", "cpu", "--data-root", missing]) == 2
    err = capsys.readouterr().err
    assert "sidt --profile cpu reads no data root: it reads cifar10_subset from " in err
    assert not (outputs / "figures").exists() and not (outputs / "runs").exists()
