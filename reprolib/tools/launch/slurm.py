"""The SLURM side of a launch, through submitit: :func:`submit` hands the planned jobs to
``sbatch`` (a job array per :class:`~reprolib.tools.launch.jobs.Job` of several stages,
``--dependency=afterok:...`` on the upstream jobs), and :func:`job_states` asks ``sacct``
(``squeue`` where the cluster keeps no accounting) what became of them.

The cluster must run ``slurmctld`` with ``DependencyParameters=kill_invalid_depend`` for a
failed stage to cancel its dependants at once (without it they stay pending, reason
DependencyNeverSatisfied, and ``status`` says so); ``tools/slurm/cluster.sh`` sets it up.
The submitit folder (``runs/launch/<paper>-<profile>/jobs/``) must be on a file system the
compute nodes share, like the results folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from reprolib.errors import ReprolibError

#: SLURM job states by what ``status`` calls them.
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING",
          "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
RUNNING = {"RUNNING", "COMPLETING"}
CANCELLED = {"CANCELLED"}
FINISHED = {"COMPLETED"}


def kind(state: str) -> str:
    """``queued`` / ``running`` / ``completed`` / ``cancelled`` / ``failed`` / ``unknown`` of
    a SLURM state (``CANCELLED by 0`` counts as CANCELLED)."""
    s = state.split()[0].rstrip("+") if state else ""
    if s in QUEUED:
        return "queued"
    if s in RUNNING:
        return "running"
    if s in FINISHED:
        return "completed"
    if s in CANCELLED:
        return "cancelled"
    if not s or s == "UNKNOWN":
        return "unknown"
    return "failed"            # FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ...


def available() -> str | None:
    """None when ``sbatch`` is on PATH, else why a SLURM launch cannot work here."""
    if shutil.which("sbatch") is None:
        return ("no sbatch on PATH: --on slurm needs a SLURM client on this machine (a login "
                "node); tools/slurm/cluster.sh start sets up a single-node cluster here")
    return None


# --------------------------------------------------------------------------- submitting


def executor(folder):
    """submitit's executor for SLURM, writing its files (pickled submissions, logs) to
    ``folder``."""
    import submitit

    why = available()
    if why:
        raise ReprolibError(why)
    return submitit.AutoExecutor(folder=str(folder), cluster="slurm")


def parameters(job, opts, dependency: str | None) -> dict:
    """submitit's parameters of one planned job: name, tasks / GPUs / CPUs, time limit,
    partition, account, qos, constraint, array cap, setup lines and extra sbatch options."""
    params = {"name": f"reprolib-{job.stages[0].paper}-{job.label}"[:120].replace(" ", "_"),
              "timeout_min": int(job.minutes), "nodes": job.nodes,
              "tasks_per_node": job.tasks_per_node, "cpus_per_task": job.cpus,
              "slurm_stderr_to_stdout": True,        # one log per stage
              "slurm_setup": ["export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
                              *opts.setup]}
    if job.gpus:
        params["gpus_per_node"] = job.gpus * job.tasks_per_node
    if opts.mem_gb:
        params["mem_gb"] = opts.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(opts, key):
            params[f"slurm_{key}"] = getattr(opts, key)
    if job.array and opts.array_parallelism:
        params["slurm_array_parallelism"] = int(opts.array_parallelism)
    extra = dict(opts.sbatch)
    if dependency:
        params["slurm_dependency"] = dependency
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def dependency(job, submitted: dict[str, str], arrays: dict[str, set]) -> str | None:
    """``afterok:...`` on the jobs of ``job``'s upstream stages: each stage's own job or
    array task (``submitted``: run id -> SLURM id of the stages this launch submitted;
    otherwise the id of the job already queued for it), an array by its id alone where every
    one of its tasks is named (``arrays``: array id -> its task ids)."""
    want = list(dict.fromkeys(submitted[up.run_id] if ref.startswith("job:") else ref
                              for up, ref in job.after))
    out: list[str] = []
    for j in want:
        head = j.split("_")[0]
        if "_" in j and head in arrays and arrays[head] <= set(want):
            if head not in out:
                out.append(head)
        else:
            out.append(j)
    return "afterok:" + ":".join(out) if out else None


def submit(executor_, job, opts, request_json: str, dep: str | None) -> list:
    """Submit ``job``: one submitit job, or an array (``executor.batch()``); returns the
    submitit jobs, one per stage, in the job's stage order."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    from reprolib.tools.launch.worker import StageTask

    executor_.update_parameters(**parameters(job, opts, dep))
    try:
        if not job.array:
            return [executor_.submit(StageTask(), request_json, job.stages[0].name)]
        with executor_.batch():
            subs = [executor_.submit(StageTask(), request_json, s.name) for s in job.stages]
        return subs
    except (FailedJobError, FailedSubmissionError, subprocess.CalledProcessError, OSError) as e:
        raise ReprolibError(f"sbatch refused job {job.index} ({job.label}): "
                            f"{str(e).strip().splitlines()[-1] if str(e).strip() else e}") from None


# --------------------------------------------------------------------------- asking


_ARRAY = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


def _expand(job_id: str) -> list[str]:
    """``123_[0-2,5%2]`` -> 123_0, 123_1, 123_2, 123_5; anything else as it is."""
    m = _ARRAY.match(job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_sacct(text: str) -> dict[str, dict]:
    """``sacct -n -P -X -o JobID,State,Elapsed,ExitCode,Reason`` output -> ``{job id:
    {"state", "elapsed", "exit", "reason"}}`` (pending array ranges expanded)."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 2 or not parts[0] or "." in parts[0]:
            continue
        parts += [""] * (5 - len(parts))
        info = {"state": parts[1], "elapsed": parts[2], "exit": parts[3], "reason": parts[4]}
        for j in _expand(parts[0]):
            out[j] = info
    return out


def job_states(job_ids) -> dict[str, dict]:
    """What SLURM says of ``job_ids`` (``123`` or array tasks ``123_4``): ``{job id: {"state",
    "elapsed", "exit", "reason"}}``; jobs it does not know are left out.  ``sacct`` first (it
    knows finished jobs); ``squeue`` for the jobs it does not name: where the cluster keeps no
    accounting, and for a job submitted a moment ago that the accounting has not seen yet."""
    job_ids = sorted(set(job_ids))
    if not job_ids or available():
        return {}
    got = _sacct(job_ids)
    rest = [j for j in job_ids if j not in got]
    if rest:
        got.update(_squeue(rest))
    return {j: got[j] for j in job_ids if j in got}


def _heads(job_ids) -> str:
    return ",".join(sorted({j.split("_")[0] for j in job_ids}))


def _sacct(job_ids) -> dict[str, dict]:
    try:
        r = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,Elapsed,ExitCode,Reason",
                            "-j", _heads(job_ids)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_sacct(r.stdout) if r.returncode == 0 else {}


def _squeue(job_ids) -> dict[str, dict]:
    try:
        r = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%M|%r", "-j", _heads(job_ids)],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    got = {}
    for line in r.stdout.splitlines():
        p = line.split("|")
        if len(p) == 4:
            got[p[0]] = {"state": p[1], "elapsed": p[2], "exit": "", "reason": p[3]}
    return got


def log_path(folder, job_id: str) -> str:
    """submitit's log of task 0 of ``job_id`` (stdout and stderr together)."""
    from submitit.core.utils import JobPaths

    return str(JobPaths(folder, job_id=job_id, task_id=0).stdout)
