"""The command line of ``reprolib launch`` and ``reprolib status`` (and ``reprolib reproduce
--on ...``): :func:`add_commands` adds both subcommands to ``reprolib``'s parser, each a
``cmd_*`` that returns an exit code and raises ``ReprolibError`` for bad input.

    reprolib launch templates --profile evidence --on slurm --dry-run
    reprolib launch sidt --profile evidence --on slurm --partition gpu --array-parallelism 8
    reprolib launch sidt --profile smoke --on local --jobs 2
    reprolib status sidt --profile evidence

SLURM settings come from flags or a TOML file (``--slurm-config FILE``, default
``$REPROLIB_SLURM_CONFIG``) holding the same names::

    partition = "gpu"
    account = "my-lab"
    qos = "normal"
    constraint = "a100"
    time = 240                    # minutes, where no bench estimate gives a time limit
    array_parallelism = 16
    mem_gb = 32
    setup = ["module load cuda/12.4"]
    [sbatch]                      # any other sbatch option
    exclude = "node13"
"""

from __future__ import annotations

import argparse
import os

from reprolib.errors import ReprolibError

#: Config-file keys and the flags they stand for.
CONFIG_KEYS = ("partition", "account", "qos", "constraint", "time", "array_parallelism",
               "mem_gb", "setup", "sbatch", "tasks_per_node")


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paper", help="the paper (reprolib list)")
    p.add_argument("--profile", default="smoke", help="preset (default smoke)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, as for run / compute (repeatable)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder holding the data sets (the same as -p data_root=DIR)")


