"""``reprolib launch`` / ``reprolib status`` without a cluster: what a SLURM launch would submit
(``--dry-run``: arrays, ``afterok`` dependencies, resources, time limits; nothing written),
the sbatch parameters and ``sacct`` parsing, ``status`` from the launch state, and the
``--on local`` pool for real (worker processes, dependency order, an injected failure that
cancels its dependants, a relaunch that runs only what is missing).  The same on a real
SLURM cluster: tests/pipeline/test_launch_slurm.py."""

from __future__ import annotations

import json
import math

import pytest

from reprolib.configs import get_config
from reprolib.experiments import get_experiment
from reprolib.tools.launch import commands, jobs, slurm, status
from reprolib.tools.launch.jobs import Options, Request
from reprolib.tools.launch.state import State

SIDT = ["-p", "ratios=(0.2,0.4)"]
#: metaformer_nas smoke cut to one chain (search-nas4 -> retrain-nas4) and two loose stages
NAS = ["-p", "node_counts=4", "-p", "baselines=pooling"]


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REPROLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("REPROLIB_LAUNCH_FAIL", raising=False)
    monkeypatch.delenv("REPROLIB_SLURM_CONFIG", raising=False)
    return tmp_path


def launch(*argv) -> int:
    return commands.main(["launch", *argv])


def graph_of(paper, profile="smoke", **over):
    return get_experiment(paper).graph(get_config(paper, profile, **over))


# --------------------------------------------------------------------------- planning


def test_dry_run_shows_arrays_dependencies_and_resources_and_writes_nothing(roots, capsys):
    assert launch("sidt", *SIDT, "--on", "slurm", "--dry-run", "--array-parallelism", "2",
                  "--partition", "gpu", "--account", "lab", "--sbatch", "exclude=node13",
                  "--time", "30") == 0
    out = capsys.readouterr().out
    assert "5 stages, 0 done, 0 already queued or running, 5 to run as 3 SLURM jobs (1 array)" \
        in out
    assert "every job: partition gpu, account lab, --exclude=node13" in out
    assert "job 1: job, search (depth 0): 1 task x (1 CPU, no GPU), time 0:30:00 (--time)" in out
    assert "job 2: array of 3, at most 2 at once, finetune (depth 1)" in out
    assert "afterok: job 1 (search)" in out and "afterok: job 2 (finetune-p00" in out
    assert "(--dry-run: nothing submitted)" in out
    assert not (roots / "runs").exists() and not (roots / "results").exists()


def test_arrays_split_by_upstream_and_ddp_stages_are_multi_task_jobs(roots):
    """In an evidence grid each seed's fine-tunes are one array after that seed's search
    only (a failed seed cancels its own stages); --nproc makes every training stage one job
    of N tasks, spread over nodes by --tasks-per-node."""
    g = graph_of("sidt", "evidence")
    planned = jobs.plan_jobs(g, list(g), Options(on="slurm", nproc=4, tasks_per_node=2))
    ft = [j for j in planned if j.label == "finetune"]
    assert len(ft) == 5 and all(len(j.stages) == 5 for j in ft)
    for j in ft:
        seeds = {s.tags["seed"] for s in j.stages}
        (up, ref), = j.after
        assert len(seeds) == 1 and up.role == "search" and up.tags["seed"] in seeds
        assert ref.startswith("job:") and j.processes == 4 and j.nodes == 2
        assert j.tasks_per_node == 2
    ref = next(j for j in planned if j.label == "reference")
    assert ref.processes == 1                       # it trains nothing: one process
    assert ref.depth == 1 + max(j.depth for j in ft)
    assert sum(len(j.stages) for j in planned) == len(g)


def test_only_missing_stages_and_waiting_for_queued_ones(roots):
    g = graph_of("sidt", ratios=(0.2, 0.4))
    up = g["search"]
    planned = jobs.plan_jobs(g, [s for s in g if s.name != "search"], Options(on="slurm"),
                             active={up.run_id: "41"})
    assert [j.label for j in planned] == ["finetune", "reference"]
    assert [ref for _, ref in planned[0].after] == ["41"]
    # ... and the sbatch dependency: a whole array of this launch by its id, a task by its own
    arrays = {"7": {"7_0", "7_1", "7_2"}}
    done = {s.run_id: f"7_{i}" for i, s in enumerate(planned[0].stages)}
    assert slurm.dependency(planned[1], done, arrays) == "afterok:7"
    assert slurm.dependency(planned[0], {}, {}) == "afterok:41"


def test_selected_stages_bring_their_missing_upstream_ones(roots):
    g = graph_of("sidt", ratios=(0.2, 0.4))
    assert [s.name for s in jobs.upstream_closure(g, ["finetune-p40"])] == ["search",
                                                                            "finetune-p40"]
    with pytest.raises(commands.ReprolibError, match="unknown stage 'nope'"):
        jobs.upstream_closure(g, ["nope"])


