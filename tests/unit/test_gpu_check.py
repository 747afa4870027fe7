"""tools/gpu_check.sh, the prepared GPU check of issue 26, kept from rotting on the CPU: its
syntax, the override keys of its full-size commands (checked by ``reprolib plan``, which trains
nothing), and a shrunk dry-run (``--device cpu --shrink``) that writes the summary and the records
into one folder and leaves the checkout's results/ and figures/ alone."""

import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_check.sh"


def _sh(*args, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPROLIB_", "GPU_CHECK_"))}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, **kw)


def _snapshot(*tops):
    """path -> (size, mtime_ns) of every file under the checkout's folders ``tops``."""
    out = {}
    for top in tops:
        for p in (ROOT / top).rglob("*"):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(ROOT))] = (st.st_size, st.st_mtime_ns)
    return out


def test_script_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_full_size_steps_use_valid_override_keys():
    """The GPU-size commands (printed, not run) name only keys the papers have: ``reprolib plan``
    with the same -p overrides exits 0 (an unknown key or an untrained table width is an error)."""
    r = _sh("--print", "--python", sys.executable, timeout=60)
    assert r.returncode == 0, r.stderr
    steps = {}
    for line in r.stdout.splitlines():
        name, cap, cmd = line.split("\t")
        steps[name] = (int(cap), shlex.split(cmd))
    assert {"pytest-gpu", "bench-sidt", "bench-vtp", "templates", "sidt"} <= set(steps)
    assert "--profile gpu" in " ".join(steps["bench-sidt"][1])
    assert "-m gpu" in " ".join(steps["pytest-gpu"][1])
    for paper in ("templates", "sidt"):
        cmd = steps[paper][1]
        assert cmd[cmd.index("compute") + 1] == paper and "evidence" in cmd
        cmd[cmd.index("compute")] = "plan"
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


@pytest.mark.slow
def test_cpu_dry_run_writes_one_folder_and_leaves_results_alone(tmp_path):
    """~45 s on 2 idle cores: every step at smoke size on the CPU, the venv install skipped by
    pointing at this interpreter."""
    before = _snapshot("results", "figures")
    out = tmp_path / "gpu_check"
    r = _sh("--device", "cpu", "--shrink", "--python", sys.executable, "--out", str(out),
            timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert (out / "summary.md").read_text().startswith("# GPU check: cpu")
    assert s["device"] == "cpu" and s["shrink"] and s["versions"]["torch"]
    assert s["budget_s"] < 8 * 60 and s["wall_s"] < s["budget_s"]   # the 8 minutes
    by = {x["step"]: x for x in s["steps"]}
    assert by["install"]["status"] == "skipped"
    for name in ("pytest-gpu", "bench-sidt", "bench-vtp", "templates", "sidt"):
        assert by[name]["status"] == "ok" and by[name]["exit_code"] == 0, by[name]
        assert by[name]["wall_s"] > 0
    assert s["skipped_for_time"] == [] and s["failed"] == []
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
    for prefix in ("results/bench/smoke/", "results/templates/smoke/", "results/sidt/smoke/",
                   "figures/bench/speedup-smoke.md", "logs/sidt.log"):
        assert any(n.startswith(prefix) for n in names), prefix
    assert not any(n.endswith(".pt") or "/ckpt" in n for n in names)
    assert set(s["records"]) <= set(names)
    assert sorted(p.name for p in out.iterdir()) == ["records.tar.gz", "summary.json",
                                                     "summary.md"]
    assert _snapshot("results", "figures") == before


def test_a_step_past_the_budget_is_skipped_and_named(tmp_path):
    """A budget too small for any step: each is recorded as skipped for time, the summary is
    still written, and the exit status is 0 (nothing that ran failed)."""
    out = tmp_path / "o"
    r = _sh("--device", "cpu", "--shrink", "--python", sys.executable, "--out", str(out),
            "--budget", "20", timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert set(s["skipped_for_time"]) == {"pytest-gpu", "bench-sidt", "bench-vtp", "templates",
                                          "sidt"}
    assert "Skipped for time: pytest-gpu" in (out / "summary.md").read_text()
