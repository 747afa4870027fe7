"""``reprolib launch PAPER --profile P --on slurm|local``: the stages of the graph that have
no record, handed to SLURM (through submitit) or to a local pool, and nothing else.

:func:`launch` checks the config and the data once (here, before anything is submitted),
leaves out every stage that has its record and every stage already queued or running from
an earlier launch (their jobs stay; new dependants wait for them), plans the jobs
(:func:`reprolib.tools.launch.jobs.plan_jobs`) and, unless ``dry_run``, submits them --
recording each job in the launch state so that ``status`` and the next launch know it.
"""

from __future__ import annotations

import time

from reprolib.errors import ReprolibError
from reprolib.tools.launch import jobs as _jobs
from reprolib.tools.launch import slurm
from reprolib.tools.launch import status as _status
from reprolib.tools.launch.state import State, folder, now, show


def _targets(graph, opts):
    return _jobs.upstream_closure(graph, opts.stages) if opts.stages else list(graph)


def active_jobs(graph, paper: str, profile: str) -> dict[str, str]:
    """``{run id: job id}`` of the stages without a record that an earlier launch left
    queued or running (on SLURM, or in a local launch that still runs)."""
    rows = _status.rows(graph, paper, profile)
    return {r["run_id"]: r["job"] for r in rows if r["state"] in ("queued", "running")}


def _resources(job) -> str:
    gpu = f"{job.gpus} GPU" if job.gpus else "no GPU"
    tasks = f"{job.processes} task{'s' if job.processes > 1 else ''}"
    if job.nodes > 1:
        tasks += f" on {job.nodes} nodes"
    return f"{tasks} x ({job.cpus} CPU, {gpu}), time {_jobs.hms(job.minutes)} ({job.time_note})"


def format_plan(request, opts, graph, planned, done: int, active: dict[str, str]) -> str:
    """What a launch would submit: one block per job (array size, stages, resources, time
    limit and where it comes from, ``afterok`` dependencies)."""
    n = sum(len(j.stages) for j in planned)
    arrays = sum(j.array for j in planned)
    head = (f"launch: {request.paper} --profile {request.profile} --on {opts.on}: "
            f"{len(graph)} stages, {done} done, {len(active)} already queued or running, "
            f"{n} to run")
    if opts.on == "local":
        lines = [head + f", at most {opts.jobs} at once on this machine", ""]
        for j in planned:
            for s in j.stages:
                ups = [u.name for u in s.after if not u.done]
                lines.append(f"  {s.name}" + (f"  <- {', '.join(ups)}" if ups else ""))
        return "\n".join(lines)
    lines = [head + f" as {len(planned)} SLURM job{'s' * (len(planned) != 1)} ({arrays} "
             f"array{'s' * (arrays != 1)})", ""]
    opt = [f"{k} {getattr(opts, k)}" for k in ("partition", "account", "qos", "constraint")
           if getattr(opts, k)]
    if opts.mem_gb:
        opt.append(f"mem {opts.mem_gb:g} GB")
    opt += [f"--{k}={v}" for k, v in opts.sbatch.items()]
    if opt:
        lines += ["  every job: " + ", ".join(opt), ""]
    for j in planned:
        cap = f", at most {opts.array_parallelism} at once" if j.array and \
            opts.array_parallelism else ""
        kind = f"array of {len(j.stages)}{cap}" if j.array else "job"
        lines.append(f"  job {j.index}: {kind}, {j.label} (depth {j.depth}): {_resources(j)}")
        if j.after:
            refs = list(dict.fromkeys(ref.replace("job:", "job ") for _, ref in j.after))
            ups = list(dict.fromkeys(u.name for u, _ in j.after))
            lines.append(f"      afterok: {', '.join(refs)} ({', '.join(_short(ups))})")
        names = [s.name for s in j.stages]
        lines.append("      " + ", ".join(_short(names, 6)))
    return "\n".join(lines)


def _n(k: int, what: str) -> str:
    return f"{k} {what}{'s' * (k != 1)}"


def _short(names: list[str], keep: int = 4) -> list[str]:
    return names if len(names) <= keep else [*names[:keep], f"... {len(names) - keep} more"]


