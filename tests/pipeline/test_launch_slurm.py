"""``reprolib launch --on slurm`` on a real SLURM cluster: the single-node one that
``tools/slurm/cluster.sh start`` stands up here (munged, MariaDB + slurmdbd, slurmctld,
slurmd; .ci/run starts it before the tests, and this module starts it itself where it may).
Two papers' smoke graphs go through sbatch, job arrays and afterok dependencies:

* sidt (search -> fine-tunes as one array -> reference): an injected failure in one fine-tune
  cancels the reference (kill_invalid_depend) while its siblings finish; a relaunch submits
  only the two missing stages and completes the graph; every record is written exactly once
  and every stage started after the records it reads existed; ``status`` reports missing,
  queued, running, failed, cancelled and done on the way;
* metaformer_nas: a retrain killed mid-training (scancel) is reported cancelled and, on
  relaunch, resumes from its last epoch's checkpoint;
* a stage as one job of two tasks: DDP over gloo through submitit's distributed environment.

Where no cluster is up and none can be started (not root, no apt-get), the tests skip and say
why; on CI (``CI`` set) that is a failure instead.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from reprolib import paths
from reprolib.configs import get_config
from reprolib.experiments import get_experiment
from reprolib.tools.launch import commands, status
from reprolib.tools.launch.state import State, show

pytestmark = pytest.mark.slow

SCRIPT = paths.ROOT / "tools" / "slurm" / "cluster.sh"
SLURM_ROOT = Path(os.environ.get("REPROLIB_SLURM_ROOT", "/tmp/reprolib-slurm"))
SIDT = ["-p", "ratios=(0.2,0.4)"]
NAS = ["-p", "node_counts=4", "-p", "baselines=pooling", "-p", "retrain.epochs=15"]


def _no_cluster(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the SLURM tests: {why}")
    pytest.skip(why)


def _sinfo_ok(env) -> bool:
    if shutil.which("sinfo") is None:
        return False
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True,
                       timeout=30)
    return r.returncode == 0 and any(s.strip("*~#") in ("idle", "mixed", "allocated")
                                     for s in r.stdout.split())


@pytest.fixture(scope="module")
def cluster():
    """``SLURM_CONF`` of a cluster that answers: the one named by ``SLURM_CONF``, the one
    cluster.sh left running, or one started now (and stopped after the module)."""
    conf = os.environ.get("SLURM_CONF") or str(SLURM_ROOT / "etc" / "slurm.conf")
    env = {**os.environ, "SLURM_CONF": conf}
    started = False
    if not (Path(conf).exists() and _sinfo_ok(env)):
        if os.geteuid() != 0:
            _no_cluster("no SLURM cluster is up and this is not root: tools/slurm/cluster.sh "
                        "start (apt-get install, daemons) needs root")
        if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
            _no_cluster("no SLURM cluster is up, and neither apt-get nor slurmctld is here")
        r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            _no_cluster(f"tools/slurm/cluster.sh start failed: {r.stderr.strip()[-800:]}")
        started = True
        conf = str(SLURM_ROOT / "etc" / "slurm.conf")
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", conf)
    yield conf
    mp.undo()
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=300)


@pytest.fixture
def roots(tmp_path, monkeypatch, cluster):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REPROLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("REPROLIB_LAUNCH_FAIL", raising=False)
    return tmp_path


def launch(*argv) -> int:
    return commands.main(["launch", *argv])


def graph(paper, argv):
    from reprolib.configs import parse_overrides

    return get_experiment(paper).graph(get_config(paper, "smoke",
                                                  **parse_overrides(argv[1::2])))


def states(paper, argv) -> dict[str, dict]:
    return {r["stage"]: r for r in status.rows(graph(paper, argv), paper, "smoke")}


def until(fn, timeout: float, what: str, every: float = 0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = fn()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_logs(runs: Path, paper: str) -> str:
    return "\n".join(p.read_text(errors="replace").replace("\r", "\n")
                     for p in sorted((runs / "launch" / f"{paper}-smoke" / "jobs")
                                     .glob("*_log.out")))


def computed_once(logs: str) -> collections.Counter:
    return collections.Counter(re.findall(r"\[launch\] \S+ stage \S+ \((\S+)\): computed", logs))


def _started(path: Path) -> float:
    return dt.datetime.fromisoformat(json.loads(path.read_text())["started"]).timestamp()


def test_failure_cancels_dependants_and_a_relaunch_completes_each_record_once(roots, monkeypatch,
                                                                               capsys):
    g = graph("sidt", SIDT)
    assert {r["state"] for r in states("sidt", SIDT).values()} == {"missing"}
    monkeypatch.setenv("REPROLIB_LAUNCH_FAIL", "finetune-p20")
    assert launch("sidt", *SIDT, "--on", "slurm", "--time", "15", "--wait") == 1
    out = capsys.readouterr().out
    assert "5 to run as 3 SLURM jobs (1 array)" in out
    assert re.search(r"submitted job 2 \(finetune\) as (\d+), array of 3, afterok:\d+", out)
    assert re.search(r"failed: stage finetune-p20 \(job \d+_1\): FAILED, exit 1:0; last lines", out)
    assert "injected failure (REPROLIB_LAUNCH_FAIL=finetune-p20)" in out      # the log's tail
    assert "cancelled (an upstream stage failed): reference" in out
    st = states("sidt", SIDT)
    assert {k: v["state"] for k, v in st.items()} == {
        "search": "done", "finetune-p00": "done", "finetune-p20": "failed",
        "finetune-p40": "done", "reference": "cancelled"}
    assert st["reference"]["detail"] == "never ran: upstream stage finetune-p20 failed"
    assert Path(st["finetune-p20"]["log"]).exists() and "_1_0_log.out" in st["finetune-p20"]["log"]

    # the relaunch submits only the failed stage and the one it cancelled
    monkeypatch.delenv("REPROLIB_LAUNCH_FAIL")
    assert launch("sidt", *SIDT, "--on", "slurm", "--time", "15") == 0
    out = capsys.readouterr().out
    assert "5 stages, 3 done, 0 already queued or running, 2 to run as 2 SLURM jobs" in out
    seen = set()

    def all_done():
        now = states("sidt", SIDT)
        seen.update((k, v["state"]) for k, v in now.items())
        return all(v["state"] == "done" for v in now.values())
    until(all_done, 600, "the relaunched stages")
    assert ("reference", "queued") in seen and ("finetune-p20", "running") in seen
    assert commands.main(["status", "sidt", *SIDT]) == 0
    assert "5 stages: 5 done, 0 queued" in capsys.readouterr().out

    # every record written once (the failed job wrote none), each after its upstream ones
    logs = job_logs(roots / "runs", "sidt")
    assert computed_once(logs) == {s.run_id: 1 for s in g}
    for s in g:
        for u in s.after:
            assert u.path.stat().st_mtime <= _started(s.path) + 1e-3, (s.name, u.name)
    before = {s.path: s.path.stat().st_mtime_ns for s in g}
    assert launch("sidt", *SIDT, "--on", "slurm") == 0
    assert "nothing to run (5 of 5 stages done, 0 queued or running)" in capsys.readouterr().out
    assert before == {s.path: s.path.stat().st_mtime_ns for s in g}


def test_a_stage_killed_mid_training_resumes_from_its_checkpoint(roots, capsys):
    from reprolib.core.io import load_torch

    g = graph("metaformer_nas", NAS)
    s = g["retrain-nas4"]
    ck = s.ckpt_dir / "last.pt"
    assert launch("metaformer_nas", *NAS, "--stage", "retrain-nas4", "--on", "slurm",
                  "--time", "15") == 0
    assert "2 to run as 2 SLURM jobs" in capsys.readouterr().out
    st = states("metaformer_nas", NAS)
    assert st["retrain-nas4"]["state"] == "queued"
    assert st["retrain-pooling"]["state"] == "missing"           # not asked for

    def two_epochs():
        try:
            return ck.exists() and load_torch(ck)["epoch"] >= 2
        except Exception:  # noqa: BLE001 - being written (atomically renamed): try again
            return False
    until(two_epochs, 600, "two epochs of retrain-nas4")
    assert states("metaformer_nas", NAS)["retrain-nas4"]["state"] == "running"
    job = State("metaformer_nas", "smoke").read()[s.run_id]["job"]
    subprocess.run(["scancel", job], check=True)
    until(lambda: states("metaformer_nas", NAS)["retrain-nas4"]["state"] == "cancelled", 120,
          "the cancelled job")
    # SLURM says CANCELLED at once; the process goes KillWait (5 s) later: read the
    # checkpoint once the job has left the node
    until(lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True,
                                     text=True).stdout.strip(), 60, "the job to leave the node")
    st = states("metaformer_nas", NAS)
    assert st["search-nas4"]["state"] == "done" and st["retrain-nas4"]["job"] == job
    assert not s.done
    epoch = int(load_torch(ck)["epoch"])
    assert 2 <= epoch < 15

    assert launch("metaformer_nas", *NAS, "--stage", "retrain-nas4", "--on", "slurm",
                  "--time", "15", "--wait") == 0
    out = capsys.readouterr().out
    assert "2 stages, 1 done, 0 already queued or running, 1 to run as 1 SLURM job" in out
    assert s.done
    new_job = State("metaformer_nas", "smoke").read()[s.run_id]["job"]
    new_log = Path(State("metaformer_nas", "smoke").read()[s.run_id]["log"]).read_text(
        errors="replace").replace("\r", "\n")
    assert new_job != job
    assert f"resuming from {show(ck)}" in new_log
    assert f"(epoch {epoch} done)" in new_log
    assert f"at epoch {epoch + 1}/15 ({epoch} done)" in new_log       # fit's own resume line
    rec = json.loads(s.path.read_text())
    assert len(rec["metrics"]["history"]) == 15
    assert computed_once(job_logs(roots / "runs", "metaformer_nas"))[s.run_id] == 1


def test_a_stage_of_two_processes_is_one_ddp_job(roots, capsys):
    q = ["-p", "widths=0.25", "-p", "train.epochs=2"]
    assert launch("quickstart", *q, "--on", "slurm", "--nproc", "2", "--time", "15",
                  "--wait") == 0
    out = capsys.readouterr().out
    assert "1 to run as 1 SLURM job (0 arrays)" in out and "2 tasks x (1 CPU, no GPU)" in out
    logs = job_logs(roots / "runs", "quickstart")
    assert "computed in" in logs and ", 2 DDP processes" in logs
    assert "global_rank=1(2)" in logs                # the second task ran the stage too
    (s,) = graph("quickstart", q).stages
    assert s.done