def add_launch_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The options that say where and how stages run (``launch``, ``reproduce --on``)."""
    p.add_argument("--on", choices=("slurm", "local"), required=required, default=None,
                   help="slurm: one job per missing stage (job arrays, afterok dependencies) "
                        "through submitit; local: this machine, --jobs at once")
    p.add_argument("--jobs", type=_positive, default=None, metavar="N",
                   help="--on local: stages at once (default: the CPU count)")
    p.add_argument("--dry-run", action="store_true",
                   help="show the jobs, arrays, dependencies and resources; submit nothing")
    p.add_argument("--wait", action="store_true",
                   help="--on slurm: wait for the jobs, then report failures (exit 1)")
    s = p.add_argument_group("SLURM (flags win over --slurm-config)")
    s.add_argument("--slurm-config", metavar="FILE", default=None,
                   help="TOML file with partition, account, qos, constraint, time, "
                        "array_parallelism, mem_gb, setup, [sbatch] "
                        "(default $REPROLIB_SLURM_CONFIG)")
    s.add_argument("--partition", default=None, help="sbatch --partition of every job")
    s.add_argument("--account", default=None, help="sbatch --account (charged for the jobs)")
    s.add_argument("--qos", default=None, help="sbatch --qos")
    s.add_argument("--constraint", default=None,
                   help="sbatch --constraint, node features, e.g. a100")
    s.add_argument("--time", type=_positive, default=None, metavar="MIN",
                   help="time limit of a stage no bench record estimates (default 60)")
    s.add_argument("--array-parallelism", type=_positive, default=None, metavar="N",
                   help="tasks of one job array running at once (default: no cap)")
    s.add_argument("--mem-gb", type=float, default=None, metavar="GB",
                   help="memory per job")
    s.add_argument("--nproc", type=_positive, default=None, metavar="N",
                   help="DDP processes of every training stage: one job of N tasks")
    s.add_argument("--tasks-per-node", type=_positive, default=None, metavar="N",
                   help="spread a stage of more processes over several nodes")
    s.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. --sbatch exclude=node13 (repeatable)")
    s.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run in the job before the stage, e.g. 'module load "
                        "cuda' (repeatable)")


def read_config(path: str | None) -> dict:
    """The SLURM config file's settings ({} without one); unknown keys are an error."""
    path = path or os.environ.get("REPROLIB_SLURM_CONFIG")
    if not path:
        return {}
    import tomllib

    from reprolib import paths

    p = paths.resolve(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ReprolibError(f"--slurm-config {path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ReprolibError(f"--slurm-config {path}: {e}") from None
    bad = sorted(set(data) - set(CONFIG_KEYS))
    if bad:
        raise ReprolibError(f"--slurm-config {path}: unknown key {bad[0]!r}; keys: "
                            f"{', '.join(CONFIG_KEYS)}")
    return data


def options(args, stages=()):
    """The :class:`~reprolib.tools.launch.jobs.Options` of parsed arguments: flags over the
    config file over the defaults."""
    from reprolib.tools.launch.jobs import Options

    conf = read_config(args.slurm_config)
    sbatch = {str(k): str(v) for k, v in dict(conf.get("sbatch", {})).items()}
    for kv in args.sbatch:
        k, eq, v = kv.partition("=")
        if not eq or not k.strip():
            raise ReprolibError(f"--sbatch {kv!r}: give KEY=VALUE (e.g. exclude=node13)")
        sbatch[k.strip().lstrip("-")] = v.strip()

    def pick(flag, key, default=None):
        v = getattr(args, flag)
        return v if v is not None else conf.get(key, default)

    setup = [*conf.get("setup", []), *args.setup]
    if not all(isinstance(x, str) for x in setup):
        raise ReprolibError("setup: a list of shell lines (strings)")
    return Options(on=args.on, jobs=args.jobs or os.cpu_count() or 1,
                   time_min=int(pick("time", "time", 60)),
                   array_parallelism=pick("array_parallelism", "array_parallelism"),
                   partition=pick("partition", "partition"), account=pick("account", "account"),
                   qos=pick("qos", "qos"), constraint=pick("constraint", "constraint"),
                   mem_gb=pick("mem_gb", "mem_gb"), sbatch=sbatch, setup=setup,
                   nproc=args.nproc, tasks_per_node=pick("tasks_per_node", "tasks_per_node"),
                   stages=tuple(stages), wait=bool(args.wait))


def _request(args):
    from reprolib.tools.launch.jobs import Request

    return Request(args.paper, args.profile, tuple(args.param), args.data_root)


def cmd_launch(args) -> int:
    from reprolib.tools.launch.launcher import launch

    if args.status:
        return cmd_status(args)
    if args.on is None:
        raise ReprolibError("launch: say where: --on slurm or --on local")
    stages = [n for part in args.stage or () for n in part.split(",") if n.strip()]
    return launch(_request(args), options(args, stages), dry_run=args.dry_run,
                  download=args.download)


def cmd_status(args) -> int:
    from reprolib.configs import get_config
    from reprolib.experiments import get_experiment
    from reprolib.tools.launch import status

    req = _request(args)
    over = req.overrides()
    if req.data_root:
        over["data_root"] = req.data_root
    cfg = get_config(req.paper, req.profile, **over)
    graph = get_experiment(req.paper).graph(cfg)
    rows = status.rows(graph, req.paper, req.profile)
    if args.json:
        import json

        print(json.dumps(rows, indent=1))
    else:
        print(status.format_rows(req.paper, req.profile, rows, args.tail))
    return 0


def reproduce_on(args, papers: list[str]) -> int | None:
    """``reprolib reproduce --profile P --on slurm|local``: launch the missing stages of
    every paper in ``papers``.  Returns None when the notebooks should run next (every stage
    has its record: ``--on local``, or ``--on slurm --wait``), else the exit code."""
    from reprolib.tools.launch.jobs import Request
    from reprolib.tools.launch.launcher import launch

    opts = options(args)
    worst = 0
    for paper in papers:
        req = Request(paper, args.profile, (), args.data_root)
        worst = max(worst, launch(req, opts, dry_run=args.dry_run, download=args.download))
    if args.dry_run or worst:
        return worst
    if opts.on == "slurm" and not opts.wait:
        print(f"when the jobs are done, `reprolib reproduce --profile {args.profile}` runs the "
              "notebooks on the records (reprolib status PAPER shows each stage)")
        return 0
    return None


def add_commands(sub) -> None:
    """Add ``launch`` and ``status`` to the subparsers ``sub`` of ``reprolib``'s parser."""
    la = sub.add_parser("launch", help="run the stages that have no record on SLURM (job "
                        "arrays, afterok dependencies) or on a local pool",
                        description="Hand the missing stages of a paper's graph to SLURM "
                        "through submitit, or to a pool of processes on this machine; a "
                        "relaunch runs only what is still missing.",
                        epilog=__doc__.split("\n\n", 1)[1],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_args(la)
    la.add_argument("--download", action="store_true",
                    help="download a missing data set into --data-root first")
    la.add_argument("--stage", action="append", metavar="NAME[,NAME]",
                    help="only these stages and the missing ones they read (repeatable)")
    la.add_argument("--status", action="store_true", help="only show the status")
    la.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    la.add_argument("--tail", type=int, default=10, help=argparse.SUPPRESS)
    add_launch_options(la, required=False)
    la.set_defaults(fn=cmd_launch)
    st = sub.add_parser("status", help="every stage of a paper's graph: done / queued / "
                        "running / failed / cancelled / missing, job id, elapsed time, log")
    _config_args(st)
    st.add_argument("--json", action="store_true", help="the rows as JSON")
    st.add_argument("--tail", type=int, default=10, metavar="N",
                    help="lines of each failed stage's log shown (default 10)")
    st.set_defaults(fn=cmd_status)


def main(argv: list[str] | None = None) -> int:
    """``python -m reprolib.tools.launch launch|status ...``: the two commands alone (what
    ``reprolib launch`` / ``reprolib status`` run), with the CLI's error convention: a
    ReprolibError is one line on stderr and exit code 2."""
    import sys

    ap = argparse.ArgumentParser(prog="python -m reprolib.tools.launch")
    add_commands(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except ReprolibError as e:
        print(f"reprolib: error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("reprolib: interrupted; finished stages are kept and the next launch runs "
              "only what is missing", file=sys.stderr, flush=True)
        return 130