def launch(request, opts, dry_run: bool = False, download: bool = False, say=print) -> int:
    """Launch the missing stages of ``request`` (see the module docstring); returns the exit
    code: 0, or 1 when a local stage failed (or, with ``opts.wait``, a SLURM job did)."""
    if opts.on not in ("slurm", "local"):
        raise ReprolibError(f"--on {opts.on!r}: choose slurm or local")
    if opts.on == "slurm" and not dry_run:
        why = slurm.available()
        if why:
            raise ReprolibError(why)
    from reprolib.experiments import get_experiment

    cfg = request.config(data=True, download=download)
    graph = get_experiment(request.paper).graph(cfg)
    targets = _targets(graph, opts)
    done = sum(s.done for s in targets)
    active = active_jobs(graph, request.paper, request.profile)
    todo = [s for s in targets if not s.done and s.run_id not in active]
    planned = _jobs.plan_jobs(graph, todo, opts, active)
    if dry_run:
        say(format_plan(request, opts, targets, planned, done, active))
        say("" if planned else "nothing to run: every stage has its record or a job")
        say("(--dry-run: nothing submitted)")
        return 0
    if not todo:
        say(f"launch: {request.paper} --profile {request.profile}: nothing to run "
            f"({done} of {len(targets)} stages done, {len(active)} queued or running)")
        return 0
    say(format_plan(request, opts, targets, planned, done, active))
    say("")
    if opts.on == "local":
        return _launch_local(request, opts, graph, todo, say)
    return _launch_slurm(request, opts, graph, planned, say)


def _launch_local(request, opts, graph, todo, say) -> int:
    from reprolib.tools.launch import local

    t0 = time.perf_counter()
    out = local.run(request, graph, todo, opts.jobs, say=say)
    bad = {k: v for k, v in out.items() if v["state"] != "completed"}
    ok = len(out) - len(bad)
    say(f"\nlaunch: {ok} of {_n(len(out), 'stage')} completed in {time.perf_counter() - t0:.0f} s "
        f"with at most {opts.jobs} at once")
    if bad:
        say(_failures(request, graph))
        return 1
    return 0


def _failures(request, graph, tail_lines: int = 10) -> str:
    rs = _status.rows(graph, request.paper, request.profile)
    lines = []
    for r in rs:
        if r["state"] == "failed":
            lines += [f"failed: stage {r['stage']} (job {r['job'] or '-'}): {r['detail']}; "
                      f"last lines of {show(r['log'])}:"]
            lines += [f"    {x}" for x in _status.tail(r["log"], tail_lines)]
    cancelled = [r["stage"] for r in rs if r["state"] == "cancelled"]
    if cancelled:
        lines.append(f"cancelled (an upstream stage failed): {', '.join(cancelled)}")
    args = " ".join(request.argv()[2:])
    lines.append(f"fix the cause, then `reprolib launch {args} --on ...` runs only what is "
                 f"missing; `reprolib status {args}` shows every stage")
    return "\n".join(lines)


def _launch_slurm(request, opts, graph, planned, say) -> int:
    jobs_dir = folder(request.paper, request.profile) / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    ex = slurm.executor(jobs_dir)
    st = State(request.paper, request.profile)
    req_json = request.to_json()
    submitted: dict[str, str] = {}
    arrays: dict[str, set] = {}
    t0 = time.perf_counter()
    for j in planned:
        dep = slurm.dependency(j, submitted, arrays)
        subs = slurm.submit(ex, j, opts, req_json, dep)
        ids = [str(x.job_id) for x in subs]
        if j.array:
            arrays[ids[0].split("_")[0]] = set(ids)
        with st.update() as entries:
            for s, jid in zip(j.stages, ids):
                submitted[s.run_id] = jid
                entries[s.run_id] = {"stage": s.name, "on": "slurm", "job": jid,
                                     "log": slurm.log_path(jobs_dir, jid), "submitted": now(),
                                     "dependency": dep or "", "minutes": j.minutes}
        say(f"  submitted job {j.index} ({j.label}) as {ids[0].split('_')[0]}"
            + (f", array of {len(ids)}" if j.array else "") + (f", {dep}" if dep else ""))
    args = " ".join(request.argv()[2:])
    say(f"\nlaunch: {_n(len(submitted), 'stage')} submitted as {_n(len(planned), 'job')} in "
        f"{time.perf_counter() - t0:.1f} s; logs in {show(jobs_dir)}/; "
        f"`reprolib status {args}` shows them")
    if not opts.wait:
        return 0
    return wait(request, graph, submitted, say)


def wait(request, graph, submitted: dict[str, str], say=print, poll_s: float = 2.0) -> int:
    """Block until SLURM has finished the jobs ``submitted`` (run id -> job id), asking
    ``sacct`` every few seconds (at most every 10 s); then the failures, with their logs'
    tails.  Returns 1 when a submitted stage has no record."""
    stages = {s.run_id: s for s in graph}
    t0, delay = time.monotonic(), 1.0
    while True:
        info = slurm.job_states(submitted.values())
        left = []
        for rid, j in submitted.items():
            if stages[rid].done:
                continue
            if j in info:
                if slurm.kind(info[j]["state"]) in ("queued", "running"):
                    left.append(j)
            elif time.monotonic() - t0 < 120:       # not yet in the accounting
                left.append(j)
        if not left:
            break
        time.sleep(delay)
        delay = min(10.0, max(poll_s, delay * 1.5))
    if any(not stages[rid].done for rid in submitted):
        say(_failures(request, graph))
        return 1
    say(f"launch: every submitted stage has its record ({len(submitted)})")
    return 0
