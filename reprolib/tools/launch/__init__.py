"""Beyond one machine: ``reprolib launch`` hands the stages of a paper's graph that have no
record to SLURM (through submitit) or to a pool of processes here, and ``reprolib status``
shows where every stage is.

    reprolib launch templates --profile evidence --on slurm --dry-run
    reprolib launch sidt --profile evidence --on slurm --array-parallelism 8 --wait
    reprolib launch sidt --profile smoke --on local --jobs 2
    reprolib status sidt --profile evidence

* :mod:`.jobs` -- the request, the stages to run, the jobs they go as (arrays, dependencies,
  resources, time limits); nothing submitted;
* :mod:`.slurm` -- submitit's executor, ``sacct`` / ``squeue``;
* :mod:`.local` -- the local pool;
* :mod:`.worker` -- what a job runs: one stage, as ``reprolib compute ... --stage NAME``;
* :mod:`.state` -- ``runs/launch/<paper>-<profile>/state.json``: what was launched where;
* :mod:`.status` -- every stage's state, job, elapsed time and log;
* :mod:`.launcher` -- :func:`launch`: all of it, for one paper and profile;
* :mod:`.commands` -- the ``launch`` / ``status`` subcommands (``add_commands``).

The results folder is the one store: a stage is done when its record exists, a job writes
its record and nothing else that matters, and any machine that mounts the same results
folder sees the same state.  ``tools/slurm/cluster.sh`` stands up a single-node SLURM
cluster on this machine (what the tests launch on).
"""

from reprolib.tools.launch.jobs import Job, Options, Request, plan_jobs  # noqa: F401
from reprolib.tools.launch.launcher import launch  # noqa: F401

__all__ = ["launch", "plan_jobs", "Request", "Options", "Job"]
