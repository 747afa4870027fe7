"""environment.yml and requirements.lock pin the same versions; torch stays on the CPU pair."""

import re
from pathlib import Path

import pytest

from reprolib import paths


def _pins(text):
    return dict(re.findall(r"^\s*-?\s*([A-Za-z0-9_.-]+)==([^\s#]+)", text, re.M))


def test_environment_yml_agrees_with_lock():
    lock = _pins((paths.ROOT / "requirements.lock").read_text())
    env = _pins((paths.ROOT / "environment.yml").read_text())
    assert env, "environment.yml pins nothing"
    for name, version in env.items():
        assert lock.get(name) == version, f"{name}: environment.yml {version} vs lock {lock.get(name)}"
    assert lock["torch"] == "2.13.0" and lock["torchvision"] == "0.28.0"


def test_lock_has_every_direct_dependency():
    lock = {k.lower() for k in _pins((paths.ROOT / "requirements.lock").read_text())}
    for dep in ("timm", "papermill", "nbval", "jupyterlab", "matplotlib", "seaborn", "scikit-learn",
                "pandas", "scipy", "tqdm", "pytest", "ipykernel", "pycocotools"):
        assert dep in lock, dep


def _min_python() -> tuple[int, int, int]:
    import tomllib

    spec = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", spec.strip())
    assert m, f"requires-python should be a plain lower bound X.Y.Z, got {spec!r}"
    return tuple(int(g) for g in m.groups())


def test_the_stated_minimum_python_is_the_real_one():
    """requires-python (and the README, environment.yml, the Makefile's check) name the
    lowest Python every locked package installs on: each pinned distribution's own
    Requires-Python admits it, and at least one refuses the patch release below it (the
    lock's soupsieve needs 3.11.5; numpy 2.4, pandas 3 and most others 3.11), so the claim
    is neither too high nor too low."""
    import importlib.metadata as md
    import sys

    from packaging.specifiers import SpecifierSet

    lo = _min_python()
    here, below = ".".join(map(str, lo)), f"{lo[0]}.{lo[1]}.{lo[2] - 1}" if lo[2] else \
        f"{lo[0]}.{lo[1] - 1}.99"
    assert sys.version_info[:3] >= lo
    refuse_below, checked = [], 0
    for name, version in _pins((paths.ROOT / "requirements.lock").read_text()).items():
        try:
            meta = md.metadata(name)
        except md.PackageNotFoundError:
            continue
        if meta["Version"] != version:
            continue                   # not the locked build: its metadata says nothing here
        checked += 1
        rp = meta.get("Requires-Python")
        if not rp:
            continue
        spec = SpecifierSet(rp)
        assert spec.contains(here, prereleases=True), f"{name}=={version} needs Python {rp}"
        if not spec.contains(below, prereleases=True):
            refuse_below.append(name)
    assert checked > 50, "the locked packages are not installed here"
    assert refuse_below, f"every locked package installs on Python {below}: lower the minimum"
    assert f"Python {here} or newer" in (paths.ROOT / "README.md").read_text()
    assert f"python>={here}" in (paths.ROOT / "environment.yml").read_text()
    assert f"{tuple(lo)}" in (paths.ROOT / "Makefile").read_text()


def test_the_license_is_an_spdx_string():
    import tomllib

    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"                 # PEP 639; a {text = ...} table is deprecated
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


@pytest.mark.slow
def test_installing_into_a_fresh_venv_warns_of_nothing(tmp_path):
    """``pip install`` of the project (its own build, in a fresh venv, with pip's build
    isolation as a user gets it) prints no deprecation warning: the license-table warning of
    setuptools is what this catches.  --no-deps: only reprolib itself is built, no torch."""
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(paths.ROOT / name, src / name)
    shutil.copytree(paths.ROOT / "reprolib", src / "reprolib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-v",
                          str(src)], capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "Successfully installed reprolib" in log
    assert not re.search(r"deprecat", log, re.I), \
        [ln for ln in log.splitlines() if re.search(r"deprecat", ln, re.I)]
    meta = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import importlib.metadata as m; print(m.metadata('reprolib')"
                           "['License-Expression'])"], capture_output=True, text=True, check=True)
    assert meta.stdout.strip() == "MIT"


def test_the_lock_installs_the_bench_peer_at_its_pin():
    """requirements.lock (what `make` and CI install) holds Torch-Pruning at the pin of
    pyproject's ``bench`` extra and of reprolib.methods.peer, so the peer's tests and the
    SiDT evidence's Torch-Pruning controls run rather than skip."""
    from reprolib.methods.peer import TORCH_PRUNING_PIN

    root = Path(__file__).resolve().parents[2]
    assert TORCH_PRUNING_PIN in (root / "requirements.lock").read_text().splitlines()
    assert f'bench = ["{TORCH_PRUNING_PIN}"]' in (root / "pyproject.toml").read_text()
