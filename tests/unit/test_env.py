"""environment.yml and requirements.lock pin the same versions; torch stays on the CPU pair."""

import re

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
