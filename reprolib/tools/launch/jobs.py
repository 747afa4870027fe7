"""What a launch submits: the request (paper, profile, overrides), the stages still to run,
and the jobs they go as (:func:`plan_jobs`) -- nothing here talks to a scheduler.

* :class:`Request` -- the config a job rebuilds (``reprolib compute PAPER --profile P -p ...
  --stage NAME``, the same keys, so the same records);
* :func:`depths` -- each stage's depth, the longest path from a stage that reads nothing;
* :func:`stage_minutes` -- a stage's time limit: ``plan``'s estimate where a ``reprolib bench``
  record of its model on the same kind of device gives one (x1.5 + 10 min), else the flag;
* :func:`plan_jobs` -- the missing stages as jobs: the stages of one ``group``, one depth, one
  shape of resources and the same upstream stages go as one job array; each job depends
  (``afterok``) on the jobs of the upstream stages that have no record yet.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterable

from reprolib.errors import ReprolibError

#: A time limit from a bench estimate: ``ceil(estimate * MARGIN) + SLACK_MIN`` minutes
#: (start-up, the data, the measurement and evaluation are not in a training step's time).
MARGIN = 1.5
SLACK_MIN = 10


@dataclasses.dataclass(frozen=True)
class Request:
    """One launch's config: ``paper`` at ``profile`` with the ``-p KEY=VALUE`` strings
    ``params`` (as typed: a job parses them again, so its stages have the same keys) and
    ``--data-root``."""

    paper: str
    profile: str
    params: tuple = ()
    data_root: str | None = None

    def overrides(self) -> dict:
        from reprolib.configs import parse_overrides

        return parse_overrides(list(self.params))

    def config(self, data: bool = True, download: bool = False):
        """The checked config (:func:`reprolib.tools.runner.check_run`): keys, values, the
        folders, and with ``data`` the data sets (fetched where allowed)."""
        from reprolib.tools.runner import check_run

        return check_run(self.paper, self.profile, self.overrides(), data_root=self.data_root,
                         download=download, data=data)

    def argv(self, *stages: str) -> list[str]:
        """The ``reprolib compute`` command that runs ``stages`` of this config."""
        out = ["reprolib", "compute", self.paper, "--profile", self.profile]
        for p in self.params:
            out += ["-p", p]
        if self.data_root:
            out += ["--data-root", self.data_root]
        if stages:
            out += ["--stage", ",".join(stages)]
        return out

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Request":
        d = json.loads(text)
        return cls(d["paper"], d["profile"], tuple(d.get("params", ())), d.get("data_root"))


@dataclasses.dataclass
class Options:
    """How to launch (the command's flags; :mod:`reprolib.tools.launch.commands`)."""

    on: str = "local"                    # slurm | local
    jobs: int = 2                        # local: stage processes at once
    time_min: int = 60                   # time limit where no bench estimate gives one
    array_parallelism: int | None = None  # SLURM: array tasks running at once (None: all)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    mem_gb: float | None = None
    sbatch: dict = dataclasses.field(default_factory=dict)    # extra sbatch options
    setup: list = dataclasses.field(default_factory=list)     # shell lines before the job
    nproc: int | None = None             # processes (DDP ranks) of every training stage
    tasks_per_node: int | None = None    # split a many-process stage over nodes
    stages: tuple = ()                   # only these stages (and their missing upstream ones)
    wait: bool = False                   # SLURM: wait for the jobs, report failures


@dataclasses.dataclass
class Job:
    """One submission: a single stage, or a job array of ``stages`` of one shape."""

    index: int                  # 1, 2, ... in submission order
    stages: list                # Stage objects
    depth: int
    processes: int
    gpus: int                   # per process
    cpus: int                   # per process
    nodes: int
    tasks_per_node: int
    minutes: int
    time_note: str
    after: list = dataclasses.field(default_factory=list)   # [(upstream stage, "job:N" | id)]

    @property
    def array(self) -> bool:
        return len(self.stages) > 1

    @property
    def label(self) -> str:
        s = self.stages[0]
        return s.group if self.array else s.name


def depths(graph) -> dict[str, int]:
    """``{run id: depth}``: 0 for a stage that reads no stage, else one more than its
    deepest upstream stage."""
    out: dict[str, int] = {}
    for s in graph:                 # run order: upstream stages come first
        out[s.run_id] = 1 + max((out[u.run_id] for u in s.after), default=-1)
    return out


def upstream_closure(graph, names: Iterable[str]) -> list:
    """The stages named in ``names`` and every stage they read, directly or not, in run
    order; an unknown name is a ReprolibError listing the stages."""
    names = [n.strip() for n in names if n and n.strip()]
    unknown = [n for n in names if n not in graph]
    if unknown:
        raise ReprolibError(f"unknown stage {unknown[0]!r}; stages: "
                            f"{', '.join(s.name for s in graph)}")
    want: set[str] = set()
    todo = [graph[n] for n in names]
    while todo:
        s = todo.pop()
        if s.run_id not in want:
            want.add(s.run_id)
            todo.extend(s.after)
    return [s for s in graph if s.run_id in want]


def processes_of(stage, opts: Options) -> int:
    """The processes a stage runs with: ``--nproc`` for a stage that trains, else what it
    declares."""
    if opts.nproc and stage.trains:
        return max(int(opts.nproc), stage.resources.processes)
    return stage.resources.processes


def stage_minutes(stage, opts: Options, processes: int) -> tuple[int, str]:
    """``(minutes, where they come from)``: the estimate of every training of the stage from
    a bench record timed on the kind of device it runs on (GPU or CPU), shared by its
    processes, x :data:`MARGIN` + :data:`SLACK_MIN`; otherwise ``opts.time_min``."""
    from reprolib.tools.plan import DATASET_INFO, bench_estimate

    fallback = (int(opts.time_min), "--time")
    if not stage.trains or stage.model_spec is None:
        return fallback
    gpu = stage.resources.gpus > 0
    hours, source = 0.0, ""
    for t in stage.trains:
        info = DATASET_INFO.get(t.dataset, {})
        n = info.get("train_only" if t.val_split else "train") or info.get("train")
        if not n:
            return fallback
        h, text = bench_estimate(stage.model_spec.builder, t.image_size,
                                 n * t.recipe.epochs * t.runs, "cuda" if gpu else "cpu")
        if h is None:              # bench_estimate uses only a record of this device type
            return fallback
        hours += h
        source = text.split(" (", 1)[0].split(" on ", 1)[-1]
    minutes = math.ceil(hours * 60 / max(1, processes) * MARGIN) + SLACK_MIN
    return minutes, f"bench estimate on {source} x{MARGIN:g} + {SLACK_MIN} min"


def plan_jobs(graph, todo: list, opts: Options, active: dict[str, str] | None = None) -> list[Job]:
    """The jobs that run the stages ``todo`` (missing stages, in run order).

    active: ``{run id: job id}`` of missing stages already queued or running (a relaunch
    does not submit them again; their dependants depend on those jobs).
    Stages of one group, depth, resources and set of not-yet-done upstream stages go as one
    array; a job's ``after`` lists, per upstream stage, ``"job:N"`` (a job of this launch)
    or the scheduler's id of a job already queued."""
    active = dict(active or {})
    depth = depths(graph)
    pending = {s.run_id for s in todo} | set(active)
    groups: dict[tuple, list] = {}
    for s in todo:
        procs = processes_of(s, opts)
        ups = tuple(sorted(u.run_id for u in s.after if u.run_id in pending and not u.done))
        key = (depth[s.run_id], s.group, procs, s.resources.gpus, s.resources.cpus, ups)
        groups.setdefault(key, []).append(s)
    jobs: list[Job] = []
    job_of: dict[str, int] = {}
    for key in sorted(groups, key=lambda k: (k[0], todo.index(groups[k][0]))):
        stages = groups[key]
        d, _, procs, gpus, cpus, ups = key
        per_node = opts.tasks_per_node or procs
        nodes = max(1, math.ceil(procs / per_node))
        timed = [stage_minutes(s, opts, procs) for s in stages]
        minutes, note = max(timed, key=lambda t: t[0])
        job = Job(len(jobs) + 1, stages, d, procs, gpus, cpus, nodes, min(per_node, procs),
                  minutes, note)
        for rid in ups:
            up = next(u for s in stages for u in s.after if u.run_id == rid)
            job.after.append((up, f"job:{job_of[rid]}" if rid in job_of else active[rid]))
        for s in stages:
            job_of[s.run_id] = job.index
        jobs.append(job)
    return jobs


def hms(minutes: int) -> str:
    """``minutes`` as SLURM writes a time limit: ``H:MM:00`` (``D-HH:MM:00`` from a day)."""
    d, m = divmod(int(minutes), 24 * 60)
    return (f"{d}-" if d else "") + f"{m // 60:{'02' if d else ''}}:{m % 60:02d}:00"