def test_sbatch_parameters_of_a_job(roots):
    g = graph_of("sidt", ratios=(0.2, 0.4))
    opts = Options(on="slurm", nproc=2, array_parallelism=3, partition="p", qos="q",
                   constraint="a100", mem_gb=8, sbatch={"exclude": "n1"},
                   setup=["module load cuda"])
    j = next(j for j in jobs.plan_jobs(g, list(g), opts) if j.array)
    j.gpus = 1
    p = slurm.parameters(j, opts, "afterok:5")
    assert p["tasks_per_node"] == 2 and p["gpus_per_node"] == 2 and p["nodes"] == 1
    assert p["slurm_dependency"] == "afterok:5" and p["slurm_array_parallelism"] == 3
    assert p["slurm_partition"] == "p" and p["slurm_qos"] == "q"
    assert p["slurm_constraint"] == "a100" and p["mem_gb"] == 8
    assert p["slurm_additional_parameters"] == {"exclude": "n1"}
    assert p["slurm_setup"][-1] == "module load cuda" and p["timeout_min"] == 60
    assert p["name"] == "reprolib-sidt-finetune"


def test_time_limit_from_a_bench_record_of_the_same_kind_of_device(roots):
    """A CPU stage takes its time limit from a CPU bench record of its model (x1.5 + 10 min);
    a GPU stage does not trust a CPU record and keeps --time."""
    bench = roots / "results" / "bench" / "cpu"
    bench.mkdir(parents=True)
    g = graph_of("quickstart", widths=(0.5,))
    s = g.stages[0]
    fam = {"input_size": [3, s.train.image_size, s.train.image_size],
           "cases": [{"model": s.model_spec.builder, "method": "dense"}]}
    (bench / "fit-x.json").write_text(json.dumps({"config": {"family": fam}, "metrics": {
        "rows": [{"train_ms": 1000.0}], "train_batch": 10, "device_name": "AMD EPYC x2"}}))
    minutes, note = jobs.stage_minutes(s, Options(time_min=7), 1)
    images = 1437 * s.train.recipe.epochs                 # digits' training split
    assert minutes == math.ceil(images * 0.1 / 60 * 1.5) + 10       # 100 ms an image
    assert note.startswith("bench estimate on AMD EPYC x2")
    s.resources = type(s.resources)(gpus=1)
    assert jobs.stage_minutes(s, Options(time_min=7), 1) == (7, "--time")
    assert jobs.hms(90) == "1:30:00" and jobs.hms(24 * 60 + 5) == "1-00:05:00"


def test_slurm_config_file_and_flags(roots, tmp_path, capsys):
    conf = tmp_path / "slurm.toml"
    conf.write_text('partition = "big"\nqos = "low"\ntime = 45\n[sbatch]\nexclude = "n2"\n')
    assert launch("sidt", *SIDT, "--on", "slurm", "--dry-run", "--slurm-config", str(conf),
                  "--qos", "high") == 0
    out = capsys.readouterr().out
    assert "partition big, qos high, --exclude=n2" in out and "time 0:45:00" in out
    conf.write_text('partiton = "big"\n')
    assert launch("sidt", "--on", "slurm", "--dry-run", "--slurm-config", str(conf)) == 2
    assert "unknown key 'partiton'" in capsys.readouterr().err
    assert launch("sidt", "--dry-run") == 2
    assert "--on slurm or --on local" in capsys.readouterr().err


# --------------------------------------------------------------------------- SLURM's answers


def test_sacct_parsing_and_state_kinds():
    got = slurm.parse_sacct("12|COMPLETED|00:00:05|0:0|None\n13_[1-2,4%2]|PENDING|00:00:00|0:0|"
                            "Dependency\n13_0|FAILED|00:00:01|1:0|None\n12.batch|COMPLETED|||\n")
    assert set(got) == {"12", "13_0", "13_1", "13_2", "13_4"}
    assert got["13_4"]["reason"] == "Dependency"
    assert [slurm.kind(s) for s in ("PENDING", "RUNNING", "COMPLETED", "CANCELLED by 0",
                                    "TIMEOUT", "OUT_OF_MEMORY", "")] == \
        ["queued", "running", "completed", "cancelled", "failed", "failed", "unknown"]
    assert status.slurm_clock("1-02:03:04") == "26:03:04" and status.slurm_clock("05:06") == \
        "0:05:06"


