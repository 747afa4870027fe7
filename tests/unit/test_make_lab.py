"""`make lab` opens JupyterLab on git-ignored copies of the notebooks, so running and
autosaving them never modifies a tracked notebook; `make lab-edit` opens the tracked ones.
As root JupyterLab needs --allow-root, which the Makefile adds; LAB_ARGS reach JupyterLab."""

import os
import shutil
import subprocess

import pytest

from reprolib import paths


@pytest.fixture
def project(tmp_path):
    """A copy of the Makefile and notebooks with a stand-in venv whose `jupyter` records how it
    was started (the real one would open a browser)."""
    shutil.copy(paths.ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copytree(paths.ROOT / "notebooks", tmp_path / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("requirements.lock", "pyproject.toml"):
        shutil.copy(paths.ROOT / name, tmp_path / name)
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    jupyter = venv / "bin" / "jupyter"
    jupyter.write_text('#!/bin/sh\necho "$@ | $REPROLIB_FIGURES" > "$(dirname "$0")/started"\n')
    jupyter.chmod(0o755)
    (venv / ".installed").touch()                 # newer than the lock: make builds nothing
    return tmp_path


def _make(project, target, *args, uid=None):
    """Run ``make target`` in the copy; ``uid``: what ``id -u`` answers there (a stand-in
    ``id`` first on PATH), so both the root and the user branch are checked as any user."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    env = {**os.environ, "MAKEFLAGS": ""}
    if uid is not None:
        fake = project / "fakebin"
        fake.mkdir(exist_ok=True)
        (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fake / "id").chmod(0o755)
        env["PATH"] = f"{fake}:{env['PATH']}"
    subprocess.run(["make", "-s", target, *args], cwd=project, check=True, capture_output=True,
                   timeout=60, env=env)
    return (project / ".venv" / "bin" / "started").read_text().strip()


def test_make_lab_works_on_copies(project):
    tracked = {p.name: p.read_bytes() for p in (project / "notebooks").glob("*.ipynb")}
    assert tracked
    started = _make(project, "lab", uid=1000)
    assert started == f"lab lab/ | {project}/lab/figures"
    copies = {p.name: p.read_bytes() for p in (project / "lab").glob("*.ipynb")}
    assert copies == tracked
    # what the user did in a copy is kept on the next `make lab`; the tracked file is untouched
    (project / "lab" / sorted(copies)[0]).write_text("{}")
    _make(project, "lab")
    assert (project / "lab" / sorted(copies)[0]).read_text() == "{}"
    assert {p.name: p.read_bytes() for p in (project / "notebooks").glob("*.ipynb")} == tracked
    assert "lab/" in (paths.ROOT / ".gitignore").read_text().splitlines()


def test_make_lab_edit_opens_the_tracked_notebooks(project):
    assert _make(project, "lab-edit", uid=1000).startswith("lab notebooks/ |")


def test_make_lab_as_root_allows_root_and_passes_lab_args(project):
    """JupyterLab refuses to start as root without --allow-root (make exited 2): the
    Makefile adds it for uid 0 only, and LAB_ARGS go through in both cases."""
    args = 'LAB_ARGS=--port 8899 --no-browser'
    assert _make(project, "lab", args, uid=0) == \
        f"lab --allow-root --port 8899 --no-browser lab/ | {project}/lab/figures"
    assert _make(project, "lab", args, uid=1000) == \
        f"lab --port 8899 --no-browser lab/ | {project}/lab/figures"
    assert _make(project, "lab-edit", uid=0).startswith("lab --allow-root notebooks/ |")
    # and as whoever runs the tests, with the real `id`
    root = os.geteuid() == 0
    assert _make(project, "lab").startswith("lab --allow-root lab/" if root else "lab lab/")