def test_status_of_slurm_jobs_names_the_failed_upstream(roots, monkeypatch, capsys):
    g = graph_of("sidt", ratios=(0.2, 0.4))
    log = roots / "runs" / "x.log"
    log.parent.mkdir(parents=True)
    log.write_text("epoch 1/2\rdone\nTraceback (most recent call last):\nValueError: boom\n")
    st = State("sidt", "smoke")
    jobs_of = {"search": "1", "finetune-p00": "2_0", "finetune-p20": "2_1",
               "finetune-p40": "2_2", "reference": "3"}
    for s in g:
        st.put(s.run_id, stage=s.name, on="slurm", job=jobs_of[s.name], log=str(log))
    answers = {"1": ("COMPLETED", ""), "2_0": ("RUNNING", ""), "2_1": ("FAILED", ""),
               "2_2": ("PENDING", "Resources"), "3": ("CANCELLED by 0", "")}
    monkeypatch.setattr(slurm, "job_states", lambda ids: {
        j: {"state": a, "elapsed": "00:01:02", "exit": "1:0", "reason": r}
        for j, (a, r) in answers.items() if j in ids})
    rows = {r["stage"]: r for r in status.rows(g, "sidt", "smoke")}
    assert rows["search"]["state"] == "failed"            # completed, but no record
    assert rows["finetune-p00"]["state"] == "running"
    assert rows["finetune-p00"]["elapsed"] == "0:01:02"
    assert rows["finetune-p20"]["state"] == "failed"
    assert (rows["finetune-p40"]["state"], rows["finetune-p40"]["detail"]) == ("queued",
                                                                              "Resources")
    assert rows["reference"]["state"] == "cancelled"
    assert "upstream stage finetune-p20 failed" in rows["reference"]["detail"]
    assert commands.main(["status", "sidt", *SIDT]) == 0
    out = capsys.readouterr().out
    assert "5 stages: 0 done, 1 queued, 1 running, 2 failed, 1 cancelled, 0 missing" in out
    assert "failed: stage finetune-p20 (job 2_1): FAILED, exit 1:0" in out
    assert "    ValueError: boom" in out and "    done" in out


def test_status_without_a_launch_and_after_a_stopped_local_one(roots, capsys):
    g = graph_of("quickstart")
    assert commands.main(["status", "quickstart"]) == 0
    assert "2 stages: 0 done, 0 queued, 0 running, 0 failed, 0 cancelled, 2 missing" in \
        capsys.readouterr().out
    State("quickstart", "smoke").put(g.stages[0].run_id, stage=g.stages[0].name, on="local",
                                     state="running", pid=2 ** 22 + 7, job="local:1")
    rows = status.rows(g, "quickstart", "smoke")
    assert rows[0]["state"] == "missing" and "stopped" in rows[0]["detail"]
    assert commands.main(["status", "quickstart", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "missing"


def test_request_is_the_compute_command():
    r = Request("sidt", "cpu", ("finetune.epochs=3", "ratios=(0.2,0.4)"), "/data")
    assert Request.from_json(r.to_json()) == r
    assert r.argv("search") == ["reprolib", "compute", "sidt", "--profile", "cpu", "-p",
                                "finetune.epochs=3", "-p", "ratios=(0.2,0.4)", "--data-root",
                                "/data", "--stage", "search"]


# --------------------------------------------------------------------------- --on local, for real


def _computed(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("done ")
            and "(computed)" in line]


def test_local_pool_runs_independent_stages_at_once(roots, capsys):
    q = ["quickstart", "-p", "widths=(0.25,0.5)", "-p", "train.epochs=1", "-p", "image_size=8"]
    assert launch(*q, "--on", "local", "--jobs", "2") == 0
    out = capsys.readouterr().out
    assert out.count("  started ") == 2 and sorted(_computed(out)) == ["small_cnn-w0.25",
                                                                       "small_cnn-w0.5"]
    # both were started before either finished
    assert out.index("started small_cnn-w0.5") < out.index("  done ")
    entries = State("quickstart", "smoke").read()
    assert {e["state"] for e in entries.values()} == {"completed"}
    assert len({e["job"] for e in entries.values()}) == 2
    rec = json.loads(next((roots / "results" / "quickstart" / "smoke").glob("*.json"))
                     .read_text())
    assert rec["command"].startswith("reprolib compute quickstart --profile smoke -p widths=")
    assert launch(*q, "--on", "local") == 0
    assert "nothing to run (2 of 2 stages done" in capsys.readouterr().out


def test_local_failure_cancels_dependants_and_relaunch_completes(roots, capsys, monkeypatch):
    nas = ["metaformer_nas", *NAS, "--stage", "retrain-nas4", "--on", "local", "--jobs", "2"]
    monkeypatch.setenv("REPROLIB_LAUNCH_FAIL", "search-nas4")
    assert launch(*nas) == 1
    out = capsys.readouterr().out
    assert "FAILED search-nas4 (local:" in out
    assert "cancelled retrain-nas4: upstream stage search-nas4 failed" in out
    assert "injected failure (REPROLIB_LAUNCH_FAIL=search-nas4)" in out     # the log's tail
    assert "started retrain-nas4" not in out
    assert commands.main(["status", "metaformer_nas", *NAS]) == 0
    st = capsys.readouterr().out
    assert "0 done, 0 queued, 0 running, 1 failed, 1 cancelled, 2 missing" in st
    assert "not started: upstream stage search-nas4 failed" in st
    monkeypatch.delenv("REPROLIB_LAUNCH_FAIL")
    assert launch(*nas) == 0
    out = capsys.readouterr().out
    assert _computed(out) == ["search-nas4", "retrain-nas4"]      # in dependency order
    assert out.index("done search-nas4") < out.index("started retrain-nas4")
    g = graph_of("metaformer_nas", node_counts=(4,), baselines=("pooling",))
    assert g["search-nas4"].done and g["retrain-nas4"].done and not g["toy-nas4"].done
